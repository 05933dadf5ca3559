//! Small wrappers over the OS: running commands with useful errors, processes in a network
//! namespace, signals, and entering a namespace from a thread.

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::sched::CloneFlags;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// `cmd` as a shell-like string for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` to completion; returns stdout, or an error with the exit status and stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: describe(cmd),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// Whether we may create namespaces.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// (device, inode) identifying a namespace file.
fn ns_key(path: &std::path::Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Every live process whose network namespace is the named one (what `ip netns pids` does).
pub fn pids_in_netns(name: &str) -> Vec<i32> {
    let Some(key) = ns_key(&netns_path(name)) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| ns_key(&PathBuf::from(format!("/proc/{pid}/ns/net"))) == Some(key))
        .filter(|pid| pid_alive(*pid))
        .collect()
}

/// Whether `pid` is in the named network namespace (guards against a recycled pid).
pub fn pid_in_netns(pid: i32, name: &str) -> bool {
    let key = ns_key(&netns_path(name));
    key.is_some() && ns_key(&PathBuf::from(format!("/proc/{pid}/ns/net"))) == key
}

/// The machine-wide pid of the process that is `local` in the PID namespace of `member` (a
/// process of that namespace): /proc/PID/status "NSpid:" lists a process's pid in each nested
/// namespace, outermost first.
pub fn outer_pid(member: i32, local: i32) -> Option<i32> {
    let ns = ns_key(&PathBuf::from(format!("/proc/{member}/ns/pid")))?;
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| ns_key(&PathBuf::from(format!("/proc/{pid}/ns/pid"))) == Some(ns))
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|st| {
                    st.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|l| l.split_whitespace().last())
                        .and_then(|p| p.parse::<i32>().ok())
                })
                == Some(local)
        })
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// `sig` to one process. Only pid > 0: 0 and negative pids would address process groups or
/// every process. A process that is already gone is not an error here.
pub fn signal(pid: i32, sig: Signal) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
    }
}

/// SIGTERM to each pid, then SIGKILL to whatever is still alive after `grace`; waits until all
/// are gone (or another second has passed).
pub fn terminate(pids: &[i32], grace: Duration) {
    stop_with(pids, Signal::SIGTERM, grace);
}

/// `sig` to each pid, then SIGKILL to whatever is still alive after `grace`.
pub fn stop_with(pids: &[i32], sig: Signal, grace: Duration) {
    for &p in pids {
        signal(p, sig);
    }
    if !wait_gone(pids, grace) {
        for &p in pids {
            if pid_alive(p) {
                signal(p, Signal::SIGKILL);
            }
        }
        wait_gone(pids, Duration::from_secs(1));
    }
}

/// Waits until none of `pids` is alive; false on timeout.
pub fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| !pid_alive(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Moves the calling thread into the named network namespace. Sockets the thread creates
/// afterwards live there; other threads are unaffected.
pub fn enter_netns(name: &str) -> Result<()> {
    let path = netns_path(name);
    let f = File::open(&path).map_err(|e| LabError::io(format!("open {}", path.display()), e))?;
    // `f` stays open for the call; setns only changes this thread's network namespace.
    nix::sched::setns(f.as_raw_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| LabError::io(format!("setns into {name}"), e.into()))
}

/// Whether `program` is found on PATH (or is an existing path).
pub fn have_program(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).exists()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(program).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_status_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains('3'), "{msg}");
        assert_eq!(run(Command::new("echo").arg("hi")).unwrap(), "hi\n");
    }

    #[test]
    fn alive_and_terminate() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        assert!(pid_alive(pid));
        // Reap in a thread so the child does not linger as a zombie we would count as alive.
        let waiter = thread::spawn(move || {
            let mut child = child;
            child.wait().ok()
        });
        terminate(&[pid], Duration::from_secs(2));
        assert!(waiter.join().unwrap().is_some());
        assert!(!pid_alive(pid));
        assert!(!pid_alive(0));
        assert!(!pid_alive(-1));
    }

    #[test]
    fn outer_pid_in_our_own_namespace_is_the_pid() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert_eq!(outer_pid(me, me), Some(me));
        assert_eq!(outer_pid(me, -5), None);
    }

    #[test]
    fn describe_quotes_spaces() {
        let mut c = Command::new("ip");
        c.args(["-n", "a b", "link"]);
        assert_eq!(describe(&c), "ip -n \"a b\" link");
    }
}
