//! The lab's network: a bridge in its own namespace, one namespace per host plus a client, each
//! joined to the bridge by a veth pair. Nothing touches the root namespace: both ends of every
//! veth are created directly inside lab namespaces.
//!
//! Two shapes ([`Topology`]): `flat`, the seed's one segment (client on the hosts' bridge, no
//! namespace has a default route), and `ecmp`, where a router namespace stands between the
//! client (on a subnet of its own) and the hosts' bridge, learns the VIPs from the balancers
//! over BGP and spreads flows over them. There the hosts' default route points at the router,
//! which holds the inventory's gateway address, as a real fleet's servers reach their clients
//! through their default gateway; the router itself has no default route, so nothing leaves
//! the lab.

use std::net::Ipv4Addr;

use provision::inventory::Inventory;
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::router::Peering;
use crate::state::Names;
use crate::sys::ip;

/// The shape of the lab's network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// One segment: client, balancers and backends on one bridge; the VIPs move by VRRP.
    #[default]
    Flat,
    /// Client behind a router that peers with every balancer over BGP (anycast VIPs, ECMP).
    Ecmp,
}

impl Topology {
    pub fn parse(s: &str) -> Option<Topology> {
        match s {
            "flat" => Some(Topology::Flat),
            "ecmp" => Some(Topology::Ecmp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Topology::Flat => "flat",
            Topology::Ecmp => "ecmp",
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The client's own subnet in the ECMP topology: 172.16.250.0/24, the router on .1, the
/// client on .10 (next to the seed's 172.16.249.0/24, and like it private).
pub const CLIENT_SUBNET: Ipv4Addr = Ipv4Addr::new(172, 16, 250, 0);
pub const CLIENT_SUBNET_PREFIX: u8 = 24;
pub const CLIENT_SUBNET_ROUTER: Ipv4Addr = Ipv4Addr::new(172, 16, 250, 1);
pub const CLIENT_SUBNET_CLIENT: Ipv4Addr = Ipv4Addr::new(172, 16, 250, 10);
/// The router's interfaces: on the hosts' bridge, and towards the client.
pub const ROUTER_HOSTS_IFACE: &str = "eth0";
pub const ROUTER_CLIENT_IFACE: &str = "eth1";

/// The router of the ECMP topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    pub ns: String,
    /// Its veth end inside the bridge namespace.
    pub port: String,
    /// Its address on the hosts' subnet (the balancers' BGP neighbour).
    pub address: Ipv4Addr,
    /// The inventory's gateway, held as a second address when it differs: the hosts' default
    /// route.
    pub gateway: Option<Ipv4Addr>,
    pub peering: Peering,
}

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
    /// The veth end on the other side: in the bridge namespace, or for the ECMP topology's
    /// client in the router's.
    pub port: String,
    /// The namespace `port` is in.
    pub port_ns: String,
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
    /// The ECMP topology's router.
    pub router: Option<Router>,
}

impl Plan {
    pub fn new(
        inv: &Inventory,
        names: &Names,
        client_address: Ipv4Addr,
        topology: Topology,
    ) -> Plan {
        let bridge_ns = names.bridge_ns();
        let hosts = inv
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Node {
                name: h.name.clone(),
                ns: names.host_ns(&h.name),
                // Index-based so long host names never exceed IFNAMSIZ.
                port: format!("h{i}"),
                port_ns: bridge_ns.clone(),
                iface: h.interface.clone(),
                address: h.address,
            })
            .collect();
        let router = (topology == Topology::Ecmp).then(|| {
            let peering = Peering::for_inventory(inv);
            Router {
                ns: names.router_ns(),
                port: "r0".into(),
                address: peering.router,
                gateway: Some(inv.network.gateway).filter(|g| *g != peering.router),
                peering,
            }
        });
        let client = match &router {
            Some(r) => Node {
                name: "client".into(),
                ns: names.client_ns(),
                port: ROUTER_CLIENT_IFACE.into(),
                port_ns: r.ns.clone(),
                iface: CLIENT_IFACE.into(),
                address: client_address,
            },
            None => Node {
                name: "client".into(),
                ns: names.client_ns(),
                port: "c0".into(),
                port_ns: bridge_ns.clone(),
                iface: CLIENT_IFACE.into(),
                address: client_address,
            },
        };
        Plan {
            bridge_ns,
            prefix: inv.network.prefix,
            hosts,
            client,
            router,
        }
    }

    pub fn topology(&self) -> Topology {
        if self.router.is_some() {
            Topology::Ecmp
        } else {
            Topology::Flat
        }
    }

    /// The hosts' default route: through the router, in the ECMP topology.
    pub fn hosts_gateway(&self) -> Option<Ipv4Addr> {
        self.router.as_ref().map(|r| r.gateway.unwrap_or(r.address))
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.hosts
            .iter()
            .find(|n| n.name == name)
            .or_else(|| (name == "client").then_some(&self.client))
    }
}

/// The client's address: in the ECMP topology on its own subnet (checked not to overlap the
/// hosts' network or a VIP); else on the hosts' subnet.
pub fn client_address_for(inv: &Inventory, topology: Topology) -> Result<Ipv4Addr> {
    match topology {
        Topology::Flat => client_address(inv).ok_or_else(|| {
            LabError::Other("no free address for the lab client in the network".into())
        }),
        Topology::Ecmp => {
            let mask = u32::MAX << (32 - u32::from(CLIENT_SUBNET_PREFIX));
            let in_client_net = |a: Ipv4Addr| u32::from(a) & mask == u32::from(CLIENT_SUBNET);
            let clash = in_client_net(inv.network.network_address())
                || inv.network.contains(CLIENT_SUBNET)
                || inv.network.vips.iter().any(|&v| in_client_net(v));
            if clash {
                return Err(LabError::Other(format!(
                    "--topology ecmp puts the client on {CLIENT_SUBNET}/{CLIENT_SUBNET_PREFIX}, \
                     which overlaps the inventory's network or VIPs"
                )));
            }
            let peering = Peering::for_inventory(inv);
            let taken = inv.hosts.iter().any(|h| h.address == peering.router)
                || inv.network.vips.contains(&peering.router);
            if !inv.network.contains(peering.router) || taken {
                return Err(LabError::Other(format!(
                    "the BGP router address {} must be a free address of the hosts' network",
                    peering.router
                )));
            }
            Ok(CLIENT_SUBNET_CLIENT)
        }
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

/// The ECMP topology's router: on the hosts' bridge (its BGP address and the hosts' gateway),
/// on a link of its own to the client (whose default route it is), forwarding, and hashing
/// flows over equal-cost paths on their ports too (`fib_multipath_hash_policy = 1`, layer 4:
/// one client's many connections spread over the balancers instead of all following its
/// address).
pub fn create_router(plan: &Plan, router: &Router) -> Result<()> {
    let br = plan.bridge_ns.as_str();
    let ns = router.ns.as_str();
    ip(&[
        "-n",
        br,
        "link",
        "add",
        &router.port,
        "type",
        "veth",
        "peer",
        "name",
        ROUTER_HOSTS_IFACE,
        "netns",
        ns,
    ])?;
    ip(&[
        "-n",
        br,
        "link",
        "set",
        &router.port,
        "master",
        BRIDGE,
        "up",
    ])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    for a in std::iter::once(router.address).chain(router.gateway) {
        let cidr = format!("{a}/{}", plan.prefix);
        ip(&["-n", ns, "addr", "add", &cidr, "dev", ROUTER_HOSTS_IFACE])?;
    }
    ip(&["-n", ns, "link", "set", ROUTER_HOSTS_IFACE, "up"])?;
    let c = &plan.client;
    ip(&[
        "-n", ns, "link", "add", &c.port, "type", "veth", "peer", "name", &c.iface, "netns", &c.ns,
    ])?;
    let cidr = format!("{CLIENT_SUBNET_ROUTER}/{CLIENT_SUBNET_PREFIX}");
    ip(&["-n", ns, "addr", "add", &cidr, "dev", &c.port])?;
    ip(&["-n", ns, "link", "set", &c.port, "up"])?;
    // /proc/sys/net under `ip netns exec` is the router namespace's own.
    crate::sys::run(std::process::Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_forward=1",
        "net.ipv4.fib_multipath_hash_policy=1",
    ]))?;
    Ok(())
}

/// The ECMP topology's client: its address on the router's link and its default route there.
pub fn attach_client_to_router(plan: &Plan) -> Result<()> {
    let c = &plan.client;
    ip(&["-n", &c.ns, "link", "set", "lo", "up"])?;
    let cidr = format!("{}/{CLIENT_SUBNET_PREFIX}", c.address);
    ip(&["-n", &c.ns, "addr", "add", &cidr, "dev", &c.iface])?;
    ip(&["-n", &c.ns, "link", "set", &c.iface, "up"])?;
    let via = CLIENT_SUBNET_ROUTER.to_string();
    ip(&["-n", &c.ns, "route", "add", "default", "via", &via])?;
    Ok(())
}

/// A host's default route (a host without systemd; a systemd host's ifupdown sets it).
pub fn add_default_route(node: &Node, via: Ipv4Addr) -> Result<()> {
    let via = via.to_string();
    ip(&["-n", &node.ns, "route", "replace", "default", "via", &via])?;
    Ok(())
}

/// Link down (`up == false`, a cut cable) or up of `node`'s bridge port. The host's own
/// interface loses carrier, as with a pulled cable.
pub fn set_port(node: &Node, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    ip(&["-n", &node.port_ns, "link", "set", &node.port, state])?;
    Ok(())
}

/// Whether `node`'s bridge port is administratively up.
pub fn port_is_up(node: &Node) -> bool {
    ip(&["-n", &node.port_ns, "-o", "link", "show", &node.port])
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
        let plan = Plan::new(&inv, &names, client, Topology::Flat);
        assert_eq!(plan.bridge_ns, "lab-bridge");
        assert_eq!(plan.router, None);
        assert_eq!(plan.hosts_gateway(), None);
        assert_eq!(plan.client.port_ns, "lab-bridge");
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
    fn ecmp_plan_puts_the_client_behind_the_router() {
        let inv = seed();
        let names = Names::new("t1").unwrap();
        let client = client_address_for(&inv, Topology::Ecmp).unwrap();
        assert_eq!(client, Ipv4Addr::new(172, 16, 250, 10));
        let plan = Plan::new(&inv, &names, client, Topology::Ecmp);
        let r = plan.router.as_ref().unwrap();
        assert_eq!(r.ns, "t1-router");
        assert_eq!(r.address, Ipv4Addr::new(172, 16, 249, 1));
        // The seed's gateway (.2) is the hosts' default route, held by the router too.
        assert_eq!(r.gateway, Some(Ipv4Addr::new(172, 16, 249, 2)));
        assert_eq!(plan.hosts_gateway(), Some(Ipv4Addr::new(172, 16, 249, 2)));
        assert_eq!(plan.client.port_ns, "t1-router");
        assert_eq!(plan.client.port, ROUTER_CLIENT_IFACE);
        assert_eq!(plan.topology(), Topology::Ecmp);
        assert_eq!(plan.hosts[1].port_ns, "t1-bridge");
        assert_eq!(
            client_address_for(&inv, Topology::Flat).unwrap(),
            Ipv4Addr::new(172, 16, 249, 10)
        );
    }

    #[test]
    fn ecmp_refuses_a_client_subnet_that_overlaps() {
        let text = include_str!("../../lab.toml").replace("prefix = 24", "prefix = 16");
        let inv = Inventory::parse(&text, "lab.toml").unwrap();
        let e = client_address_for(&inv, Topology::Ecmp).unwrap_err();
        assert!(e.to_string().contains("172.16.250.0/24"), "{e}");
        let text = include_str!("../../lab.toml").replace("172.16.249.101", "172.16.249.1");
        let inv = Inventory::parse(&text, "lab.toml").unwrap();
        let e = client_address_for(&inv, Topology::Ecmp).unwrap_err();
        assert!(e.to_string().contains("BGP router address"), "{e}");
    }

    #[test]
    fn topology_names() {
        assert_eq!(Topology::parse("ecmp"), Some(Topology::Ecmp));
        assert_eq!(Topology::parse("flat"), Some(Topology::Flat));
        assert_eq!(Topology::parse("l3"), None);
        assert_eq!(Topology::default().to_string(), "flat");
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
