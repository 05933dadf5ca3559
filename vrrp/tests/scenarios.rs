//! Our daemons in namespaces: GARP, tracking, unicast without multicast, reload, CLI.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const VIP: &str = "10.99.0.80";

#[test]
fn garp_moves_the_clients_neighbour_entry() {
    let mut lab = Lab::new("garp", 2);
    let c0 = cfg(&lab, 0, 150, 3, 0.1).render("b0");
    let c1 = cfg(&lab, 1, 100, 3, 0.1).render("b1");
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    let p0 = lab.start_vrrp(0, "b0", &c0);
    lab.start_vrrp(1, "b1", &c1);
    assert!(wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP)).is_some());
    // The client talks to the VIP: its neighbour entry points at balancer 0's MAC.
    let client = lab.client.clone();
    let out = lab.exec(&client, &["ping", "-c", "1", "-W", "1", VIP]);
    if !out.status.success() {
        // No ping binary: a UDP datagram resolves the neighbour just as well.
        let _ = lab.exec(
            &client,
            &["bash", "-c", &format!("echo x >/dev/udp/{VIP}/9")],
        );
    }
    assert!(
        wait_for(Duration::from_secs(2), || neigh(&lab, &client, VIP)
            .contains("02:99:00:00:00:01"))
        .is_some(),
        "{}",
        neigh(&lab, &client, VIP)
    );
    // Failover: the new master's gratuitous ARP rewrites the entry without any client traffic.
    lab.signal(p0, libc::SIGTERM);
    let t = wait_for(Duration::from_secs(2), || {
        neigh(&lab, &client, VIP).contains("02:99:00:00:00:02")
    });
    assert!(
        t.is_some(),
        "{}\n{}",
        neigh(&lab, &client, VIP),
        lab.log_dump()
    );
}

#[test]
fn failing_track_script_moves_the_vip_and_back() {
    let mut lab = Lab::new("track", 2);
    let flag = lab.path("broken");
    let script = format!(
        "[vrrp_script.chk]\nscript = \"test ! -e {}\"\ninterval = 0.1\ntimeout = 1\nweight = -60\nfall = 2\nrise = 2\n",
        flag.display()
    );
    let mut c0 = cfg(&lab, 0, 150, 3, 0.1);
    c0.extra_top = script;
    // notify_master runs once the VIPs are in place (keepalived's order).
    c0.extra_instance = format!(
        "track_script = [\"chk\"]\nnotify = \"echo >>{n}\"\n\
         notify_master = \"ip addr show dev eth0 | grep -q {VIP}/ && echo has-vip >>{m}\"\n",
        n = lab.path("notify.log").display(),
        m = lab.path("master.log").display(),
    );
    let c0 = c0.render("b0");
    let c1 = cfg(&lab, 1, 100, 3, 0.1).render("b1");
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    lab.start_vrrp(0, "b0", &c0);
    lab.start_vrrp(1, "b1", &c1);
    assert!(wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP)).is_some());
    // 150 - 60 = 90 < 100: the backup preempts.
    std::fs::write(&flag, "").unwrap();
    let t = wait_for(Duration::from_secs(3), || w1.has(VIP) && !w0.has(VIP));
    assert!(t.is_some(), "{}", lab.log_dump());
    std::fs::remove_file(&flag).unwrap();
    let t = wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP));
    assert!(t.is_some(), "{}", lab.log_dump());
    // The generic notify got keepalived's arguments on each transition.
    let n = std::fs::read_to_string(lab.path("notify.log")).unwrap_or_default();
    assert!(n.contains("INSTANCE VI_1 MASTER 150"), "{n}");
    assert!(n.contains("INSTANCE VI_1 BACKUP 90"), "{n}");
    // Notify scripts run asynchronously: give the second one a moment.
    let count = || {
        let m = std::fs::read_to_string(lab.path("master.log")).unwrap_or_default();
        m.lines().filter(|l| *l == "has-vip").count()
    };
    assert!(
        wait_for(Duration::from_secs(2), || count() == 2).is_some(),
        "{}",
        count()
    );
}

#[test]
fn weight_zero_script_means_fault() {
    let mut lab = Lab::new("fault", 2);
    let flag = lab.path("broken");
    let mut c0 = cfg(&lab, 0, 150, 3, 0.1);
    c0.extra_top = format!(
        "[vrrp_script.chk]\nscript = \"test ! -e {}\"\ninterval = 0.1\ntimeout = 1\nweight = 0\nfall = 1\nrise = 1\n",
        flag.display()
    );
    c0.extra_instance = "track_script = [\"chk\"]\n".into();
    let c0 = c0.render("b0");
    let c1 = cfg(&lab, 1, 100, 3, 0.1).render("b1");
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    lab.start_vrrp(0, "b0", &c0);
    lab.start_vrrp(1, "b1", &c1);
    assert!(wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP)).is_some());
    std::fs::write(&flag, "").unwrap();
    // Fault sends priority 0: the backup takes over after Skew_Time ((256 - 100) / 256 x 0.1 s
    // = 61 ms), not after Master_Down_Interval (361 ms). Budget: the probe interval (100 ms)
    // for the check to see the flag, the script's run (~10 ms), Skew_Time, and 5 ms polling:
    // 180 ms; bound 300 ms, still below the 361 ms the slow path would take.
    let t = wait_for(Duration::from_secs(3), || w1.has(VIP) && !w0.has(VIP));
    eprintln!("weight 0 handover after {t:?}");
    assert!(
        t.is_some_and(|t| t < Duration::from_millis(300)),
        "{t:?}\n{}",
        lab.log_dump()
    );
    let st = Command::new(VRRP)
        .args(["status", "--runtime-dir"])
        .arg(lab.path("run-b0"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&st.stdout).contains("VI_1 FAULT"));
}

#[test]
fn unicast_works_with_multicast_blocked() {
    let mut lab = Lab::new("unicast", 2);
    // The bridge stops flooding multicast to every port: 224.0.0.18 no longer arrives.
    for i in 0..2 {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &lab.br,
                "bridge",
                "link",
                "set",
                "dev",
                &format!("p{i}"),
                "mcast_flood",
                "off",
            ],
        );
    }
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    // Control: multicast adverts are really blocked (both sides become master).
    let m0 = lab.start_vrrp(0, "m0", &cfg(&lab, 0, 150, 3, 0.1).render("m0"));
    let m1 = lab.start_vrrp(1, "m1", &cfg(&lab, 1, 100, 3, 0.1).render("m1"));
    assert!(
        wait_for(Duration::from_secs(3), || w0.has(VIP) && w1.has(VIP)).is_some(),
        "multicast was not blocked\n{}",
        lab.log_dump()
    );
    for p in [m0, m1] {
        lab.signal(p, libc::SIGTERM);
        assert_eq!(lab.wait_exit(p, Duration::from_secs(3)), Some(0));
    }
    let uc = |i: usize, peer: usize| {
        format!(
            "unicast_src_ip = \"{}\"\nunicast_peer = [\"{}\"]\n",
            host_ip(i),
            host_ip(peer)
        )
    };
    let mut c0 = cfg(&lab, 0, 150, 3, 0.1);
    c0.extra_instance = uc(0, 1);
    let mut c1 = cfg(&lab, 1, 100, 3, 0.1);
    c1.extra_instance = uc(1, 0);
    let (c0, c1) = (c0.render("u0"), c1.render("u1"));
    let p0 = lab.start_vrrp(0, "u0", &c0);
    lab.start_vrrp(1, "u1", &c1);
    assert!(wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP)).is_some());
    let end = std::time::Instant::now() + Duration::from_millis(600);
    while std::time::Instant::now() < end {
        assert!(
            !(w0.has(VIP) && w1.has(VIP)),
            "two holders in unicast mode\n{}",
            lab.log_dump()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    lab.signal(p0, libc::SIGKILL);
    let t = wait_for(Duration::from_secs(2), || w1.has(VIP));
    assert!(t.is_some_and(|t| t < Duration::from_millis(600)), "{t:?}");
}

#[test]
fn sighup_reload_refuses_bad_config_and_applies_changes() {
    let mut lab = Lab::new("reload", 2);
    let c0 = cfg(&lab, 0, 150, 3, 0.1).render("b0");
    let c1 = cfg(&lab, 1, 100, 3, 0.1).render("b1");
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    let p0 = lab.start_vrrp(0, "b0", &c0);
    lab.start_vrrp(1, "b1", &c1);
    assert!(wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP)).is_some());
    // A broken file is refused; the running instance keeps the VIPs.
    std::fs::write(
        lab.path("b0.toml"),
        "[vrrp_instance.VI_1]\npriority = 999\n",
    )
    .unwrap();
    lab.signal(p0, libc::SIGHUP);
    assert!(
        wait_for(Duration::from_secs(2), || lab
            .log("b0")
            .contains("reload refused"))
        .is_some(),
        "{}",
        lab.log("b0")
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(w0.has(VIP) && !w1.has(VIP));
    // A valid change (priority 150 -> 50) is applied in place and advertised: the peer, now
    // higher, preempts.
    std::fs::write(
        lab.path("b0.toml"),
        c0.replace("priority = 150", "priority = 50"),
    )
    .unwrap();
    lab.signal(p0, libc::SIGHUP);
    let t = wait_for(Duration::from_secs(3), || w1.has(VIP) && !w0.has(VIP));
    assert!(t.is_some(), "{}", lab.log_dump());
    std::thread::sleep(Duration::from_millis(500));
    assert!(w1.has(VIP) && !w0.has(VIP));
}

/// `vrrp --check --config A --config B`: exit code and stdout.
fn check_pair(a: &std::path::Path, b: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(VRRP)
        .args(["--check", "--config"])
        .arg(a)
        .arg("--config")
        .arg(b)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_reports_errors_with_positions_and_lints() {
    let dir = std::env::temp_dir().join(format!("vrrp-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 300\n\
         advert_int = 1\nvirtual_ipaddress = [\"10.0.0.80/24\"]\n",
    )
    .unwrap();
    let out = Command::new(VRRP)
        .args(["--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("{}:4:", bad.display())), "{text}");
    // The keepalived.conf trap: weight -20 on 150 vs 100 cannot move mastership.
    let seed = |prio: u8, track: bool| {
        format!(
            "[vrrp_script.chk]\nscript = \"/bin/true\"\ninterval = 1\nweight = -20\n\n\
             [vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\n\
             advert_int = 1\nauthentication = {{ auth_type = \"PASS\", auth_pass = \"1111\" }}\n\
             virtual_ipaddress = [\"10.0.0.80/24\"]\n{}",
            if track { "track_script = [\"chk\"]\n" } else { "" }
        )
    };
    let (a, b) = (dir.join("a.toml"), dir.join("b.toml"));
    std::fs::write(&a, seed(150, true)).unwrap();
    std::fs::write(&b, seed(100, true)).unwrap();
    let (code, text) = check_pair(&a, &b);
    assert_eq!(code, Some(0), "{text}");
    let want = format!(
        "{}:9: warning: vrrp_instance VI_1: when chk (weight -20) fail(s), priority 150 drops only to 130, \
         still above VI_1's 100 in {}: the VIPs will not move; use a total weight of -51 or lower",
        a.display(),
        b.display()
    );
    assert!(text.contains(&want), "{text}");
    assert!(text.contains("OK (1 warning)"), "{text}");
    // A weight that does move them, slowly: --check says why, and what weight 0 does.
    std::fs::write(&a, seed(150, true).replace("weight = -20", "weight = -60")).unwrap();
    let (code, text) = check_pair(&a, &b);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "only after the peer's Master_Down_Interval (3 x advert_int + Skew_Time = 3.61 s)"
        ) && text.contains("takes over after Skew_Time (0.61 s)"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn track_interface_down_means_fault() {
    let mut lab = Lab::new("trackif", 2);
    let h0 = lab.hosts[0].clone();
    // No dummy driver here: a veth pair inside the host stands in for an uplink. Taking the
    // far end down drops trk0's carrier, as a pulled cable would.
    run(
        "ip",
        &[
            "-n", &h0, "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
        ],
    );
    run("ip", &["-n", &h0, "link", "set", "trk0", "up"]);
    run("ip", &["-n", &h0, "link", "set", "trk1", "up"]);
    let mut c0 = cfg(&lab, 0, 150, 3, 0.1);
    c0.extra_instance = "track_interface = [\"trk0\"]\n".into();
    let c0 = c0.render("b0");
    let c1 = cfg(&lab, 1, 100, 3, 0.1).render("b1");
    let mut w0 = Watch::new(&lab, &h0);
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    lab.start_vrrp(0, "b0", &c0);
    lab.start_vrrp(1, "b1", &c1);
    assert!(wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP)).is_some());
    run("ip", &["-n", &h0, "link", "set", "trk1", "down"]);
    let t = wait_for(Duration::from_secs(2), || w1.has(VIP) && !w0.has(VIP));
    assert!(t.is_some(), "{}", lab.log_dump());
    run("ip", &["-n", &h0, "link", "set", "trk1", "up"]);
    let t = wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP));
    assert!(t.is_some(), "{}", lab.log_dump());
}

#[test]
fn http_probe_failure_moves_the_vip() {
    let mut lab = Lab::new("http", 2);
    // A health endpoint inside balancer 0's namespace (its own loopback).
    let www = lab.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("healthz"), "ok").unwrap();
    let www_s = www.display().to_string();
    let server = lab.spawn(
        0,
        "http",
        &[
            "python3",
            "-m",
            "http.server",
            "18080",
            "--bind",
            "127.0.0.1",
            "--directory",
            &www_s,
        ],
    );
    let mut c0 = cfg(&lab, 0, 150, 3, 0.1);
    c0.extra_top = "[vrrp_script.web]\nhttp = \"http://127.0.0.1:18080/healthz\"\ninterval = 0.1\n\
                    timeout = 0.5\nweight = -60\nfall = 2\nrise = 2\n"
        .into();
    c0.extra_instance = "track_script = [\"web\"]\n".into();
    let c0 = c0.render("b0");
    let c1 = cfg(&lab, 1, 100, 3, 0.1).render("b1");
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    // Wait for the server, so the probe's first result is a success.
    let h0 = lab.hosts[0].clone();
    let up = wait_for(Duration::from_secs(10), || {
        lab.exec(&h0, &["bash", "-c", "echo >/dev/tcp/127.0.0.1/18080"])
            .status
            .success()
    });
    assert!(
        up.is_some(),
        "http server did not start\n{}",
        lab.log("http")
    );
    lab.start_vrrp(0, "b0", &c0);
    lab.start_vrrp(1, "b1", &c1);
    assert!(wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP)).is_some());
    std::thread::sleep(Duration::from_millis(500));
    assert!(w0.has(VIP) && !w1.has(VIP), "{}", lab.log_dump());
    // 404 is a failure too: remove the page first, then the whole server.
    std::fs::remove_file(www.join("healthz")).unwrap();
    let t = wait_for(Duration::from_secs(3), || w1.has(VIP) && !w0.has(VIP));
    assert!(t.is_some(), "{}", lab.log_dump());
    std::fs::write(www.join("healthz"), "ok").unwrap();
    let t = wait_for(Duration::from_secs(3), || w0.has(VIP) && !w1.has(VIP));
    assert!(t.is_some(), "{}", lab.log_dump());
    lab.signal(server, libc::SIGKILL);
    let t = wait_for(Duration::from_secs(3), || w1.has(VIP) && !w0.has(VIP));
    assert!(t.is_some(), "{}", lab.log_dump());
}
