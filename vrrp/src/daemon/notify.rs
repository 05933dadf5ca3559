//! Notify scripts, run on every transition as keepalived does: the state-specific one
//! (`notify_master` / `notify_backup` / `notify_fault`) as written, and the generic `notify`
//! with keepalived's arguments appended: `"INSTANCE" NAME STATE PRIORITY`.
//!
//! Scripts run asynchronously (a slow script must not delay adverts); children are reaped from
//! the event loop and killed if they outlive `NOTIFY_TIMEOUT`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::instance::State;

pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// Child processes of notify scripts not yet reaped.
#[derive(Debug, Default)]
pub struct Children(Vec<(Child, Instant, String)>);

impl Children {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Starts the notify scripts for a transition of instance `name` to `to`.
    pub fn notify(
        &mut self,
        now: Instant,
        name: &str,
        to: State,
        priority: u8,
        specific: Option<&str>,
        generic: Option<&str>,
    ) {
        let state = match to {
            State::Master => "MASTER",
            State::Backup => "BACKUP",
            State::Fault => "FAULT",
            // keepalived reports stopping instances through notify_stop, not these.
            State::Initialize => return,
        };
        if let Some(cmd) = specific {
            self.spawn(now, Command::new("/bin/sh").arg("-c").arg(cmd), cmd);
        }
        if let Some(cmd) = generic {
            // "$@" appends the arguments without the shell re-splitting or expanding them.
            let script = format!("{cmd} \"$@\"");
            let prio = priority.to_string();
            self.spawn(
                now,
                Command::new("/bin/sh")
                    .arg("-c")
                    .arg(script)
                    .arg("sh")
                    .args(["INSTANCE", name, state, &prio]),
                cmd,
            );
        }
    }

    /// Starts `cmd` with /bin/sh, as the state-specific notify scripts.
    pub fn run(&mut self, now: Instant, cmd: &str) {
        self.spawn(now, Command::new("/bin/sh").arg("-c").arg(cmd), cmd);
    }

    fn spawn(&mut self, now: Instant, cmd: &mut Command, what: &str) {
        match cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => self.0.push((child, now, what.to_string())),
            Err(e) => tracing::warn!(script = what, error = %e, "cannot start notify script"),
        }
    }

    /// Reaps finished children; kills those running longer than NOTIFY_TIMEOUT.
    pub fn reap(&mut self, now: Instant) {
        self.0
            .retain_mut(|(child, started, what)| match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        tracing::warn!(script = %what, %status, "notify script failed");
                    }
                    false
                }
                Ok(None) if now.duration_since(*started) > NOTIFY_TIMEOUT => {
                    tracing::warn!(script = %what, "notify script timed out; killed");
                    let _ = child.kill();
                    let _ = child.wait();
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            });
    }

    /// Waits (bounded) for the remaining children, at shutdown.
    pub fn finish(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.0.is_empty() && Instant::now() < deadline {
            self.reap(Instant::now());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_notify_gets_keepalived_arguments() {
        let dir = std::env::temp_dir().join(format!("vrrp-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("args");
        let out2 = dir.join("specific");
        let mut c = Children::default();
        let generic = format!("printf '%s|' >{}", out.display());
        let specific = format!("echo master >{}", out2.display());
        c.notify(
            Instant::now(),
            "VI 1",
            State::Master,
            150,
            Some(&specific),
            Some(&generic),
        );
        c.finish(Duration::from_secs(5));
        assert!(c.is_empty());
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "INSTANCE|VI 1|MASTER|150|"
        );
        assert_eq!(std::fs::read_to_string(&out2).unwrap(), "master\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
