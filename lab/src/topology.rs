//! The lab's network: a bridge in its own namespace, one namespace per host plus a client, each
//! joined to the bridge by a veth pair. Nothing touches the root namespace: both ends of every
//! veth are created directly inside lab namespaces, and no namespace has a default route.

use std::net::Ipv4Addr;

use provision::inventory::Inventory;

use crate::error::Result;
use crate::state::Names;
use crate::sys::ip;

/// Name of the bridge inside the bridge namespace.
pub const BRIDGE: &str = "br0";
/// The client's interface name.
pub const CLIENT_IFACE: &str = "eth0";

/// One namespace attached to the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Host name, or "client".
    pub name: String,
    pub ns: String,
    /// The veth end inside the bridge namespace.
    pub port: String,
    /// The veth end inside the node (the host's `interface`).
    pub iface: String,
    pub address: Ipv4Addr,
}

/// Everything `up` creates, computed from the inventory (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub bridge_ns: String,
    pub prefix: u8,
    pub hosts: Vec<Node>,
    pub client: Node,
}

impl Plan {
    pub fn new(inv: &Inventory, names: &Names, client_address: Ipv4Addr) -> Plan {
        let hosts = inv
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Node {
                name: h.name.clone(),
                ns: names.host_ns(&h.name),
                // Index-based so long host names never exceed IFNAMSIZ.
                port: format!("h{i}"),
                iface: h.interface.clone(),
                address: h.address,
            })
            .collect();
        Plan {
            bridge_ns: names.bridge_ns(),
            prefix: inv.network.prefix,
            hosts,
            client: Node {
                name: "client".into(),
                ns: names.client_ns(),
                port: "c0".into(),
                iface: CLIENT_IFACE.into(),
                address: client_address,
            },
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.hosts
            .iter()
            .find(|n| n.name == name)
            .or_else(|| (name == "client").then_some(&self.client))
    }
}

/// The client's address: the first free address from .10 of the subnet on, skipping the
/// gateway, hosts and VIPs.
pub fn client_address(inv: &Inventory) -> Option<Ipv4Addr> {
    let net = u32::from(inv.network.network_address());
    let used = |a: Ipv4Addr| {
        a == inv.network.gateway
            || inv.network.vips.contains(&a)
            || inv.hosts.iter().any(|h| h.address == a)
    };
    (10u32..)
        .take(4096)
        .map(|off| Ipv4Addr::from(net.wrapping_add(off)))
        .find(|&a| inv.network.contains(a) && !used(a))
}

/// Creates the bridge namespace's bridge (the namespace itself already exists).
pub fn create_bridge(plan: &Plan) -> Result<()> {
    let ns = plan.bridge_ns.as_str();
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&["-n", ns, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["-n", ns, "link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// Joins `node`'s namespace (already existing) to the bridge and, if `address`, configures its
/// address (a systemd host's own ifupdown does that at boot instead).
pub fn attach(plan: &Plan, node: &Node, address: bool) -> Result<()> {
    let br = plan.bridge_ns.as_str();
    // The peer is created directly in the node's namespace under its final name: nothing ever
    // appears in the root namespace.
    ip(&[
        "-n",
        br,
        "link",
        "add",
        &node.port,
        "type",
        "veth",
        "peer",
        "name",
        &node.iface,
        "netns",
        &node.ns,
    ])?;
    ip(&["-n", br, "link", "set", &node.port, "master", BRIDGE, "up"])?;
    ip(&["-n", &node.ns, "link", "set", "lo", "up"])?;
    if address {
        let cidr = format!("{}/{}", node.address, plan.prefix);
        ip(&["-n", &node.ns, "addr", "add", &cidr, "dev", &node.iface])?;
    }
    ip(&["-n", &node.ns, "link", "set", &node.iface, "up"])?;
    Ok(())
}

/// Link down (`up == false`, a cut cable) or up of `node`'s bridge port. The host's own
/// interface loses carrier, as with a pulled cable.
pub fn set_port(plan: &Plan, node: &Node, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    ip(&["-n", &plan.bridge_ns, "link", "set", &node.port, state])?;
    Ok(())
}

/// Whether `node`'s bridge port is administratively up.
pub fn port_is_up(plan: &Plan, node: &Node) -> bool {
    ip(&["-n", &plan.bridge_ns, "-o", "link", "show", &node.port])
        .map(|out| {
            out.split_once('<')
                .and_then(|(_, r)| r.split_once('>'))
                .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
        })
        .unwrap_or(false)
}

/// IPv4 addresses configured in namespace `ns` (all interfaces but lo).
pub fn addresses(ns: &str) -> Vec<Ipv4Addr> {
    ip(&["-n", ns, "-4", "-o", "addr", "show"])
        .map(|out| parse_addresses(&out))
        .unwrap_or_default()
}

/// Parses `ip -4 -o addr show` lines: "2: ens33    inet 172.16.249.101/24 brd ... ".
pub fn parse_addresses(out: &str) -> Vec<Ipv4Addr> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let _idx = it.next()?;
            let dev = it.next()?;
            if dev == "lo" {
                return None;
            }
            let mut it = it.skip_while(|w| *w != "inet");
            it.next()?;
            it.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Inventory {
        Inventory::parse(include_str!("../../lab.toml"), "lab.toml").unwrap()
    }

    #[test]
    fn plan_for_the_seed() {
        let inv = seed();
        let names = Names::new("lab").unwrap();
        let client = client_address(&inv).unwrap();
        assert_eq!(client, Ipv4Addr::new(172, 16, 249, 10));
        let plan = Plan::new(&inv, &names, client);
        assert_eq!(plan.bridge_ns, "lab-bridge");
        assert_eq!(plan.hosts.len(), 4);
        assert_eq!(plan.hosts[0].ns, "lab-server1");
        assert_eq!(plan.hosts[0].iface, "ens33");
        assert_eq!(plan.hosts[0].port, "h0");
        assert_eq!(plan.hosts[3].address, Ipv4Addr::new(172, 16, 249, 202));
        assert_eq!(plan.client.ns, "lab-client");
        assert_eq!(plan.node("client").unwrap().address, client);
        assert!(plan.node("server9").is_none());
    }

    #[test]
    fn client_skips_used_addresses() {
        let text = include_str!("../../lab.toml").replace("172.16.249.101", "172.16.249.10");
        let inv = Inventory::parse(&text, "lab.toml").unwrap();
        assert_eq!(client_address(&inv), Some(Ipv4Addr::new(172, 16, 249, 11)));
    }

    #[test]
    fn parses_ip_addr_output() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                   2: ens33    inet 172.16.249.101/24 scope global ens33\\       valid_lft forever\n\
                   2: ens33    inet 172.16.249.80/24 scope global secondary ens33\\       valid_lft forever\n";
        assert_eq!(
            parse_addresses(out),
            vec![
                Ipv4Addr::new(172, 16, 249, 101),
                Ipv4Addr::new(172, 16, 249, 80)
            ]
        );
        assert!(parse_addresses("garbage\n\n").is_empty());
    }
}
