//! `provision adopt HOST...`: takes over an existing nginx + keepalived pair, read-only.
//!
//! Over SSH each balancer is asked for `nginx -T` (every configuration file nginx reads, includes
//! resolved, in one output), its keepalived.conf and the few facts lab.toml needs (host name,
//! default gateway, DNS servers, time zone, the interface's prefix). Nothing is written on the
//! hosts. Locally the configurations go through `proxy import` / `vrrp import` (the libraries,
//! so the report names the hosts' own files and lines), and out come:
//! - `lab.toml`: the inventory a later `provision lab.toml` run deploys from;
//! - per balancer, the proxy.toml / vrrp.toml that run would deploy (`render` of that lab.toml),
//!   and the direct imports (`imported-proxy.toml`, `imported-vrrp.toml`) that keep everything
//!   lab.toml's model cannot say (several upstreams, weights, ...);
//! - `report.txt`: both importers' reports and what lab.toml could not hold.
//!
//! Splitting `nginx -T` and building the inventory are pure ([`split_nginx_t`], [`adopt`]);
//! [`fetch`] is the thin SSH shell.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use conf::block::Files;
use conf::import::{toml_str, Imported};

/// What one balancer told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub address: Ipv4Addr,
    pub hostname: String,
    /// `nginx -T` standard output.
    pub nginx_t: String,
    pub keepalived_path: PathBuf,
    pub keepalived_conf: String,
    /// `ip -4 route show default`, `/etc/resolv.conf`, the zoneinfo name, `ip -o -4 addr`.
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub timezone: Option<String>,
    pub prefix: Option<u8>,
    /// Backend address -> the text its "/" answered with (fetched from this balancer).
    pub pages: BTreeMap<Ipv4Addr, String>,
}

/// The files `nginx -T` printed, main file first: `# configuration file PATH:` then the file,
/// then a blank line.
pub fn split_nginx_t(out: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut current: Option<(PathBuf, String)> = None;
    for line in out.split_inclusive('\n') {
        let header = line
            .strip_prefix("# configuration file ")
            .and_then(|r| r.trim_end().strip_suffix(':'));
        match header {
            Some(path) => {
                if let Some((p, text)) = current.take() {
                    files.push((p, strip_separator(text)));
                }
                current = Some((PathBuf::from(path), String::new()));
            }
            None => {
                if let Some((_, text)) = &mut current {
                    text.push_str(line);
                }
            }
        }
    }
    if let Some((p, text)) = current {
        files.push((p, strip_separator(text)));
    }
    files
}

/// nginx -T adds one newline after each file.
fn strip_separator(mut text: String) -> String {
    if text.ends_with("\n\n") || text == "\n" {
        text.pop();
    }
    text
}

/// Files held in memory (what `nginx -T` printed), for the importer's includes.
#[derive(Debug, Clone, Default)]
pub struct MemFiles(pub BTreeMap<PathBuf, String>);

impl Files for MemFiles {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
        let p = glob::Pattern::new(&pattern.to_string_lossy()).map_err(|e| e.to_string())?;
        Ok(self
            .0
            .keys()
            .filter(|k| p.matches_path(k))
            .cloned()
            .collect())
    }
}

/// Everything `provision adopt` writes, relative to its output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    pub files: Vec<(PathBuf, String)>,
    pub report: String,
    /// Anything reported (exit status 3, as the importers).
    pub losses: bool,
}

/// One balancer, imported.
pub(crate) struct Balancer<'a> {
    fetched: &'a Fetched,
    proxy: Imported,
    vrrp: Imported,
    pub(crate) proxy_cfg: proxy::config::Config,
    vrrp_cfg: vrrp::config::Config,
}

pub(crate) fn import_one(f: &Fetched) -> Result<Balancer<'_>, String> {
    let split = split_nginx_t(&f.nginx_t);
    let main = split
        .first()
        .map(|(p, _)| p.clone())
        .ok_or_else(|| format!("{}: nginx -T printed no configuration file", f.address))?;
    let files = MemFiles(split.into_iter().collect());
    let proxy = proxy::import::nginx(&main, &files).map_err(|e| format!("{}: {e}", f.address))?;
    let mut kfiles = BTreeMap::new();
    kfiles.insert(f.keepalived_path.clone(), f.keepalived_conf.clone());
    let vrrp = vrrp::import::keepalived(&f.keepalived_path, &MemFiles(kfiles))
        .map_err(|e| format!("{}: {e}", f.address))?;
    let proxy_cfg = proxy::config::parse(&proxy.toml, Path::new("imported-proxy.toml"))
        .map_err(|e| format!("{}: imported proxy.toml: {e}", f.address))?;
    let vrrp_cfg = vrrp::config::parse(&vrrp.toml, Path::new("imported-vrrp.toml"))
        .map_err(|e| format!("{}: imported vrrp.toml: {e}", f.address))?;
    Ok(Balancer {
        fetched: f,
        proxy,
        vrrp,
        proxy_cfg,
        vrrp_cfg,
    })
}

/// Builds lab.toml and the per-host files from the fetched balancers.
pub fn adopt(fetched: &[Fetched], ssh_user: &str) -> Result<Adopted, String> {
    let mut notes = Vec::new();
    let fetched = unique_names(fetched, &mut notes);
    let balancers = fetched
        .iter()
        .map(import_one)
        .collect::<Result<Vec<_>, _>>()?;
    if balancers.is_empty() {
        return Err("no host given".into());
    }
    let lab_toml = lab_toml(&balancers, ssh_user, &mut notes)?;
    let inv = crate::inventory::Inventory::parse(&lab_toml, "lab.toml")
        .map_err(|e| format!("the adopted lab.toml is not valid: {e}\n{lab_toml}"))?;
    let mut files = vec![(PathBuf::from("lab.toml"), lab_toml.clone())];
    let mut report = String::new();
    for b in &balancers {
        let name = &b.fetched.hostname;
        let host = inv.host(name).ok_or("balancer missing from lab.toml")?;
        let dir = PathBuf::from(name);
        let rendered = crate::render::proxy_toml(&inv, host).map_err(|e| e.to_string())?;
        files.push((dir.join("proxy.toml"), rendered));
        let rendered = crate::render::vrrp_toml(&inv, host).map_err(|e| e.to_string())?;
        files.push((dir.join("vrrp.toml"), rendered));
        files.push((dir.join("imported-proxy.toml"), b.proxy.toml.clone()));
        files.push((dir.join("imported-vrrp.toml"), b.vrrp.toml.clone()));
        let _ = writeln!(report, "# {name} ({})", b.fetched.address);
        report.push_str(&b.proxy.report());
        report.push_str(&b.vrrp.report());
    }
    if !notes.is_empty() {
        report.push_str("# lab.toml\n");
        for n in &notes {
            let _ = writeln!(report, "lab.toml: {n}");
        }
    }
    let losses = !notes.is_empty()
        || balancers
            .iter()
            .any(|b| !b.proxy.losses.is_empty() || !b.vrrp.losses.is_empty());
    files.push((PathBuf::from("report.txt"), report.clone()));
    Ok(Adopted {
        files,
        report,
        losses,
    })
}

/// A value of the first vrrp_instance in an imported vrrp.toml.
/// Host names for lab.toml: each balancer's own, unless it is a placeholder (a fresh CentOS 7
/// calls itself "localhost.localdomain") or two balancers share it; then one made from its
/// address, and a note says so.
fn unique_names(fetched: &[Fetched], notes: &mut Vec<String>) -> Vec<Fetched> {
    let placeholder = |n: &str| n.is_empty() || n.starts_with("localhost");
    let mut out = fetched.to_vec();
    for f in &mut out {
        let shared = fetched.iter().filter(|g| g.hostname == f.hostname).count() > 1;
        if shared || placeholder(&f.hostname) {
            let name = format!("lb-{}", f.address.to_string().replace('.', "-"));
            notes.push(format!(
                "{}: its host name {:?} is {}; named {name} in lab.toml (provision sets it)",
                f.address,
                f.hostname,
                if shared {
                    "shared with another balancer"
                } else {
                    "a placeholder"
                }
            ));
            f.hostname = name;
        }
    }
    out
}

fn instance_value(b: &Balancer<'_>, key: &str) -> Option<toml::Value> {
    let t: toml::Table = b.vrrp.toml.parse().ok()?;
    let (_, vi) = t.get("vrrp_instance")?.as_table()?.iter().next()?;
    vi.get(key).cloned()
}

fn lab_toml(
    bs: &[Balancer<'_>],
    ssh_user: &str,
    notes: &mut Vec<String>,
) -> Result<String, String> {
    let first = &bs[0];
    let f = first.fetched;
    let vi = first.vrrp_cfg.instances.first().ok_or("no vrrp_instance")?;
    let vips: Vec<Ipv4Addr> = vi
        .vips
        .iter()
        .filter_map(|(a, _)| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    if vips.len() != vi.vips.len() {
        notes.push("IPv6 VIPs are not part of lab.toml's model; see imported-vrrp.toml".into());
    }
    let (prefix, gateway) = prefix_and_gateway(f, notes);
    let advert = vi.advert_interval.as_secs_f64();
    if advert.fract() != 0.0 || advert < 1.0 {
        notes.push(format!(
            "advert_int {advert} s is not whole seconds; lab.toml says 1"
        ));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# lab.toml adopted by `provision adopt` from {}.",
        bs.iter()
            .map(|b| b.fetched.address.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    s.push_str(
        "# report.txt lists what it could not carry over.

[network]
",
    );
    let _ = writeln!(s, "prefix = {prefix}");
    let _ = writeln!(s, "gateway = \"{gateway}\"");
    let dns: Vec<String> = f.dns.iter().map(|d| format!("\"{d}\"")).collect();
    let _ = writeln!(s, "dns = [{}]", dns.join(", "));
    let vips_s: Vec<String> = vips.iter().map(|v| format!("\"{v}\"")).collect();
    let _ = writeln!(s, "vips = [{}]", vips_s.join(", "));
    let _ = writeln!(s, "virtual_router_id = {}", vi.vrid);
    if let Some(pass) = instance_value(first, "authentication").and_then(|a| {
        a.get("auth_pass")
            .and_then(|p| p.as_str().map(String::from))
    }) {
        let _ = writeln!(s, "auth_pass = {}", toml_str(&pass));
    }
    let _ = writeln!(s, "advert_int = {}", (advert.round() as u64).clamp(1, 255));
    let _ = writeln!(s, "\n[ssh]\nuser = {}", toml_str(ssh_user));
    time_section(f, &mut s, notes);
    for b in bs {
        let vi = b.vrrp_cfg.instances.first().ok_or("no vrrp_instance")?;
        let _ = writeln!(
            s,
            "\n[[host]]\nname = {}\nrole = \"balancer\"",
            toml_str(&b.fetched.hostname)
        );
        let _ = writeln!(
            s,
            "address = \"{}\"\ninterface = {}\npriority = {}",
            b.fetched.address,
            toml_str(&vi.interface),
            vi.priority
        );
    }
    backends(first, &mut s, notes);
    Ok(s)
}

/// The interface's prefix and the default gateway, guessed (and reported) when unreadable.
fn prefix_and_gateway(f: &Fetched, notes: &mut Vec<String>) -> (u8, Ipv4Addr) {
    let prefix = f.prefix.unwrap_or_else(|| {
        notes.push("the interface's prefix could not be read; /24 assumed".into());
        24
    });
    let gateway = f.gateway.unwrap_or_else(|| {
        let net = u32::from(f.address) & (u32::MAX << (32 - u32::from(prefix.min(31))));
        let guess = Ipv4Addr::from(net + 1);
        notes.push(format!(
            "{}: no default route: gateway = {guess} is a guess, check it",
            f.address
        ));
        guess
    });
    (prefix, gateway)
}

/// [time]: the zone from the first host; time servers are not read from the hosts.
fn time_section(f: &Fetched, s: &mut String, notes: &mut Vec<String>) {
    let tz = f.timezone.clone().unwrap_or_else(|| {
        notes.push("the time zone could not be read; UTC assumed".into());
        "UTC".into()
    });
    notes.push("time servers are not read from the hosts: lab.toml names pool.ntp.org".into());
    let _ = writeln!(
        *s,
        "\n[time]\nservers = [\"pool.ntp.org\"]\ntimezone = {}",
        toml_str(&tz)
    );
}

/// The backends: the servers of the upstream that `location /` proxies to.
fn backends(b: &Balancer<'_>, s: &mut String, notes: &mut Vec<String>) {
    let cfg = &b.proxy_cfg;
    let Some(up) = cfg
        .servers
        .iter()
        .flat_map(|srv| &srv.locations)
        .find(|l| l.path == "/")
        .or_else(|| cfg.servers.first().and_then(|srv| srv.locations.first()))
        .and_then(|l| cfg.upstreams.get(l.upstream))
    else {
        notes.push("no proxied location: no backend in lab.toml".into());
        return;
    };
    if cfg.upstreams.len() > 1 {
        notes.push(format!(
            "only upstream {} becomes lab.toml's backends; see imported-proxy.toml for the others",
            up.name
        ));
    }
    for (i, peer) in up.servers.iter().enumerate() {
        let IpAddr::V4(addr) = peer.address.ip() else {
            notes.push(format!(
                "backend {} is IPv6: not part of lab.toml's model",
                peer.name
            ));
            continue;
        };
        if peer.address.port() != crate::render::BACKEND_PORT
            || peer.weight != 1
            || peer.backup
            || peer.down
        {
            notes.push(format!("backend {}: lab.toml's backends are port 80, weight 1, primary; see imported-proxy.toml", peer.name));
        }
        let page = b.fetched.pages.get(&addr).cloned().unwrap_or_else(|| {
            notes.push(format!("backend {addr}: its page could not be fetched"));
            format!("backend {}", i + 1)
        });
        let _ = writeln!(
            s,
            "\n[[host]]\nname = \"backend{}\"\nrole = \"backend\"\naddress = \"{addr}\"",
            i + 1
        );
        let _ = writeln!(
            s,
            "interface = {}\npage = {}",
            toml_str(&b.vrrp_cfg.instances[0].interface),
            toml_str(&page)
        );
    }
}

#[path = "adopt_ssh.rs"]
mod ssh_shell;
pub use ssh_shell::{cli, fetch};

#[cfg(test)]
#[path = "adopt_tests.rs"]
mod tests;
