//! Anycast mode (`[bgp] mode = "anycast"`): each balancer's vrrp.toml with an `[anycast]` table
//! instead of a VRRP instance, and its BIRD 2 configuration.
//!
//! The split of work: vrrp puts the VIPs on the dummy interface `vip0` while the proxy is
//! healthy and takes them off when it is not (or when vrrp stops); BIRD exports exactly those
//! addresses, as /32 routes, to the router over BGP, with BFD on the session so a dead
//! balancer or link is noticed in a third of a second. Pure functions of the inventory, like
//! [`crate::render`].

use std::fmt::Write as _;

use crate::inventory::{Bgp, Host, Inventory};
use crate::quote::toml_string;
use crate::render::{
    balancer_priority, RenderError, PROXY_ADMIN, TRACK_FALL, TRACK_INTERVAL_SECS,
    TRACK_TIMEOUT_SECS, VRRP_RUNTIME_DIR,
};

/// Where Debian's and Ubuntu's bird2 package reads its configuration.
pub const BIRD_CONFIG_PATH: &str = "/etc/bird/bird.conf";
/// Where EPEL's bird package (EL8, EL9) reads it.
pub const BIRD_CONFIG_PATH_EL: &str = "/etc/bird.conf";

/// The dummy interface the VIPs sit on while announced.
pub const ANYCAST_INTERFACE: &str = "vip0";
/// BIRD's name for the BGP session with the router (`birdc show protocols to_router`).
pub const BGP_PROTOCOL: &str = "to_router";
/// BGP hold and keepalive times (seconds): what notices a dead peer when BFD is off.
pub const BGP_HOLD_SECS: u32 = 9;
pub const BGP_KEEPALIVE_SECS: u32 = 3;

/// The vrrp.toml of balancer `host` in anycast mode: the proxy's health check (as in VRRP
/// mode) gating the announcement of every VIP, and the host's interface tracked too (no link,
/// no session to the router).
pub fn vrrp_toml(inv: &Inventory, host: &Host, bgp: &Bgp) -> Result<String, RenderError> {
    balancer_priority(host)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# vrrp.toml for {} ({}), rendered from lab.toml. Do not edit: changes are overwritten.",
        host.name, host.address
    );
    let _ = writeln!(s, "[global_defs]");
    let _ = writeln!(s, "router_id = {}", toml_string(&host.name));
    let _ = writeln!(s, "runtime_dir = \"{VRRP_RUNTIME_DIR}\"");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "# The proxy's health endpoint; a failing proxy withdraws this balancer's announcement."
    );
    let _ = writeln!(s, "[vrrp_script.check_proxy]");
    let _ = writeln!(s, "http = \"http://{PROXY_ADMIN}/healthz\"");
    let _ = writeln!(s, "interval = {TRACK_INTERVAL_SECS}");
    let _ = writeln!(s, "timeout = {TRACK_TIMEOUT_SECS}");
    let _ = writeln!(s, "weight = 0");
    let _ = writeln!(s, "fall = {TRACK_FALL}");
    let _ = writeln!(s, "rise = 1");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "# lab.toml [bgp] mode = \"anycast\": the VIPs sit on {ANYCAST_INTERFACE} while the checks pass, and BIRD\n# (bird.conf) announces them to the router {} (AS {}) over BGP.",
        bgp.router, bgp.router_asn
    );
    let _ = writeln!(s, "[anycast]");
    let _ = writeln!(s, "interface = \"{ANYCAST_INTERFACE}\"");
    let _ = writeln!(s, "track_script = [\"check_proxy\"]");
    let _ = writeln!(s, "track_interface = [{}]", toml_string(&host.interface));
    let vips: Vec<String> = inv
        .network
        .vips
        .iter()
        .map(|v| format!("\"{v}/32\""))
        .collect();
    let _ = writeln!(s, "virtual_ipaddress = [{}]", vips.join(", "));
    Ok(s)
}

/// The bird.conf of balancer `host`: the addresses on vip0 (and only the VIPs among them, as
/// /32s) exported over one eBGP session to the router, BFD on it, nothing imported.
pub fn bird_conf(inv: &Inventory, host: &Host, bgp: &Bgp) -> Result<String, RenderError> {
    balancer_priority(host)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# bird.conf for {} ({}), rendered from lab.toml [bgp]. Do not edit: changes are overwritten.\n\
         # vrrp puts the VIPs on {ANYCAST_INTERFACE} while this balancer's proxy is healthy and takes them off\n\
         # when it is not or when vrrp stops; BIRD announces what is there. Check with\n\
         # `birdc show protocols` and `birdc show route export {BGP_PROTOCOL}`.",
        host.name, host.address
    );
    let _ = writeln!(s, "log syslog all;");
    let _ = writeln!(s, "router id {};", host.address);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "# The kernel's interfaces ({ANYCAST_INTERFACE} appears when vrrp creates it)."
    );
    let _ = writeln!(s, "protocol device {{\n  scan time 10;\n}}\n");
    let _ = writeln!(s, "# The addresses on {ANYCAST_INTERFACE}, as routes.");
    let _ = writeln!(
        s,
        "protocol direct anycast_vips {{\n  ipv4;\n  interface \"{ANYCAST_INTERFACE}\";\n}}\n"
    );
    let vips: Vec<String> = inv.network.vips.iter().map(|v| format!("{v}/32")).collect();
    let _ = writeln!(
        s,
        "# Only the VIPs, only as host routes, only from {ANYCAST_INTERFACE} ever leave this balancer."
    );
    let _ = writeln!(s, "define ANYCAST_VIPS = [ {} ];\n", vips.join(", "));
    let _ = writeln!(
        s,
        "filter export_anycast_vips {{\n  if proto = \"anycast_vips\" && net ~ ANYCAST_VIPS then accept;\n  reject;\n}}\n"
    );
    if bgp.bfd {
        let (ms, mult) = (bgp.bfd_interval_ms, bgp.bfd_multiplier);
        let _ = writeln!(
            s,
            "# A dead balancer or link is declared down {} ms after its last BFD packet (at the\n# slower of the two sides' timers: BFD negotiates).",
            ms * u32::from(mult)
        );
        let _ = writeln!(
            s,
            "protocol bfd {{\n  interface \"{}\" {{\n    min rx interval {ms} ms;\n    min tx interval {ms} ms;\n    multiplier {mult};\n  }};\n}}\n",
            host.interface
        );
    }
    bgp_protocol(&mut s, host, bgp);
    Ok(s)
}

fn bgp_protocol(s: &mut String, host: &Host, bgp: &Bgp) {
    let _ = writeln!(s, "protocol bgp {BGP_PROTOCOL} {{");
    let _ = writeln!(
        s,
        "  description \"the router spreading the VIPs over the balancers\";"
    );
    let _ = writeln!(s, "  local {} as {};", host.address, bgp.local_asn);
    let _ = writeln!(s, "  neighbor {} as {};", bgp.router, bgp.router_asn);
    if bgp.bfd {
        let _ = writeln!(s, "  bfd on;");
    }
    let _ = writeln!(
        s,
        "  # A balancer that goes away must lose its routes at once, not have the router keep\n  # them for a restart that may never come."
    );
    let _ = writeln!(s, "  graceful restart off;");
    let _ = writeln!(s, "  hold time {BGP_HOLD_SECS};");
    let _ = writeln!(s, "  keepalive time {BGP_KEEPALIVE_SECS};");
    let _ = writeln!(
        s,
        "  # Back in service soon after the router or the link returns (defaults: 5 s before the\n  # first connect, 120 s between tries, 60-300 s after an error)."
    );
    let _ = writeln!(s, "  connect delay time 1;");
    let _ = writeln!(s, "  connect retry time 5;");
    let _ = writeln!(s, "  error wait time 1, 30;");
    let _ = writeln!(
        s,
        "  ipv4 {{\n    import none;\n    export filter export_anycast_vips;\n  }};"
    );
    let _ = writeln!(s, "}}");
}

#[cfg(test)]
mod tests;
