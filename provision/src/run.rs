//! `provision lab.toml`: one thread and one SSH session per host; balancers take turns for
//! their deployment steps ([`crate::rollout`]: the backup first, the master only after the
//! backup is healthy and the VIPs answer, and no further turn after a failure).

use std::path::PathBuf;
use std::thread;

use crate::check::Probe;
use crate::exec::{Binaries, Executor, Status};
use crate::inventory::{Host, Inventory, Role};
use crate::os;
use crate::out;
use crate::report::{self, HostSummary};
use crate::rollout::{Rollout, TurnGuard};
use crate::ssh::{Ssh, SshOptions};
use crate::steps;
use crate::units;

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub ssh: SshOptions,
    pub dry_run: bool,
    /// Only these hosts (all when empty).
    pub hosts: Vec<String>,
    /// Where the `proxy` and `vrrp` binaries are.
    pub bin_dir: PathBuf,
    /// Seconds the host waits for the address change's confirmation (the plan's otherwise).
    pub confirm_secs: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--hosts names {0:?}, which lab.toml does not have (hosts: {1})")]
    UnknownHost(String, String),
    #[error("cannot read the binaries to deploy: {0} (build them first: cargo build --bins)")]
    Binaries(std::io::Error),
    #[error(
        "this inventory is marked [lab]: its hosts exist only inside the lab's network \
         namespaces, and from here {host} would be reached {route}, not through the lab; run \
         `lab provision [flags]` (which runs provision in the lab's client namespace), or remove \
         [lab] from a copy meant for real servers"
    )]
    OutsideLab { host: String, route: String },
}

/// For an inventory marked `[lab]`: refuses unless this process is on the lab's network, that
/// is, unless the route to the first host leaves from an address inside `[network]`. A UDP
/// `connect` only looks the route up; it sends nothing.
pub fn check_inside_lab(inv: &Inventory) -> Result<(), RunError> {
    let Some(first) = inv.hosts.first().filter(|_| inv.lab) else {
        return Ok(());
    };
    let route = std::net::UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| {
            s.connect((first.address, inv.ssh.port))?;
            s.local_addr()
        })
        .map(|a| a.ip());
    match route {
        Ok(std::net::IpAddr::V4(local)) if inv.network.contains(local) => Ok(()),
        Ok(local) => Err(RunError::OutsideLab {
            host: first.address.to_string(),
            route: format!("from {local} (this machine's own network)"),
        }),
        Err(e) => Err(RunError::OutsideLab {
            host: first.address.to_string(),
            route: format!("by no route ({e})"),
        }),
    }
}

/// Provisions the selected hosts in parallel; returns one summary per host, in file order.
pub fn run(inv: &Inventory, opts: &RunOptions) -> Result<Vec<HostSummary>, RunError> {
    check_inside_lab(inv)?;
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    for h in &opts.hosts {
        if !names.contains(&h.as_str()) {
            return Err(RunError::UnknownHost(h.clone(), names.join(", ")));
        }
    }
    let selected: Vec<&Host> = inv
        .hosts
        .iter()
        .filter(|h| opts.hosts.is_empty() || opts.hosts.contains(&h.name))
        .collect();
    let binaries = if selected.iter().any(|h| h.role == Role::Balancer) {
        Binaries::load(&opts.bin_dir, &["proxy", "vrrp"]).map_err(RunError::Binaries)?
    } else {
        Binaries::default()
    };
    let mut balancers: Vec<&Host> = selected
        .iter()
        .copied()
        .filter(|h| h.role == Role::Balancer)
        .collect();
    // Backup (lowest priority) first; the master last, so it hands over only to a ready peer.
    balancers.sort_by_key(|h| h.priority.unwrap_or(0));
    let turns = Rollout::new(balancers.iter().map(|h| h.name.clone()).collect());
    let summaries = thread::scope(|s| {
        let handles: Vec<_> = selected
            .iter()
            .map(|h| {
                let (turns, binaries) = (&turns, &binaries);
                s.spawn(move || host_run(inv, h, opts, binaries, turns))
            })
            .collect();
        handles
            .into_iter()
            .zip(&selected)
            .map(|(j, h)| {
                j.join().unwrap_or_else(|_| HostSummary {
                    host: h.name.clone(),
                    address: h.address.to_string(),
                    failed: 1,
                    ..HostSummary::default()
                })
            })
            .collect()
    });
    Ok(summaries)
}

fn host_run(
    inv: &Inventory,
    host: &Host,
    opts: &RunOptions,
    binaries: &Binaries,
    turns: &Rollout,
) -> HostSummary {
    let _turn = TurnGuard {
        rollout: turns,
        name: &host.name,
    };
    let name = host.name.as_str();
    let mut sum = HostSummary {
        host: host.name.clone(),
        address: host.address.to_string(),
        ..HostSummary::default()
    };
    let addr = host.address.to_string();
    let mut ssh = match Ssh::connect(&addr, &opts.ssh) {
        Ok(s) => s,
        Err(e) => {
            out::line(name, &format!("UNREACHABLE: {e}"));
            sum.unreachable = Some(e.to_string());
            turns.failed(name, &format!("unreachable: {e}"));
            return sum;
        }
    };
    let fail = |sum: &mut HostSummary, step: &str, f: crate::exec::Failure| {
        out::line(name, &report::failure_text(name, step, &f));
        sum.failed += 1;
    };
    let os = match ssh.run("cat /etc/os-release") {
        Ok(o) if o.success() => match os::detect(&o.stdout) {
            Ok(os) => os,
            Err(e) => {
                fail(
                    &mut sum,
                    "os detection",
                    crate::exec::Failure {
                        command: "cat /etc/os-release".into(),
                        exit_code: Some(0),
                        stderr: e.to_string(),
                    },
                );
                return sum;
            }
        },
        Ok(o) => {
            fail(
                &mut sum,
                "os detection",
                crate::exec::Failure {
                    command: "cat /etc/os-release".into(),
                    exit_code: Some(o.status),
                    stderr: o.stderr.trim().to_string(),
                },
            );
            return sum;
        }
        Err(e) => {
            out::line(name, &format!("UNREACHABLE: {e}"));
            sum.unreachable = Some(e.to_string());
            turns.failed(name, &format!("unreachable: {e}"));
            return sum;
        }
    };
    sum.os = Some(os.family.name().to_string());
    out::line(
        name,
        &format!(
            "connected as {}: {} ({}){}",
            opts.ssh.user,
            os.pretty_name,
            os.family,
            if opts.dry_run { ", dry run" } else { "" }
        ),
    );
    if let Some(w) = os.warning() {
        out::line(name, &format!("WARNING: {w}"));
    }
    let systemd = systemd_version(&mut ssh, os.family, name);
    let plan = match steps::plan_for(inv, host, os.family, systemd) {
        Ok(mut p) => {
            if let Some(secs) = opts.confirm_secs {
                p.set_confirm_secs(secs);
            }
            p
        }
        Err(e) => {
            fail(
                &mut sum,
                "plan",
                crate::exec::Failure {
                    command: "render configuration".into(),
                    exit_code: None,
                    stderr: e.to_string(),
                },
            );
            return sum;
        }
    };
    run_plan(&plan, &mut ssh, binaries, opts, turns, &mut sum);
    ssh.cleanup();
    sum
}

/// The host's systemd version from `systemctl --version`; the family's own if that cannot be
/// read (said so: the units are then rendered for a version the host may not have).
fn systemd_version(ssh: &mut Ssh, family: os::Family, name: &str) -> u32 {
    let read = ssh
        .run("systemctl --version")
        .ok()
        .filter(|o| o.success())
        .and_then(|o| units::parse_version(&o.stdout));
    match read {
        Some(v) => {
            out::line(name, &format!("systemd {v}"));
            v
        }
        None => {
            let v = family.default_systemd();
            out::line(
                name,
                &format!("WARNING: `systemctl --version` unreadable; units rendered for {family}'s systemd {v}"),
            );
            v
        }
    }
}

fn run_plan(
    plan: &crate::plan::Plan,
    ssh: &mut Ssh,
    binaries: &Binaries,
    opts: &RunOptions,
    turns: &Rollout,
    sum: &mut HostSummary,
) {
    let name = plan.host.as_str();
    let mut ex = if opts.dry_run {
        Executor::dry_run(Probe::new(ssh), binaries)
    } else {
        Executor::live(ssh, binaries)
    };
    let mut in_turn = false;
    for step in &plan.steps {
        if step.serial && !in_turn && !opts.dry_run {
            out::line(name, "waiting for this balancer's turn");
            if let Err(why) = turns.wait(name) {
                out::line(name, &format!("SKIPPED (balancer rollout stopped): {why}"));
                sum.skipped = Some(why);
                return;
            }
            in_turn = true;
        }
        if !step.serial && in_turn {
            // Every serial step passed: the daemons are healthy and the VIPs answer.
            turns.healthy(name);
            in_turn = false;
        }
        let r = ex.run_step(step);
        out::line(name, &report::step_text(name, &r, opts.dry_run));
        match r.status {
            Status::Ok => sum.ok += 1,
            Status::Changed => sum.changed += 1,
            Status::Failed => {
                sum.failed += 1;
                turns.failed(name, &format!("step {:?} failed", step.name));
                // As Ansible: a host stops at its first failed step; the others go on (but
                // no further balancer starts its turn).
                return;
            }
        }
    }
    if in_turn {
        turns.healthy(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The machine's root namespace has no address in the lab's subnet (lab addresses exist
    /// only in lab namespaces), so the lab's own inventory is refused here, naming the way out.
    #[test]
    fn the_labs_inventory_is_refused_outside_the_lab() {
        let inv = Inventory::parse(include_str!("../../lab.toml"), "lab.toml").unwrap();
        assert!(inv.lab);
        let err = check_inside_lab(&inv).unwrap_err().to_string();
        assert!(err.contains("marked [lab]"), "{err}");
        assert!(err.contains("lab provision"), "{err}");
        // An inventory whose subnet this process is on (loopback) passes; so does one that
        // is not the lab's.
        let local = include_str!("../../lab.toml").replace("172.16.249.", "127.0.0.");
        let inv = Inventory::parse(&local, "lab.toml").unwrap();
        assert!(check_inside_lab(&inv).is_ok());
        let real = include_str!("../../lab.toml").replace("\n[lab]\n", "\n");
        let inv = Inventory::parse(&real, "lab.toml").unwrap();
        assert!(check_inside_lab(&inv).is_ok());
    }

    #[test]
    fn unknown_hosts_in_the_selection_are_rejected() {
        let inv = Inventory::parse(include_str!("../../lab.toml"), "lab.toml").unwrap();
        let opts = RunOptions {
            ssh: SshOptions {
                user: "root".into(),
                port: 22,
                key: None,
                known_hosts: PathBuf::from("/nonexistent"),
                accept_new_host_keys: false,
                connect_timeout: Duration::from_secs(1),
                command_timeout: Duration::from_secs(1),
                verbose: false,
            },
            dry_run: true,
            hosts: vec!["server9".into()],
            bin_dir: PathBuf::from("/nonexistent"),
            confirm_secs: None,
        };
        let mut inv = inv;
        inv.lab = false;
        let err = run(&inv, &opts).unwrap_err().to_string();
        assert!(err.contains("\"server9\""), "{err}");
        assert!(err.contains("server1, server2, server3, server4"), "{err}");
    }
}
