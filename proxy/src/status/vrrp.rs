//! The local vrrp daemon as the status page shows it: read from the status file the daemon
//! rewrites (`/run/vrrp/status.toml`, written by `vrrp::daemon::status`).
//!
//! Only the fields shown are declared, and unknown ones are ignored, so a newer vrrp that
//! adds fields does not blank the page; a missing file means no vrrp runs here (a balancer
//! without VRRP, or a stopped daemon that cleaned up), which the page says rather than fails.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The daemon is considered gone when its file is older than this and its pid file is gone
/// (vrrp removes the pid file on a clean stop). A running daemon refreshes the file at least
/// once a second while adverts flow, but an idle one (FAULT with no peer heard) may not, so
/// age alone is only reported, never taken as proof.
pub const STALE_AFTER_MS: u64 = 5_000;

/// What the page shows about VRRP on this balancer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum VrrpView {
    /// `vrrp_status = "off"` in proxy.toml.
    Off,
    /// No status file: no vrrp runs (or ever ran) here.
    NotRunning {
        path: String,
    },
    /// The file exists but cannot be read or parsed (permissions, a half-written file).
    Unreadable {
        path: String,
        error: String,
    },
    Running(VrrpFile),
}

/// The status file's fields the page shows (a subset of vrrp's own struct).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VrrpFile {
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub router_id: String,
    /// Unix time in milliseconds of the file's last update.
    #[serde(default)]
    pub updated_ms: u64,
    /// Filled in by the reader: how old the file was when read.
    #[serde(default)]
    pub age_ms: u64,
    /// Filled in by the reader: the pid file is gone and the file is old.
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    pub instance: Vec<Instance>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    #[serde(default)]
    pub interface: String,
    #[serde(default)]
    pub vrid: u8,
    /// MASTER / BACKUP / FAULT / INIT.
    pub state: String,
    #[serde(default)]
    pub since_ms: u64,
    /// Why the last transition happened.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub priority: u8,
    #[serde(default)]
    pub base_priority: u8,
    /// Who is master as far as the daemon knows.
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub vips: Vec<Vip>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub address: String,
    #[serde(default)]
    pub priority: u8,
    /// Unix time in milliseconds of its last advert.
    #[serde(default)]
    pub last_advert_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vip {
    pub address: String,
    /// Configured on this balancer's interface (this balancer answers for it).
    pub on_interface: bool,
}

/// Reads the status file at `path` (`None`: "off"); `now_ms` is Unix time in milliseconds.
pub fn read(path: Option<&Path>, now_ms: u64) -> VrrpView {
    let Some(path) = path else {
        return VrrpView::Off;
    };
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return VrrpView::NotRunning { path: shown }
        }
        Err(e) => {
            return VrrpView::Unreadable {
                path: shown,
                error: e.to_string(),
            }
        }
    };
    let pid_file = path.with_file_name("vrrp.pid");
    parse(&text, now_ms, pid_file.exists())
        .unwrap_or_else(|error| VrrpView::Unreadable { path: shown, error })
}

/// Pure part of [`read`]: the file's text, the time, whether the daemon's pid file exists.
pub fn parse(text: &str, now_ms: u64, pid_file: bool) -> Result<VrrpView, String> {
    let mut file: VrrpFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
    file.age_ms = now_ms.saturating_sub(file.updated_ms);
    file.stale = !pid_file && file.age_ms > STALE_AFTER_MS;
    Ok(VrrpView::Running(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status file as vrrp writes it (fields the page ignores included, and one from a
    /// future vrrp).
    const FILE: &str = r#"
pid = 812
router_id = "server1"
config = "/etc/vrrp/vrrp.toml"
updated_ms = 1000000
some_future_field = 3

[[instance]]
name = "VI_1"
interface = "ens33"
vrid = 51
state = "MASTER"
since_ms = 990000
reason = "higher priority than the master's advert (150 > 100)"
priority = 150
base_priority = 150
master = "172.16.249.101"
transitions = 2
adverts_sent = 10

[[instance.tracks]]
what = "script check_proxy"
weight = 0
ok = true
contribution = 0

[[instance.peers]]
address = "172.16.249.102"
priority = 100
last_advert_ms = 999500
age_ms = 500

[[instance.vips]]
address = "172.16.249.80/24"
on_interface = true

[instance.advert_lateness]
bounds_us = [100]
counts = [1, 0]
count = 1
sum_us = 5
max_us = 5
"#;

    #[test]
    fn reads_what_vrrp_writes_and_ignores_the_rest() {
        let VrrpView::Running(f) = parse(FILE, 1_002_000, true).unwrap() else {
            panic!("not running")
        };
        assert_eq!((f.pid, f.router_id.as_str()), (812, "server1"));
        assert_eq!(f.age_ms, 2000);
        assert!(!f.stale);
        let i = &f.instance[0];
        assert_eq!(i.state, "MASTER");
        assert!(i.reason.starts_with("higher priority"));
        assert_eq!(i.master.as_deref(), Some("172.16.249.101"));
        assert_eq!(i.peers[0].address, "172.16.249.102");
        assert_eq!(i.peers[0].last_advert_ms, 999_500);
        assert_eq!(
            i.vips,
            vec![Vip {
                address: "172.16.249.80/24".into(),
                on_interface: true
            }]
        );
    }

    #[test]
    fn old_file_without_pid_file_is_stale() {
        let at = |now, pid| match parse(FILE, now, pid).unwrap() {
            VrrpView::Running(f) => f.stale,
            _ => panic!(),
        };
        assert!(!at(1_000_000 + STALE_AFTER_MS, false));
        assert!(at(1_000_001 + STALE_AFTER_MS, false));
        // A live daemon (pid file present) may simply have had nothing to write.
        assert!(!at(9_000_000, true));
    }

    #[test]
    fn missing_garbled_and_off() {
        let dir = std::env::temp_dir().join(format!("proxy-vrrp-view-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status.toml");
        assert!(matches!(read(Some(&path), 0), VrrpView::NotRunning { .. }));
        std::fs::write(&path, "pid = \"x").unwrap();
        assert!(matches!(read(Some(&path), 0), VrrpView::Unreadable { .. }));
        std::fs::write(&path, FILE).unwrap();
        assert!(matches!(read(Some(&path), 0), VrrpView::Running(_)));
        assert_eq!(read(None, 0), VrrpView::Off);
        let json = serde_json::to_value(read(Some(&path), 1_000_000)).unwrap();
        assert_eq!(json["status"], "running");
        assert_eq!(json["instance"][0]["state"], "MASTER");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
