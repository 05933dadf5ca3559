//! A lab that is up: its hosts, and what can be done to them (services, links, reboots,
//! commands), and what can be seen (status table, VIP holders, readiness).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use provision::inventory::{Inventory, Role};

use super::{Lab, BOOT_TIMEOUT, POWEROFF_GRACE};
use crate::cgroup;
use crate::error::{LabError, Result};
use crate::host::keeper::{self, Boot, Keeper};
use crate::host::{Context, HostHandle, Service};
use crate::probe;
use crate::state::{Init, State};
use crate::sys;
use crate::topology::{self, Plan};

/// A lab that is up.
#[derive(Debug, Clone)]
pub struct Running {
    pub lab: Lab,
    pub state: State,
    pub inventory: Inventory,
    pub plan: Plan,
}

impl Running {
    pub fn hosts(&self) -> Vec<HostHandle> {
        self.lab.handles(&self.inventory, &self.state)
    }

    pub fn host(&self, name: &str) -> Result<HostHandle> {
        self.hosts()
            .into_iter()
            .find(|h| h.host.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self
                    .inventory
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect();
                LabError::UnknownHost(name.to_string(), names.join(", "))
            })
    }

    pub fn context(&self) -> Context<'_> {
        Context {
            inventory: &self.inventory,
            bin_dir: &self.lab.bin_dir,
        }
    }

    /// The services `which` names on `host` (all of them for `None`), checked to exist there.
    fn select(&self, host: &HostHandle, which: Option<Service>) -> Result<Vec<Service>> {
        match which {
            None => Ok(host.services().to_vec()),
            Some(s) if host.services().contains(&s) => Ok(vec![s]),
            Some(s) => Err(LabError::UnknownService {
                host: host.host.name.clone(),
                service: s.name().into(),
                available: host
                    .services()
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Starts services (in start order); returns each with its pid.
    pub fn start(&self, host: &str, which: Option<Service>) -> Result<Vec<(Service, i32)>> {
        let h = self.host(host)?;
        let ctx = self.context();
        self.select(&h, which)?
            .into_iter()
            .map(|s| h.start(s, &ctx).map(|pid| (s, pid)))
            .collect()
    }

    /// Stops services (proxy before vrrp: the order in which the seed's procedure stops nginx
    /// then keepalived, so a step reproduces its transitions); returns each with whether it was
    /// running.
    pub fn stop(&self, host: &str, which: Option<Service>) -> Result<Vec<(Service, bool)>> {
        let h = self.host(host)?;
        Ok(self
            .select(&h, which)?
            .into_iter()
            .map(|s| (s, h.stop(s)))
            .collect())
    }

    /// Reboots a systemd host: powers it off (its units stop in order, vrrp sends its
    /// priority-0 advert, ifupdown takes its address down), then boots a new systemd on the
    /// same overlays in the same network namespace and cgroups. What was enabled comes back by
    /// itself. Returns the new keeper's pid (the state file is updated).
    pub fn reboot(&self, host: &str) -> Result<i32> {
        let h = self.host(host)?;
        if h.init != Init::Systemd {
            return Err(LabError::Other(format!(
                "{host} runs without systemd (lab up --init none): nothing to reboot"
            )));
        }
        if !keeper::poweroff(&[h.keeper], POWEROFF_GRACE) {
            eprintln!("lab: {host} did not power off in time and was killed");
        }
        // A real machine's interfaces start without addresses at boot; this network namespace
        // outlives its systemd, and after a crash (no ifdown) the old address would make the
        // host's ifup fail.
        sys::ip(&["-n", &h.ns, "addr", "flush", "dev", &h.host.interface])?;
        let layout = cgroup::Layout::detect().map_err(LabError::Other)?;
        let dirs = layout.host_dirs(&self.lab.names.id, host);
        for d in &dirs {
            cgroup::clear_children(d)?;
        }
        let boot = Boot::Systemd {
            cgroups: dirs,
            hybrid: layout.is_hybrid(),
        };
        let k = Keeper::spawn(&h.ns, host, &self.lab.dir.host_dir(host), &boot)?;
        let pid = k.pid;
        let mut state: State = self
            .lab
            .dir
            .load()?
            .ok_or_else(|| LabError::NotUp(self.lab.names.id.clone()))?;
        state.keepers.insert(host.to_string(), pid);
        self.lab.dir.save(&state)?;
        k.boot()?;
        HostHandle { keeper: pid, ..h }.wait_booted(BOOT_TIMEOUT)?;
        Ok(pid)
    }

    /// Cuts (`up == false`) or heals a host's link.
    pub fn set_link(&self, host: &str, up: bool) -> Result<()> {
        let h = self.host(host)?;
        let node = self
            .plan
            .node(&h.host.name)
            .ok_or_else(|| LabError::UnknownHost(host.into(), String::new()))?;
        topology::set_port(node, up)
    }

    /// The first VIP of the inventory: the one scenarios and benches aim at.
    pub fn first_vip(&self) -> Result<Ipv4Addr> {
        self.inventory
            .network
            .vips
            .first()
            .copied()
            .ok_or_else(|| LabError::Other("no VIP in the inventory".into()))
    }

    /// For each VIP, the balancers that have it configured.
    pub fn vip_holders(&self) -> Vec<(Ipv4Addr, Vec<String>)> {
        let per_host: Vec<(String, Vec<Ipv4Addr>)> = self
            .inventory
            .balancers()
            .map(|b| {
                (
                    b.name.clone(),
                    topology::addresses(&self.lab.names.host_ns(&b.name)),
                )
            })
            .collect();
        self.inventory
            .network
            .vips
            .iter()
            .map(|&v| {
                let holders = per_host
                    .iter()
                    .filter(|(_, addrs)| addrs.contains(&v))
                    .map(|(n, _)| n.clone())
                    .collect();
                (v, holders)
            })
            .collect()
    }

    /// Human-readable status table.
    pub fn status(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "lab {:?} is up, hosts with init {} (state in {})",
            self.lab.names.id,
            self.state.init,
            self.lab.dir.dir.display()
        );
        let _ = writeln!(
            s,
            "{:<9} {:<9} {:<16} {:<5} {:<8} SERVICES (pid)",
            "HOST", "ROLE", "ADDRESS", "LINK", "KEEPER"
        );
        for h in self.hosts() {
            let link = self
                .plan
                .node(&h.host.name)
                .map(|n| if topology::port_is_up(n) { "up" } else { "CUT" })
                .unwrap_or("?");
            let keeper = if h.alive() {
                h.keeper.to_string()
            } else {
                "DEAD".into()
            };
            let services: Vec<String> = h
                .services()
                .iter()
                .map(|&svc| match (h.service_pid(svc), svc) {
                    (Some(pid), Service::Vrrp) => match self.vrrp_state(&h) {
                        Some(st) => format!("{svc} {pid} {st}"),
                        None => format!("{svc} {pid}"),
                    },
                    (Some(pid), _) => format!("{svc} {pid}"),
                    (None, _) => format!("{svc} stopped"),
                })
                .collect();
            let _ = writeln!(
                s,
                "{:<9} {:<9} {:<16} {:<5} {:<8} {}",
                h.host.name,
                h.host.role.to_string(),
                h.host.address.to_string(),
                link,
                keeper,
                services.join(", ")
            );
        }
        let c = &self.plan.client;
        let _ = writeln!(
            s,
            "{:<9} {:<9} {:<16} {:<5} {:<8} (netns {})",
            "client",
            "client",
            c.address.to_string(),
            if topology::port_is_up(c) { "up" } else { "CUT" },
            "-",
            c.ns
        );
        if let Some(r) = &self.plan.router {
            let _ = writeln!(
                s,
                "{:<9} {:<9} {:<16} {:<5} {:<8} FRR {} (netns {})",
                "router",
                "router",
                r.address.to_string(),
                "up",
                self.state
                    .router_keeper
                    .map_or("-".to_string(), |p| p.to_string()),
                self.frr_summary(),
                r.ns
            );
        }
        for (vip, holders) in self.vip_holders() {
            let who = match (holders.len(), &self.plan.router) {
                (0, _) => "nobody".to_string(),
                (_, Some(r)) => format!(
                    "{}; router nexthops: {}",
                    holders.join(" and "),
                    self.nexthop_names(&crate::router::nexthops(&r.ns, vip))
                ),
                (1, None) => holders.join(""),
                (_, None) => format!("{} (SPLIT BRAIN)", holders.join(" and ")),
            };
            let _ = writeln!(s, "VIP {vip:<15} held by {who}");
        }
        s
    }

    /// "zebra 12, bfdd 15, bgpd 17" (pids inside the router) or what is not running.
    fn frr_summary(&self) -> String {
        let Some(k) = self.state.router_keeper else {
            return "not started".into();
        };
        crate::router::DAEMONS
            .iter()
            .map(|d| match crate::router::daemon_pid(k, d) {
                Some(p) => format!("{d} {p}"),
                None => format!("{d} stopped"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Nexthop addresses by host name ("server1, server2"; "none" when empty).
    pub fn nexthop_names(&self, hops: &[Ipv4Addr]) -> String {
        if hops.is_empty() {
            return "none".into();
        }
        hops.iter()
            .map(|a| {
                self.inventory
                    .hosts
                    .iter()
                    .find(|h| h.address == *a)
                    .map_or(a.to_string(), |h| h.name.clone())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// "MASTER/150" from `vrrp status` (state and effective priority of the first instance).
    fn vrrp_state(&self, h: &HostHandle) -> Option<String> {
        let bin = self.lab.bin_dir.join("vrrp");
        let out = sys::run(h.command(&bin.to_string_lossy()).args([
            "status",
            "--config",
            provision::render::VRRP_CONFIG_PATH,
        ]))
        .ok()?;
        parse_vrrp_status(&out)
    }

    /// Runs `args` inside `target` (a host, or "client") with inherited stdio; returns its exit
    /// code.
    pub fn exec(&self, target: &str, args: &[String]) -> Result<i32> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| LabError::Other("exec needs a command".into()))?;
        let mut cmd = if target == "client" {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.plan.client.ns, program]);
            c
        } else if let (true, Some(k)) = (target == "router", self.state.router_keeper) {
            crate::router::command(k, program)
        } else {
            self.host(target)?.command(program)
        };
        cmd.args(rest);
        let status = cmd.status().map_err(|source| LabError::Spawn {
            command: sys::describe(&cmd),
            source,
        })?;
        Ok(status.code().unwrap_or(128))
    }

    /// Waits until every running service answers from the client: backends' HTTP, balancers'
    /// proxies, every sshd, and (if vrrp runs) a VIP holder.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let mut checks: Vec<(String, SocketAddr, bool)> = Vec::new();
        let mut vrrp_running = false;
        for h in self.hosts() {
            if h.service_pid(Service::Sshd).is_some() {
                checks.push((
                    format!("sshd on {}", h.host.name),
                    (h.host.address, self.inventory.ssh.port).into(),
                    false,
                ));
            }
            let web = match h.host.role {
                Role::Backend => h.service_pid(Service::Httpd).is_some(),
                Role::Balancer => h.service_pid(Service::Proxy).is_some(),
            };
            if web {
                checks.push((
                    format!("HTTP on {}", h.host.name),
                    (h.host.address, 80).into(),
                    true,
                ));
            }
            vrrp_running |= h.service_pid(Service::Vrrp).is_some();
        }
        let vip = self.inventory.network.vips.first().copied();
        let deadline = Instant::now() + timeout;
        loop {
            let pending: Vec<String> = probe::in_netns(&self.plan.client.ns, {
                let checks = checks.clone();
                move || {
                    checks
                        .into_iter()
                        .filter(|(_, addr, http)| {
                            if *http {
                                !matches!(
                                    probe::http_get(*addr, Duration::from_millis(500)),
                                    Ok((200, _))
                                )
                            } else {
                                !probe::tcp_open(*addr, Duration::from_millis(500))
                            }
                        })
                        .map(|(what, _, _)| what)
                        .collect()
                }
            })?;
            let mut pending = pending;
            if vrrp_running {
                if let Some(v) = vip {
                    if self
                        .vip_holders()
                        .iter()
                        .all(|(a, h)| *a != v || h.is_empty())
                    {
                        pending.push(format!("a VRRP master for {v}"));
                    }
                }
            }
            if let (Some(r), Some(v)) = (&self.plan.router, vip) {
                // Every balancer that announces the VIP is one of the router's paths to it.
                let want: Vec<Ipv4Addr> = self
                    .inventory
                    .balancers()
                    .filter(|b| topology::addresses(&self.lab.names.host_ns(&b.name)).contains(&v))
                    .map(|b| b.address)
                    .collect();
                let have = crate::router::nexthops(&r.ns, v);
                if want.iter().any(|a| !have.contains(a)) {
                    pending.push(format!(
                        "the router's route to {v} via {} (has {})",
                        self.nexthop_names(&want),
                        self.nexthop_names(&have)
                    ));
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: pending.join(", "),
                    secs: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The first instance line of `vrrp status`:
/// "VI_1 MASTER vrid 51 on ens33: priority 150 (base 150) ..." -> "MASTER/150".
fn parse_vrrp_status(out: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let state = words.get(1)?;
        let prio_at = words.iter().position(|w| *w == "priority")?;
        let prio = words.get(prio_at + 1)?;
        (words.get(2) == Some(&"vrid")).then(|| format!("{state}/{prio}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrrp_status_line() {
        let out = "router_id server1 pid 9927 (running) config /etc/vrrp/vrrp.toml\n\
                   VI_1 MASTER vrid 51 on ens33: priority 90 (base 150) master 172.16.249.101 vips x\n";
        assert_eq!(parse_vrrp_status(out).as_deref(), Some("MASTER/90"));
        assert_eq!(parse_vrrp_status("garbage\n"), None);
    }
}
