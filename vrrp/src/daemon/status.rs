//! The status file (`RUNTIME_DIR/status.toml`) the daemon rewrites when something changes and
//! `vrrp status` reads: per instance the state and why, priorities with each track's part,
//! the peers heard, whether each VIP is on the interface, counters and advert lateness.
//! Written to a temporary file and renamed, so a reader never sees half of it.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const STATUS_FILE: &str = "status.toml";
pub const PID_FILE: &str = "vrrp.pid";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub router_id: String,
    pub config: String,
    /// Unix time in milliseconds of the last update.
    pub updated_ms: u64,
    #[serde(default)]
    pub instance: Vec<InstanceStatus>,
    /// `[anycast]`, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anycast: Option<AnycastStatus>,
}

/// `[anycast]`: whether this balancer announces the VIPs, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnycastStatus {
    pub interface: String,
    /// ANNOUNCED / WITHDRAWN / STOPPED / INIT.
    pub state: String,
    /// Unix time in milliseconds of the last transition.
    #[serde(default)]
    pub since_ms: u64,
    /// Why the state was entered (for WITHDRAWN: what fails).
    pub reason: String,
    #[serde(default)]
    pub transitions: u64,
    /// Tracked scripts and interfaces (weight is the script's; any failure withdraws).
    #[serde(default)]
    pub tracks: Vec<TrackStatus>,
    /// Each VIP (as /32 or /128) and whether it is on the interface, i.e. announced.
    #[serde(default)]
    pub vips: Vec<VipStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// MASTER / BACKUP / FAULT / INIT.
    pub state: String,
    /// Unix time in milliseconds of the last transition.
    #[serde(default)]
    pub since_ms: u64,
    /// Why the last transition happened.
    pub reason: String,
    /// Effective priority (after tracking).
    pub priority: u8,
    pub base_priority: u8,
    /// Who is master as far as this daemon knows; absent when unknown.
    pub master: Option<String>,
    #[serde(default)]
    pub tracks: Vec<TrackStatus>,
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    #[serde(default)]
    pub vips: Vec<VipStatus>,
    #[serde(default)]
    pub transitions: u64,
    #[serde(default)]
    pub garps_sent: u64,
    #[serde(default)]
    pub adverts_sent: u64,
    #[serde(default)]
    pub adverts_received: u64,
    #[serde(default)]
    pub adverts_dropped: u64,
    #[serde(default)]
    pub advert_lateness: Lateness,
}

/// One tracked script or interface and what it does to the priority now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackStatus {
    /// "script NAME" or "interface NAME".
    pub what: String,
    pub weight: i32,
    /// None: no result yet.
    pub ok: Option<bool>,
    /// Added to the base priority now (0 also when the track puts the instance in FAULT).
    pub contribution: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: String,
    pub priority: u8,
    /// Unix time in milliseconds of its last advert.
    pub last_advert_ms: u64,
    /// Age of that advert when this status was produced.
    #[serde(default)]
    pub age_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    /// ADDRESS/PREFIX.
    pub address: String,
    pub on_interface: bool,
}

/// How late adverts left compared with their Adver_Timer, as a histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lateness {
    /// Upper bounds of the buckets, in microseconds (the last bucket is everything above).
    pub bounds_us: Vec<u64>,
    /// Count per bucket, not cumulative; one more entry than `bounds_us`.
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
}

impl Default for Lateness {
    fn default() -> Lateness {
        let bounds_us = vec![
            100, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000,
        ];
        Lateness {
            counts: vec![0; bounds_us.len() + 1],
            bounds_us,
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl Lateness {
    pub fn record(&mut self, late_us: u64) {
        let k = self
            .bounds_us
            .iter()
            .position(|&b| late_us <= b)
            .unwrap_or(self.bounds_us.len());
        if let Some(c) = self.counts.get_mut(k) {
            *c += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(late_us);
        self.max_us = self.max_us.max(late_us);
    }
}

pub fn status_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(STATUS_FILE)
}

/// The status file's mode: readable by everyone, whatever the daemon's umask (vrrp.service sets
/// 0077). The proxy's status page runs as another (dynamic) user and reads it; nothing in it is
/// secret (no auth_pass), and a VRRP advert tells the whole segment as much.
pub const STATUS_MODE: u32 = 0o644;

/// Atomically replaces the status file.
pub fn write(runtime_dir: &Path, st: &Status) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let text = toml::to_string(st).map_err(io::Error::other)?;
    let tmp = runtime_dir.join(format!(".{STATUS_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    // Explicitly, not through the create mode: the umask would mask that.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(STATUS_MODE))?;
    std::fs::rename(&tmp, status_path(runtime_dir))
}

/// Creates the runtime directory when it is missing, searchable by everyone (so the proxy's
/// status page can reach the status file) whatever the umask; an existing directory (systemd's
/// `RuntimeDirectory=`, 0755 by default) is left as it is.
pub fn create_runtime_dir(runtime_dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if runtime_dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(runtime_dir)?;
    std::fs::set_permissions(runtime_dir, std::fs::Permissions::from_mode(0o755))
}

pub fn read(runtime_dir: &Path) -> io::Result<Status> {
    let text = std::fs::read_to_string(status_path(runtime_dir))?;
    toml::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Whether `pid` is a live process named `vrrp` (a stale pid file may name a reused pid).
pub fn is_vrrp_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() == "vrrp")
        .unwrap_or(false)
}

/// Human-readable rendering for `vrrp status`; `now_ms` (Unix ms) ages the peers.
pub fn render(st: &Status, alive: bool, now_ms: u64) -> String {
    let mut out = format!(
        "router_id {} pid {} ({}) config {}\n",
        st.router_id,
        st.pid,
        if alive {
            "running"
        } else {
            "NOT RUNNING: stale status"
        },
        st.config
    );
    for i in &st.instance {
        render_instance(&mut out, i, now_ms);
    }
    if let Some(a) = &st.anycast {
        render_anycast(&mut out, a, now_ms);
    }
    out
}

fn ok_word(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "ok",
        Some(false) => "FAILING",
        None => "no result yet",
    }
}

fn render_anycast(out: &mut String, a: &AnycastStatus, now_ms: u64) {
    let vips: Vec<String> = a
        .vips
        .iter()
        .map(|v| {
            let mark = if v.on_interface { "" } else { " (off)" };
            format!("{}{mark}", v.address)
        })
        .collect();
    out.push_str(&format!(
        "anycast {} on {}: vips {}\n",
        a.state,
        a.interface,
        vips.join(",")
    ));
    let since = now_ms.saturating_sub(a.since_ms) as f64 / 1000.0;
    out.push_str(&format!(
        "  {} for {since:.1} s: {} ({} transitions)\n",
        a.state, a.reason, a.transitions
    ));
    for t in &a.tracks {
        let ok = ok_word(t.ok);
        out.push_str(&format!("  track {}: {ok}\n", t.what));
    }
}

fn render_instance(out: &mut String, i: &InstanceStatus, now_ms: u64) {
    let vips: Vec<String> = i
        .vips
        .iter()
        .map(|v| {
            let mark = if v.on_interface {
                ""
            } else {
                " (not on interface)"
            };
            format!("{}{mark}", v.address)
        })
        .collect();
    out.push_str(&format!(
        "{} {} vrid {} on {}: priority {} (base {}) master {} vips {}\n",
        i.name,
        i.state,
        i.vrid,
        i.interface,
        i.priority,
        i.base_priority,
        i.master.as_deref().unwrap_or("unknown"),
        vips.join(","),
    ));
    if !i.reason.is_empty() {
        let since = now_ms.saturating_sub(i.since_ms) as f64 / 1000.0;
        out.push_str(&format!("  {} for {since:.1} s: {}\n", i.state, i.reason));
    }
    for t in &i.tracks {
        let ok = ok_word(t.ok);
        out.push_str(&format!(
            "  track {} weight {}: {ok}, contributes {:+}\n",
            t.what, t.weight, t.contribution
        ));
    }
    for p in &i.peers {
        let age = now_ms.saturating_sub(p.last_advert_ms) as f64 / 1000.0;
        out.push_str(&format!(
            "  peer {} priority {} last advert {age:.2} s ago\n",
            p.address, p.priority
        ));
    }
    let l = &i.advert_lateness;
    out.push_str(&format!(
        "  transitions {} garps {} adverts sent {} received {} dropped {}; advert lateness max {} us over {}\n",
        i.transitions, i.garps_sent, i.adverts_sent, i.adverts_received, i.adverts_dropped, l.max_us, l.count
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_render_roundtrip() {
        let dir = std::env::temp_dir().join(format!("vrrp-status-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lateness = Lateness::default();
        lateness.record(50);
        lateness.record(3_000);
        let st = Status {
            pid: 42,
            router_id: "r1".into(),
            config: "/etc/vrrp.toml".into(),
            updated_ms: 1,
            instance: vec![InstanceStatus {
                name: "VI_1".into(),
                interface: "eth0".into(),
                vrid: 51,
                state: "MASTER".into(),
                since_ms: 10_000,
                priority: 130,
                base_priority: 150,
                master: Some("10.0.0.1".into()),
                tracks: vec![TrackStatus {
                    what: "script chk".into(),
                    weight: -20,
                    ok: Some(false),
                    contribution: -20,
                }],
                peers: vec![PeerStatus {
                    address: "10.0.0.2".into(),
                    priority: 100,
                    last_advert_ms: 11_000,
                    age_ms: 0,
                }],
                vips: vec![VipStatus {
                    address: "10.0.0.80/24".into(),
                    on_interface: true,
                }],
                reason: "master down timer expired".into(),
                advert_lateness: lateness,
                ..Default::default()
            }],
            anycast: Some(AnycastStatus {
                interface: "vip0".into(),
                state: "WITHDRAWN".into(),
                since_ms: 12_000,
                reason: "track script chk is failing".into(),
                transitions: 3,
                tracks: vec![TrackStatus {
                    what: "script chk".into(),
                    weight: 0,
                    ok: Some(false),
                    contribution: 0,
                }],
                vips: vec![VipStatus {
                    address: "10.0.0.80/32".into(),
                    on_interface: false,
                }],
            }),
        };
        write(&dir, &st).unwrap();
        assert_eq!(read(&dir).unwrap(), st);
        assert_eq!(mode(&status_path(&dir)), STATUS_MODE);
        let text = render(&st, true, 13_610);
        for want in [
            "VI_1 MASTER vrid 51 on eth0: priority 130 (base 150) master 10.0.0.1 vips 10.0.0.80/24",
            "MASTER for 3.6 s: master down timer expired",
            "track script chk weight -20: FAILING, contributes -20",
            "peer 10.0.0.2 priority 100 last advert 2.61 s ago",
            "advert lateness max 3000 us over 2",
            "anycast WITHDRAWN on vip0: vips 10.0.0.80/32 (off)",
            "WITHDRAWN for 1.6 s: track script chk is failing (3 transitions)",
            "track script chk: FAILING",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
        assert_eq!(st.instance[0].advert_lateness.counts[0], 1);
        assert!(render(&st, false, 0).contains("NOT RUNNING"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!is_vrrp_alive(0));
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// vrrp.service runs with UMask=0077: the status file and a directory the daemon makes
    /// itself must still be readable by the proxy (another user). Run in a child process so
    /// the umask does not leak into the other tests' threads.
    #[test]
    fn status_file_is_world_readable_under_a_strict_umask() {
        if std::env::var_os("VRRP_STATUS_UMASK_CHILD").is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "daemon::status::tests::status_file_is_world_readable_under_a_strict_umask",
                    "--nocapture",
                ])
                .env("VRRP_STATUS_UMASK_CHILD", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("1 passed"), "the child ran no test: {text}");
            return;
        }
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let dir = std::env::temp_dir().join(format!("vrrp-status-umask-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = dir.join("run/vrrp");
        create_runtime_dir(&run).unwrap();
        assert_eq!(mode(&run), 0o755);
        let st = Status {
            pid: 1,
            router_id: "r".into(),
            config: "c".into(),
            updated_ms: 0,
            instance: vec![],
            anycast: None,
        };
        write(&run, &st).unwrap();
        assert_eq!(mode(&status_path(&run)), STATUS_MODE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
