//! `[bgp]`: how the balancers share the VIPs. "vrrp" (the default, also when the section is
//! absent): one balancer holds them, elected with VRRP. "anycast": every healthy balancer
//! announces them as /32 routes to a router over BGP (BIRD on each balancer), and the router
//! spreads flows over all of them (ECMP).

use std::net::Ipv4Addr;

use serde::Deserialize;
use toml::Spanned;

use super::Collector;

/// `[bgp] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BgpMode {
    /// One active balancer, VRRP elects it (no BGP at all).
    Vrrp,
    /// Every healthy balancer announces the VIPs over BGP.
    Anycast,
}

/// The validated `[bgp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bgp {
    pub mode: BgpMode,
    /// The balancers' autonomous system.
    pub local_asn: u32,
    /// The BGP neighbour: the router in front of the balancers, on their subnet.
    pub router: Ipv4Addr,
    pub router_asn: u32,
    /// BFD on the session: a dead balancer (or link) is noticed in well under a second
    /// instead of after the BGP hold time.
    pub bfd: bool,
    /// BFD transmit/receive interval in milliseconds (default 100).
    pub bfd_interval_ms: u32,
    /// Missed BFD packets before the session is declared down (default 3).
    pub bfd_multiplier: u8,
}

/// BFD defaults: 100 ms x 3 declares a peer dead 300 ms after its last packet.
pub const DEFAULT_BFD_INTERVAL_MS: u32 = 100;
pub const DEFAULT_BFD_MULTIPLIER: u8 = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    mode: Option<Spanned<String>>,
    local_asn: Option<Spanned<i64>>,
    router: Option<Spanned<String>>,
    router_asn: Option<Spanned<i64>>,
    bfd: Option<bool>,
    bfd_interval_ms: Option<Spanned<i64>>,
    bfd_multiplier: Option<Spanned<i64>>,
}

impl RawBgp {
    pub(super) fn router_spanned(&self) -> Option<&Spanned<String>> {
        self.router.as_ref()
    }
}

/// 0 and 65535 / 4294967295 are reserved (RFC 7300), 23456 is AS_TRANS (RFC 6793): none of
/// them can be a speaker's own number.
fn asn(c: &mut Collector<'_>, v: &Spanned<i64>, what: &str) -> Option<u32> {
    let n = *v.get_ref();
    match u32::try_from(n) {
        Ok(a) if a != 0 && a != 23456 && a != 65535 && a != u32::MAX => Some(a),
        _ => {
            c.at(
                v,
                format!(
                    "{what} {n} is not a usable AS number (1..=4294967294, not 23456 or 65535)"
                ),
            );
            None
        }
    }
}

/// `v` within `min..=max`, else an error at its line.
fn ranged<T: TryFrom<i64>>(
    c: &mut Collector<'_>,
    v: &Spanned<i64>,
    what: &str,
    min: i64,
    max: i64,
) -> Option<T> {
    let n = *v.get_ref();
    if !(min..=max).contains(&n) {
        c.at(v, format!("{what} must be {min}..={max}, got {n}"));
        return None;
    }
    T::try_from(n).ok()
}

/// Validates `[bgp]`; `whole` is the section (for "missing key" errors); `subnet` says
/// whether an address is a host of the balancers' subnet.
pub(super) fn validate(
    c: &mut Collector<'_>,
    whole: &Spanned<RawBgp>,
    subnet: &dyn Fn(Ipv4Addr) -> bool,
) -> Option<Bgp> {
    let raw = whole.get_ref();
    let mode = match raw.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "vrrp")) => BgpMode::Vrrp,
        Some((_, "anycast")) => BgpMode::Anycast,
        Some((m, other)) => {
            c.at(
                m,
                format!("mode must be \"vrrp\" or \"anycast\", got {other:?}"),
            );
            return None;
        }
    };
    let missing = |c: &mut Collector<'_>, key: &str| {
        if mode == BgpMode::Anycast {
            c.at(whole, format!("[bgp] mode = \"anycast\" needs {key}"));
        }
    };
    let local_asn = match &raw.local_asn {
        Some(v) => asn(c, v, "local_asn"),
        None => {
            missing(c, "local_asn");
            None
        }
    };
    let router_asn = match &raw.router_asn {
        Some(v) => asn(c, v, "router_asn"),
        None => {
            missing(c, "router_asn");
            None
        }
    };
    let router = match &raw.router {
        Some(r) => c.ipv4(r, "router").filter(|a| {
            let inside = subnet(*a);
            if !inside {
                c.at(r, format!("router {a} must be on the balancers' subnet (the BGP session is single-hop, as BFD's)"));
            }
            inside
        }),
        None => {
            missing(c, "router");
            None
        }
    };
    if let (Some(l), Some(r), Some(v)) = (local_asn, router_asn, &raw.router_asn) {
        if l == r {
            c.at(v, format!("router_asn {r} equals local_asn: the balancers speak eBGP to the router (iBGP would not pass their routes on as they are)"));
        }
    }
    let bfd_interval_ms = match &raw.bfd_interval_ms {
        None => DEFAULT_BFD_INTERVAL_MS,
        Some(v) => ranged(c, v, "bfd_interval_ms", 10, 10_000).unwrap_or(0),
    };
    let bfd_multiplier = match &raw.bfd_multiplier {
        None => DEFAULT_BFD_MULTIPLIER,
        Some(v) => ranged(c, v, "bfd_multiplier", 1, 255).unwrap_or(0),
    };
    Some(Bgp {
        mode,
        bfd_interval_ms,
        bfd_multiplier,
        local_asn: local_asn.unwrap_or(0),
        router: router.unwrap_or(Ipv4Addr::UNSPECIFIED),
        router_asn: router_asn.unwrap_or(0),
        bfd: raw.bfd.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use crate::inventory::{BgpMode, Inventory, InventoryError};

    const SEED: &str = include_str!("../../../lab.toml");

    fn with(section: &str) -> String {
        format!("{SEED}\n[bgp]\n{section}")
    }

    /// (line, message) of each error.
    fn errors(text: &str) -> Vec<(usize, String)> {
        match Inventory::parse(text, "lab.toml") {
            Err(InventoryError::Invalid { errors, .. }) => {
                errors.into_iter().map(|d| (d.line, d.message)).collect()
            }
            other => panic!("expected errors, got {other:?}"),
        }
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.starts_with(needle)).unwrap() + 1
    }

    #[test]
    fn absent_or_vrrp_means_no_bgp() {
        let inv = Inventory::parse(SEED, "lab.toml").unwrap();
        assert!(inv.bgp.is_none() && inv.anycast().is_none());
        let inv = Inventory::parse(&with("mode = \"vrrp\"\n"), "lab.toml").unwrap();
        assert_eq!(inv.bgp.as_ref().map(|b| b.mode), Some(BgpMode::Vrrp));
        assert!(inv.anycast().is_none());
    }

    #[test]
    fn anycast_parses() {
        let text = with("mode = \"anycast\"\nlocal_asn = 4200000001\nrouter = \"172.16.249.2\"\nrouter_asn = 65000\nbfd = false\n");
        let inv = Inventory::parse(&text, "lab.toml").unwrap();
        let b = inv.anycast().unwrap();
        assert_eq!(
            (b.local_asn, b.router_asn, b.bfd),
            (4_200_000_001, 65000, false)
        );
        assert_eq!((b.bfd_interval_ms, b.bfd_multiplier), (100, 3));
        // The router may be the subnet's gateway.
        assert_eq!(b.router.to_string(), "172.16.249.2");
    }

    #[test]
    fn anycast_errors_have_lines() {
        let text = with(
            "mode = \"anycast\"\nlocal_asn = 23456\nrouter = \"172.16.249.101\"\nrouter_asn = 0\n",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0].0, line_of(&text, "local_asn"));
        assert!(
            errs[0]
                .1
                .contains("local_asn 23456 is not a usable AS number"),
            "{errs:?}"
        );
        assert_eq!(errs[1].0, line_of(&text, "router ="));
        assert!(
            errs[1]
                .1
                .contains("router 172.16.249.101 is already used by host \"server1\""),
            "{errs:?}"
        );
        assert_eq!(errs[2].0, line_of(&text, "router_asn"));

        let text = with(
            "mode = \"anycast\"\nlocal_asn = 65000\nrouter = \"10.0.0.1\"\nrouter_asn = 65000\n",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].1.contains("must be on the balancers' subnet"),
            "{errs:?}"
        );
        assert!(errs[1].1.contains("equals local_asn"), "{errs:?}");

        let text = with("mode = \"anycast\"\n");
        let errs = errors(&text);
        let header = line_of(&text, "[bgp]");
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs.iter()
                .all(|(l, m)| *l == header && m.contains("needs")),
            "{errs:?}"
        );

        let text = with("mode = \"anycast\"\nlocal_asn = 65001\nrouter = \"172.16.249.1\"\nrouter_asn = 65000\nbfd_interval_ms = 5\nbfd_multiplier = 0\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].0, line_of(&text, "bfd_interval_ms"));
        assert!(
            errs[0]
                .1
                .contains("bfd_interval_ms must be 10..=10000, got 5"),
            "{errs:?}"
        );
        assert_eq!(errs[1].0, line_of(&text, "bfd_multiplier"));

        let text = with("mode = \"ecmp\"\n");
        let errs = errors(&text);
        assert_eq!(errs[0].0, line_of(&text, "mode"));
        assert!(errs[0].1.contains("\"vrrp\" or \"anycast\""), "{errs:?}");

        let text = with("mode = \"anycast\"\nrouter_as = 1\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, line_of(&text, "router_as ="));
        assert!(errs[0].1.contains("unknown field `router_as`"), "{errs:?}");
    }
}
