//! Per-host configuration files rendered from the inventory: each balancer's proxy.toml (the
//! seed's nginx.conf) and vrrp.toml (the seed's keepalived.conf).
//!
//! Pure functions of the inventory, so `lab` and `provision` deploy byte-identical files and the
//! output can be golden-tested.

use std::fmt::Write as _;

use crate::inventory::{Host, Inventory, Role};
use crate::quote::toml_string;

/// Where the rendered proxy configuration lives on a balancer.
pub const PROXY_CONFIG_PATH: &str = "/etc/proxy/proxy.toml";
/// Where the rendered VRRP configuration lives on a balancer.
pub const VRRP_CONFIG_PATH: &str = "/etc/vrrp/vrrp.toml";
/// The proxy's admin listener (GET /healthz, /metrics); loopback only.
pub const PROXY_ADMIN: &str = "127.0.0.1:9900";
/// The bearer token the proxy's control API requires (`admin_token_file`): made on each
/// balancer (random, mode 0600, root's) and never rendered or shown; the unit hands it to the
/// service user with `LoadCredential=`.
pub const PROXY_TOKEN_PATH: &str = "/etc/proxy/admin.token";
/// What systemd's `StateDirectory=proxy` makes; the proxy keeps drain/maint/weight set at run
/// time there across restarts (`state_file`).
pub const PROXY_STATE_DIR: &str = "/var/lib/proxy";
/// The proxy's access log directory.
pub const PROXY_LOG_DIR: &str = "/var/log/proxy";
/// What systemd's `CacheDirectory=proxy` makes; the proxy's default client_body_temp_path
/// (request bodies beyond client_body_buffer_size) lies inside it.
pub const PROXY_CACHE_DIR: &str = "/var/cache/proxy";
/// The vrrp daemon's own runtime directory (state and pid files).
pub const VRRP_RUNTIME_DIR: &str = "/run/vrrp";
/// Name of the upstream group, as the seed's nginx.conf.
pub const UPSTREAM_NAME: &str = "ProxyServer";
/// The backends' HTTP port.
pub const BACKEND_PORT: u16 = 80;

/// The proxy health probe's period in seconds: fast enough that a dead proxy is noticed well
/// within one advertisement interval.
pub const TRACK_INTERVAL_SECS: f64 = 0.3;
/// Consecutive failed probes before the track script counts as failed.
pub const TRACK_FALL: u32 = 2;
/// Probe timeout in seconds (below the interval so probes never pile up).
pub const TRACK_TIMEOUT_SECS: f64 = 0.2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("host {0:?} is not a balancer: only balancers run proxy and vrrp")]
    NotABalancer(String),
    #[error("host {0:?} has no priority")]
    NoPriority(String),
    #[error("{host}: anycast mode ([bgp] mode = \"anycast\") is not supported on {family} (CentOS/RHEL 7): EPEL 7 only has BIRD 1.6, whose configuration differs from BIRD 2's; use EL8 or newer, Debian 12 or Ubuntu 22.04+, or mode = \"vrrp\"")]
    AnycastUnsupported {
        host: String,
        family: crate::os::Family,
    },
}

/// The track script's weight: 0, so a balancer whose proxy fails goes to FAULT (keepalived's
/// meaning of weight 0 too): as master it sends a priority-0 advertisement and drops the VIPs, and
/// the backup takes over after Skew_Time (0.6 s) instead of waiting out Master_Down_Interval
/// (3.6 s), as it must with a lowered priority (RFC 3768 6.4.2: a backup ignores adverts of lower
/// priority). A balancer without a working proxy has nothing to serve the VIP with anyway.
///
/// The seed's `weight -20` took 150 to 130, still above the backup's 100, so its tracking never
/// moved anything; a negative weight of at least -(150 - 100 + 1) would move it, 3 s later.
pub fn track_weight(_inv: &Inventory) -> i32 {
    0
}

/// `state` for a balancer with `priority`: keepalived treats it as a hint only; MASTER for the
/// preferred balancer reads like the seed's intent.
pub(crate) fn state_hint(inv: &Inventory, priority: u8) -> &'static str {
    let highest = inv.balancers().filter_map(|h| h.priority).max();
    if highest == Some(priority) {
        "MASTER"
    } else {
        "BACKUP"
    }
}

pub(crate) fn balancer_priority(host: &Host) -> Result<u8, RenderError> {
    if host.role != Role::Balancer {
        return Err(RenderError::NotABalancer(host.name.clone()));
    }
    host.priority
        .ok_or_else(|| RenderError::NoPriority(host.name.clone()))
}

/// The proxy.toml of balancer `host`: every backend on port 80 with weight 1 (the seed's
/// `upstream ProxyServer`), listening on port 80 for IPv4 and IPv6.
pub fn proxy_toml(inv: &Inventory, host: &Host) -> Result<String, RenderError> {
    balancer_priority(host)?;
    let mut s = String::new();
    // `writeln!` into a String cannot fail; the results are ignored deliberately.
    let _ = writeln!(
        s,
        "# proxy.toml for {} ({}), rendered from lab.toml. Do not edit: changes are overwritten.",
        host.name, host.address
    );
    let _ = writeln!(s, "workers = \"auto\"");
    // The seed's `events { worker_connections 1024; }`.
    let _ = writeln!(s, "worker_connections = 1024");
    let _ = writeln!(s, "access_log = \"{PROXY_LOG_DIR}/access.log\"");
    let _ = writeln!(s, "admin = \"{PROXY_ADMIN}\"");
    // The status page on the admin listener shows what the local vrrp writes here.
    let _ = writeln!(s, "vrrp_status = \"{VRRP_RUNTIME_DIR}/status.toml\"");
    // Run-time drain/ready/maint: POSTs need this token; what they set survives a restart.
    let _ = writeln!(s, "admin_token_file = \"{PROXY_TOKEN_PATH}\"");
    let _ = writeln!(s, "state_file = \"{PROXY_STATE_DIR}/server-state\"");
    let _ = writeln!(s);
    let _ = writeln!(s, "[upstream.{UPSTREAM_NAME}]");
    let _ = writeln!(s, "servers = [");
    for b in inv.backends() {
        let _ = writeln!(
            s,
            "  {{ address = \"{}:{BACKEND_PORT}\", weight = 1 }},  # {}",
            b.address, b.name
        );
    }
    let _ = writeln!(s, "]");
    let _ = writeln!(s, "balance = \"round_robin\"");
    let _ = writeln!(s);
    let _ = writeln!(s, "[[server]]");
    let _ = writeln!(s, "listen = [\"0.0.0.0:80\", \"[::]:80\"]");
    let _ = writeln!(s);
    let _ = writeln!(s, "[[server.location]]");
    let _ = writeln!(s, "path = \"/\"");
    let _ = writeln!(s, "proxy_pass = \"{UPSTREAM_NAME}\"");
    Ok(s)
}

/// The vrrp.toml of balancer `host`: instance VI_1 on the host's interface with the seed's
/// router id, priority, PASS authentication and VIPs, tracking the local proxy's /healthz.
/// In anycast mode (`[bgp] mode = "anycast"`) the `[anycast]` table of
/// [`crate::render_anycast::vrrp_toml`] instead.
pub fn vrrp_toml(inv: &Inventory, host: &Host) -> Result<String, RenderError> {
    if let Some(bgp) = inv.anycast() {
        return crate::render_anycast::vrrp_toml(inv, host, bgp);
    }
    let priority = balancer_priority(host)?;
    let net = &inv.network;
    let state = state_hint(inv, priority);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# vrrp.toml for {} ({}), rendered from lab.toml. Do not edit: changes are overwritten.",
        host.name, host.address
    );
    let _ = writeln!(s, "[global_defs]");
    let _ = writeln!(s, "router_id = {}", toml_string(&host.name));
    let _ = writeln!(s, "runtime_dir = \"{VRRP_RUNTIME_DIR}\"");
    // As deploy/'s examples: the master's adverts leave from a SCHED_RR thread, so a busy
    // balancer does not lose the VIPs to late adverts (vrrp.service grants what it needs).
    let _ = writeln!(s, "realtime = true");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "# The proxy's health endpoint; a failing proxy gives the VIPs away."
    );
    let _ = writeln!(s, "[vrrp_script.check_proxy]");
    let _ = writeln!(s, "http = \"http://{PROXY_ADMIN}/healthz\"");
    let _ = writeln!(s, "interval = {TRACK_INTERVAL_SECS}");
    let _ = writeln!(s, "timeout = {TRACK_TIMEOUT_SECS}");
    let _ = writeln!(s, "weight = {}", track_weight(inv));
    let _ = writeln!(s, "fall = {TRACK_FALL}");
    let _ = writeln!(s, "rise = 1");
    let _ = writeln!(s);
    let _ = writeln!(s, "[vrrp_instance.VI_1]");
    let _ = writeln!(s, "state = \"{state}\"");
    let _ = writeln!(s, "interface = {}", toml_string(&host.interface));
    let _ = writeln!(s, "virtual_router_id = {}", net.virtual_router_id);
    let _ = writeln!(s, "priority = {priority}");
    let _ = writeln!(s, "advert_int = {}", net.advert_int);
    let _ = writeln!(s, "version = 2");
    if let Some(pass) = &net.auth_pass {
        let _ = writeln!(
            s,
            "authentication = {{ auth_type = \"PASS\", auth_pass = {} }}",
            toml_string(pass)
        );
    }
    let _ = writeln!(s, "track_script = [\"check_proxy\"]");
    let vips: Vec<String> = net
        .vips
        .iter()
        .map(|v| format!("\"{v}/{}\"", net.prefix))
        .collect();
    let _ = writeln!(s, "virtual_ipaddress = [{}]", vips.join(", "));
    Ok(s)
}

/// deploy/'s units (for a current systemd; [`crate::units`] renders them for older ones).
pub use crate::units::{PROXY_UNIT, VRRP_UNIT};
/// Where the units go on a host.
pub const PROXY_UNIT_PATH: &str = "/etc/systemd/system/proxy.service";
pub const VRRP_UNIT_PATH: &str = "/etc/systemd/system/vrrp.service";
/// Where the deployed binaries go (the units' ExecStart).
pub const PROXY_BIN_PATH: &str = "/usr/local/bin/proxy";
pub const VRRP_BIN_PATH: &str = "/usr/local/bin/vrrp";

/// A file to place on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: &'static str,
    pub contents: String,
    pub mode: u32,
}

/// The index page a backend serves: its `page` and a newline (the seed's `echo 'HTTP WEB NODE
/// 01' > index.html`).
pub fn index_html(host: &Host) -> Option<String> {
    host.page.as_ref().map(|p| format!("{p}\n"))
}

/// A new admin token: 32 random bytes (from `random`, e.g. /dev/urandom) in hex.
pub fn admin_token(random: &[u8; 32]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every configuration file a balancer needs: proxy.toml, vrrp.toml and both units; in
/// anycast mode also bird.conf (at Debian's path: where the lab's hosts and Debian/Ubuntu keep
/// it; provision puts it where the host's family expects it).
pub fn balancer_files(inv: &Inventory, host: &Host) -> Result<Vec<File>, RenderError> {
    let mut files = vec![
        File {
            path: PROXY_CONFIG_PATH,
            contents: proxy_toml(inv, host)?,
            mode: 0o644,
        },
        File {
            path: VRRP_CONFIG_PATH,
            contents: vrrp_toml(inv, host)?,
            // auth_pass is VRRP's shared password: readable by root only.
            mode: 0o600,
        },
        File {
            path: PROXY_UNIT_PATH,
            contents: PROXY_UNIT.to_string(),
            mode: 0o644,
        },
        File {
            path: VRRP_UNIT_PATH,
            contents: VRRP_UNIT.to_string(),
            mode: 0o644,
        },
    ];
    if let Some(bgp) = inv.anycast() {
        files.push(File {
            path: crate::render_anycast::BIRD_CONFIG_PATH,
            contents: crate::render_anycast::bird_conf(inv, host, bgp)?,
            // BIRD reads it as its own user after dropping root; nothing secret in it.
            mode: 0o644,
        });
    }
    Ok(files)
}

/// Master_Down_Interval of a backup with `priority` (RFC 3768: 3 * interval + Skew_Time, with
/// Skew_Time = (256 - priority) / 256 * interval, not truncated), in seconds.
pub fn master_down_interval_secs(advert_int: u8, priority: u8) -> f64 {
    let adv = f64::from(advert_int);
    3.0 * adv + (256.0 - f64::from(priority)) / 256.0 * adv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Inventory {
        Inventory::parse(include_str!("../../lab.toml"), "lab.toml").unwrap()
    }

    #[test]
    fn seed_proxy_toml_golden() {
        let inv = seed();
        let got = proxy_toml(&inv, inv.host("server1").unwrap()).unwrap();
        let want = r#"# proxy.toml for server1 (172.16.249.101), rendered from lab.toml. Do not edit: changes are overwritten.
workers = "auto"
worker_connections = 1024
access_log = "/var/log/proxy/access.log"
admin = "127.0.0.1:9900"
vrrp_status = "/run/vrrp/status.toml"
admin_token_file = "/etc/proxy/admin.token"
state_file = "/var/lib/proxy/server-state"

[upstream.ProxyServer]
servers = [
  { address = "172.16.249.201:80", weight = 1 },  # server3
  { address = "172.16.249.202:80", weight = 1 },  # server4
]
balance = "round_robin"

[[server]]
listen = ["0.0.0.0:80", "[::]:80"]

[[server.location]]
path = "/"
proxy_pass = "ProxyServer"
"#;
        assert_eq!(got, want);
        // Same upstreams on both balancers; only the header comment differs.
        let other = proxy_toml(&inv, inv.host("server2").unwrap()).unwrap();
        assert_eq!(
            got.lines().skip(1).collect::<Vec<_>>(),
            other.lines().skip(1).collect::<Vec<_>>()
        );
        assert!(got.parse::<toml::Table>().is_ok());
    }

    #[test]
    fn seed_vrrp_toml_golden() {
        let inv = seed();
        let got = vrrp_toml(&inv, inv.host("server2").unwrap()).unwrap();
        let want = r#"# vrrp.toml for server2 (172.16.249.102), rendered from lab.toml. Do not edit: changes are overwritten.
[global_defs]
router_id = "server2"
runtime_dir = "/run/vrrp"
realtime = true

# The proxy's health endpoint; a failing proxy gives the VIPs away.
[vrrp_script.check_proxy]
http = "http://127.0.0.1:9900/healthz"
interval = 0.3
timeout = 0.2
weight = 0
fall = 2
rise = 1

[vrrp_instance.VI_1]
state = "BACKUP"
interface = "ens33"
virtual_router_id = 51
priority = 100
advert_int = 1
version = 2
authentication = { auth_type = "PASS", auth_pass = "1111" }
track_script = ["check_proxy"]
virtual_ipaddress = ["172.16.249.80/24", "172.16.249.90/24", "172.16.249.100/24"]
"#;
        assert_eq!(got, want);
        let s1 = vrrp_toml(&inv, inv.host("server1").unwrap()).unwrap();
        assert!(s1.contains("state = \"MASTER\"\n"));
        assert!(s1.contains("priority = 150\n"));
        assert!(s1.contains("router_id = \"server1\"\n"));
        assert!(s1.parse::<toml::Table>().is_ok());
    }

    #[test]
    fn track_weight_really_moves_mastership() {
        let inv = seed();
        // Weight 0: a failing proxy puts its balancer into FAULT, so the VIP always moves.
        assert_eq!(track_weight(&inv), 0);
        let s1 = vrrp_toml(&inv, inv.host("server1").unwrap()).unwrap();
        assert!(s1.contains("\nweight = 0\n"), "{s1}");
    }

    #[test]
    fn backends_cannot_be_rendered_as_balancers() {
        let inv = seed();
        let s3 = inv.host("server3").unwrap();
        assert_eq!(
            proxy_toml(&inv, s3),
            Err(RenderError::NotABalancer("server3".into()))
        );
        assert!(vrrp_toml(&inv, s3).is_err());
    }

    #[test]
    fn no_auth_pass_omits_authentication() {
        let text = include_str!("../../lab.toml").replace("auth_pass = \"1111\"", "");
        let inv = Inventory::parse(&text, "lab.toml").unwrap();
        let s1 = vrrp_toml(&inv, inv.host("server1").unwrap()).unwrap();
        assert!(!s1.contains("authentication"));
    }

    #[test]
    fn master_down_interval_matches_rfc() {
        assert!((master_down_interval_secs(1, 100) - 3.609375).abs() < 1e-9);
        assert!((master_down_interval_secs(1, 150) - 3.4140625).abs() < 1e-9);
    }

    #[test]
    fn balancer_files_agree_with_the_units() {
        let inv = seed();
        let files = balancer_files(&inv, inv.host("server1").unwrap()).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path).collect();
        assert_eq!(
            paths,
            [
                PROXY_CONFIG_PATH,
                VRRP_CONFIG_PATH,
                PROXY_UNIT_PATH,
                VRRP_UNIT_PATH
            ]
        );
        // The units start the binaries where provision puts them, with the rendered configs.
        assert!(PROXY_UNIT.contains(&format!(
            "ExecStart={PROXY_BIN_PATH} --config {PROXY_CONFIG_PATH}"
        )));
        assert!(VRRP_UNIT.contains(&format!(
            "ExecStart={VRRP_BIN_PATH} --config {VRRP_CONFIG_PATH}"
        )));
        assert_eq!(
            index_html(inv.host("server3").unwrap()).as_deref(),
            Some("HTTP WEB NODE 01\n")
        );
        assert_eq!(index_html(inv.host("server1").unwrap()), None);
    }

    #[test]
    fn interpolated_values_stay_toml_strings() {
        let mut inv = seed();
        inv.network.auth_pass = Some("a\"b\\c\n".into());
        let mut h = inv.host("server1").unwrap().clone();
        h.interface = "e\"x".into();
        let t: toml::Table = vrrp_toml(&inv, &h).unwrap().parse().unwrap();
        let vi = &t["vrrp_instance"]["VI_1"];
        assert_eq!(vi["interface"].as_str(), Some("e\"x"));
        assert_eq!(
            vi["authentication"]["auth_pass"].as_str(),
            Some("a\"b\\c\n")
        );
    }
}
