//! Anycast mode on a balancer: BIRD 2 with the rendered bird.conf, the firewall opened for BGP
//! and BFD from the router only, and the check that this balancer announces the VIPs.

use std::fmt::Write as _;

use crate::check::Check;
use crate::inventory::{Bgp, Host, Inventory};
use crate::os::Family;
use crate::plan::Step;
use crate::quote::shell_quote;
use crate::render::RenderError;
use crate::render_anycast::{
    bird_conf, ANYCAST_INTERFACE, BGP_PROTOCOL, BIRD_CONFIG_PATH, BIRD_CONFIG_PATH_EL,
};

use super::roles::selinux_labels;
use super::system::{package, service_running};

/// BGP (TCP 179; BIRD connects out too, answered through conntrack) and BFD single-hop
/// control and echo (UDP 3784-3785, RFC 5881).
const PORTS: [(&str, &str); 2] = [("179", "tcp"), ("3784-3785", "udp")];

/// firewalld rich rules: BGP and BFD from the router's address only.
pub(super) fn firewalld_rules(mut step: Step, bgp: &Bgp) -> Step {
    for (port, proto) in PORTS {
        let rule = format!(
            "rule family=\"ipv4\" source address=\"{}\" port port=\"{port}\" protocol=\"{proto}\" accept",
            bgp.router
        );
        let q = shell_quote(&rule);
        step = step.ensure(
            &format!("{port}/{proto} from the router {} allowed", bgp.router),
            Check::FirewalldRichRule(rule.clone()),
            &format!("firewall-cmd --permanent --add-rich-rule={q}"),
        );
    }
    step
}

/// nftables lines for the input chain: BGP and BFD from the router's address only.
pub(super) fn nft_rules(bgp: &Bgp) -> String {
    let mut c = String::new();
    for (port, proto) in PORTS {
        let _ = writeln!(
            c,
            "    ip saddr {} {proto} dport {port} counter accept",
            bgp.router
        );
    }
    c
}

/// BIRD 2: the distribution's package (EPEL's `bird` on EL8/EL9: BIRD 2 there), the rendered
/// bird.conf validated with `bird -p` before it replaces the old one, reloaded on change
/// (`birdc configure` keeps the BGP session up), and the session with the router up.
pub(super) fn bird(
    inv: &Inventory,
    host: &Host,
    family: Family,
    bgp: &Bgp,
) -> Result<Step, RenderError> {
    let conf = bird_conf(inv, host, bgp)?;
    let mut step = Step::new("bird");
    step.serial = true;
    let (pkg, path) = if family.is_el() {
        step = package(step, family, "epel-release");
        ("bird", BIRD_CONFIG_PATH_EL)
    } else {
        ("bird2", BIRD_CONFIG_PATH)
    };
    step = package(step, family, pkg);
    step = step.validated_file(path, conf, 0o644, "bird -p -c {}");
    step = selinux_labels(step, family, &[path]);
    step = step.on_change("systemctl reload-or-restart bird");
    step = service_running(step, "bird");
    Ok(step.assert(
        "BGP session with the router established",
        &format!(
            "for i in $(seq 60); do birdc show protocols {BGP_PROTOCOL} | grep -q Established && exit 0; sleep 0.5; done; birdc show protocols all {BGP_PROTOCOL} >&2; echo 'no BGP session with the router {}' >&2; exit 1",
            bgp.router
        ),
    ))
}

/// This balancer announces every VIP (they are on vip0: its proxy is healthy) and serves it.
pub(super) fn announced_check(inv: &Inventory) -> Step {
    let mut cmd = String::new();
    for vip in &inv.network.vips {
        let _ = write!(
            cmd,
            "ok=; for i in $(seq 60); do ip -4 -o addr show dev {ANYCAST_INTERFACE} | grep -qF ' {vip}/32 ' && curl -fsS -m 1 -o /dev/null http://{vip}/ && ok=1 && break; sleep 0.25; done; [ -n \"$ok\" ] || {{ echo 'VIP {vip} is not announced (not on {ANYCAST_INTERFACE}) or does not answer on port 80' >&2; exit 1; }}; "
        );
    }
    cmd.push_str("exit 0");
    let mut step = Step::new("anycast check").assert("every VIP announced and answering", &cmd);
    // Part of the balancer's turn: the next one starts only once this one carries traffic.
    step.serial = true;
    step
}
