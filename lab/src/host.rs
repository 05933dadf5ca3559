//! A lab host: a network namespace plus a long-lived "keeper" process holding the host's own
//! mount (and UTS) namespace, in which /etc, /var, /root, /usr/local, /opt and /srv are overlays
//! and /run is a fresh tmpfs. Everything the host runs is started with `nsenter -t KEEPER -m -n
//! -u`, so its writes (configs, pages, logs, pid files, host keys) never reach the real machine.
//! Files are read and written from outside through `/proc/KEEPER/root`, which resolves paths in
//! the keeper's mount namespace.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use provision::inventory::{Host, Inventory, Role, Ssh};
use provision::render;

use crate::error::{LabError, Result};
use crate::sys;

/// Paths a provisioning step may write: each gets a private overlay (/tmp too, so that uploads
/// staged there by one host never meet another's).
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

/// Mounts the host's filesystem view (overlays keep the machine's files visible, so binaries
/// under any of these paths still run), reports "ready", then holds the namespaces as the host's
/// init.
const KEEPER_SCRIPT: &str = r#"set -e
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

/// Starts the keeper of host `name` inside network namespace `ns`; returns its pid once the
/// mounts are in place. `upper_root` holds the overlay upper/work directories.
pub fn spawn_keeper(ns: &str, name: &str, upper_root: &Path) -> Result<i32> {
    let mut cmd = Command::new("ip");
    // Own PID namespace too: `ps`, `kill` and `killall` inside a host (a check script in the
    // seed's style runs `killall keepalived`) see only that host, and when the keeper (its PID 1) dies the
    // kernel kills everything left in the host. /proc is remounted for it.
    cmd.args(["netns", "exec", ns, "unshare", "--mount", "--uts", "--pid"])
        .args(["--fork", "--kill-child", "--mount-proc"])
        .args(["--propagation", "private", "sh", "-c", KEEPER_SCRIPT, "sh"])
        .arg(upper_root)
        .arg(name)
        .args(OVERLAID)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    if line.trim() == "ready" {
        // `ip netns exec` execs `unshare`, which forks the keeper: PID 1 of the host's PID
        // namespace, and the process `nsenter -t` must target.
        let children =
            std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                .unwrap_or_default();
        if let Some(pid) = children
            .split_whitespace()
            .find_map(|p| p.parse::<i32>().ok())
        {
            // Not waited for: the keeper outlives this process on purpose.
            drop(child);
            return Ok(pid);
        }
        sys::terminate(&[unshare_pid], Duration::from_secs(2));
        let _ = child.wait();
        return Err(LabError::Other(format!(
            "keeper of {name}: cannot find the process unshare started"
        )));
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
    Err(LabError::Command {
        command: format!("keeper of {name}: {}", sys::describe(&cmd)),
        status,
        stderr: err.trim().to_string(),
    })
}

/// A service a lab host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sshd,
    Httpd,
    Proxy,
    Vrrp,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Service {
    pub const ALL: [Service; 4] = [Service::Sshd, Service::Httpd, Service::Proxy, Service::Vrrp];

    pub fn name(self) -> &'static str {
        match self {
            Service::Sshd => "sshd",
            Service::Httpd => "httpd",
            Service::Proxy => "proxy",
            Service::Vrrp => "vrrp",
        }
    }

    pub fn parse(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The services of a role, in start order (proxy before vrrp: vrrp tracks the proxy).
    pub fn for_role(role: Role) -> &'static [Service] {
        match role {
            Role::Balancer => &[Service::Sshd, Service::Proxy, Service::Vrrp],
            Role::Backend => &[Service::Sshd, Service::Httpd],
        }
    }

    /// Pid file inside the host.
    fn pidfile(self) -> &'static str {
        match self {
            Service::Sshd => "/run/sshd.pid",
            Service::Httpd => "/run/apache2/apache2.pid",
            Service::Proxy => "/run/lab/proxy.pid",
            Service::Vrrp => "/run/lab/vrrp.pid",
        }
    }

    /// The signal its systemd unit stops it with: the proxy stops gracefully (QUIT, in-flight
    /// requests finish, as deploy/proxy.service), the others on TERM (vrrp then sends its
    /// priority-0 advert and removes the VIPs).
    fn stop_signal(self) -> sys::Signal {
        match self {
            Service::Proxy => sys::Signal::SIGQUIT,
            _ => sys::Signal::SIGTERM,
        }
    }

    /// Its log inside the host (for error messages).
    pub fn log(self) -> &'static str {
        match self {
            Service::Sshd => "/var/log/sshd.log",
            Service::Httpd => "/var/log/apache2/error.log",
            Service::Proxy => "/var/log/proxy/proxy.log",
            Service::Vrrp => "/var/log/vrrp/vrrp.log",
        }
    }
}

/// What starting a service needs besides the host itself.
pub struct Context<'a> {
    pub inventory: &'a Inventory,
    /// Directory holding the `proxy` and `vrrp` binaries.
    pub bin_dir: &'a Path,
}

/// A running lab host.
#[derive(Debug, Clone)]
pub struct HostHandle {
    pub host: Host,
    pub ns: String,
    pub keeper: i32,
}

impl HostHandle {
    /// Whether the keeper (and so the host's filesystem view) is alive.
    pub fn alive(&self) -> bool {
        sys::pid_alive(self.keeper) && sys::pid_in_netns(self.keeper, &self.ns)
    }

    /// `path` inside the host, as seen from outside.
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.keeper)).join(path.trim_start_matches('/'))
    }

    pub fn read_file(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.path(path)).ok()
    }

    pub fn write_file(&self, path: &str, contents: &str, mode: u32) -> Result<()> {
        let full = self.path(path);
        let ctx = |what: &str| format!("{what} {path} in {}", self.host.name);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| LabError::io(ctx("create dir for"), e))?;
        }
        std::fs::write(&full, contents).map_err(|e| LabError::io(ctx("write"), e))?;
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
            .map_err(|e| LabError::io(ctx("chmod"), e))
    }

    /// A command that runs inside the host (network, mount and UTS namespaces).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.keeper.to_string(),
            "-m",
            "-n",
            "-u",
            "-p",
            "--",
            program,
        ]);
        c
    }

    /// `sh -c SCRIPT` inside the host, to completion.
    pub fn sh(&self, script: &str, args: &[&str]) -> Result<String> {
        sys::run(self.command("sh").args(["-c", script, "sh"]).args(args))
    }

    /// The services this host runs.
    pub fn services(&self) -> &'static [Service] {
        Service::for_role(self.host.role)
    }

    /// Pid of `svc` if it is running (pid file present, process alive and inside this host).
    pub fn service_pid(&self, svc: Service) -> Option<i32> {
        // The pid file holds the pid as the host sees it (its own PID namespace).
        let local: i32 = self.read_file(svc.pidfile())?.trim().parse().ok()?;
        let pid = sys::outer_pid(self.keeper, local)?;
        (sys::pid_alive(pid) && sys::pid_in_netns(pid, &self.ns)).then_some(pid)
    }

    /// One-time setup at `lab up`: the host's own SSH host keys and the lab key.
    pub fn setup_ssh(&self, ssh: &Ssh, authorized_key: &str) -> Result<()> {
        // Without removing them first, ssh-keygen -A would keep the machine's own keys, which
        // the overlay shows through.
        self.sh(
            "rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub && ssh-keygen -A >/dev/null",
            &[],
        )?;
        if ssh.user == "root" {
            self.write_file("/root/.ssh/authorized_keys", authorized_key, 0o600)?;
            std::fs::set_permissions(
                self.path("/root/.ssh"),
                std::fs::Permissions::from_mode(0o700),
            )
            .map_err(|e| LabError::io("chmod /root/.ssh", e))?;
            return Ok(());
        }
        // Another login user: created inside the host (/etc and /home are overlays), with
        // password-less sudo as a fresh cloud server has, so `provision` can use `sudo -n`.
        self.write_file("/run/lab/authorized_key", authorized_key, 0o600)?;
        self.sh(
            r#"set -e
id -u "$1" >/dev/null 2>&1 || useradd -m -s /bin/sh "$1"
h=$(getent passwd "$1" | cut -d: -f6)
mkdir -p "$h/.ssh"
cp /run/lab/authorized_key "$h/.ssh/authorized_keys"
chmod 700 "$h/.ssh"; chmod 600 "$h/.ssh/authorized_keys"
chown -R "$1": "$h/.ssh"
if [ -d /etc/sudoers.d ]; then
  echo "$1 ALL=(ALL) NOPASSWD: ALL" > "/etc/sudoers.d/lab-$1"; chmod 440 "/etc/sudoers.d/lab-$1"
fi"#,
            &[&ssh.user],
        )?;
        Ok(())
    }

    /// The files of the host's role: index page and Listen address, or the rendered proxy/vrrp
    /// configs (what `provision` would deploy).
    pub fn setup_role(&self, ctx: &Context<'_>) -> Result<()> {
        match self.host.role {
            Role::Backend => {
                let page = render::index_html(&self.host).unwrap_or_default();
                self.write_file("/var/www/html/index.html", &page, 0o644)?;
                // The seed's httpd listens on all addresses; here every host shares the
                // machine's Apache config, so pin it to the host's own address.
                self.write_file(
                    "/etc/apache2/ports.conf",
                    &format!(
                        "# lab: this host's address only\nListen {}:80\n",
                        self.host.address
                    ),
                    0o644,
                )?;
                self.write_file(
                    "/etc/apache2/conf-enabled/lab-servername.conf",
                    &format!("ServerName {}\n", self.host.name),
                    0o644,
                )?;
            }
            Role::Balancer => {
                // Exactly what provision deploys (units included, though nothing runs systemd
                // here: the lab starts the binaries itself).
                for f in render::balancer_files(ctx.inventory, &self.host)? {
                    self.write_file(f.path, &f.contents, f.mode)?;
                }
                // Where the units expect them, so `lab exec server1 -- vrrp status` works:
                // links to the build's binaries (inside the host's /usr/local overlay).
                for (name, dest) in [
                    ("proxy", render::PROXY_BIN_PATH),
                    ("vrrp", render::VRRP_BIN_PATH),
                ] {
                    let link = self.path(dest);
                    if let Some(dir) = link.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
                    }
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(ctx.bin_dir.join(name), &link)
                        .map_err(|e| LabError::io(format!("link {dest}"), e))?;
                }
            }
        }
        Ok(())
    }

    /// Starts `svc` unless it already runs; returns its pid.
    pub fn start(&self, svc: Service, ctx: &Context<'_>) -> Result<i32> {
        if let Some(pid) = self.service_pid(svc) {
            return Ok(pid);
        }
        let failed = |detail: String| LabError::ServiceFailed {
            host: self.host.name.clone(),
            service: svc.name().into(),
            detail,
        };
        match svc {
            Service::Sshd => {
                let listen = format!("ListenAddress={}", self.host.address);
                let port = format!("Port={}", ctx.inventory.ssh.port);
                self.sh(
                    "mkdir -p /run/sshd && /usr/sbin/sshd -E /var/log/sshd.log -o \"$1\" -o \"$2\" -o PidFile=/run/sshd.pid",
                    &[&port, &listen],
                )
                .map_err(|e| failed(e.to_string()))?;
            }
            Service::Httpd => {
                self.sh(
                    "mkdir -p /run/apache2 /run/lock/apache2 /var/log/apache2 && . /etc/apache2/envvars && apache2 -k start",
                    &[],
                )
                .map_err(|e| failed(e.to_string()))?;
            }
            Service::Proxy | Service::Vrrp => {
                let (bin, config) = match svc {
                    Service::Proxy => ("proxy", render::PROXY_CONFIG_PATH),
                    _ => ("vrrp", render::VRRP_CONFIG_PATH),
                };
                let bin = ctx.bin_dir.join(bin);
                let bin = bin.to_string_lossy();
                // Validate first, as `nginx -t` before a start: a config error is reported as
                // such rather than as a daemon that died.
                sys::run(self.command(&bin).args(["--check", "--config", config]))
                    .map_err(|e| failed(e.to_string()))?;
                let log = svc.log();
                let dir = Path::new(log)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // setsid: its own session, so it outlives `lab` and ignores its terminal.
                let script = format!(
                    "mkdir -p {dir} /run/lab; setsid \"$0\" --config \"$1\" </dev/null >>{log} 2>&1 & echo $! >{}",
                    svc.pidfile()
                );
                sys::run(self.command("sh").args(["-c", &script, &bin, config]))
                    .map_err(|e| failed(e.to_string()))?;
            }
        }
        // Daemons write their pid file a moment after forking; a process that dies right away
        // (bad config, port in use) is reported with its log.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = self.service_pid(svc) {
                thread::sleep(Duration::from_millis(150));
                if sys::pid_alive(pid) {
                    return Ok(pid);
                }
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "not running after start; last lines of {}:\n{}",
                    svc.log(),
                    self.log_tail(svc, 10)
                )));
            }
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// Stops `svc` (its unit's stop signal, SIGKILL after 3 s); false if it was not running.
    pub fn stop(&self, svc: Service) -> bool {
        let Some(pid) = self.service_pid(svc) else {
            return false;
        };
        sys::stop_with(&[pid], svc.stop_signal(), Duration::from_secs(3));
        let _ = std::fs::remove_file(self.path(svc.pidfile()));
        true
    }

    /// The last `n` lines of the service's log.
    pub fn log_tail(&self, svc: Service, n: usize) -> String {
        let text = self.read_file(svc.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// This host's ed25519 host public key ("ssh-ed25519 AAAA...").
    pub fn host_key(&self) -> Option<String> {
        self.read_file("/etc/ssh/ssh_host_ed25519_key.pub")
            .and_then(|k| {
                let mut it = k.split_whitespace();
                Some(format!("{} {}", it.next()?, it.next()?))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_a_host_writes_is_overlaid() {
        // Login users (/etc/passwd, /home), keys (/root), configs, logs, uploads.
        for d in [
            "/etc",
            "/var",
            "/root",
            "/home",
            "/usr/local",
            "/opt",
            "/srv",
            "/tmp",
        ] {
            assert!(OVERLAID.contains(&d), "{d}");
        }
    }

    #[test]
    fn services_per_role() {
        assert_eq!(
            Service::for_role(Role::Balancer),
            &[Service::Sshd, Service::Proxy, Service::Vrrp]
        );
        assert_eq!(
            Service::for_role(Role::Backend),
            &[Service::Sshd, Service::Httpd]
        );
        assert_eq!(Service::parse("vrrp"), Some(Service::Vrrp));
        assert_eq!(Service::parse("nginx"), None);
    }

    #[test]
    fn paths_resolve_through_the_keepers_root() {
        let h = HostHandle {
            host: Host {
                name: "s".into(),
                role: Role::Backend,
                address: "10.0.0.1".parse().unwrap(),
                interface: "eth0".into(),
                priority: None,
                page: Some("x".into()),
            },
            ns: "lab-s".into(),
            keeper: 1234,
        };
        assert_eq!(h.path("/etc/x"), PathBuf::from("/proc/1234/root/etc/x"));
        let c = h.command("ls");
        assert_eq!(sys::describe(&c), "nsenter -t 1234 -m -n -u -p -- ls");
    }
}
