//! Two of our daemons on a bridge (namespaces): election, failover, preemption.

mod common;

use std::time::Duration;

use common::*;

const VIPS: [&str; 3] = ["10.99.0.80", "10.99.0.90", "10.99.0.100"];

fn holds_all(w: &mut Watch) -> bool {
    VIPS.iter().all(|v| w.has(v))
}
fn holds_none(w: &mut Watch) -> bool {
    VIPS.iter().all(|v| !w.has(v))
}

/// Samples both hosts for `dur`; panics if both ever hold a VIP at the same time.
fn assert_single_holder(a: &mut Watch, b: &mut Watch, dur: Duration, lab: &Lab) {
    let end = std::time::Instant::now() + dur;
    while std::time::Instant::now() < end {
        let (ha, hb) = (a.has(VIPS[0]), b.has(VIPS[0]));
        assert!(!(ha && hb), "two holders\n{}", lab.log_dump());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

#[test]
fn election_link_cut_graceful_stop_and_preempt_v3() {
    let mut lab = Lab::new("elect", 2);
    let c0 = cfg(&lab, 0, 150, 3, 0.1).render("b0");
    let c1 = cfg(&lab, 1, 100, 3, 0.1).render("b1");
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    let p1 = lab.start_vrrp(1, "b1", &c1);
    let p0 = lab.start_vrrp(0, "b0", &c0);

    // Election: 150 holds every VIP, 100 none, and it stays that way.
    let t = wait_for(Duration::from_secs(3), || {
        holds_all(&mut w0) && holds_none(&mut w1)
    });
    assert!(t.is_some(), "no election\n{}", lab.log_dump());
    let cpu_before = cpu_ticks(p0) + cpu_ticks(p1);
    assert_single_holder(&mut w0, &mut w1, Duration::from_millis(800), &lab);
    // Idle cost: adverts every 100 ms and a link poll are nothing; a busy loop would burn
    // ~80 ticks (10 ms each) per daemon in 800 ms.
    let used = cpu_ticks(p0) + cpu_ticks(p1) - cpu_before;
    assert!(used < 20, "daemons used {used} CPU ticks in 800 ms");
    assert!(holds_all(&mut w0) && holds_none(&mut w1));

    // `vrrp status` reads the daemon's status file.
    let st = std::process::Command::new(VRRP)
        .args(["status", "--runtime-dir"])
        .arg(lab.path("run-b0"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("VI_1 MASTER") && text.contains("priority 150"),
        "{text}"
    );
    let st = std::process::Command::new(VRRP)
        .args(["status", "--runtime-dir"])
        .arg(lab.path("run-b1"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("VI_1 BACKUP") && text.contains("master 10.99.0.1"),
        "{text}"
    );

    // Master link cut: the master goes to FAULT (drops its VIPs), the backup takes over within
    // Master_Down_Interval (3 * 0.1 + (256-100)/256 * 0.1 = 0.361 s) + link-poll and slack.
    lab.exec(
        &lab.hosts[0].clone(),
        &["ip", "link", "set", "eth0", "down"],
    );
    let t = wait_for(Duration::from_secs(2), || holds_all(&mut w1));
    assert!(
        t.is_some_and(|t| t < Duration::from_millis(900)),
        "{t:?}\n{}",
        lab.log_dump()
    );
    assert!(wait_for(Duration::from_secs(1), || holds_none(&mut w0)).is_some());

    // Link back: 150 preempts (it comes back as backup, hears 100, preempts at its timer).
    lab.exec(&lab.hosts[0].clone(), &["ip", "link", "set", "eth0", "up"]);
    let t = wait_for(Duration::from_secs(3), || {
        holds_all(&mut w0) && holds_none(&mut w1)
    });
    assert!(t.is_some(), "no preemption\n{}", lab.log_dump());
    assert_single_holder(&mut w0, &mut w1, Duration::from_millis(500), &lab);

    // Graceful stop of the master: priority 0, takeover after Skew_Time (61 ms) + slack.
    lab.signal(p0, libc::SIGTERM);
    let t = wait_for(Duration::from_secs(2), || holds_all(&mut w1));
    assert!(
        t.is_some_and(|t| t < Duration::from_millis(300)),
        "{t:?}\n{}",
        lab.log_dump()
    );
    assert_eq!(lab.wait_exit(p0, Duration::from_secs(3)), Some(0));
    assert!(holds_none(&mut w0), "stopped master kept its VIPs");
    assert!(!lab.path("run-b0/vrrp.pid").exists());

    // Preempt back when the master returns.
    let p0 = lab.start_vrrp(0, "b0", &c0);
    let t = wait_for(Duration::from_secs(3), || {
        holds_all(&mut w0) && holds_none(&mut w1)
    });
    assert!(
        t.is_some(),
        "no preemption after restart\n{}",
        lab.log_dump()
    );
    assert_single_holder(&mut w0, &mut w1, Duration::from_millis(500), &lab);

    // Crash (SIGKILL) of the master: VIPs stay on the dead host; backup takes over within
    // Master_Down_Interval; the restarted daemon removes the stale VIPs first.
    lab.signal(p0, libc::SIGKILL);
    let t = wait_for(Duration::from_secs(2), || holds_all(&mut w1));
    assert!(
        t.is_some_and(|t| t < Duration::from_millis(600)),
        "{t:?}\n{}",
        lab.log_dump()
    );
    assert!(
        holds_all(&mut w0),
        "SIGKILL leaves the VIPs (this is what stale removal is for)"
    );
    let _ = lab.wait_exit(p0, Duration::from_secs(1));
    let c0_nopreempt = c0.replace("version = 3", "version = 3\nnopreempt = true");
    let p0 = lab.start_vrrp(0, "b0b", &c0_nopreempt);
    assert!(
        wait_for(Duration::from_secs(2), || holds_none(&mut w0)).is_some(),
        "stale VIPs kept"
    );
    // nopreempt: the returning 150 stays backup.
    assert_single_holder(&mut w0, &mut w1, Duration::from_millis(800), &lab);
    assert!(holds_all(&mut w1) && holds_none(&mut w0));
    assert!(lab.log("b0b").contains("stale VIP"), "{}", lab.log("b0b"));
    lab.signal(p0, libc::SIGTERM);
    lab.signal(p1, libc::SIGTERM);
    assert_eq!(lab.wait_exit(p1, Duration::from_secs(3)), Some(0));
    assert!(holds_none(&mut w1));
}

#[test]
fn ipv6_v3_election_and_failover() {
    let mut lab = Lab::new("ipv6", 2);
    let mut c0 = cfg(&lab, 0, 150, 3, 0.1);
    c0.vips = vec!["fd99::80/64", "fd99::90/64"];
    let mut c1 = cfg(&lab, 1, 100, 3, 0.1);
    c1.vips = c0.vips.clone();
    let (c0, c1) = (c0.render("b0"), c1.render("b1"));
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    // The sending address is the interface's link-local one: wait until it exists.
    for h in lab.hosts.clone() {
        let ok = wait_for(Duration::from_secs(5), || {
            let out = lab.exec(
                &h,
                &["ip", "-6", "addr", "show", "dev", "eth0", "scope", "link"],
            );
            String::from_utf8_lossy(&out.stdout).contains("fe80::")
        });
        assert!(ok.is_some());
    }
    let p0 = lab.start_vrrp(0, "b0", &c0);
    lab.start_vrrp(1, "b1", &c1);
    let both = |w: &mut Watch| w.has("fd99::80") && w.has("fd99::90");
    let none = |w: &mut Watch| !w.has("fd99::80") && !w.has("fd99::90");
    let t = wait_for(Duration::from_secs(3), || both(&mut w0) && none(&mut w1));
    assert!(t.is_some(), "no IPv6 election\n{}", lab.log_dump());
    std::thread::sleep(Duration::from_millis(500));
    assert!(both(&mut w0) && none(&mut w1), "{}", lab.log_dump());
    lab.signal(p0, libc::SIGKILL);
    let t = wait_for(Duration::from_secs(2), || both(&mut w1));
    assert!(
        t.is_some_and(|t| t < Duration::from_millis(600)),
        "{t:?}\n{}",
        lab.log_dump()
    );
}
