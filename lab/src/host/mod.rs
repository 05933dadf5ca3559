//! A lab host: a network namespace plus a long-lived "keeper" process ([`keeper`]) holding the
//! host's own mount, PID and UTS namespaces, in which /etc, /var, /root, /usr/local, /opt and
//! /srv are overlays and /run and /tmp are its own. With systemd (the default) the keeper is the
//! host's systemd, booted on a private /dev in a cgroup tree of its own ([`boot`] writes what it
//! boots); without, it is a shell and the lab starts the services itself ([`service`]).
//! Commands run inside with `nsenter -t KEEPER`, files are read and written from outside
//! through `/proc/KEEPER/root`, which resolves paths in the keeper's mount namespace: the
//! host's writes (configs, pages, logs, host keys) never reach the machine.

pub mod boot;
pub mod keeper;
pub mod service;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use provision::inventory::{Host, Inventory, Role, Ssh};
use provision::render;

pub use keeper::{OVERLAID, OVERLAID_SYSTEMD};
pub use service::Service;

use crate::error::{LabError, Result};
use crate::state::Init;
use crate::sys;

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
    pub init: Init,
    /// The keeper's console log (outside the host), if known.
    pub console: Option<PathBuf>,
    /// A balancer that announces the VIPs over BGP (runs BIRD).
    pub anycast: bool,
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

    /// Writes a file only root may read, created with that mode (never readable in between).
    pub fn write_secret(&self, path: &str, contents: &str) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let full = self.path(path);
        let ctx = |what: &str| format!("{what} {path} in {}", self.host.name);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| LabError::io(ctx("create dir for"), e))?;
        }
        let _ = std::fs::remove_file(&full);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&full)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .map_err(|e| LabError::io(ctx("write"), e))
    }

    /// A command that runs inside the host (its network, mount, UTS, IPC and PID namespaces),
    /// with the capabilities the host's own processes lack dropped from its bounding set too:
    /// `lab exec server1 -- chronyd` must not be able to set the machine's clock either.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.keeper.to_string(), "-m", "-n", "-u", "-i", "-p"])
            .args(["--", "setpriv"])
            .arg(format!("--bounding-set={}", keeper::DROPPED_CAPS))
            .arg(program);
        c
    }

    /// `sh -c SCRIPT` inside the host, to completion.
    pub fn sh(&self, script: &str, args: &[&str]) -> Result<String> {
        sys::run(self.command("sh").args(["-c", script, "sh"]).args(args))
    }

    /// The services this host runs.
    pub fn services(&self) -> &'static [Service] {
        Service::for_host(self.host.role, self.anycast)
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
                // What provision makes on the host: a random admin token, root's, 0600.
                self.write_secret(render::PROXY_TOKEN_PATH, &render::admin_token(&random()?))?;
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

    /// Before a systemd host's first boot: its name (unless `bare`) and machine id, sshd's address, the boot
    /// target, and the machine's own units disabled and masked (see [`boot`]).
    /// A `bare` host keeps the machine's /etc/hostname, as a fresh server keeps its
    /// installer's: naming it is `provision`'s job.
    /// `gateway`: its default route, if the topology has one.
    pub fn prepare_boot(
        &self,
        ssh: &Ssh,
        prefix: u8,
        gateway: Option<std::net::Ipv4Addr>,
        bare: bool,
    ) -> Result<()> {
        if !bare {
            self.write_file("/etc/hostname", &format!("{}\n", self.host.name), 0o644)?;
        }
        self.write_file("/etc/machine-id", &(boot::new_machine_id()? + "\n"), 0o444)?;
        self.write_file(
            boot::SSHD_DROPIN,
            &boot::sshd_dropin(self.host.address, ssh.port),
            0o644,
        )?;
        self.write_file(boot::CHRONY_DROPIN, boot::chrony_dropin(), 0o644)?;
        let hosts = self.read_file("/etc/hosts").unwrap_or_default();
        self.write_file(
            "/etc/hosts",
            &boot::etc_hosts(&hosts, &self.host.name),
            0o644,
        )?;
        self.write_file(
            boot::INTERFACES,
            &boot::interfaces(&self.host.interface, self.host.address, prefix, gateway),
            0o644,
        )?;
        boot::fresh_state(&self.path("/"))?;
        let etc = boot::etc_systemd(&self.path("/"));
        boot::apply(&etc, &boot::unit_plan(&boot::machine_links(&etc)))?;
        boot::enable_networking(&etc)
    }

    /// Waits until the host's systemd has finished booting ("running", or "degraded" with its
    /// failed units named in the error).
    pub fn wait_booted(&self, timeout: std::time::Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if !self.alive() {
                return Err(LabError::Other(format!(
                    "{}: systemd exited while booting; its console:\n{}",
                    self.host.name,
                    self.console_tail()
                )));
            }
            // Non-zero until it is "running"; the output says where it is.
            let out = self
                .command("systemctl")
                .args(["is-system-running"])
                .output();
            if let Ok(o) = out {
                last = String::from_utf8_lossy(&o.stdout).trim().to_string();
            }
            match last.as_str() {
                "running" => return Ok(()),
                "degraded" => {
                    let failed = self
                        .systemctl(&["list-units", "--failed", "--no-legend", "--plain"])
                        .unwrap_or_default();
                    return Err(LabError::Other(format!(
                        "{} booted degraded; failed units:\n{failed}",
                        self.host.name
                    )));
                }
                _ => {}
            }
            if std::time::Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!(
                        "systemd on {} to finish booting (last state {last:?})",
                        self.host.name
                    ),
                    secs: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The last lines of the host's console (a systemd keeper's stderr), kept next to its
    /// overlays in the lab's state directory; empty if unknown.
    pub fn console_tail(&self) -> String {
        self.console
            .as_deref()
            .map(|p| keeper::tail(p, 15))
            .unwrap_or_default()
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

/// 32 bytes from the kernel's random source.
fn random() -> Result<[u8; 32]> {
    use std::io::Read as _;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| LabError::io("read /dev/urandom", e))?;
    Ok(buf)
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
        assert!(
            !OVERLAID_SYSTEMD.contains(&"/tmp"),
            "systemd hosts get a fresh /tmp"
        );
        assert_eq!(OVERLAID_SYSTEMD.len(), OVERLAID.len() - 1);
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
        assert_eq!(
            Service::for_host(Role::Balancer, true),
            &[Service::Sshd, Service::Proxy, Service::Bird, Service::Vrrp]
        );
        assert_eq!(Service::parse("vrrp"), Some(Service::Vrrp));
        assert_eq!(Service::parse("bird"), Some(Service::Bird));
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
            init: Init::Systemd,
            console: None,
            anycast: false,
        };
        assert_eq!(h.path("/etc/x"), PathBuf::from("/proc/1234/root/etc/x"));
        let c = h.command("ls");
        assert_eq!(
            sys::describe(&c),
            "nsenter -t 1234 -m -n -u -i -p -- setpriv --bounding-set=-sys_time,-sys_module,-sys_boot ls"
        );
    }
}
