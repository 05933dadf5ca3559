//! The keeper: the long-lived process that holds a host's namespaces and filesystem view.
//!
//! With `Init::None` it is a shell that mounts the overlays and then only reaps orphans. With
//! `Init::Systemd` the same shell prepares a whole system view (private /dev, /run, /tmp,
//! read-only /proc/sys and /sys, the host's cgroup tree, the root file system read-only) and
//! then, once the lab has written the host's /etc, execs systemd as PID 1 of the host's PID
//! namespace. Every mount happens in the keeper's own mount namespace, which never propagates
//! back to the machine.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::sys;

/// Paths a provisioning step may write: each gets a private overlay (/tmp too without systemd,
/// so that uploads staged there by one host never meet another's). /tmp stays last: see
/// [`OVERLAID_SYSTEMD`].
pub const OVERLAID: &[&str] = &[
    "/etc",
    "/var",
    "/root",
    "/home",
    "/usr/local",
    "/opt",
    "/srv",
    "/tmp",
];

/// With systemd, /tmp is a fresh tmpfs instead: systemd-tmpfiles empties /tmp at boot, and a
/// host's /tmp must start empty like a server's. The same list without its last entry.
pub const OVERLAID_SYSTEMD: &[&str] = OVERLAID.split_at(OVERLAID.len() - 1).0;

/// Capabilities no process of a systemd host may ever gain (removed from the bounding set of
/// its PID 1, so of everything it starts, and of every command the lab runs inside): setting
/// the machine's clock (chrony, timesyncd: their units' ConditionCapability then skips the
/// setting), loading kernel modules, rebooting the machine.
pub const DROPPED_CAPS: &str = "-sys_time,-sys_module,-sys_boot";

/// Mounts the host's filesystem view, reports "ready", then holds the namespaces as the host's
/// init (reaping orphans, exit on TERM).
const PLAIN: &str = r#"set -e
up="$1"; name="$2"; shift 2
for d in "$@"; do
  [ -d "$d" ] || continue
  k=$(printf %s "$d" | tr / _)
  mkdir -p "$up/$k/upper" "$up/$k/work"
  mount -t overlay "lab-$name" -o "lowerdir=$d,upperdir=$up/$k/upper,workdir=$up/$k/work" "$d"
done
mount -t tmpfs -o mode=755 "lab-$name-run" /run
mkdir -p /run/lock /run/lab
hostname "$name"
echo ready
exec </dev/null >/dev/null 2>&1
# PID 1 of the host: reap the orphans daemons leave behind (waiting reaps any child), exit on
# TERM, which makes the kernel kill the rest of the host.
trap 'exit 0' TERM
while :; do sleep 3600 & wait $!; done
"#;

/// The systemd host's view, then (after "boot" on stdin) systemd. Arguments: upper root, host
/// name, "hybrid" or "unified", the overlaid paths. stderr is the host's console log.
const SYSTEMD: &str = r#"set -e
up="$1"; name="$2"; cg="$3"; shift 3
for d in "$@"; do
  [ -d "$d" ] || continue
  k=$(printf %s "$d" | tr / _)
  mkdir -p "$up/$k/upper" "$up/$k/work"
  mount -t overlay "lab-$name" -o "lowerdir=$d,upperdir=$up/$k/upper,workdir=$up/$k/work" "$d"
done
# /proc of the host's PID namespace; kernel tunables read-only but for the host's own network
# namespace's (systemd-sysctl would otherwise apply the distribution's sysctl.d machine-wide).
mount -t proc -o nosuid,nodev,noexec proc /proc
for p in /proc/sys /proc/sysrq-trigger; do
  [ -e "$p" ] || continue
  mount --bind "$p" "$p"; mount -o remount,bind,ro "$p"
done
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
# sysfs (already this network namespace's, mounted by `ip netns exec`) read-only, so udev and
# friends skip themselves; the cgroup tree is the host's own (cgroup namespace root).
mount -o remount,bind,ro,nosuid,nodev,noexec /sys
if [ "$cg" = hybrid ]; then
  mount -t tmpfs -o mode=755,nosuid,nodev,noexec "lab-$name-cgroup" /sys/fs/cgroup
  mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
  mount -t cgroup -o none,name=systemd,nosuid,nodev,noexec cgroup /sys/fs/cgroup/systemd
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup/unified
else
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
fi
# A private /dev: the harmless character devices, its own ptys and shared memory. The
# machine's disks, consoles and kmsg are not there.
mount -t tmpfs -o mode=755,nosuid "lab-$name-dev" /dev
mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9; mknod -m 666 /dev/tty c 5 0
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev "lab-$name-shm" /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=755,nosuid,nodev "lab-$name-run" /run
mount -t tmpfs -o mode=1777,nosuid,nodev "lab-$name-tmp" /tmp
# Everything not overlaid or mounted above is the machine's: read-only for the host (a bind
# remount changes this mount namespace's view only).
mount -o remount,bind,ro /
# Shared, as systemd makes / at boot on a machine (it does not in a container): a mount that a
# unit's own namespace makes must show up here, e.g. the credentials of LoadCredential=, which
# systemd mounts in a child namespace and moves to /run/credentials/UNIT. This namespace was
# unshared private, so nothing propagates to the machine's.
mount --make-rshared /
hostname "$name"
echo ready
read -r go
[ "$go" = boot ]
exec </dev/null >&2
exec env -i container=lab PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  setpriv --bounding-set="$DROPPED_CAPS" /lib/systemd/systemd --system --unit=lab.target
"#;

/// How a host's keeper boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// A shell that holds the namespaces.
    Plain,
    /// systemd, in the given cgroup directories (one per hierarchy).
    Systemd { cgroups: Vec<PathBuf>, hybrid: bool },
}

/// A keeper whose mounts are in place; a systemd keeper waits for [`Keeper::boot`].
pub struct Keeper {
    pub pid: i32,
    child: Child,
}

impl Keeper {
    /// The host's console: a systemd keeper's stderr (its boot errors too).
    pub fn console_log(upper_root: &Path) -> PathBuf {
        upper_root.join("console.log")
    }

    /// Starts the keeper of host `name` inside network namespace `ns`; returns once its mounts
    /// are in place. `upper_root` holds the overlay upper/work directories.
    pub fn spawn(ns: &str, name: &str, upper_root: &Path, boot: &Boot) -> Result<Keeper> {
        std::fs::create_dir_all(upper_root)
            .map_err(|e| LabError::io(format!("create {}", upper_root.display()), e))?;
        let console = Keeper::console_log(upper_root);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&console)
            .map_err(|e| LabError::io(format!("open {}", console.display()), e))?;
        let mut cmd = keeper_command(ns, name, upper_root, boot);
        // The console log is opened here, outside the host: a file the keeper opened itself
        // on the machine's root would keep `mount -o remount,ro /` from succeeding.
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Its own process group: a Ctrl-C aimed at `lab` must not kill the hosts.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
            command: sys::describe(&cmd),
            source,
        })?;
        let unshare_pid =
            i32::try_from(child.id()).map_err(|_| LabError::Other("pid out of range".into()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let failed = |child: &mut Child, why: String| {
            sys::terminate(&[unshare_pid], Duration::from_secs(2));
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            LabError::Command {
                command: format!("keeper of {name}: {}", sys::describe(&cmd)),
                status,
                stderr: format!("{why}{}", tail(&console, 10)),
            }
        };
        if line.trim() != "ready" {
            return Err(failed(&mut child, String::new()));
        }
        // `unshare` forks the keeper: PID 1 of the host's PID namespace, and the process
        // `nsenter -t` must target.
        let children =
            std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                .unwrap_or_default();
        match children
            .split_whitespace()
            .find_map(|p| p.parse::<i32>().ok())
        {
            Some(pid) => Ok(Keeper { pid, child }),
            None => Err(failed(
                &mut child,
                "cannot find the process unshare started\n".into(),
            )),
        }
    }

    /// Lets a systemd keeper exec systemd (a plain keeper is already running). The keeper is
    /// not waited for: it outlives this process on purpose.
    pub fn boot(mut self) -> Result<()> {
        if let Some(mut stdin) = self.child.stdin.take() {
            stdin
                .write_all(b"boot\n")
                .map_err(|e| LabError::io(format!("boot keeper {}", self.pid), e))?;
        }
        Ok(())
    }
}

/// The command line that starts a keeper (see [`Keeper::spawn`]).
fn keeper_command(ns: &str, name: &str, upper_root: &Path, boot: &Boot) -> Command {
    match boot {
        Boot::Plain => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]);
            // --kill-child: when unshare dies, the kernel kills everything left in the host.
            c.args([
                "unshare",
                "--mount",
                "--uts",
                "--pid",
                "--fork",
                "--kill-child",
            ])
            .args([
                "--mount-proc",
                "--propagation",
                "private",
                "sh",
                "-c",
                PLAIN,
            ])
            .arg("sh")
            .arg(upper_root)
            .arg(name)
            .args(OVERLAID);
            c
        }
        Boot::Systemd { cgroups, hybrid } => {
            // Joins the host's cgroups first (`ip netns exec` remounts /sys, hiding them),
            // then unshares the cgroup namespace rooted there.
            let mut c = Command::new("sh");
            c.args([
                "-c",
                r#"for g in $CGROUPS; do echo $$ > "$g/cgroup.procs"; done; exec "$@""#,
                "sh",
                "ip",
                "netns",
                "exec",
                ns,
            ]);
            c.args(["unshare", "--cgroup", "--mount", "--uts", "--ipc", "--pid"])
                .args(["--fork", "--kill-child", "--propagation", "private"])
                .args(["sh", "-c", SYSTEMD, "sh"])
                .arg(upper_root)
                .arg(name)
                .arg(if *hybrid { "hybrid" } else { "unified" })
                .args(OVERLAID_SYSTEMD)
                .env(
                    "CGROUPS",
                    cgroups
                        .iter()
                        .map(|p| p.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(" "),
                )
                .env("DROPPED_CAPS", DROPPED_CAPS);
            c
        }
    }
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Powers systemd hosts off: SIGRTMIN+4 to their PID 1 (systemd's "poweroff" signal: units
/// stopped in order, then PID 1 exits and the kernel ends the PID namespace); SIGKILL to what is
/// still alive after `grace`. True if all powered off cleanly.
pub fn poweroff(pids: &[i32], grace: Duration) -> bool {
    let live: Vec<String> = pids
        .iter()
        .filter(|&&p| sys::pid_alive(p))
        .map(|p| p.to_string())
        .collect();
    if live.is_empty() {
        return true;
    }
    // nix's Signal has no real-time signals; procps' kill sends them by name.
    let _ = sys::run(Command::new("kill").args(["-s", "RTMIN+4"]).args(&live));
    if sys::wait_gone(pids, grace) {
        return true;
    }
    for &p in pids {
        sys::signal(p, sys::Signal::SIGKILL);
    }
    sys::wait_gone(pids, Duration::from_secs(2));
    false
}
