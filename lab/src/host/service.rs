//! The services of a lab host: which there are, and starting, stopping and reading the logs of
//! them, through the host's systemd (`systemctl`, the journal) or, on a host without one, as
//! the units would (pid files, the unit's stop signal, log files).

use std::fmt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use provision::inventory::Role;
use provision::render;

use super::{Context, HostHandle};
use crate::error::{LabError, Result};
use crate::state::Init;
use crate::sys;

/// A service a lab host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sshd,
    Httpd,
    Proxy,
    Vrrp,
    /// BIRD on an anycast balancer: announces what vrrp puts on vip0 to the router.
    Bird,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Sshd,
        Service::Httpd,
        Service::Proxy,
        Service::Vrrp,
        Service::Bird,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Sshd => "sshd",
            Service::Httpd => "httpd",
            Service::Proxy => "proxy",
            Service::Vrrp => "vrrp",
            Service::Bird => "bird",
        }
    }

    pub fn parse(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The services of a role, in start order (proxy before vrrp: vrrp tracks the proxy).
    pub fn for_role(role: Role) -> &'static [Service] {
        Service::for_host(role, false)
    }

    /// The services of a host, in start order; an anycast balancer also runs BIRD, started
    /// before vrrp so that the VIPs are announced as soon as vrrp puts them on vip0.
    pub fn for_host(role: Role, anycast: bool) -> &'static [Service] {
        match (role, anycast) {
            (Role::Balancer, false) => &[Service::Sshd, Service::Proxy, Service::Vrrp],
            (Role::Balancer, true) => {
                &[Service::Sshd, Service::Proxy, Service::Bird, Service::Vrrp]
            }
            (Role::Backend, _) => &[Service::Sshd, Service::Httpd],
        }
    }

    /// Its systemd unit (Debian's names for sshd and Apache).
    pub fn unit(self) -> &'static str {
        match self {
            Service::Sshd => "ssh",
            Service::Httpd => "apache2",
            Service::Proxy => "proxy",
            Service::Vrrp => "vrrp",
            Service::Bird => "bird",
        }
    }

    /// Pid file inside a host without systemd.
    fn pidfile(self) -> &'static str {
        match self {
            Service::Sshd => "/run/sshd.pid",
            Service::Httpd => "/run/apache2/apache2.pid",
            Service::Proxy => "/run/lab/proxy.pid",
            Service::Vrrp => "/run/lab/vrrp.pid",
            Service::Bird => "/run/bird/bird.pid",
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

    /// Its log inside a host without systemd (with systemd: the journal).
    pub fn log(self) -> &'static str {
        match self {
            Service::Sshd => "/var/log/sshd.log",
            Service::Httpd => "/var/log/apache2/error.log",
            Service::Proxy => "/var/log/proxy/proxy.log",
            Service::Vrrp => "/var/log/vrrp/vrrp.log",
            // bird.conf logs to syslog, which a host without systemd does not run.
            Service::Bird => "/var/log/bird.log",
        }
    }
}

impl HostHandle {
    /// Starts `svc` unless it already runs; returns its pid.
    pub fn start(&self, svc: Service, ctx: &Context<'_>) -> Result<i32> {
        if let Some(pid) = self.service_pid(svc) {
            return Ok(pid);
        }
        match self.init {
            Init::Systemd => self.systemctl_start(svc, "start"),
            Init::None => self.start_plain(svc, ctx),
        }
    }

    /// Starts `svc` and has it start at every boot (`systemctl enable --now`; without systemd
    /// the same as [`HostHandle::start`]).
    pub fn enable(&self, svc: Service, ctx: &Context<'_>) -> Result<i32> {
        match self.init {
            Init::Systemd => self.systemctl_start(svc, "enable"),
            Init::None => self.start(svc, ctx),
        }
    }

    fn start_plain(&self, svc: Service, ctx: &Context<'_>) -> Result<i32> {
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
            Service::Bird => {
                // As Debian's unit: the config checked first, then the daemon (it forks).
                self.sh(
                    "mkdir -p /run/bird && bird -p -c /etc/bird/bird.conf && bird -c /etc/bird/bird.conf -s /run/bird/bird.ctl -P /run/bird/bird.pid",
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

    /// Stops `svc` (with systemd: `systemctl stop`; without: its unit's stop signal, SIGKILL
    /// after 3 s); false if it was not running.
    pub fn stop(&self, svc: Service) -> bool {
        let Some(pid) = self.service_pid(svc) else {
            return false;
        };
        if self.init == Init::Systemd {
            return self.systemctl(&["stop", svc.unit()]).is_ok();
        }
        sys::stop_with(&[pid], svc.stop_signal(), Duration::from_secs(3));
        let _ = std::fs::remove_file(self.path(svc.pidfile()));
        true
    }

    /// The last `n` lines of the service's log (with systemd: its journal).
    pub fn log_tail(&self, svc: Service, n: usize) -> String {
        if self.init == Init::Systemd {
            let unit = format!("{}.service", svc.unit());
            let lines = n.to_string();
            return sys::run(self.command("journalctl").args([
                "--no-pager",
                "-o",
                "short-precise",
                "-n",
                &lines,
                "-u",
                &unit,
            ]))
            .unwrap_or_else(|e| e.to_string())
            .trim_end()
            .to_string();
        }
        let text = self.read_file(svc.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `systemctl ARGS` inside the host, to completion.
    pub fn systemctl(&self, args: &[&str]) -> Result<String> {
        sys::run(self.command("systemctl").args(args))
    }

    /// `systemctl start` (or `enable --now`) of `svc`; its main pid once active, or the unit's
    /// status and journal as the error.
    fn systemctl_start(&self, svc: Service, how: &str) -> Result<i32> {
        let unit = svc.unit();
        let res = match how {
            "enable" => self.systemctl(&["enable", "--now", "--quiet", unit]),
            _ => self.systemctl(&["start", unit]),
        };
        let failed = |detail: String| LabError::ServiceFailed {
            host: self.host.name.clone(),
            service: svc.name().into(),
            detail,
        };
        if let Err(e) = res {
            return Err(failed(format!("{e}\n{}", self.log_tail(svc, 10))));
        }
        // Type=forking units (Apache) write their pid file a moment after start returns.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = self.service_pid(svc) {
                return Ok(pid);
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "no main process after `systemctl {how}`; its journal:\n{}",
                    self.log_tail(svc, 10)
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pid of `svc` (outside the host) if it is running.
    pub fn service_pid(&self, svc: Service) -> Option<i32> {
        let local: i32 = match self.init {
            Init::Systemd => self
                .systemctl(&["show", "-p", "MainPID", "--value", svc.unit()])
                .ok()?
                .trim()
                .parse()
                .ok()
                .filter(|&p| p > 0)?,
            // The pid file holds the pid as the host sees it (its own PID namespace).
            Init::None => self.read_file(svc.pidfile())?.trim().parse().ok()?,
        };
        let pid = sys::outer_pid(self.keeper, local)?;
        (sys::pid_alive(pid) && sys::pid_in_netns(pid, &self.ns)).then_some(pid)
    }
}
