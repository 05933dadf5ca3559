use super::*;
use crate::sys::testns::{in_ns, ip, NsPair};

#[test]
fn reply_parser_survives_garbage() {
    assert_eq!(messages(&[]).count(), 0);
    for junk in [&[0xff; 40][..], &[0; 40][..], &[20, 0, 0, 0, 2, 0][..]] {
        // Whatever it yields, it ends and never panics.
        assert!(messages(junk).count() <= 1);
    }
}

#[test]
fn primary_addr_skips_vips_and_secondaries() {
    let a = |s: &str, prefix, secondary, scope| IfAddr {
        addr: s.parse().unwrap(),
        prefix,
        secondary,
        scope,
    };
    let list = [
        a("10.0.0.80", 24, false, 0),
        a("10.0.0.5", 24, true, 0),
        a("10.0.1.1", 24, false, 0),
        a("fd00::1", 64, false, 0),
        a("fe80::1", 64, false, 253),
    ];
    let vips = [("10.0.0.80".parse().unwrap(), 24)];
    assert_eq!(
        primary_addr(&list, false, &vips),
        Some("10.0.1.1".parse().unwrap())
    );
    assert_eq!(
        primary_addr(&list, true, &vips),
        Some("fe80::1".parse().unwrap())
    );
    assert_eq!(
        primary_addr(&list[..2], false, &vips),
        Some("10.0.0.5".parse().unwrap())
    );
    assert_eq!(primary_addr(&[], false, &vips), None);
}

#[test]
fn add_list_remove_in_namespace() {
    let ns = NsPair::new("vip");
    let (added, listed, again, removed, gone, link, after_stale) = in_ns(&ns.a, || {
        let mut nl = Netlink::open().unwrap();
        let idx = ifindex("va").unwrap();
        assert!(ifindex("nope0").is_err());
        let v4: IpAddr = "10.77.0.100".parse().unwrap();
        let v6: IpAddr = "fd77::100".parse().unwrap();
        let added = (
            nl.add_addr(idx, v4, 24).unwrap(),
            nl.add_addr(idx, v6, 64).unwrap(),
        );
        let listed = nl.addrs(idx).unwrap();
        let again = nl.add_addr(idx, v4, 24).unwrap();
        let removed = (
            nl.del_addr(idx, v4, 24).unwrap(),
            nl.del_addr(idx, v6, 64).unwrap(),
        );
        let gone = nl.del_addr(idx, v4, 24).unwrap();
        let link = nl.link(idx).unwrap();
        // A predecessor's leftovers, with a different prefix than configured.
        nl.add_addr(idx, v4, 32).unwrap();
        let stale = nl.remove_stale(idx, &[(v4, 24), (v6, 64)]).unwrap();
        assert_eq!(stale.len(), 1);
        (
            added,
            listed,
            again,
            removed,
            gone,
            link,
            nl.addrs(idx).unwrap(),
        )
    });
    assert_eq!(added, (true, true));
    let out = crate::sys::testns::ns_exec(&ns.a, &["ip", "addr", "show", "dev", "va"]);
    assert!(!out.contains("10.77.0.100"), "{out}");
    let has = |l: &[IfAddr], s: &str| l.iter().any(|a| a.addr == s.parse::<IpAddr>().unwrap());
    assert!(has(&listed, "10.77.0.100") && has(&listed, "fd77::100") && has(&listed, "10.77.0.1"));
    let vip = listed
        .iter()
        .find(|a| a.addr == "10.77.0.100".parse::<IpAddr>().unwrap());
    assert_eq!(vip.map(|a| (a.prefix, a.secondary)), Some((24, true)));
    assert!(!again);
    assert_eq!(removed, (true, true));
    assert!(!gone);
    assert!(link.up);
    assert!(link.mac.is_some());
    assert!(!has(&after_stale, "10.77.0.100"));
    // Link down is visible.
    ip(&["-n", &ns.b, "link", "set", "vb", "down"]);
    let link = in_ns(&ns.a, || {
        Netlink::open()
            .unwrap()
            .link(ifindex("va").unwrap())
            .unwrap()
    });
    assert!(!link.up);
}
