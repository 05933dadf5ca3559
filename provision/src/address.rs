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

/// Commit-confirm: install the new file keeping a backup, apply it in the background with a
/// guard that restores the backup unless confirmed, reconnect, check, confirm.
pub fn change_address(remote: &mut dyn Remote, a: &AddressChange) -> Result<(), Failure> {
    let AddressChange {
        path,
        content,
        mode,
        apply,
        live_check,
        confirm_secs,
        prepare,
    } = a;
    let (mode, confirm_secs) = (*mode, *confirm_secs);
    let staged = remote
        .upload_staging(content.as_bytes(), 0o600)
        .map_err(|e| failed_ssh(&format!("upload {path}"), &e))?;
    let tag = path.replace('/', "_");
    let confirm = format!("/run/provision-confirm{tag}");
    let applied = format!("/run/provision-applied{tag}");
    let (p, s) = (shell_quote(path), shell_quote(&staged));
    let (c, ap) = (shell_quote(&confirm), shell_quote(&applied));
    // Every file the change touches: kept under BACKUP_DIR, or marked absent.
    let mut files = vec![path.to_string()];
    files.extend(prepare.as_ref().map(|p| p.file.clone()));
    let mut backup = Vec::new();
    let mut restore = Vec::new();
    let mut cleanup = Vec::new();
    for f in &files {
        let q = shell_quote(f);
        let kept = backup_path(f);
        let b = shell_quote(&kept);
        let absent = shell_quote(&format!("{kept}.absent"));
        backup.push(format!(
            "mkdir -p {} && rm -f {absent} && if [ -e {q} ]; then cp -a {q} {b}; else : > {absent}; fi",
            shell_quote(parent(&kept))
        ));
        restore.push(format!(
            "if [ -e {absent} ]; then rm -f {q} {absent}; else mv -f {b} {q}; fi"
        ));
        cleanup.push(format!("{b} {absent}"));
    }
    let restore = format!("{}; {apply}", restore.join("; "));
    let guard = format!(
        "{apply}; echo $? > {ap}; sleep {confirm_secs}; if [ ! -e {c} ]; then {restore}; fi; rm -f {c}"
    );
    let edit = prepare
        .as_ref()
        .map(|p| format!(" && {{ {}; }}", p.command))
        .unwrap_or_default();
    let cmd = format!(
        "rm -f {c} {ap} && mkdir -p {dir} && {backup} && install -m {mode:o} {s} {p} && rm -f {s}{edit} && (setsid sh -c {g} </dev/null >/dev/null 2>&1 &)",
        dir = shell_quote(parent(path)),
        backup = backup.join(" && "),
        g = shell_quote(&guard)
    );
    let cleanup = cleanup.join(" ");
    must(remote, &cmd)?;
    // Reconnect (the old connection may be gone), wait for the apply to finish, then
    // verify the address and confirm.
    let deadline =
        Instant::now() + Duration::from_secs(u64::from(confirm_secs.saturating_sub(10)).max(1));
    let wait_applied = format!("cat {ap} 2>/dev/null");
    let mut last_err: String;
    loop {
        thread::sleep(Duration::from_millis(500));
        match remote.reconnect() {
            Ok(()) => match remote.run(&wait_applied) {
                Ok(o) if o.success() && !o.stdout.trim().is_empty() => {
                    let rc = o.stdout.trim().to_string();
                    if rc != "0" {
                        return Err(Failure {
                            command: apply.to_string(),
                            exit_code: rc.parse().ok(),
                            stderr: format!(
                                "applying the address failed; the host restores the previous {path} in {confirm_secs}s"
                            ),
                        });
                    }
                    let live = remote
                        .run(&live_check.command())
                        .map_err(|e| failed_ssh(&live_check.command(), &e))?;
                    if live.success() {
                        must(remote, &format!("touch {c} && rm -f {cleanup}"))?;
                        return Ok(());
                    }
                    last_err = format!("address not configured after `{apply}`");
                }
                Ok(_) => last_err = "apply still running".into(),
                Err(e) => last_err = e.to_string(),
            },
            Err(e) => last_err = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(Failure {
                command: format!("reconnect after `{apply}`"),
                exit_code: None,
                stderr: format!(
                    "{last_err}; not confirmed, so the host restores the previous {path} and re-applies it {confirm_secs}s after the change"
                ),
            });
        }
    }
}
