//! Executes a host's [`Plan`] over a [`Remote`]: each action is checked first and applied only
//! when the host differs; --dry-run runs only the (read-only) checks and reports diffs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::diff;
use crate::plan::{self, Action, Prepare, Step};
use crate::quote::shell_quote;
use crate::ssh::{Output, Ssh, SshError};

/// What the executor needs from a host connection (a trait so the executor's logic can be
/// tested without SSH).
pub trait Remote {
    fn run(&mut self, command: &str) -> Result<Output, SshError>;
    fn upload_staging(&mut self, data: &[u8], mode: i32) -> Result<String, SshError>;
    fn reconnect(&mut self) -> Result<(), SshError>;
}

impl Remote for Ssh {
    fn run(&mut self, command: &str) -> Result<Output, SshError> {
        Ssh::run(self, command)
    }
    fn upload_staging(&mut self, data: &[u8], mode: i32) -> Result<String, SshError> {
        Ssh::upload_staging(self, data, mode)
    }
    fn reconnect(&mut self) -> Result<(), SshError> {
        Ssh::reconnect(self)
    }
}

/// The local binaries to deploy, loaded once and shared by the host threads.
#[derive(Debug, Clone, Default)]
pub struct Binaries {
    dir: PathBuf,
    loaded: HashMap<String, Arc<(Vec<u8>, String)>>,
}

impl Binaries {
    /// Reads `names` from `dir` and hashes them.
    pub fn load(dir: &Path, names: &[&str]) -> Result<Binaries, std::io::Error> {
        let mut loaded = HashMap::new();
        for n in names {
            let path = dir.join(n);
            let data = std::fs::read(&path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("read {}: {e}", path.display()))
            })?;
            let sha = hex(&Sha256::digest(&data));
            loaded.insert((*n).to_string(), Arc::new((data, sha)));
        }
        Ok(Binaries {
            dir: dir.to_path_buf(),
            loaded,
        })
    }

    fn get(&self, name: &str) -> Option<Arc<(Vec<u8>, String)>> {
        self.loaded.get(name).cloned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Changed,
    Failed,
}

/// Where and how a step failed: enough to act on without re-running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub command: String,
    /// `None` when the command could not be run at all (SSH error).
    pub exit_code: Option<i32>,
    pub stderr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub name: String,
    pub status: Status,
    /// What changed (or, in --dry-run, would change), one line each.
    pub changes: Vec<String>,
    /// --dry-run: file diffs.
    pub diffs: Vec<String>,
    pub failure: Option<Failure>,
}

pub struct Executor<'a> {
    pub remote: &'a mut dyn Remote,
    pub binaries: &'a Binaries,
    pub dry_run: bool,
}

enum Outcome {
    Ok,
    Changed(String),
    Failed(Failure),
}

fn failed_output(command: &str, out: &Output) -> Failure {
    Failure {
        command: command.to_string(),
        exit_code: Some(out.status),
        stderr: out.stderr.trim().to_string(),
    }
}

fn failed_ssh(command: &str, e: &SshError) -> Failure {
    Failure {
        command: command.to_string(),
        exit_code: None,
        stderr: e.to_string(),
    }
}

/// A dry-run diff with `secrets` masked on both sides; a change hidden by the mask is still
/// said to be there.
fn masked_diff(path: &str, old: Option<&str>, new: &str, secrets: &[String]) -> String {
    let old_masked = old.map(|o| plan::mask(o, secrets));
    let new_masked = plan::mask(new, secrets);
    let mut d = diff::unified(path, old_masked.as_deref(), &new_masked);
    if old_masked.as_deref() == Some(new_masked.as_str()) {
        d.push_str("(a secret value changes; not shown)\n");
    }
    d
}

/// Where the previous versions of files an address change touches are kept until it is
/// confirmed. Not next to them: EL7's network scripts read every `ifcfg-*` of their directory
/// (only `~ .bak .old .orig .rpmnew .rpmorig .rpmsave` are skipped) and Debian's `source
/// /etc/network/interfaces.d/*` reads every file, so a backup there would be configuration.
pub const BACKUP_DIR: &str = "/var/lib/provision/backup";

/// The backup of `path` (its absolute path under [`BACKUP_DIR`]).
fn backup_path(path: &str) -> String {
    format!("{BACKUP_DIR}/{}", path.trim_start_matches('/'))
}

/// The directory part of an absolute path.
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => path.get(..i).unwrap_or("/"),
    }
}

impl Executor<'_> {
    /// Runs `command`; a failed command becomes a [`Failure`].
    fn must(&mut self, command: &str) -> Result<Output, Failure> {
        match self.remote.run(command) {
            Ok(o) if o.success() => Ok(o),
            Ok(o) => Err(failed_output(command, &o)),
            Err(e) => Err(failed_ssh(command, &e)),
        }
    }

    /// Whether `command` succeeds (exit 0); SSH errors are failures.
    fn test(&mut self, command: &str) -> Result<bool, Failure> {
        match self.remote.run(command) {
            Ok(o) => Ok(o.success()),
            Err(e) => Err(failed_ssh(command, &e)),
        }
    }

    /// The file's mode (`None` also when it is not owned by root: every file provision
    /// manages is root's) and content; `None` if absent.
    fn read_file(&mut self, path: &str) -> Result<Option<(Option<u32>, String)>, Failure> {
        let p = shell_quote(path);
        let cmd =
            format!("if [ -f {p} ]; then stat -c '%a %u' {p} && cat {p}; else echo absent; fi");
        let out = self.must(&cmd)?;
        let (first, rest) = out.stdout.split_once('\n').unwrap_or((&out.stdout, ""));
        if first == "absent" {
            return Ok(None);
        }
        let parsed = first.split_once(' ').and_then(|(m, uid)| {
            let mode = u32::from_str_radix(m, 8).ok()?;
            Some((mode, uid.trim().parse::<u32>().ok()?))
        });
        let Some((mode, uid)) = parsed else {
            return Err(Failure {
                command: cmd.clone(),
                exit_code: Some(0),
                stderr: format!("unexpected mode and owner {first:?}"),
            });
        };
        Ok(Some(((uid == 0).then_some(mode), rest.to_string())))
    }

    /// Uploads `content` and installs it at `path` with `mode`, validated first.
    fn install(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        validate: Option<&str>,
    ) -> Result<(), Failure> {
        let staged = self
            .remote
            .upload_staging(content, 0o600)
            .map_err(|e| failed_ssh(&format!("upload {path}"), &e))?;
        let new = format!("{path}.provision-new");
        let (p, n, s) = (shell_quote(path), shell_quote(&new), shell_quote(&staged));
        let check = match validate {
            Some(v) => format!(
                " && {{ {} || {{ rc=$?; rm -f {n}; exit $rc; }}; }}",
                v.replace("{}", &n)
            ),
            None => String::new(),
        };
        let cmd = format!(
            "mkdir -p {} && install -o 0 -g 0 -m {mode:o} {s} {n} && rm -f {s}{check} && mv -f {n} {p}",
            shell_quote(parent(path))
        );
        self.must(&cmd).map(|_| ())
    }

    fn action(&mut self, a: &Action, changed: bool, diffs: &mut Vec<String>) -> Outcome {
        match self.try_action(a, changed, diffs) {
            Ok(o) => o,
            Err(f) => Outcome::Failed(f),
        }
    }

    fn try_action(
        &mut self,
        a: &Action,
        step_changed: bool,
        diffs: &mut Vec<String>,
    ) -> Result<Outcome, Failure> {
        match a {
            Action::File {
                path,
                content,
                mode,
                validate,
                secrets,
            } => {
                let current = self.read_file(path)?;
                let same_content = current.as_ref().is_some_and(|(_, c)| c == content);
                let same_mode = current.as_ref().is_some_and(|(m, _)| *m == Some(*mode));
                if same_content && same_mode {
                    return Ok(Outcome::Ok);
                }
                let what = if same_content {
                    format!("{path} mode -> {mode:o}, owner root")
                } else {
                    format!("{path} content")
                };
                if self.dry_run {
                    if !same_content {
                        diffs.push(masked_diff(
                            path,
                            current.as_ref().map(|(_, c)| c.as_str()),
                            content,
                            secrets,
                        ));
                    }
                } else {
                    // A validator's complaint may quote the offending line: mask it too.
                    self.install(path, content.as_bytes(), *mode, validate.as_deref())
                        .map_err(|mut f| {
                            f.stderr = plan::mask(&f.stderr, secrets);
                            f
                        })?;
                }
                Ok(Outcome::Changed(what))
            }
            Action::Binary { name, path, mode } => {
                let Some(bin) = self.binaries.get(name) else {
                    return Err(Failure {
                        command: format!("read local binary {name}"),
                        exit_code: None,
                        stderr: format!("{name} not found in {}", self.binaries.dir.display()),
                    });
                };
                let (data, sha) = (&bin.0, &bin.1);
                let p = shell_quote(path);
                let out = self.must(&format!(
                    "if [ -f {p} ]; then sha256sum {p} | cut -d' ' -f1; stat -c %a {p}; fi"
                ))?;
                let mut lines = out.stdout.lines();
                let remote_sha = lines.next().unwrap_or("");
                let remote_mode = lines.next().unwrap_or("");
                if remote_sha == sha && remote_mode == format!("{mode:o}") {
                    return Ok(Outcome::Ok);
                }
                if !self.dry_run {
                    self.install(path, data, *mode, None)?;
                }
                Ok(Outcome::Changed(format!(
                    "{path} ({} bytes, sha256 {})",
                    data.len(),
                    sha.get(..12).unwrap_or(sha)
                )))
            }
            Action::Ensure { what, check, apply } => {
                if self.test(check)? {
                    return Ok(Outcome::Ok);
                }
                if self.dry_run {
                    return Ok(Outcome::Changed(format!("{what}: would run `{apply}`")));
                }
                self.must(apply)?;
                if !self.test(check)? {
                    return Err(Failure {
                        command: check.clone(),
                        exit_code: Some(1),
                        stderr: format!("still not true after `{apply}`: {what}"),
                    });
                }
                Ok(Outcome::Changed(what.clone()))
            }
            Action::OnChange { command } => {
                if !step_changed {
                    return Ok(Outcome::Ok);
                }
                if self.dry_run {
                    return Ok(Outcome::Changed(format!("then `{command}`")));
                }
                self.must(command)?;
                Ok(Outcome::Changed(format!("ran `{command}`")))
            }
            Action::Assert { command, .. } => {
                if !self.dry_run {
                    self.must(command)?;
                }
                Ok(Outcome::Ok)
            }
            Action::Address {
                path,
                content,
                mode,
                apply,
                live_check,
                confirm_secs,
                prepare,
            } => {
                let current = self.read_file(path)?;
                let same = current
                    .as_ref()
                    .is_some_and(|(m, c)| c == content && *m == Some(*mode));
                let prepared = match prepare {
                    Some(p) => self.test(&p.check)?,
                    None => true,
                };
                if same && prepared && self.test(live_check)? {
                    return Ok(Outcome::Ok);
                }
                if self.dry_run {
                    diffs.push(diff::unified(
                        path,
                        current.as_ref().map(|(_, c)| c.as_str()),
                        content,
                    ));
                    return Ok(Outcome::Changed(format!(
                        "{path}: would run `{apply}` and reconnect"
                    )));
                }
                self.change_address(
                    path,
                    content,
                    *mode,
                    apply,
                    live_check,
                    *confirm_secs,
                    prepare.as_ref(),
                )?;
                Ok(Outcome::Changed(format!(
                    "{path} applied with `{apply}`, reconnected and confirmed"
                )))
            }
        }
    }

    /// Commit-confirm: install the new file keeping a backup, apply it in the background with a
    /// guard that restores the backup unless confirmed, reconnect, check, confirm.
    #[allow(clippy::too_many_arguments)]
    fn change_address(
        &mut self,
        path: &str,
        content: &str,
        mode: u32,
        apply: &str,
        live_check: &str,
        confirm_secs: u32,
        prepare: Option<&Prepare>,
    ) -> Result<(), Failure> {
        let staged = self
            .remote
            .upload_staging(content.as_bytes(), 0o600)
            .map_err(|e| failed_ssh(&format!("upload {path}"), &e))?;
        let tag = path.replace('/', "_");
        let confirm = format!("/run/provision-confirm{tag}");
        let applied = format!("/run/provision-applied{tag}");
        let (p, s) = (shell_quote(path), shell_quote(&staged));
        let (c, ap) = (shell_quote(&confirm), shell_quote(&applied));
        // Every file the change touches: kept under BACKUP_DIR, or marked absent.
        let mut files = vec![path.to_string()];
        files.extend(prepare.map(|p| p.file.clone()));
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
            .map(|p| format!(" && {{ {}; }}", p.command))
            .unwrap_or_default();
        let cmd = format!(
            "rm -f {c} {ap} && mkdir -p {dir} && {backup} && install -m {mode:o} {s} {p} && rm -f {s}{edit} && (setsid sh -c {g} </dev/null >/dev/null 2>&1 &)",
            dir = shell_quote(parent(path)),
            backup = backup.join(" && "),
            g = shell_quote(&guard)
        );
        let cleanup = cleanup.join(" ");
        self.must(&cmd)?;
        // Reconnect (the old connection may be gone), wait for the apply to finish, then
        // verify the address and confirm.
        let deadline =
            Instant::now() + Duration::from_secs(u64::from(confirm_secs.saturating_sub(10)).max(1));
        let wait_applied = format!("cat {ap} 2>/dev/null");
        let mut last_err: String;
        loop {
            thread::sleep(Duration::from_millis(500));
            match self.remote.reconnect() {
                Ok(()) => match self.remote.run(&wait_applied) {
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
                        if self.test(live_check)? {
                            self.must(&format!("touch {c} && rm -f {cleanup}"))?;
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

    /// Runs one step: every action in order, stopping at the first failure.
    pub fn run_step(&mut self, step: &Step) -> StepResult {
        let mut changes = Vec::new();
        let mut diffs = Vec::new();
        let mut failure = None;
        for a in &step.actions {
            match self.action(a, !changes.is_empty(), &mut diffs) {
                Outcome::Ok => {}
                Outcome::Changed(what) => changes.push(what),
                Outcome::Failed(f) => {
                    failure = Some(f);
                    break;
                }
            }
        }
        let status = match (&failure, changes.is_empty()) {
            (Some(_), _) => Status::Failed,
            (None, true) => Status::Ok,
            (None, false) => Status::Changed,
        };
        StepResult {
            name: step.name.clone(),
            status,
            changes,
            diffs,
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host whose files live in a map; every command succeeds unless listed in `fail`.
    #[derive(Default)]
    struct Fake {
        files: HashMap<String, String>,
        /// Commands (exact) that exit 1.
        fail: Vec<String>,
        /// Commands containing the needle exit with this code and stderr.
        fail_with: Option<(String, i32, String)>,
        /// Commands containing the needle print this.
        stdout_for: Vec<(String, String)>,
        reconnect_fails: bool,
        reconnects: usize,
        /// Owner of every file in `files`.
        owner_uid: u32,
        log: Vec<String>,
    }

    impl Remote for Fake {
        fn run(&mut self, command: &str) -> Result<Output, SshError> {
            self.log.push(command.to_string());
            let out = |status: i32, stdout: String, stderr: String| {
                Ok(Output {
                    status,
                    stdout,
                    stderr,
                })
            };
            if let Some((needle, code, err)) = &self.fail_with {
                if command.contains(needle.as_str()) {
                    return out(*code, String::new(), err.clone());
                }
            }
            if command.starts_with("if [ -f ") && command.contains("cat ") {
                let path = command.split('\'').nth(1).unwrap_or_default();
                let stdout = match self.files.get(path) {
                    Some(c) => format!("644 {}\n{c}", self.owner_uid),
                    None => "absent\n".into(),
                };
                return out(0, stdout, String::new());
            }
            if let Some((_, o)) = self
                .stdout_for
                .iter()
                .find(|(n, _)| command.contains(n.as_str()))
            {
                return out(0, o.clone(), String::new());
            }
            let status = i32::from(self.fail.iter().any(|f| f == command));
            out(status, String::new(), String::new())
        }
        fn upload_staging(&mut self, _: &[u8], _: i32) -> Result<String, SshError> {
            Ok("/var/tmp/staged".into())
        }
        fn reconnect(&mut self) -> Result<(), SshError> {
            self.reconnects += 1;
            if self.reconnect_fails {
                return Err(SshError::Unreachable {
                    addr: "10.0.0.1:22".parse().unwrap(),
                    reason: "Connection timed out".into(),
                });
            }
            Ok(())
        }
    }

    fn run(fake: &mut Fake, step: &Step, dry_run: bool) -> StepResult {
        let b = Binaries::default();
        let mut ex = Executor {
            remote: fake,
            binaries: &b,
            dry_run,
        };
        ex.run_step(step)
    }

    #[test]
    fn unchanged_file_is_ok_and_handler_does_not_run() {
        let mut fake = Fake::default();
        fake.files.insert("/etc/a".into(), "x\n".into());
        let step = Step::new("s")
            .file("/etc/a", "x\n".into(), 0o644)
            .on_change("systemctl restart a");
        let r = run(&mut fake, &step, false);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(!fake.log.iter().any(|c| c.contains("restart")));
    }

    #[test]
    fn changed_file_is_validated_installed_and_handler_runs() {
        let mut fake = Fake::default();
        fake.files.insert("/etc/a".into(), "old\n".into());
        let step = Step::new("s")
            .validated_file("/etc/a", "new\n".into(), 0o644, "check {}")
            .on_change("systemctl restart a");
        let r = run(&mut fake, &step, false);
        assert_eq!(r.status, Status::Changed, "{r:?}");
        let install = fake
            .log
            .iter()
            .find(|c| c.contains("install -o 0 -g 0 -m 644"))
            .unwrap();
        assert!(
            install.contains("check '/etc/a.provision-new'"),
            "{install}"
        );
        // The validation comes before the rename, and a failed one removes the new file.
        assert!(
            install.ends_with("rm -f '/etc/a.provision-new'; exit $rc; }; } && mv -f '/etc/a.provision-new' '/etc/a'"),
            "{install}"
        );
        assert_eq!(
            fake.log.last().map(String::as_str),
            Some("systemctl restart a")
        );
    }

    #[test]
    fn file_not_owned_by_root_is_reinstalled_as_root() {
        let mut fake = Fake {
            owner_uid: 1000,
            ..Fake::default()
        };
        fake.files.insert("/etc/v".into(), "secret\n".into());
        let step = Step::new("s").file("/etc/v", "secret\n".into(), 0o644);
        let r = run(&mut fake, &step, false);
        assert_eq!(r.status, Status::Changed, "{r:?}");
        assert_eq!(r.changes, ["/etc/v mode -> 644, owner root"]);
        assert!(fake
            .log
            .iter()
            .any(|c| c.contains("install -o 0 -g 0 -m 644 ")));
    }

    #[test]
    fn ensure_applies_only_when_check_fails_and_rechecks() {
        let mut fake = Fake {
            fail: vec!["check-a".into()],
            ..Fake::default()
        };
        let step = Step::new("s")
            .ensure("a", "check-a", "apply-a")
            .ensure("b", "check-b", "apply-b");
        let r = run(&mut fake, &step, false);
        assert_eq!(
            r.status,
            Status::Failed,
            "check-a still fails after apply-a"
        );
        assert_eq!(fake.log, ["check-a", "apply-a", "check-a"]);
        let f = r.failure.unwrap();
        assert!(f.stderr.contains("still not true after `apply-a`"), "{f:?}");
    }

    #[test]
    fn dry_run_shows_diff_and_changes_nothing() {
        let mut fake = Fake {
            fail: vec!["false-check".into()],
            ..Fake::default()
        };
        fake.files.insert("/etc/a".into(), "old\n".into());
        let step = Step::new("s")
            .file("/etc/a", "new\n".into(), 0o644)
            .ensure("thing", "false-check", "apply-thing")
            .on_change("systemctl restart a")
            .assert("healthy", "curl health");
        let r = run(&mut fake, &step, true);
        assert_eq!(r.status, Status::Changed);
        assert_eq!(
            r.diffs,
            vec!["--- /etc/a\n+++ /etc/a\n-old\n+new\n".to_string()]
        );
        assert_eq!(r.changes.len(), 3, "{:?}", r.changes);
        assert_eq!(
            fake.log.len(),
            2,
            "only the file read and the check ran: {:?}",
            fake.log
        );
    }

    #[test]
    fn dry_run_diff_masks_secrets_on_both_sides() {
        let mut fake = Fake::default();
        fake.files
            .insert("/etc/v".into(), "pass = \"old-pw\"\nx = 1\n".into());
        let step = Step::new("s")
            .file("/etc/v", "pass = \"new-pw\"\nx = 2\n".into(), 0o600)
            .secret("pass");
        let d = run(&mut fake, &step, true).diffs.join("");
        assert!(!d.contains("new-pw") && !d.contains("old-pw"), "{d}");
        assert_eq!(d, "--- /etc/v\n+++ /etc/v\n-x = 1\n+x = 2\n", "{d}");
        // Only the secret changes: the diff says so, without either value.
        fake.files
            .insert("/etc/v".into(), "pass = \"old-pw\"\nx = 2\n".into());
        let r = run(&mut fake, &step, true);
        let d = r.diffs.join("");
        assert!(!d.contains("new-pw") && !d.contains("old-pw"), "{d}");
        assert!(d.contains("(a secret value changes; not shown)"), "{d}");
        assert_eq!(r.status, Status::Changed);
    }

    #[test]
    fn failing_apply_names_command_exit_code_and_stderr() {
        let mut fake = Fake {
            fail: vec!["rpm -q foo".into()],
            fail_with: Some(("yum install".into(), 1, "No package foo available.".into())),
            ..Fake::default()
        };
        let step = Step::new("pkg")
            .ensure("foo installed", "rpm -q foo", "yum install -y foo")
            .on_change("never");
        let r = run(&mut fake, &step, false);
        assert_eq!(r.status, Status::Failed);
        let f = r.failure.unwrap();
        assert_eq!(f.command, "yum install -y foo");
        assert_eq!(f.exit_code, Some(1));
        assert_eq!(f.stderr, "No package foo available.");
        assert!(!fake.log.iter().any(|c| c == "never"));
    }

    fn address_step() -> Step {
        Step::new("static address").push(Action::Address {
            path: "/etc/net/if0".into(),
            content: "address 10.0.0.1/24\n".into(),
            mode: 0o644,
            apply: "restart-net".into(),
            live_check: "live-check".into(),
            confirm_secs: 0,
            prepare: Some(Prepare {
                file: "/etc/net/main".into(),
                check: "main-check".into(),
                command: "edit-main".into(),
            }),
        })
    }

    #[test]
    fn address_change_is_confirmed_after_reconnecting() {
        let mut fake = Fake {
            stdout_for: vec![("cat '/run/provision-applied".into(), "0\n".into())],
            ..Fake::default()
        };
        let r = run(&mut fake, &address_step(), false);
        assert_eq!(r.status, Status::Changed, "{r:?}");
        assert_eq!(fake.reconnects, 1);
        let guard = fake.log.iter().find(|c| c.contains("setsid")).unwrap();
        // The old file is kept, and restored unless the confirmation file appears. Backups
        // live outside the configuration directories: network scripts read every ifcfg-*
        // there, ifupdown every file of interfaces.d.
        assert!(
            guard.contains("cp -a '/etc/net/if0' '/var/lib/provision/backup/etc/net/if0'"),
            "{guard}"
        );
        assert!(!guard.contains("'/etc/net/if0."), "{guard}");
        assert!(!guard.contains("'/etc/net/main."), "{guard}");
        // The second file is backed up too, edited after the install and restored with it.
        assert!(guard.contains("cp -a '/etc/net/main' '/var/lib/provision/backup/etc/net/main'"));
        assert!(guard.contains("'/etc/net/if0' && rm -f '/var/tmp/staged' && { edit-main; }"));
        assert!(
            guard.contains(
                "mv -f '\\''/var/lib/provision/backup/etc/net/main'\\'' '\\''/etc/net/main'\\''"
            ),
            "{guard}"
        );
        assert!(guard.contains("if [ ! -e "), "{guard}");
        assert!(fake
            .log
            .last()
            .unwrap()
            .starts_with("touch '/run/provision-confirm"));
    }

    #[test]
    fn address_change_without_reconnect_fails_and_says_it_rolls_back() {
        let mut fake = Fake {
            reconnect_fails: true,
            ..Fake::default()
        };
        let r = run(&mut fake, &address_step(), false);
        assert_eq!(r.status, Status::Failed);
        let f = r.failure.unwrap();
        assert!(f.command.contains("reconnect after `restart-net`"), "{f:?}");
        assert!(
            f.stderr.contains("restores the previous /etc/net/if0"),
            "{f:?}"
        );
        assert!(!fake.log.iter().any(|c| c.starts_with("touch")));
    }

    #[test]
    fn address_already_live_is_ok() {
        let mut fake = Fake::default();
        fake.files
            .insert("/etc/net/if0".into(), "address 10.0.0.1/24\n".into());
        let r = run(&mut fake, &address_step(), false);
        assert_eq!(r.status, Status::Ok);
        assert_eq!(fake.reconnects, 0);
    }

    #[test]
    fn address_file_right_but_second_file_unedited_is_a_change() {
        let mut fake = Fake {
            fail: vec!["main-check".into()],
            stdout_for: vec![("cat '/run/provision-applied".into(), "0\n".into())],
            ..Fake::default()
        };
        fake.files
            .insert("/etc/net/if0".into(), "address 10.0.0.1/24\n".into());
        let r = run(&mut fake, &address_step(), false);
        assert_eq!(r.status, Status::Changed, "{r:?}");
        assert!(fake.log.iter().any(|c| c.contains("{ edit-main; }")));
    }

    #[test]
    fn parent_dirs() {
        assert_eq!(parent("/etc/proxy/proxy.toml"), "/etc/proxy");
        assert_eq!(parent("/x"), "/");
        assert_eq!(parent("x"), "/");
    }
}
