//! Executes a host's [`Plan`] over a [`Remote`]: each action is checked first and applied only
//! when the host differs; --dry-run runs only the (read-only) checks and reports diffs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::address::change_address;
use crate::check::{Check, Probe};
use crate::diff;
use crate::plan::{self, Action, AddressChange, Step};
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

/// Where the executor's actions go: the live host, or (dry run) only a [`Probe`], which can
/// run read-only [`Check`]s and nothing else.
enum Target<'a> {
    Live(&'a mut dyn Remote),
    DryRun(Probe<'a>),
}

pub struct Executor<'a> {
    target: Target<'a>,
    binaries: &'a Binaries,
}

enum Outcome {
    Ok,
    Changed(String),
    Failed(Failure),
}

pub(crate) fn failed_output(command: &str, out: &Output) -> Failure {
    Failure {
        command: command.to_string(),
        exit_code: Some(out.status),
        stderr: out.stderr.trim().to_string(),
    }
}

pub(crate) fn failed_ssh(command: &str, e: &SshError) -> Failure {
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

/// The directory part of an absolute path.
pub(crate) fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => path.get(..i).unwrap_or("/"),
    }
}

impl<'a> Executor<'a> {
    /// Checks and applies what differs.
    pub fn live(remote: &'a mut dyn Remote, binaries: &'a Binaries) -> Executor<'a> {
        Executor {
            target: Target::Live(remote),
            binaries,
        }
    }

    /// Runs only checks and reports what would change: it holds a [`Probe`], not the
    /// connection, so nothing else can run.
    pub fn dry_run(probe: Probe<'a>, binaries: &'a Binaries) -> Executor<'a> {
        Executor {
            target: Target::DryRun(probe),
            binaries,
        }
    }

    /// The probe, in either mode.
    fn probe(&mut self) -> Probe<'_> {
        match &mut self.target {
            Target::Live(r) => Probe::new(&mut **r),
            Target::DryRun(p) => p.reborrow(),
        }
    }

    /// The connection for changes: `None` in a dry run.
    fn remote(&mut self) -> Option<&mut dyn Remote> {
        match &mut self.target {
            Target::Live(r) => Some(&mut **r),
            Target::DryRun(_) => None,
        }
    }

    /// Whether `check` holds (exit 0); SSH errors are failures.
    fn test(&mut self, check: &Check) -> Result<bool, Failure> {
        match self.probe().ask(check) {
            Ok(o) => Ok(o.success()),
            Err(e) => Err(failed_ssh(&check.command(), &e)),
        }
    }

    /// A state query's output; a failed query is a [`Failure`].
    fn query(&mut self, check: &Check) -> Result<Output, Failure> {
        match self.probe().ask(check) {
            Ok(o) if o.success() => Ok(o),
            Ok(o) => Err(failed_output(&check.command(), &o)),
            Err(e) => Err(failed_ssh(&check.command(), &e)),
        }
    }

    /// The file's mode (`None` also when it is not owned by root: every file provision
    /// manages is root's) and content; `None` if absent.
    fn read_file(&mut self, path: &str) -> Result<Option<(Option<u32>, String)>, Failure> {
        let check = Check::FileState(path.to_string());
        let out = self.query(&check)?;
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
                command: check.command(),
                exit_code: Some(0),
                stderr: format!("unexpected mode and owner {first:?}"),
            });
        };
        Ok(Some(((uid == 0).then_some(mode), rest.to_string())))
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
                let Some(remote) = self.remote() else {
                    if !same_content {
                        let old = current.as_ref().map(|(_, c)| c.as_str());
                        diffs.push(masked_diff(path, old, content, secrets));
                    }
                    return Ok(Outcome::Changed(what));
                };
                // A validator's complaint may quote the offending line: mask it too.
                install(remote, path, content.as_bytes(), *mode, validate.as_deref()).map_err(
                    |mut f| {
                        f.stderr = plan::mask(&f.stderr, secrets);
                        f
                    },
                )?;
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
                let out = self.query(&Check::BinaryState(path.clone()))?;
                let mut lines = out.stdout.lines();
                let remote_sha = lines.next().unwrap_or("");
                let remote_mode = lines.next().unwrap_or("");
                if remote_sha == sha && remote_mode == format!("{mode:o}") {
                    return Ok(Outcome::Ok);
                }
                if let Some(remote) = self.remote() {
                    install(remote, path, data, *mode, None)?;
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
                let Some(remote) = self.remote() else {
                    return Ok(Outcome::Changed(format!("{what}: would run `{apply}`")));
                };
                must(remote, apply)?;
                if !self.test(check)? {
                    return Err(Failure {
                        command: check.command(),
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
                let Some(remote) = self.remote() else {
                    return Ok(Outcome::Changed(format!("then `{command}`")));
                };
                must(remote, command)?;
                Ok(Outcome::Changed(format!("ran `{command}`")))
            }
            Action::Assert { command, .. } => {
                if let Some(remote) = self.remote() {
                    must(remote, command)?;
                }
                Ok(Outcome::Ok)
            }
            Action::Address(change) => self.address(change, diffs),
        }
    }

    fn address(&mut self, a: &AddressChange, diffs: &mut Vec<String>) -> Result<Outcome, Failure> {
        let current = self.read_file(&a.path)?;
        let same = current
            .as_ref()
            .is_some_and(|(m, c)| *c == a.content && *m == Some(a.mode));
        let prepared = match &a.prepare {
            Some(p) => self.test(&p.check)?,
            None => true,
        };
        if same && prepared && self.test(&a.live_check)? {
            return Ok(Outcome::Ok);
        }
        let Some(remote) = self.remote() else {
            let old = current.as_ref().map(|(_, c)| c.as_str());
            diffs.push(diff::unified(&a.path, old, &a.content));
            return Ok(Outcome::Changed(format!(
                "{}: would run `{}` and reconnect",
                a.path, a.apply
            )));
        };
        change_address(remote, a)?;
        Ok(Outcome::Changed(format!(
            "{} applied with `{}`, reconnected and confirmed",
            a.path, a.apply
        )))
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

/// Runs `command`; a failed command becomes a [`Failure`].
pub(crate) fn must(remote: &mut dyn Remote, command: &str) -> Result<Output, Failure> {
    match remote.run(command) {
        Ok(o) if o.success() => Ok(o),
        Ok(o) => Err(failed_output(command, &o)),
        Err(e) => Err(failed_ssh(command, &e)),
    }
}

/// Uploads `content` and installs it at `path` with `mode`, owned by root, validated first.
fn install(
    remote: &mut dyn Remote,
    path: &str,
    content: &[u8],
    mode: u32,
    validate: Option<&str>,
) -> Result<(), Failure> {
    let staged = remote
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
    must(remote, &cmd).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Prepare;

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
        /// Commands containing the needle print these in turn (the last one repeats).
        stdout_seq: Vec<(String, Vec<String>)>,
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
            if let Some((_, outs)) = self
                .stdout_seq
                .iter_mut()
                .find(|(n, _)| command.contains(n.as_str()))
            {
                let o = if outs.len() > 1 {
                    outs.remove(0)
                } else {
                    outs.first().cloned().unwrap_or_default()
                };
                return out(0, o, String::new());
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
        let mut ex = if dry_run {
            Executor::dry_run(Probe::new(fake), &b)
        } else {
            Executor::live(fake, &b)
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
        let (check_a, check_b) = (Check::UnitActive("a".into()), Check::UnitActive("b".into()));
        let mut fake = Fake {
            fail: vec![check_a.command()],
            ..Fake::default()
        };
        let step = Step::new("s")
            .ensure("a", check_a.clone(), "apply-a")
            .ensure("b", check_b, "apply-b");
        let r = run(&mut fake, &step, false);
        assert_eq!(
            r.status,
            Status::Failed,
            "check-a still fails after apply-a"
        );
        let a = check_a.command();
        assert_eq!(fake.log, [a.as_str(), "apply-a", a.as_str()]);
        let f = r.failure.unwrap();
        assert!(f.stderr.contains("still not true after `apply-a`"), "{f:?}");
    }

    #[test]
    fn dry_run_shows_diff_and_changes_nothing() {
        let check = Check::UnitActive("thing".into());
        let mut fake = Fake {
            fail: vec![check.command()],
            ..Fake::default()
        };
        fake.files.insert("/etc/a".into(), "old\n".into());
        let step = Step::new("s")
            .file("/etc/a", "new\n".into(), 0o644)
            .ensure("thing", check, "apply-thing")
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
        let check = Check::RpmInstalled("foo".into());
        let mut fake = Fake {
            fail: vec![check.command()],
            fail_with: Some(("yum install".into(), 1, "No package foo available.".into())),
            ..Fake::default()
        };
        let step = Step::new("pkg")
            .ensure("foo installed", check, "yum install -y foo")
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
        Step::new("static address").push(Action::Address(AddressChange {
            path: "/etc/net/if0".into(),
            content: "address 10.0.0.1/24\n".into(),
            mode: 0o644,
            apply: "restart-net".into(),
            live_check: Check::AddressOn {
                ifname: "if0".into(),
                cidr: "10.0.0.1/24".into(),
            },
            confirm_secs: 0,
            prepare: Some(Prepare {
                file: "/etc/net/main".into(),
                check: main_check(),
                command: "edit-main".into(),
            }),
        }))
    }

    fn main_check() -> Check {
        Check::FileExists("/etc/net/main".into())
    }

    /// The host's state query and provision's confirmation, as the fake sees them.
    const STATE: &str = "then echo pending";
    const CONFIRM: &str = "echo late";

    #[test]
    fn address_change_is_confirmed_after_reconnecting() {
        let mut fake = Fake {
            stdout_for: vec![
                (STATE.into(), "pending\n0\n".into()),
                (CONFIRM.into(), "confirmed\n".into()),
            ],
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
        // The host's guard rolls back only if it takes the pending marker itself.
        assert!(
            guard.contains("if mv '\\''/run/provision-pending_etc_net_if0'\\'' '\\''/run/provision-rolledback_etc_net_if0'\\''"),
            "{guard}"
        );
        assert!(fake.log.last().unwrap().contains(CONFIRM));
    }

    /// The confirmation reaches the host after its deadline (a slow reconnect and a slow
    /// command): the host already took the pending marker and rolled back, so provision must
    /// not report success, and says what the host did.
    #[test]
    fn a_confirmation_after_the_hosts_deadline_is_refused_and_reported() {
        let mut fake = Fake {
            stdout_seq: vec![(
                STATE.into(),
                vec!["pending\n0\n".into(), "rolledback\n0\n".into()],
            )],
            stdout_for: vec![(CONFIRM.into(), "late\n".into())],
            ..Fake::default()
        };
        let mut step = address_step();
        if let Some(Action::Address(a)) = step.actions.first_mut() {
            a.confirm_secs = 2;
        }
        let r = run(&mut fake, &step, false);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        let f = r.failure.unwrap();
        assert!(
            f.stderr
                .contains("the confirmation came after the host's deadline"),
            "{f:?}"
        );
        assert!(
            f.stderr
                .contains("the host restored the previous /etc/net/if0 and re-applied it (exit 0)"),
            "{f:?}"
        );
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
        assert!(!fake.log.iter().any(|c| c.contains(CONFIRM)));
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
            fail: vec![main_check().command()],
            stdout_for: vec![
                (STATE.into(), "pending\n0\n".into()),
                (CONFIRM.into(), "confirmed\n".into()),
            ],
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
