//! The status file (`RUNTIME_DIR/status.toml`) the daemon rewrites on every change and
//! `vrrp status` reads. Written to a temporary file and renamed, so a reader never sees half
//! of it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// MASTER / BACKUP / FAULT / INIT.
    pub state: String,
    /// Effective priority (after tracking).
    pub priority: u8,
    pub base_priority: u8,
    /// Who is master as far as this daemon knows; absent when unknown.
    pub master: Option<String>,
    /// Configured VIPs with prefix.
    pub vips: Vec<String>,
    /// Why the last transition happened.
    pub reason: String,
}

pub fn status_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(STATUS_FILE)
}

/// Atomically replaces the status file.
pub fn write(runtime_dir: &Path, st: &Status) -> io::Result<()> {
    let text = toml::to_string(st).map_err(io::Error::other)?;
    let tmp = runtime_dir.join(format!(".{STATUS_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, status_path(runtime_dir))
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

/// Human-readable rendering for `vrrp status`.
pub fn render(st: &Status, alive: bool) -> String {
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
        out.push_str(&format!(
            "{} {} vrid {} on {}: priority {} (base {}) master {} vips {}{}\n",
            i.name,
            i.state,
            i.vrid,
            i.interface,
            i.priority,
            i.base_priority,
            i.master.as_deref().unwrap_or("unknown"),
            i.vips.join(","),
            if i.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", i.reason)
            }
        ));
    }
    out
}

impl super::Daemon {
    /// Rewrites the status file when something in it changed.
    pub(super) fn write_status(&mut self) {
        let instances: Vec<InstanceStatus> = self
            .routers
            .iter()
            .map(|r| InstanceStatus {
                name: r.conf.name.clone(),
                interface: r.conf.interface.clone(),
                vrid: r.conf.vrid,
                state: r.instance.state().to_string(),
                priority: r.instance.effective_priority(),
                base_priority: r.conf.priority,
                master: r.instance.master_addr().map(|a| a.to_string()),
                vips: r
                    .conf
                    .vips
                    .iter()
                    .map(|(a, p)| format!("{a}/{p}"))
                    .collect(),
                reason: r.last_reason.clone(),
            })
            .collect();
        let sig = format!("{instances:?}");
        if self.status_sig.as_deref() == Some(sig.as_str()) {
            return;
        }
        let st = Status {
            pid: std::process::id(),
            router_id: self.cfg.router_id.clone(),
            config: self.config_path.display().to_string(),
            updated_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            instance: instances,
        };
        // Remember the state even when the write fails: retrying on every wake-up would only
        // repeat the warning; the next change tries again.
        self.status_sig = Some(sig);
        if let Err(e) = write(&self.runtime_dir, &st) {
            tracing::warn!(error = %e, "cannot write status file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_render_roundtrip() {
        let dir = std::env::temp_dir().join(format!("vrrp-status-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
                priority: 130,
                base_priority: 150,
                master: Some("10.0.0.1".into()),
                vips: vec!["10.0.0.80/24".into()],
                reason: "master down timer expired".into(),
            }],
        };
        write(&dir, &st).unwrap();
        assert_eq!(read(&dir).unwrap(), st);
        let text = render(&st, true);
        assert!(text.contains("VI_1 MASTER vrid 51 on eth0: priority 130 (base 150) master 10.0.0.1 vips 10.0.0.80/24"), "{text}");
        assert!(render(&st, false).contains("NOT RUNNING"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!is_vrrp_alive(0));
    }
}
