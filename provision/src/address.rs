//! The static address change, commit-confirmed: the host keeps the old files, applies the new
//! ones in the background and restores the old ones unless provision reconnects and confirms.

use std::thread;
use std::time::{Duration, Instant};

use crate::exec::{failed_ssh, must, parent, Failure, Remote};
use crate::plan::AddressChange;
use crate::quote::shell_quote;

/// Where the previous versions of files an address change touches are kept until it is
/// confirmed. Not next to them: EL7's network scripts read every `ifcfg-*` of their directory
/// (only `~ .bak .old .orig .rpmnew .rpmorig .rpmsave` are skipped) and Debian's `source
/// /etc/network/interfaces.d/*` reads every file, so a backup there would be configuration.
pub const BACKUP_DIR: &str = "/var/lib/provision/backup";

/// The backup of `path` (its absolute path under [`BACKUP_DIR`]).
fn backup_path(path: &str) -> String {
    format!("{BACKUP_DIR}/{}", path.trim_start_matches('/'))
}

/// How long after the host's deadline provision keeps trying to reach it to learn the outcome
/// (the rollback's re-apply may take a network restart): half the confirm time, at most 30 s.
fn outcome_grace(confirm_secs: u32) -> Duration {
    Duration::from_secs(u64::from(confirm_secs / 2).min(30))
}

/// The host's files for one change, under /run (gone at reboot, as a pending change would be).
struct Markers {
    /// Exists while the change awaits its confirmation. The host's guard and provision's
    /// confirmation both try to rename it: exactly one rename succeeds, so the host decides.
    pending: String,
    confirmed: String,
    rolled_back: String,
    /// Exit status of the apply, and of the re-apply after a rollback.
    applied: String,
    restored: String,
}

impl Markers {
    fn new(path: &str) -> Markers {
        let tag = path.replace('/', "_");
        let m = |what: &str| format!("/run/provision-{what}{tag}");
        Markers {
            pending: m("pending"),
            confirmed: m("confirmed"),
            rolled_back: m("rolledback"),
            applied: m("applied"),
            restored: m("restored"),
        }
    }

    fn all(&self) -> String {
        [
            &self.pending,
            &self.confirmed,
            &self.rolled_back,
            &self.applied,
            &self.restored,
        ]
        .map(|p| shell_quote(p))
        .join(" ")
    }

    /// Prints `pending` + the apply's status, `rolledback` + the re-apply's status, or
    /// `confirmed`.
    fn state_command(&self) -> String {
        let q = |p: &str| shell_quote(p);
        format!(
            "if [ -e {p} ]; then echo pending; cat {ap} 2>/dev/null; elif [ -e {rb} ]; then echo rolledback; cat {rs} 2>/dev/null; elif [ -e {c} ]; then echo confirmed; else echo unknown; fi",
            p = q(&self.pending),
            ap = q(&self.applied),
            rb = q(&self.rolled_back),
            rs = q(&self.restored),
            c = q(&self.confirmed)
        )
    }
}

/// What the host says about the change.
#[derive(Debug, PartialEq, Eq)]
enum HostState {
    /// Awaiting confirmation; the apply's exit status once it finished.
    Pending(Option<i32>),
    /// The deadline passed unconfirmed; the re-apply's exit status once it finished.
    RolledBack(Option<i32>),
    Confirmed,
    Unknown,
}

fn parse_state(out: &str) -> HostState {
    let mut lines = out.lines();
    let status = |l: Option<&str>| l.and_then(|s| s.trim().parse().ok());
    match lines.next().map(str::trim) {
        Some("pending") => HostState::Pending(status(lines.next())),
        Some("rolledback") => HostState::RolledBack(status(lines.next())),
        Some("confirmed") => HostState::Confirmed,
        _ => HostState::Unknown,
    }
}

/// The shell that installs the new file(s) keeping the old ones, and starts the host's guard:
/// apply; wait `confirm_secs`; then, unless the confirmation took the pending marker first,
/// take it, restore the old files and apply them again.
fn change_command(a: &AddressChange, staged: &str, m: &Markers) -> (String, String) {
    let q = |p: &str| shell_quote(p);
    // Every file the change touches: kept under BACKUP_DIR, or marked absent.
    let mut files = vec![a.path.clone()];
    files.extend(a.prepare.as_ref().map(|p| p.file.clone()));
    let (mut backup, mut restore, mut cleanup) = (Vec::new(), Vec::new(), Vec::new());
    for f in &files {
        let kept = backup_path(f);
        let (f, b, absent) = (q(f), q(&kept), q(&format!("{kept}.absent")));
        backup.push(format!(
            "mkdir -p {} && rm -f {absent} && if [ -e {f} ]; then cp -a {f} {b}; else : > {absent}; fi",
            q(parent(&kept))
        ));
        restore.push(format!(
            "if [ -e {absent} ]; then rm -f {f} {absent}; else mv -f {b} {f}; fi"
        ));
        cleanup.push(format!("{b} {absent}"));
    }
    let apply = &a.apply;
    let guard = format!(
        "{apply}; echo $? > {ap}; sleep {secs}; if mv {p} {rb} 2>/dev/null; then {restore}; {apply}; echo $? > {rs}; fi",
        ap = q(&m.applied),
        secs = a.confirm_secs,
        p = q(&m.pending),
        rb = q(&m.rolled_back),
        rs = q(&m.restored),
        restore = restore.join("; ")
    );
    let edit = a
        .prepare
        .as_ref()
        .map(|p| format!(" && {{ {}; }}", p.command))
        .unwrap_or_default();
    let cmd = format!(
        "rm -f {markers} && mkdir -p {dir} && {backup} && install -o 0 -g 0 -m {mode:o} {s} {path} && rm -f {s}{edit} && : > {p} && (setsid sh -c {g} </dev/null >/dev/null 2>&1 &)",
        markers = m.all(),
        dir = q(parent(&a.path)),
        backup = backup.join(" && "),
        mode = a.mode,
        s = q(staged),
        path = q(&a.path),
        p = q(&m.pending),
        g = q(&guard)
    );
    (cmd, cleanup.join(" "))
}

/// Commit-confirm: install the new file keeping a backup, apply it in the background under
/// the host's guard, reconnect, check, and confirm, all before the host's deadline; the host
/// decides whether the confirmation was in time, and provision reports what the host saw.
pub fn change_address(remote: &mut dyn Remote, a: &AddressChange) -> Result<(), Failure> {
    let staged = remote
        .upload_staging(a.content.as_bytes(), 0o600)
        .map_err(|e| failed_ssh(&format!("upload {}", a.path), &e))?;
    let m = Markers::new(&a.path);
    let (cmd, cleanup) = change_command(a, &staged, &m);
    let started = Instant::now();
    must(remote, &cmd)?;
    let give_up = Duration::from_secs(u64::from(a.confirm_secs)) + outcome_grace(a.confirm_secs);
    let confirm = format!(
        "if mv {} {} 2>/dev/null; then rm -f {cleanup} {}; echo confirmed; else echo late; fi",
        shell_quote(&m.pending),
        shell_quote(&m.confirmed),
        shell_quote(&m.applied)
    );
    let mut last_err = String::from("no answer");
    loop {
        thread::sleep(Duration::from_millis(500));
        match remote
            .reconnect()
            .and_then(|()| remote.run(&m.state_command()))
        {
            Ok(o) => match parse_state(&o.stdout) {
                HostState::Pending(None) => last_err = "apply still running".into(),
                HostState::Pending(Some(rc)) if rc != 0 => {
                    return Err(Failure {
                        command: a.apply.clone(),
                        exit_code: Some(rc),
                        stderr: format!(
                            "applying the address failed; the host restores the previous {} {}s after the change",
                            a.path, a.confirm_secs
                        ),
                    });
                }
                HostState::Pending(Some(_)) => {
                    let live = remote
                        .run(&a.live_check.command())
                        .map_err(|e| failed_ssh(&a.live_check.command(), &e))?;
                    if !live.success() {
                        last_err = format!("address not configured after `{}`", a.apply);
                    } else if must(remote, &confirm)?.stdout.trim() == "confirmed" {
                        return Ok(());
                    } else {
                        last_err = "the confirmation came after the host's deadline".into();
                    }
                }
                HostState::Confirmed => return Ok(()),
                HostState::RolledBack(None) => last_err = "the host is rolling back".into(),
                HostState::RolledBack(Some(rc)) => {
                    return Err(Failure {
                        command: format!("confirm `{}`", a.apply),
                        exit_code: None,
                        stderr: format!(
                            "{last_err}; not confirmed by the host's deadline ({}s): the host restored the previous {} and re-applied it (exit {rc})",
                            a.confirm_secs, a.path
                        ),
                    });
                }
                HostState::Unknown => last_err = "the host has no record of the change".into(),
            },
            Err(e) => last_err = e.to_string(),
        }
        if started.elapsed() >= give_up {
            return Err(Failure {
                command: format!("reconnect after `{}`", a.apply),
                exit_code: None,
                stderr: format!(
                    "{last_err}; not confirmed, so the host restores the previous {} and re-applies it {}s after the change (provision could not reach it to see that)",
                    a.path, a.confirm_secs
                ),
            });
        }
    }
}
