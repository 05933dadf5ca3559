//! The SSH side of `provision adopt`: what is asked of each balancer (only commands that print),
//! and the command line.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::{adopt, import_one, Fetched};
use crate::ssh::{Ssh, SshError, SshOptions};

/// Reads one balancer over SSH. Read-only: every command only prints.
pub fn fetch(address: Ipv4Addr, opts: &SshOptions) -> Result<Fetched, String> {
    let at = |e: SshError| format!("{address}: {e}");
    let mut ssh = Ssh::connect(&address.to_string(), opts).map_err(at)?;
    let mut out = |cmd: &str| ssh.run(cmd).map_err(at);
    let hostname = out("hostname")?.stdout.trim().to_string();
    let nginx = out("nginx -T")?;
    if !nginx.success() {
        return Err(format!(
            "{address}: nginx -T failed: {}",
            nginx.stderr.trim()
        ));
    }
    let keepalived_path = PathBuf::from("/etc/keepalived/keepalived.conf");
    let keepalived = out("cat /etc/keepalived/keepalived.conf")?;
    if !keepalived.success() {
        return Err(format!(
            "{address}: cannot read {}: {}",
            keepalived_path.display(),
            keepalived.stderr.trim()
        ));
    }
    let net = network_facts(&mut out, address)?;
    let mut fetched = Fetched {
        address,
        hostname,
        nginx_t: nginx.stdout,
        keepalived_path,
        keepalived_conf: keepalived.stdout,
        gateway: net.gateway,
        dns: net.dns,
        timezone: net.timezone,
        prefix: net.prefix,
        pages: BTreeMap::new(),
    };
    // Each backend's page, asked from this balancer (the backends are on its network).
    if let Ok(b) = import_one(&fetched) {
        let peers: Vec<_> = b
            .proxy_cfg
            .upstreams
            .iter()
            .flat_map(|u| &u.servers)
            .map(|p| p.address)
            .collect();
        for peer in peers {
            let IpAddr::V4(ip) = peer.ip() else { continue };
            let page = out(&format!("curl -sf --max-time 3 http://{peer}/"))?;
            if page.success() {
                fetched.pages.insert(ip, page.stdout.trim_end().to_string());
            }
        }
    }
    Ok(fetched)
}

/// What lab.toml's [network] and [time] need that the configurations do not say.
struct NetworkFacts {
    gateway: Option<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    timezone: Option<String>,
    prefix: Option<u8>,
}

fn network_facts(
    out: &mut impl FnMut(&str) -> Result<crate::ssh::Output, String>,
    address: Ipv4Addr,
) -> Result<NetworkFacts, String> {
    let route = out("ip -4 route show default")?.stdout;
    let gateway = route
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .and_then(|g| g.parse().ok());
    let resolv = out("cat /etc/resolv.conf")?.stdout;
    let dns = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let tz = out("readlink /etc/localtime")?.stdout;
    let timezone = tz
        .trim()
        .split_once("zoneinfo/")
        .map(|(_, z)| z.to_string());
    let addrs = out("ip -o -4 addr show")?.stdout;
    let prefix = addrs.split_whitespace().find_map(|w| {
        w.strip_prefix(&format!("{address}/"))
            .and_then(|p| p.parse().ok())
    });
    Ok(NetworkFacts {
        gateway,
        dns,
        timezone,
        prefix,
    })
}

/// `provision adopt HOST... [-o DIR]`: the command line.
#[derive(clap::Parser, Debug)]
#[command(name = "provision adopt")]
struct AdoptArgs {
    /// The balancers running nginx + keepalived (IPv4 addresses).
    #[arg(required = true)]
    hosts: Vec<Ipv4Addr>,
    /// Where to write lab.toml, the per-host files and report.txt.
    #[arg(short, long, default_value = "adopted")]
    output: PathBuf,
    #[arg(long, default_value = "root")]
    user: String,
    #[arg(long, default_value_t = 22)]
    port: u16,
    /// Private key (without it, ssh-agent is used).
    #[arg(long)]
    key: Option<PathBuf>,
    /// known_hosts file [default: ~/.ssh/known_hosts].
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// Record host keys of hosts not yet in known_hosts (changed keys are always refused).
    #[arg(long)]
    accept_new_host_keys: bool,
}

/// Runs `provision adopt` with `args` (without the program name); exit status 0 everything
/// carried over, 3 with a report, 1 when a host cannot be read.
pub fn cli(args: impl Iterator<Item = String>) -> std::process::ExitCode {
    use clap::Parser as _;
    let a = AdoptArgs::parse_from(args);
    let opts = SshOptions {
        user: a.user.clone(),
        port: a.port,
        key: a.key.clone(),
        known_hosts: a
            .known_hosts
            .clone()
            .unwrap_or_else(|| crate::ssh::expand_tilde(Path::new("~/.ssh/known_hosts"))),
        accept_new_host_keys: a.accept_new_host_keys,
        connect_timeout: std::time::Duration::from_secs(5),
        command_timeout: std::time::Duration::from_secs(30),
        verbose: false,
    };
    let result = a
        .hosts
        .iter()
        .map(|h| fetch(*h, &opts))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|f| adopt(&f, &a.user));
    let adopted = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!("provision adopt: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    for (path, text) in &adopted.files {
        let path = a.output.join(path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            eprintln!("provision adopt: cannot write {}: {e}", path.display());
            return std::process::ExitCode::from(1);
        }
    }
    eprint!("{}", adopted.report);
    println!(
        "provision adopt: wrote {} (lab.toml, per-host files, report.txt)",
        a.output.display()
    );
    std::process::ExitCode::from(if adopted.losses { 3 } else { 0 })
}
