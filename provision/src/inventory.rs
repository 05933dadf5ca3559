//! lab.toml: the inventory of the seed's servers, read by both `provision` and `lab`.
//!
//! Two layers, as the proxy's config: a raw serde layer (`deny_unknown_fields`, every value kept
//! with its span) and the validated [`Inventory`]. Validation collects every problem with its
//! `file:line` instead of stopping at the first one; only a TOML syntax or type error (which
//! serde reports one at a time) stops early.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::names::{
    ifname_problem, valid_baseurl, valid_hostname, valid_time_server, valid_timezone,
};
use toml::Spanned;

mod bgp;
pub use bgp::{Bgp, BgpMode};

/// What a host does in the seed's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs `proxy` and `vrrp` and may hold the VIPs (the seed's nginx + keepalived).
    Balancer,
    /// Runs Apache httpd serving the host's page.
    Backend,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Balancer => "balancer",
            Role::Backend => "backend",
        })
    }
}

/// `[network]`: the one subnet all hosts and VIPs live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Prefix length of the subnet (24 = the seed's 255.255.255.0).
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    /// Virtual addresses the balancers share, in the order VRRP announces them.
    pub vips: Vec<Ipv4Addr>,
    pub virtual_router_id: u8,
    /// VRRP v2 PASS authentication (at most 8 bytes); `None` = no authentication.
    pub auth_pass: Option<String>,
    /// VRRP advertisement interval in whole seconds (v2).
    pub advert_int: u8,
}

impl Network {
    /// The netmask for [`Network::prefix`].
    pub fn netmask(&self) -> Ipv4Addr {
        netmask(self.prefix)
    }

    /// The subnet's network address (the gateway's address with the host bits cleared).
    pub fn network_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) & u32::from(self.netmask()))
    }

    /// Whether `addr` is a usable host address of the subnet (not the network or broadcast
    /// address).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        in_subnet(self.gateway, self.prefix, addr)
    }
}

/// `[ssh]`: how `provision` logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    pub user: String,
    /// Private key file; `None` = use ssh-agent.
    pub key: Option<PathBuf>,
    pub port: u16,
}

/// `[time]`: time synchronisation (the seed's ntpdate + Shanghai time zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Time {
    pub servers: Vec<String>,
    pub timezone: String,
}

/// `[os]` (optional): per-OS overrides for `provision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsOverrides {
    /// CentOS 7 is end of life and its mirrors are gone: base URL of a vault or mirror
    /// repository (e.g. "https://vault.centos.org/7.9.2009") that replaces CentOS-Base.repo.
    pub el7_repo_baseurl: Option<String>,
}

/// One `[[host]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub role: Role,
    pub address: Ipv4Addr,
    /// The network interface carrying `address` (the seed's "ens33").
    pub interface: String,
    /// VRRP priority (balancers only; 1..=254).
    pub priority: Option<u8>,
    /// The index page a backend serves.
    pub page: Option<String>,
}

/// The validated lab.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub network: Network,
    pub ssh: Ssh,
    pub time: Time,
    pub os: OsOverrides,
    /// `[lab]`: this inventory describes the lab (network namespaces on one machine), whose
    /// addresses exist nowhere else; provision refuses to run it from outside the lab.
    pub lab: bool,
    /// In file order.
    pub hosts: Vec<Host>,
    /// `[bgp]`, if present (absent = VRRP, as `mode = "vrrp"`).
    pub bgp: Option<Bgp>,
}

impl Inventory {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Inventory::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Inventory, InventoryError> {
        let invalid = |errors: Vec<Diagnostic>| InventoryError::Invalid {
            origin: origin.to_string(),
            errors,
        };
        let raw: RawInventory = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            invalid(vec![Diagnostic {
                line,
                message: e.message().trim().to_string(),
            }])
        })?;
        validate(raw, text).map_err(invalid)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Balancers in file order.
    pub fn balancers(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role == Role::Balancer)
    }

    /// The BGP settings when the VIPs are announced (`[bgp] mode = "anycast"`), None when
    /// VRRP elects one balancer to hold them.
    pub fn anycast(&self) -> Option<&Bgp> {
        self.bgp.as_ref().filter(|b| b.mode == BgpMode::Anycast)
    }

    /// Backends in file order.
    pub fn backends(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role == Role::Backend)
    }
}

/// One problem found in lab.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line in the file.
    pub line: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", format_diagnostics(origin, errors))]
    Invalid {
        origin: String,
        errors: Vec<Diagnostic>,
    },
}

fn format_diagnostics(origin: &str, errors: &[Diagnostic]) -> String {
    errors
        .iter()
        .map(|d| format!("{origin}:{}: {}", d.line, d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    network: Spanned<RawNetwork>,
    ssh: Spanned<RawSsh>,
    time: RawTime,
    #[serde(default)]
    os: RawOs,
    lab: Option<RawLab>,
    #[serde(default)]
    host: Vec<Spanned<RawHost>>,
    bgp: Option<Spanned<bgp::RawBgp>>,
}

/// `[lab]`: a marker, no keys yet.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLab {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    prefix: Spanned<u8>,
    gateway: Spanned<String>,
    #[serde(default)]
    dns: Vec<Spanned<String>>,
    vips: Spanned<Vec<Spanned<String>>>,
    virtual_router_id: Spanned<u8>,
    auth_pass: Option<Spanned<String>>,
    advert_int: Option<Spanned<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    user: String,
    key: Option<PathBuf>,
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    #[serde(default)]
    servers: Vec<Spanned<String>>,
    timezone: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOs {
    el7_repo_baseurl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    role: Spanned<RawRole>,
    address: Spanned<String>,
    interface: Spanned<String>,
    priority: Option<Spanned<u8>>,
    page: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawRole {
    Balancer,
    Backend,
}

/// Collects diagnostics with line numbers from spans.
struct Collector<'a> {
    text: &'a str,
    errors: Vec<Diagnostic>,
}

impl Collector<'_> {
    fn at<T>(&mut self, value: &Spanned<T>, message: String) {
        let line = line_of(self.text, value.span().start);
        self.errors.push(Diagnostic { line, message });
    }

    fn line<T>(&self, value: &Spanned<T>) -> usize {
        line_of(self.text, value.span().start)
    }

    fn ipv4(&mut self, value: &Spanned<String>, what: &str) -> Option<Ipv4Addr> {
        match value.get_ref().parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.at(
                    value,
                    format!("{what} {:?} is not an IPv4 address", value.get_ref()),
                );
                None
            }
        }
    }
}

fn validate(raw: RawInventory, text: &str) -> Result<Inventory, Vec<Diagnostic>> {
    let mut c = Collector {
        text,
        errors: Vec::new(),
    };
    let net = raw.network.get_ref();

    let prefix = *net.prefix.get_ref();
    if !(8..=30).contains(&prefix) {
        c.at(
            &net.prefix,
            format!("prefix {prefix} is out of range (8..=30)"),
        );
    }
    let gateway = c.ipv4(&net.gateway, "gateway");
    let dns: Vec<Ipv4Addr> = net
        .dns
        .iter()
        .filter_map(|d| c.ipv4(d, "dns server"))
        .collect();
    let subnet = gateway.filter(|_| (8..=30).contains(&prefix));
    let check_inside = |c: &mut Collector<'_>, value: &Spanned<String>, addr: Ipv4Addr, what| {
        if let Some(gw) = subnet {
            if !in_subnet(gw, prefix, addr) {
                c.at(
                    value,
                    format!(
                        "{what} {addr} is outside the network {}/{prefix}",
                        Ipv4Addr::from(u32::from(gw) & u32::from(netmask(prefix)))
                    ),
                );
            }
        }
    };
    if let (Some(gw), true) = (gateway, (8..=30).contains(&prefix)) {
        if !in_subnet(gw, prefix, gw) {
            c.at(
                &net.gateway,
                format!("gateway {gw} is the network or broadcast address of its /{prefix}"),
            );
        }
    }

    // Every address in the file, to report duplicates with the line of the first use.
    let mut seen: HashMap<Ipv4Addr, (usize, String)> = HashMap::new();
    if let Some(gw) = gateway {
        seen.insert(gw, (c.line(&net.gateway), "the gateway".to_string()));
    }

    let mut vips = Vec::new();
    if net.vips.get_ref().is_empty() {
        c.at(
            &net.vips,
            "vips is empty: at least one VIP is needed".into(),
        );
    }
    for v in net.vips.get_ref() {
        if let Some(addr) = c.ipv4(v, "vip") {
            check_inside(&mut c, v, addr, "vip");
            if let Some((line, what)) = seen.get(&addr) {
                let msg = format!("vip {addr} is already used by {what} (line {line})");
                c.at(v, msg);
            } else {
                seen.insert(addr, (c.line(v), format!("vip {addr}")));
            }
            vips.push(addr);
        }
    }

    let vrid = *net.virtual_router_id.get_ref();
    if vrid == 0 {
        c.at(
            &net.virtual_router_id,
            "virtual_router_id must be 1..=255".into(),
        );
    }
    let auth_pass = net.auth_pass.as_ref().map(|p| {
        let s = p.get_ref();
        if s.is_empty() || s.len() > 8 || !s.is_ascii() {
            c.at(
                p,
                "auth_pass must be 1 to 8 ASCII characters (VRRP v2 PASS authentication)".into(),
            );
        }
        s.clone()
    });
    let advert_int = match &net.advert_int {
        Some(a) if *a.get_ref() == 0 => {
            c.at(a, "advert_int must be at least 1 second".into());
            1
        }
        Some(a) => *a.get_ref(),
        None => 1,
    };

    let mut names: HashMap<String, usize> = HashMap::new();
    let mut hosts = Vec::new();
    for h in &raw.host {
        let h = h.get_ref();
        let name = h.name.get_ref().clone();
        if !valid_hostname(&name) {
            c.at(
                &h.name,
                format!("host name {name:?} must be 1-63 characters of a-z, 0-9 and '-', not starting with '-'"),
            );
        }
        if let Some(first) = names.get(&name) {
            let msg = format!("duplicate host name {name:?} (first at line {first})");
            c.at(&h.name, msg);
        } else {
            names.insert(name.clone(), c.line(&h.name));
        }
        let address = c.ipv4(&h.address, "address");
        if let Some(addr) = address {
            check_inside(&mut c, &h.address, addr, "address");
            if let Some((line, what)) = seen.get(&addr) {
                let msg = format!(
                    "address {addr} of host {name:?} is already used by {what} (line {line})"
                );
                c.at(&h.address, msg);
            } else {
                seen.insert(addr, (c.line(&h.address), format!("host {name:?}")));
            }
        }
        let interface = h.interface.get_ref().clone();
        if let Some(why) = ifname_problem(&interface) {
            c.at(
                &h.interface,
                format!("interface {interface:?} is not a valid interface name: it {why}"),
            );
        }
        let role = match h.role.get_ref() {
            RawRole::Balancer => Role::Balancer,
            RawRole::Backend => Role::Backend,
        };
        match (role, &h.priority) {
            (Role::Balancer, None) => c.at(
                &h.name,
                format!("balancer {name:?} needs a priority (1..=254)"),
            ),
            (Role::Balancer, Some(p)) if *p.get_ref() == 0 || *p.get_ref() == 255 => c.at(
                p,
                format!(
                    "priority {} of {name:?} must be 1..=254 (255 is reserved for the address owner)",
                    p.get_ref()
                ),
            ),
            (Role::Backend, Some(p)) => c.at(
                p,
                format!("priority only applies to balancers, but {name:?} is a backend"),
            ),
            _ => {}
        }
        match (role, &h.page) {
            (Role::Backend, None) => c.at(
                &h.name,
                format!("backend {name:?} needs a page (the text its index.html serves)"),
            ),
            (Role::Balancer, Some(p)) => c.at(
                p,
                format!("page only applies to backends, but {name:?} is a balancer"),
            ),
            _ => {}
        }
        if let Some(addr) = address {
            hosts.push(Host {
                name,
                role,
                address: addr,
                interface,
                priority: h.priority.as_ref().map(|p| *p.get_ref()),
                page: h.page.as_ref().map(|p| p.get_ref().clone()),
            });
        }
    }
    if !raw
        .host
        .iter()
        .any(|h| matches!(h.get_ref().role.get_ref(), RawRole::Balancer))
    {
        c.at(&raw.network, "no [[host]] with role = \"balancer\"".into());
    }
    if !raw
        .host
        .iter()
        .any(|h| matches!(h.get_ref().role.get_ref(), RawRole::Backend))
    {
        c.at(&raw.network, "no [[host]] with role = \"backend\"".into());
    }
    if !valid_timezone(&raw.time.timezone.get_ref().clone()) {
        let tz = raw.time.timezone.get_ref();
        c.at(
            &raw.time.timezone,
            format!("timezone {tz:?} is not a zoneinfo name like \"Asia/Shanghai\""),
        );
    }
    for srv in &raw.time.servers {
        if !valid_time_server(srv.get_ref()) {
            c.at(
                srv,
                format!(
                    "time server {:?} is not a host name or address",
                    srv.get_ref()
                ),
            );
        }
    }
    if let Some(u) = &raw.os.el7_repo_baseurl {
        if !valid_baseurl(u.get_ref()) {
            c.at(
                u,
                format!(
                    "el7_repo_baseurl {:?} must be an http(s):// or file:// URL without spaces",
                    u.get_ref()
                ),
            );
        }
    }
    let bgp = raw.bgp.as_ref().and_then(|b| {
        let subnet = |a: Ipv4Addr| subnet.is_some_and(|gw| in_subnet(gw, prefix, a));
        let v = bgp::validate(&mut c, b, &subnet)?;
        let router = b.get_ref().router_spanned();
        // The router may well be the gateway; it must not be a host or a VIP.
        let taken = seen.get(&v.router).filter(|_| Some(v.router) != gateway);
        if let (Some(r), Some((line, what))) = (router, taken) {
            let msg = format!(
                "router {} is already used by {what} (line {line})",
                v.router
            );
            c.at(r, msg);
        }
        Some(v)
    });
    if raw.ssh.get_ref().user.is_empty() {
        c.at(&raw.ssh, "[ssh] user is empty".into());
    }

    match (gateway, c.errors.is_empty()) {
        (Some(gateway), true) => Ok(Inventory {
            network: Network {
                prefix,
                gateway,
                dns,
                vips,
                virtual_router_id: vrid,
                auth_pass,
                advert_int,
            },
            ssh: {
                let ssh = raw.ssh.into_inner();
                Ssh {
                    user: ssh.user,
                    key: ssh.key,
                    port: ssh.port.unwrap_or(22),
                }
            },
            time: Time {
                servers: raw
                    .time
                    .servers
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect(),
                timezone: raw.time.timezone.into_inner(),
            },
            os: OsOverrides {
                el7_repo_baseurl: raw.os.el7_repo_baseurl.map(Spanned::into_inner),
            },
            lab: raw.lab.is_some(),
            hosts,
            bgp,
        }),
        _ => {
            c.errors.sort_by_key(|d| d.line);
            Err(c.errors)
        }
    }
}

fn netmask(prefix: u8) -> Ipv4Addr {
    let bits = u32::from(prefix.min(32));
    Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0))
}

/// Whether `addr` is a host address (not network, not broadcast) in `reference`'s /prefix.
fn in_subnet(reference: Ipv4Addr, prefix: u8, addr: Ipv4Addr) -> bool {
    let mask = u32::from(netmask(prefix));
    let net = u32::from(reference) & mask;
    let a = u32::from(addr);
    a & mask == net && a != net && a != (net | !mask)
}

/// 1-based line of byte offset `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    let end = pos.min(text.len());
    text.as_bytes()
        .get(..end)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count() + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../lab.toml");

    fn errors(text: &str) -> Vec<Diagnostic> {
        match Inventory::parse(text, "lab.toml") {
            Err(InventoryError::Invalid { errors, .. }) => errors,
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn seed_inventory_parses() {
        let inv = Inventory::parse(SEED, "lab.toml").unwrap();
        assert_eq!(inv.network.prefix, 24);
        assert_eq!(inv.network.gateway, Ipv4Addr::new(172, 16, 249, 2));
        assert_eq!(inv.network.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(
            inv.network.network_address(),
            Ipv4Addr::new(172, 16, 249, 0)
        );
        assert_eq!(
            inv.network.vips,
            vec![
                Ipv4Addr::new(172, 16, 249, 80),
                Ipv4Addr::new(172, 16, 249, 90),
                Ipv4Addr::new(172, 16, 249, 100)
            ]
        );
        assert_eq!(inv.network.virtual_router_id, 51);
        assert_eq!(inv.network.auth_pass.as_deref(), Some("1111"));
        assert_eq!(inv.network.advert_int, 1);
        assert_eq!(inv.ssh.user, "root");
        assert_eq!(inv.ssh.port, 22);
        assert_eq!(inv.time.timezone, "Asia/Shanghai");
        let names: Vec<_> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["server1", "server2", "server3", "server4"]);
        let s1 = inv.host("server1").unwrap();
        assert_eq!(s1.role, Role::Balancer);
        assert_eq!(s1.priority, Some(150));
        assert_eq!(s1.interface, "ens33");
        assert_eq!(inv.host("server2").unwrap().priority, Some(100));
        assert_eq!(
            inv.host("server4").unwrap().page.as_deref(),
            Some("HTTP WEB NODE 02")
        );
        assert_eq!(inv.balancers().count(), 2);
        assert_eq!(inv.backends().count(), 2);
        assert!(inv.lab, "lab.toml marks itself as the lab's");
        let real = SEED.replace("\n[lab]\n", "\n");
        assert!(!Inventory::parse(&real, "lab.toml").unwrap().lab);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_line() {
        let text = SEED.replace(
            "interface = \"ens33\"\npriority = 150",
            "interface = \"ens33\"\npriority = 150\nweight = 3",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.contains("unknown field `weight`"),
            "{errs:?}"
        );
        let expected = text.lines().position(|l| l.starts_with("weight")).unwrap() + 1;
        assert_eq!(errs[0].line, expected);
    }

    #[test]
    fn all_validation_errors_are_collected_with_lines() {
        let text = SEED
            .replace("name = \"server2\"", "name = \"server1\"")
            .replace("address = \"172.16.249.202\"", "address = \"172.16.250.7\"")
            .replace("priority = 100\n", "")
            .replace("page = \"HTTP WEB NODE 01\"\n", "")
            .replace("\"172.16.249.90\"", "\"172.16.249.101\"");
        let errs = errors(&text);
        let msgs: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(errs.len(), 5, "{msgs:#?}");
        let line = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        // Sorted by line.
        assert!(errs.windows(2).all(|w| w[0].line <= w[1].line));
        let find = |s: &str| errs.iter().find(|d| d.message.contains(s)).unwrap();
        assert_eq!(
            find("duplicate host name").line,
            second_line(&text, "name = \"server1\"")
        );
        assert!(find("outside the network 172.16.249.0/24")
            .message
            .contains("172.16.250.7"));
        assert!(find("needs a priority").message.contains("server1"));
        assert!(find("needs a page").message.contains("server3"));
        let dup = find("already used");
        assert!(dup.message.contains("172.16.249.101"), "{dup:?}");
        assert_eq!(find("outside").line, line("172.16.250.7"));
        let rendered = InventoryError::Invalid {
            origin: "lab.toml".into(),
            errors: errs.clone(),
        }
        .to_string();
        assert!(rendered.starts_with("lab.toml:"), "{rendered}");
        assert_eq!(rendered.lines().count(), 5);
    }

    /// 1-based line of the second occurrence of `needle`.
    fn second_line(text: &str, needle: &str) -> usize {
        let mut it = text.lines().enumerate().filter(|(_, l)| l.contains(needle));
        it.nth(1).unwrap().0 + 1
    }

    #[test]
    fn role_fields_are_checked() {
        let text = SEED.replace("priority = 150", "priority = 255").replace(
            "page = \"HTTP WEB NODE 02\"",
            "page = \"HTTP WEB NODE 02\"\npriority = 7",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.contains("255 is reserved"));
        assert!(errs[1].message.contains("only applies to balancers"));
    }

    #[test]
    fn bad_addresses_and_names_are_reported() {
        let text = SEED
            .replace("\"172.16.249.201\"", "\"172.16.249.2011\"")
            .replace("name = \"server4\"", "name = \"Server_4\"")
            .replace("auth_pass = \"1111\"", "auth_pass = \"123456789\"")
            .replace("\"172.16.249.100\"", "\"172.16.249.255\"");
        let errs = errors(&text);
        let msgs: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(errs.len(), 4, "{msgs:#?}");
        assert!(msgs.iter().any(|m| m.contains("not an IPv4 address")));
        assert!(msgs.iter().any(|m| m.contains("host name \"Server_4\"")));
        assert!(msgs.iter().any(|m| m.contains("auth_pass")));
        assert!(msgs.iter().any(|m| m.contains("172.16.249.255 is outside")));
    }

    #[test]
    fn interface_names_as_the_kernel_and_without_shell_syntax() {
        for bad in [
            "$(id>pwn)",
            "a;reboot",
            "ens`id`",
            "e'x",
            "e\\\"x",
            "eth 0",
            "eth0:1",
            "a/b",
            ".",
            "..",
            "",
            "sixteen-bytes-xx",
        ] {
            let text = SEED.replacen(
                "interface = \"ens33\"",
                &format!("interface = {}", crate::quote::toml_string(bad)),
                1,
            );
            let errs = errors(&text);
            assert_eq!(errs.len(), 1, "{bad:?}: {errs:?}");
            assert!(
                errs[0].message.contains("not a valid interface name"),
                "{errs:?}"
            );
            let line = text
                .lines()
                .position(|l| l.starts_with("interface = ") && !l.contains("ens33"))
                .unwrap()
                + 1;
            assert_eq!(errs[0].line, line);
        }
        for good in ["eth0", "eth0.100", "br-lan", "enp0s31f6", "fifteen-bytes-x"] {
            let text = SEED.replacen("\"ens33\"", &format!("\"{good}\""), 1);
            assert!(Inventory::parse(&text, "lab.toml").is_ok(), "{good}");
        }
    }

    #[test]
    fn values_written_into_files_are_one_word() {
        let text = SEED
            .replace("\"Asia/Shanghai\"", "\"../../etc/shadow\"")
            .replace("\"ntp3.aliyun.com\"", "\"ntp.example\\nallow all\"");
        let text = format!("{text}\n[os]\nel7_repo_baseurl = \"http://x/ y\"\n");
        let errs = errors(&text);
        let msgs: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(errs.len(), 3, "{msgs:#?}");
        assert!(msgs[0].contains("time server"), "{msgs:?}");
        assert!(msgs[1].contains("timezone"), "{msgs:?}");
        assert!(msgs[2].contains("el7_repo_baseurl"), "{msgs:?}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let text = SEED.replace("prefix = 24", "prefix = ");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1);
        let expected = text.lines().position(|l| l.starts_with("prefix")).unwrap() + 1;
        assert_eq!(errs[0].line, expected);
    }

    #[test]
    fn subnet_math() {
        let gw = Ipv4Addr::new(10, 1, 2, 3);
        assert!(in_subnet(gw, 24, Ipv4Addr::new(10, 1, 2, 200)));
        assert!(!in_subnet(gw, 24, Ipv4Addr::new(10, 1, 3, 200)));
        assert!(!in_subnet(gw, 24, Ipv4Addr::new(10, 1, 2, 0)));
        assert!(!in_subnet(gw, 24, Ipv4Addr::new(10, 1, 2, 255)));
        assert!(in_subnet(gw, 16, Ipv4Addr::new(10, 1, 3, 200)));
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(netmask(20), Ipv4Addr::new(255, 255, 240, 0));
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = Inventory::load(Path::new("/nonexistent/lab.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/lab.toml"), "{err}");
    }
}
