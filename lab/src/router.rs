//! The ECMP topology's router: a lab namespace running FRR (zebra, bfdd, bgpd), which peers
//! with every balancer over BGP (BFD on the sessions), learns the VIPs they announce and
//! installs each as one route with a nexthop per balancer (`maximum-paths`).
//!
//! FRR runs confined like a lab host: a keeper (the plain one of [`crate::host::keeper`])
//! holds the router's own mount and PID namespaces, with overlays on /etc, /var and the rest
//! and a tmpfs on /run, so FRR's configs (/etc/frr), sockets and pid files (/run/frr) and its
//! crash-log directories (/var/tmp/frr) stay inside the lab's state directory; killing the
//! keeper kills the daemons (PID namespace) and drops the mounts.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use provision::inventory::Inventory;

use crate::error::{LabError, Result};
use crate::sys;

/// FRR's daemons, in start order (bgpd registers its BFD sessions with bfdd through zebra).
pub const DAEMONS: [&str; 3] = ["zebra", "bfdd", "bgpd"];
/// Where Debian's frr package keeps them.
pub const FRR_DIR: &str = "/usr/lib/frr";
/// Equal-cost paths the router installs per prefix: more than any lab has balancers.
pub const MAXIMUM_PATHS: u8 = 8;
/// BFD timers of the router's side (ms, multiplier). The session runs at the slower of the two
/// sides' intervals and each side declares it down after the *other* side's multiplier of
/// missed packets: with the balancers' 100 ms x 3 the router notices a dead balancer after
/// 3 x 500 ms and a balancer a dead router after 5 x 500 ms. Slower than a dedicated router
/// would run (100 ms x 3): every lab daemon shares two cores with builds and benchmarks, and
/// at 3 x 100 ms sessions flapped there under load (BFD down, BGP torn down, reconnect).
pub const BFD_INTERVAL_MS: u32 = 500;
pub const BFD_MULTIPLIER: u32 = 5;

/// Who peers with whom: the balancers' side of the `[bgp]` section of lab.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peering {
    /// The balancers' ASN.
    pub local_asn: u32,
    /// The router's address on the balancers' subnet.
    pub router: Ipv4Addr,
    pub router_asn: u32,
    pub bfd: bool,
}

/// Whether the inventory's balancers announce the VIPs over BGP (`[bgp] mode = "anycast"`).
pub fn anycast(inv: &Inventory) -> bool {
    inv.anycast().is_some()
}

impl Peering {
    /// The inventory's `[bgp]` section, or the lab's defaults for an inventory without one.
    pub fn for_inventory(inv: &Inventory) -> Peering {
        match &inv.bgp {
            Some(b) => Peering {
                local_asn: b.local_asn,
                router: b.router,
                router_asn: b.router_asn,
                bfd: b.bfd,
            },
            None => Peering::default(),
        }
    }
}

impl Default for Peering {
    /// Private ASNs (RFC 6996) and the first address of the seed's subnet.
    fn default() -> Peering {
        Peering {
            local_asn: 65001,
            router: Ipv4Addr::new(172, 16, 249, 1),
            router_asn: 65000,
            bfd: true,
        }
    }
}

/// The inventory text the ECMP lab runs: `text` with `[bgp] mode = "anycast"`, the section
/// appended with [`Peering::default`]'s values when it has none. An inventory that asks for
/// VRRP explicitly is refused rather than silently changed.
pub fn anycast_inventory(text: &str, origin: &str) -> Result<String> {
    let value: toml::Table = text
        .parse()
        .map_err(|e| LabError::Other(format!("{origin}: {e}")))?;
    let mode = value
        .get("bgp")
        .map(|b| b.get("mode").and_then(toml::Value::as_str));
    match mode {
        Some(Some("anycast")) => Ok(text.to_string()),
        Some(m) => Err(LabError::Other(format!(
            "{origin}: [bgp] mode = {:?} (absent means \"vrrp\"), but --topology ecmp announces \
             the VIPs from every balancer: set mode = \"anycast\" or remove the [bgp] section",
            m.unwrap_or("vrrp")
        ))),
        None => {
            let p = Peering::default();
            let mut out = text.to_string();
            if !out.ends_with('\n') {
                out.push('\n');
            }
            let _ = write!(
                out,
                "\n# Added by `lab up --topology ecmp`: every balancer announces the VIPs to the lab's\n\
                 # router over BGP while its proxy is healthy.\n\
                 [bgp]\nmode = \"anycast\"\nlocal_asn = {}\nrouter = \"{}\"\nrouter_asn = {}\nbfd = {}\n",
                p.local_asn, p.router, p.router_asn, p.bfd
            );
            Ok(out)
        }
    }
}

/// FRR's per-daemon config files for a router peering with `balancers`: (daemon, contents).
pub fn frr_configs(peering: &Peering, balancers: &[Ipv4Addr]) -> Vec<(&'static str, String)> {
    let head = "! Rendered by `lab up --topology ecmp`: the lab's router.\nfrr defaults traditional\nhostname router\n";
    let zebra = head.to_string();
    let bfd_profile = format!(
        "bfd\n profile lab\n  receive-interval {BFD_INTERVAL_MS}\n  transmit-interval {BFD_INTERVAL_MS}\n  detect-multiplier {BFD_MULTIPLIER}\n exit\nexit\n"
    );
    let bfdd = format!("{head}{bfd_profile}");
    // The router only learns: nothing it knows is announced back to the balancers.
    let mut bgpd = format!(
        "{head}route-map ANNOUNCE-NOTHING deny 10\nexit\nrouter bgp {}\n bgp router-id {}\n",
        peering.router_asn, peering.router
    );
    // The VIPs come without export policy from the balancers' own announcement (RFC 8212's
    // default would drop them); multipath-relax lets balancers in different ASes share too.
    bgpd.push_str(" no bgp ebgp-requires-policy\n bgp bestpath as-path multipath-relax\n");
    // Keepalive 3 s / hold 9 s as a fallback; BFD is what notices a dead balancer.
    bgpd.push_str(" timers bgp 3 9\n neighbor BALANCERS peer-group\n");
    let _ = writeln!(bgpd, " neighbor BALANCERS remote-as {}", peering.local_asn);
    // Reconnect quickly after a cut link heals (the default retry is 120 s).
    bgpd.push_str(" neighbor BALANCERS timers connect 1\n");
    if peering.bfd {
        bgpd.push_str(" neighbor BALANCERS bfd profile lab\n");
    }
    for b in balancers {
        let _ = writeln!(bgpd, " neighbor {b} peer-group BALANCERS");
    }
    let _ = write!(
        bgpd,
        " address-family ipv4 unicast\n  maximum-paths {MAXIMUM_PATHS}\n  neighbor BALANCERS route-map ANNOUNCE-NOTHING out\n exit-address-family\nexit\n"
    );
    vec![("zebra", zebra), ("bfdd", bfdd), ("bgpd", bgpd)]
}

/// A command inside the router (its network, mount, UTS and PID namespaces), `keeper` being
/// the pid of the process holding them.
pub fn command(keeper: i32, program: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.args([
        "-t",
        &keeper.to_string(),
        "-m",
        "-n",
        "-u",
        "-p",
        "--",
        program,
    ]);
    c
}

/// Writes FRR's configs into the router's /etc/frr (its overlay) and starts the daemons; returns
/// once each has written its pid file.
pub fn start_frr(keeper: i32, peering: &Peering, balancers: &[Ipv4Addr]) -> Result<()> {
    let root = std::path::PathBuf::from(format!("/proc/{keeper}/root"));
    for (daemon, text) in frr_configs(peering, balancers) {
        let path = root.join(format!("etc/frr/{daemon}.conf"));
        std::fs::write(&path, text)
            .map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
    }
    // The daemons drop to user frr: their run and log directories must be its own.
    let mut script = String::from(
        "set -e; mkdir -p /run/frr /var/log/frr; chown frr:frr /run/frr /var/log/frr\n",
    );
    for d in DAEMONS {
        let _ = writeln!(
            script,
            "{FRR_DIR}/{d} -d -f /etc/frr/{d}.conf --log file:/var/log/frr/{d}.log"
        );
    }
    sys::run(command(keeper, "sh").args(["-c", &script]))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let missing: Vec<&str> = DAEMONS
            .into_iter()
            .filter(|d| daemon_pid(keeper, d).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let log =
                std::fs::read_to_string(root.join("var/log/frr/zebra.log")).unwrap_or_default();
            return Err(LabError::Other(format!(
                "FRR on the router: {} not running after start; zebra.log:\n{log}",
                missing.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid (inside the router's PID namespace) of a running FRR daemon.
pub fn daemon_pid(keeper: i32, daemon: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(format!("/proc/{keeper}/root/run/frr/{daemon}.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let outer = sys::outer_pid(keeper, pid)?;
    sys::pid_alive(outer).then_some(pid)
}

/// The nexthops of the router's route to `vip` (empty when it has none).
pub fn nexthops(router_ns: &str, vip: Ipv4Addr) -> Vec<Ipv4Addr> {
    sys::ip(&["-n", router_ns, "route", "show", &vip.to_string()])
        .map(|out| parse_nexthops(&out))
        .unwrap_or_default()
}

/// The gateways of `ip route show PREFIX`, sorted: "via A" on the route's line (one path) or on
/// its "nexthop via A ..." lines (several).
pub fn parse_nexthops(out: &str) -> Vec<Ipv4Addr> {
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut v: Vec<Ipv4Addr> = words
        .windows(2)
        .filter(|w| w.first() == Some(&"via"))
        .filter_map(|w| w.get(1)?.parse().ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_multipath_routes() {
        let one = "172.16.249.80 nhid 10 via 172.16.249.102 dev eth0 proto bgp metric 20 \n";
        assert_eq!(parse_nexthops(one), vec![Ipv4Addr::new(172, 16, 249, 102)]);
        let two = "172.16.249.80 nhid 16 proto bgp metric 20 \n\
                   \tnexthop via 172.16.249.102 dev eth0 weight 1 \n\
                   \tnexthop via 172.16.249.101 dev eth0 weight 1 \n";
        assert_eq!(
            parse_nexthops(two),
            vec![
                Ipv4Addr::new(172, 16, 249, 101),
                Ipv4Addr::new(172, 16, 249, 102)
            ]
        );
        assert!(parse_nexthops("").is_empty());
        assert!(parse_nexthops("via nonsense via").is_empty());
    }

    #[test]
    fn ecmp_inventory_gets_an_anycast_bgp_section() {
        let seed = include_str!("../../lab.toml");
        let out = anycast_inventory(seed, "lab.toml").unwrap();
        assert!(out.starts_with(seed));
        let t: toml::Table = out.parse().unwrap();
        let bgp = t.get("bgp").unwrap();
        assert_eq!(bgp.get("mode").unwrap().as_str(), Some("anycast"));
        assert_eq!(bgp.get("router").unwrap().as_str(), Some("172.16.249.1"));
        assert_eq!(bgp.get("local_asn").unwrap().as_integer(), Some(65001));
        // Already anycast: unchanged; VRRP asked for: refused with the file's name.
        assert_eq!(anycast_inventory(&out, "x.toml").unwrap(), out);
        let vrrp = format!("{seed}\n[bgp]\nmode = \"vrrp\"\n");
        let e = anycast_inventory(&vrrp, "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("anycast"), "{e}");
        assert!(anycast_inventory("[network", "bad.toml").is_err());
        let no_mode = format!("{seed}\n[bgp]\nlocal_asn = 65001\n");
        assert!(anycast_inventory(&no_mode, "x.toml").is_err());
    }

    #[test]
    fn frr_config_peers_with_every_balancer() {
        let balancers = [
            Ipv4Addr::new(172, 16, 249, 101),
            Ipv4Addr::new(172, 16, 249, 102),
        ];
        let cfgs = frr_configs(&Peering::default(), &balancers);
        let names: Vec<&str> = cfgs.iter().map(|(d, _)| *d).collect();
        assert_eq!(names, DAEMONS);
        let bgpd = &cfgs[2].1;
        for line in [
            "router bgp 65000",
            " bgp router-id 172.16.249.1",
            " neighbor BALANCERS remote-as 65001",
            " neighbor BALANCERS bfd profile lab",
            " neighbor 172.16.249.101 peer-group BALANCERS",
            " neighbor 172.16.249.102 peer-group BALANCERS",
            "  maximum-paths 8",
            "  neighbor BALANCERS route-map ANNOUNCE-NOTHING out",
            "route-map ANNOUNCE-NOTHING deny 10",
        ] {
            assert!(bgpd.lines().any(|l| l == line), "{line:?} in\n{bgpd}");
        }
        assert!(cfgs[1].1.contains("  receive-interval 500\n"));
        let no_bfd = Peering {
            bfd: false,
            ..Peering::default()
        };
        assert!(!frr_configs(&no_bfd, &balancers)[2].1.contains("bfd"));
    }
}
