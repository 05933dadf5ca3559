use super::*;
use crate::sys::testns::{in_ns, NsPair};
use socket2::SockAddr;
use std::time::{Duration, Instant};

#[test]
fn non_vrrp_ipv4_is_dropped_with_its_source() {
    let mut p = vec![
        0x45, 0, 0, 20, 0, 0, 0, 0, 255, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    assert!(matches!(
        from_ipv4(&p),
        RawOrBad::Bad { src: Some(_), reason } if reason == "IP protocol 6"
    ));
    p[9] = 112;
    assert!(matches!(
        from_ipv4(&p),
        RawOrBad::Ok(RawPacket { ttl: 255, .. })
    ));
    assert!(matches!(
        from_ipv4(&p[..3]),
        RawOrBad::Bad { src: None, .. }
    ));
}

fn sock(ns: &str, ifname: &str, src: &str, peers: &[&str]) -> VrrpSocket {
    let ifname = ifname.to_string();
    let src: IpAddr = src.parse().unwrap();
    let peers: Vec<IpAddr> = peers.iter().map(|p| p.parse().unwrap()).collect();
    in_ns(ns, move || {
        let ifindex = crate::sys::netlink::ifindex(&ifname).unwrap();
        VrrpSocket::open(SocketConfig {
            ifname,
            ifindex,
            src,
            peers,
        })
        .unwrap()
    })
}

type Got = (IpAddr, IpAddr, Vec<u8>);

/// Waits (bounded) for one packet that passes the filters; collects drops on the way.
fn recv_one(s: &VrrpSocket, wait: Duration) -> (Option<Got>, Vec<String>) {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    let mut drops = Vec::new();
    while Instant::now() < deadline {
        match s.recv(&mut buf).unwrap() {
            Some(Incoming::Packet { src, dst, range }) => {
                return (Some((src, dst, buf[range].to_vec())), drops)
            }
            Some(Incoming::Dropped { reason, .. }) => drops.push(reason),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    (None, drops)
}

#[test]
fn multicast_v4_and_v6_between_namespaces() {
    let ns = NsPair::new("net-mc");
    let a4 = sock(&ns.a, "va", "10.77.0.1", &[]);
    let b4 = sock(&ns.b, "vb", "10.77.0.2", &[]);
    let a6 = sock(&ns.a, "va", &ns.a_ll.to_string(), &[]);
    let b6 = sock(&ns.b, "vb", &ns.b_ll.to_string(), &[]);
    a4.send_to(b"hello4", a4.destinations()[0]).unwrap();
    let (got, _) = recv_one(&b4, Duration::from_secs(2));
    assert_eq!(
        got,
        Some((
            "10.77.0.1".parse().unwrap(),
            IpAddr::V4(GROUP_V4),
            b"hello4".to_vec()
        ))
    );
    // Loopback is off: the sender does not see its own packet.
    assert!(recv_one(&a4, Duration::from_millis(200)).0.is_none());
    b6.send_to(b"hello6", b6.destinations()[0]).unwrap();
    let (got, _) = recv_one(&a6, Duration::from_secs(2));
    assert_eq!(
        got,
        Some((
            IpAddr::V6(ns.b_ll),
            IpAddr::V6(GROUP_V6),
            b"hello6".to_vec()
        ))
    );
}

#[test]
fn ttl_below_255_is_dropped() {
    let ns = NsPair::new("net-ttl");
    let b4 = sock(&ns.b, "vb", "10.77.0.2", &[]);
    // A plain raw socket with TTL 1 plays a router-crossed (or misconfigured) sender.
    in_ns(&ns.a, || {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
        s.bind_device(Some(b"va")).unwrap();
        s.set_multicast_ttl_v4(1).unwrap();
        let idx = crate::sys::netlink::ifindex("va").unwrap();
        set_multicast_if_v4_index(&s, idx).unwrap();
        s.send_to(b"lowttl", &SockAddr::from(SocketAddrV4::new(GROUP_V4, 0)))
            .unwrap();
    });
    let (got, drops) = recv_one(&b4, Duration::from_millis(500));
    assert!(got.is_none(), "{got:?}");
    assert!(drops.iter().any(|d| d.contains("TTL")), "{drops:?}");
}

#[test]
fn unicast_accepts_only_configured_peers() {
    let ns = NsPair::new("net-uc");
    let a = sock(&ns.a, "va", "10.77.0.1", &["10.77.0.2"]);
    let b = sock(&ns.b, "vb", "10.77.0.2", &["10.77.0.1"]);
    let b_other = sock(&ns.b, "vb", "10.77.0.2", &["10.77.0.9"]);
    assert_eq!(
        a.destinations(),
        vec!["10.77.0.2".parse::<IpAddr>().unwrap()]
    );
    a.send_to(b"uni", a.destinations()[0]).unwrap();
    let (got, _) = recv_one(&b, Duration::from_secs(2));
    assert_eq!(
        got,
        Some((
            "10.77.0.1".parse().unwrap(),
            "10.77.0.2".parse().unwrap(),
            b"uni".to_vec()
        ))
    );
    let (got, drops) = recv_one(&b_other, Duration::from_millis(300));
    assert!(got.is_none());
    assert!(
        drops.iter().any(|d| d.contains("unicast_peer")),
        "{drops:?}"
    );
    // Unicast to the wrong family is refused, not sent.
    assert!(a.send_to(b"x", "::1".parse().unwrap()).is_err());
}
