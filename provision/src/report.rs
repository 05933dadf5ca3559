//! Per-host progress lines and the closing recap table (in the manner of Ansible's PLAY RECAP).

use std::fmt::Write as _;

use crate::exec::{Failure, Status, StepResult};

/// How a host's run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSummary {
    pub host: String,
    pub address: String,
    /// Detected OS family name, if the host was reached.
    pub os: Option<String>,
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    /// Set when the host could not be reached or trusted.
    pub unreachable: Option<String>,
    /// Set when the balancer rollout stopped before this host's turn: why.
    pub skipped: Option<String>,
}

impl HostSummary {
    pub fn succeeded(&self) -> bool {
        self.failed == 0 && self.unreachable.is_none() && self.skipped.is_none()
    }
}

pub fn failure_text(host: &str, step: &str, f: &Failure) -> String {
    let code = f
        .exit_code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "none (the command did not finish: see stderr)".into());
    let mut s = format!(
        "FAILED host {host}, step {step:?}\n    command: {}\n    exit code: {code}\n    stderr:",
        f.command
    );
    if f.stderr.is_empty() {
        s.push_str(" (empty)");
    }
    for l in f.stderr.lines() {
        let _ = write!(s, "\n      {l}");
    }
    s
}

/// Lines of one file's diff shown in --dry-run (a replaced default web page can be hundreds).
const MAX_DIFF_LINES: usize = 60;

/// One step's progress line (and, in --dry-run, its diffs).
pub fn step_text(host: &str, r: &StepResult, dry_run: bool) -> String {
    let label = match r.status {
        Status::Ok => "ok".to_string(),
        Status::Changed if dry_run => "would change".to_string(),
        Status::Changed => "changed".to_string(),
        Status::Failed => "FAILED".to_string(),
    };
    let mut s = format!("{:<16} {label}", r.name);
    for c in &r.changes {
        let _ = write!(s, "\n    - {c}");
    }
    for d in &r.diffs {
        let total = d.lines().count();
        for l in d.lines().take(MAX_DIFF_LINES) {
            let _ = write!(s, "\n      {l}");
        }
        if total > MAX_DIFF_LINES {
            let _ = write!(s, "\n      ... {} more diff lines", total - MAX_DIFF_LINES);
        }
    }
    if let Some(f) = &r.failure {
        let _ = write!(s, "\n{}", failure_text(host, &r.name, f));
    }
    s
}

/// The recap table.
pub fn recap(summaries: &[HostSummary]) -> String {
    let mut s = String::from("RECAP\n");
    let _ = writeln!(
        s,
        "{:<12} {:<16} {:<9} {:>4} {:>8} {:>7} {:>12} {:>8}",
        "HOST", "ADDRESS", "OS", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED"
    );
    for h in summaries {
        let _ = writeln!(
            s,
            "{:<12} {:<16} {:<9} {:>4} {:>8} {:>7} {:>12} {:>8}",
            h.host,
            h.address,
            h.os.as_deref().unwrap_or("-"),
            h.ok,
            h.changed,
            h.failed,
            usize::from(h.unreachable.is_some()),
            usize::from(h.skipped.is_some())
        );
    }
    for h in summaries {
        if let Some(why) = &h.unreachable {
            let _ = writeln!(s, "UNREACHABLE {}: {why}", h.host);
        }
        if let Some(why) = &h.skipped {
            let _ = writeln!(
                s,
                "SKIPPED {}: balancer rollout stopped before its turn ({why})",
                h.host
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{Status, StepResult};

    #[test]
    fn recap_counts_and_reasons() {
        let s = recap(&[
            HostSummary {
                host: "server1".into(),
                address: "10.0.0.1".into(),
                os: Some("debian12".into()),
                ok: 5,
                changed: 2,
                ..Default::default()
            },
            HostSummary {
                host: "server2".into(),
                address: "10.0.0.2".into(),
                unreachable: Some("connection refused".into()),
                ..Default::default()
            },
            HostSummary {
                host: "server5".into(),
                address: "10.0.0.5".into(),
                skipped: Some("server2 failed: unreachable".into()),
                ..Default::default()
            },
        ]);
        assert!(
            s.contains(
                "server1      10.0.0.1         debian12     5        2       0            0        0"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "server2      10.0.0.2         -            0        0       0            1        0"
            ),
            "{s}"
        );
        assert!(s.contains("UNREACHABLE server2: connection refused"));
        assert!(s.contains(
            "SKIPPED server5: balancer rollout stopped before its turn (server2 failed: unreachable)"
        ));
        assert!(s.contains("server5      10.0.0.5         -            0        0       0            0        1"), "{s}");
    }

    #[test]
    fn long_diffs_are_cut() {
        let diff: String = (0..100).map(|i| format!("+line {i}\n")).collect();
        let r = StepResult {
            name: "httpd".into(),
            status: Status::Changed,
            changes: vec!["/var/www/html/index.html content".into()],
            diffs: vec![diff],
            failure: None,
        };
        let t = step_text("server3", &r, true);
        assert!(t.starts_with("httpd            would change"), "{t}");
        assert!(t.contains("+line 59"));
        assert!(!t.contains("+line 60"));
        assert!(t.ends_with("... 40 more diff lines"), "{t}");
    }

    #[test]
    fn failure_names_everything() {
        let f = Failure {
            command: "yum install -y x".into(),
            exit_code: Some(1),
            stderr: "No package x\nsecond".into(),
        };
        let t = failure_text("server2", "httpd", &f);
        assert!(t.contains("host server2, step \"httpd\""));
        assert!(t.contains("command: yum install -y x"));
        assert!(t.contains("exit code: 1"));
        assert!(t.contains("      No package x\n      second"));
    }
}
