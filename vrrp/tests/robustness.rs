//! Two virtual routers per daemon (active/active), and garbage / CARP on protocol 112.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::*;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

fn second_instance(prio: u8) -> String {
    format!(
        "[vrrp_instance.VI_2]\ninterface = \"eth0\"\nvirtual_router_id = 52\npriority = {prio}\n\
         advert_int = 0.1\nversion = 3\nvirtual_ipaddress = [\"10.99.0.120/24\"]\n\n"
    )
}

#[test]
fn two_instances_active_active_and_garbage_on_protocol_112() {
    let mut lab = Lab::new("multi", 2);
    let mut c0 = cfg(&lab, 0, 150, 3, 0.1);
    c0.extra_top = second_instance(100);
    let mut c1 = cfg(&lab, 1, 100, 3, 0.1);
    c1.extra_top = second_instance(150);
    let (c0, c1) = (c0.render("b0"), c1.render("b1"));
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    let p0 = lab.start_vrrp(0, "b0", &c0);
    let p1 = lab.start_vrrp(1, "b1", &c1);
    let settled = |w0: &mut Watch, w1: &mut Watch| {
        w0.has("10.99.0.80")
            && !w0.has("10.99.0.120")
            && w1.has("10.99.0.120")
            && !w1.has("10.99.0.80")
    };
    let t = wait_for(Duration::from_secs(3), || settled(&mut w0, &mut w1));
    assert!(t.is_some(), "VI_1 on b0, VI_2 on b1\n{}", lab.log_dump());

    // The client sprays protocol 112 at the group with TTL 255: CARP-shaped packets (version
    // 2, type 1, same VRID, wrong length), truncated headers, random bytes, a VRRP advert with
    // a bad checksum and one with priority 255 for VRID 51 but a different address list.
    let f = std::fs::File::open(format!("/run/netns/{}", lab.client)).unwrap();
    let sent = std::thread::scope(|s| {
        s.spawn(|| {
            // setns changes only this scoped thread's namespace.
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            sock.set_multicast_ttl_v4(255).unwrap();
            // No routes in the lab: name the outgoing interface by its address.
            sock.set_multicast_if_v4(&CLIENT_IP.parse().unwrap())
                .unwrap();
            let dst = SockAddr::from(SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 18), 0));
            let mut carp = vec![0x21, 51, 0, 1, 0, 1, 0, 0];
            carp.extend_from_slice(&[0xab; 48]);
            let mut bad_sum = vec![0x31, 51, 255, 1, 0, 10, 0xde, 0xad];
            bad_sum.extend_from_slice(&[10, 99, 0, 80]);
            let mut wrong_list = vec![0x31, 51, 255, 1, 0, 10, 0, 0];
            wrong_list.extend_from_slice(&[10, 99, 0, 250]);
            let mut seed = 0x1234_5678u32;
            let mut n = 0;
            for round in 0..300 {
                let pkt = match round % 6 {
                    0 => carp.clone(),
                    1 => bad_sum.clone(),
                    2 => wrong_list.clone(),
                    3 => vec![0x31],
                    4 => vec![],
                    _ => (0..(round % 64))
                        .map(|_| {
                            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                            (seed >> 16) as u8
                        })
                        .collect(),
                };
                if sock.send_to(&pkt, &dst).is_ok() {
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
        .join()
        .unwrap()
    });
    assert!(sent > 250, "sent {sent}");
    // They arrived and were rejected (debug log), nothing moved, nobody died.
    let log = lab.log("b0");
    assert!(log.contains("invalid VRRP packet"), "{log}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(settled(&mut w0, &mut w1), "{}", lab.log_dump());
    for p in [p0, p1] {
        assert!(
            lab.wait_exit(p, Duration::from_millis(10)).is_none(),
            "daemon died"
        );
    }
    // Graceful stop of b1 moves only VI_2.
    lab.signal(p1, libc::SIGTERM);
    let t = wait_for(Duration::from_secs(2), || {
        w0.has("10.99.0.120") && w0.has("10.99.0.80") && !w1.has("10.99.0.120")
    });
    assert!(t.is_some(), "{}", lab.log_dump());
    assert_eq!(lab.wait_exit(p1, Duration::from_secs(3)), Some(0));
}

#[test]
fn interface_deleted_and_recreated() {
    let (lab, _w0, mut w1, _) = pair("recreate");
    let vip = "10.99.0.80";
    // Host 0's cable is replaced: its eth0 disappears (with the VIPs) and comes back with a
    // new ifindex. The backup takes over meanwhile; afterwards 150 must preempt again.
    let (br, h0) = (lab.br.clone(), lab.hosts[0].clone());
    run("ip", &["-n", &br, "link", "del", "p0"]);
    assert!(
        wait_for(Duration::from_secs(2), || w1.has(vip)).is_some(),
        "{}",
        lab.log_dump()
    );
    run(
        "ip",
        &[
            "-n",
            &br,
            "link",
            "add",
            "p0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            "02:99:00:00:00:01",
            "netns",
            &h0,
        ],
    );
    run(
        "ip",
        &["-n", &br, "link", "set", "p0", "master", "br0", "up"],
    );
    run(
        "ip",
        &["-n", &h0, "addr", "add", "10.99.0.1/24", "dev", "eth0"],
    );
    run("ip", &["-n", &h0, "link", "set", "eth0", "up"]);
    let mut w0 = Watch::new(&lab, &h0);
    let t = wait_for(Duration::from_secs(3), || w0.has(vip) && !w1.has(vip));
    assert!(
        t.is_some(),
        "no preemption after re-creation\n{}",
        lab.log_dump()
    );
    assert!(lab.log("b0").contains("sockets reopened"));
}

/// A different VIP list on the peer makes both sides drop each other's adverts (keepalived
/// does the same): both become master. The daemon must say why, once, not per packet.
#[test]
fn mismatched_vip_list_is_reported() {
    let mut lab = Lab::new("mismatch", 2);
    let c0 = cfg(&lab, 0, 150, 3, 0.1).render("b0");
    let mut c1 = cfg(&lab, 1, 100, 3, 0.1);
    c1.vips = vec!["10.99.0.80/24", "10.99.0.90/24"];
    let c1 = c1.render("b1");
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    lab.start_vrrp(0, "b0", &c0);
    lab.start_vrrp(1, "b1", &c1);
    let t = wait_for(Duration::from_secs(3), || {
        w0.has("10.99.0.80") && w1.has("10.99.0.80")
    });
    assert!(t.is_some(), "{}", lab.log_dump());
    std::thread::sleep(Duration::from_millis(500));
    for name in ["b0", "b1"] {
        let log = lab.log(name);
        let warns = log.lines().filter(|l| l.contains("advert dropped")).count();
        assert_eq!(warns, 1, "{name}:\n{log}");
    }
}
