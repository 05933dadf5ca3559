//! `provision lab.toml [--dry-run] [--hosts a,b] [--accept-new-host-keys] [--known-hosts F]
//! [--key F]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use provision::inventory::Inventory;
use provision::os::Family;
use provision::run::{self, RunOptions};
use provision::ssh::{expand_tilde, SshOptions};
use provision::steps;
use provision::{out, report};

/// Sets up the hosts of lab.toml over SSH: hostname, static address, chrony, firewall,
/// SELinux, Apache on the backends, proxy + vrrp as systemd services on the balancers.
#[derive(Parser, Debug)]
#[command(name = "provision", version)]
struct Args {
    /// The inventory (the same lab.toml the lab reads).
    inventory: PathBuf,
    /// Print each host's plan with file diffs; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only these hosts (comma-separated names from lab.toml).
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    /// Record host keys of hosts not yet in known_hosts (changed keys are always refused).
    #[arg(long)]
    accept_new_host_keys: bool,
    /// known_hosts file [default: ~/.ssh/known_hosts].
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// Private key (overrides lab.toml [ssh] key; without either, ssh-agent is used).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Directory with the `proxy` and `vrrp` binaries to deploy [default: next to provision].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Seconds to wait for a host's SSH port.
    #[arg(long, default_value_t = 5)]
    connect_timeout: u64,
    /// Seconds a remote command may stay silent before it counts as failed.
    #[arg(long, default_value_t = 300)]
    command_timeout: u64,
    /// Seconds a host waits for provision to reconnect and confirm its new address before it
    /// restores the old one [default: 60].
    #[arg(long, value_parser = clap::value_parser!(u32).range(5..=3600))]
    confirm_secs: Option<u32>,
    /// Print every remote command with its exit status and duration.
    #[arg(long, short)]
    verbose: bool,
    /// Print the full plan (every command and file) of each selected host as if it ran this
    /// OS family (el7, el8, el9, debian12, ubuntu), without connecting to anything.
    #[arg(long, value_name = "FAMILY")]
    print_plan: Option<String>,
    /// With --print-plan: the host's systemd version [default: the family's].
    #[arg(long, value_name = "VERSION", requires = "print_plan")]
    systemd: Option<u32>,
}

/// `--print-plan`: pure, offline.
fn print_plan(inv: &Inventory, family: &str, systemd: Option<u32>, hosts: &[String]) -> ExitCode {
    let Some(fam) = Family::from_name(family) else {
        let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
        eprintln!(
            "provision: unknown OS family {family:?} (one of: {})",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    for name in hosts {
        if inv.host(name).is_none() {
            eprintln!("provision: --hosts names {name:?}, which the inventory does not have");
            return ExitCode::from(2);
        }
    }
    for h in &inv.hosts {
        if !hosts.is_empty() && !hosts.contains(&h.name) {
            continue;
        }
        match steps::plan_for(inv, h, fam, systemd.unwrap_or(fam.default_systemd())) {
            Ok(p) => out::print(&format!("{}\n", p.render())),
            Err(e) => {
                eprintln!("provision: {}: {e}", h.name);
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("adopt") {
        return provision::adopt::cli(std::env::args().skip(1));
    }
    let args = Args::parse();
    let inv = match Inventory::load(&args.inventory) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("provision: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(fam) = &args.print_plan {
        return print_plan(&inv, fam, args.systemd, &args.hosts);
    }
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let opts = RunOptions {
        ssh: SshOptions {
            user: inv.ssh.user.clone(),
            port: inv.ssh.port,
            key: args.key.clone().or_else(|| inv.ssh.key.clone()),
            known_hosts: args
                .known_hosts
                .clone()
                .unwrap_or_else(|| expand_tilde(&PathBuf::from("~/.ssh/known_hosts"))),
            accept_new_host_keys: args.accept_new_host_keys,
            connect_timeout: Duration::from_secs(args.connect_timeout.max(1)),
            command_timeout: Duration::from_secs(args.command_timeout.max(1)),
            verbose: args.verbose,
        },
        dry_run: args.dry_run,
        hosts: args.hosts.clone(),
        bin_dir,
        confirm_secs: args.confirm_secs,
    };
    match run::run(&inv, &opts) {
        Ok(summaries) => {
            out::print(&format!("\n{}", report::recap(&summaries)));
            if summaries.iter().all(|s| s.succeeded()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("provision: {e}");
            ExitCode::from(2)
        }
    }
}
