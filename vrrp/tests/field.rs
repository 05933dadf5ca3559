//! The daemon in the field: boot races, addresses changed behind its back, reloads, split
//! brain. Each test is a situation keepalived users report; each runs in namespaces.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const VIP: &str = "10.99.0.80";

fn status(lab: &Lab, name: &str) -> String {
    let out = Command::new(VRRP)
        .args(["status", "--runtime-dir"])
        .arg(lab.path(&format!("run-{name}")))
        .output()
        .expect("vrrp status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// A second instance on an interface `late0` that does not exist yet.
fn late_instance() -> String {
    "[vrrp_instance.LATE]\ninterface = \"late0\"\nvirtual_router_id = 52\npriority = 100\n\
     advert_int = 0.1\nversion = 3\nvirtual_ipaddress = [\"10.98.0.80/24\"]\n"
        .to_string()
}

/// keepalived exits when an interface is missing at start, and systemd gives up restarting it
/// after a few seconds: a late NIC, VLAN or DHCP address leaves the node out for good. Ours keeps
/// the other instances running and brings the late one up when its interface is usable.
#[test]
fn late_interface_sits_in_fault_and_comes_up_with_it() {
    let mut lab = Lab::new("late", 1);
    let h0 = lab.hosts[0].clone();
    let mut c = cfg(&lab, 0, 100, 3, 0.1);
    c.extra_top = late_instance();
    let text = c.render("b0");
    let mut w0 = Watch::new(&lab, &h0);
    let pid = lab.start_vrrp(0, "b0", &text);
    assert!(
        wait_for(Duration::from_secs(3), || w0.has(VIP)).is_some(),
        "the healthy instance must run\n{}",
        lab.log_dump()
    );
    assert!(alive(pid), "daemon exited\n{}", lab.log_dump());
    let st = status(&lab, "b0");
    assert!(st.contains("LATE FAULT"), "{st}");
    // The interface appears, up but without an address yet (DHCP still running).
    run(
        "ip",
        &[
            "-n", &h0, "link", "add", "late0", "type", "veth", "peer", "name", "late1",
        ],
    );
    run("ip", &["-n", &h0, "link", "set", "late1", "up"]);
    run("ip", &["-n", &h0, "link", "set", "late0", "up"]);
    std::thread::sleep(Duration::from_millis(300));
    let st = status(&lab, "b0");
    assert!(st.contains("LATE FAULT"), "no address yet: {st}");
    run(
        "ip",
        &["-n", &h0, "addr", "add", "10.98.0.1/24", "dev", "late0"],
    );
    // Alone on its link: Master_Down_Interval (3 x 0.1 s + skew) after the address came.
    let late = || {
        let out = Command::new("ip")
            .args(["-n", &h0, "addr", "show", "dev", "late0"])
            .output()
            .expect("ip");
        String::from_utf8_lossy(&out.stdout).contains("10.98.0.80")
    };
    assert!(
        wait_for(Duration::from_secs(2), late).is_some(),
        "late instance never came up\n{}",
        lab.log_dump()
    );
    assert!(status(&lab, "b0").contains("LATE MASTER"));
}

/// Link and address changes arrive as rtnetlink events: an idle daemon sleeps until its next
/// protocol timer instead of waking every 100 ms to poll.
#[test]
fn idle_daemon_sleeps_until_its_timer() {
    let mut lab = Lab::new("idle", 1);
    // Backup with a 10 s advert_int: its only timer is Master_Down_Interval, > 30 s away.
    let text = cfg(&lab, 0, 100, 3, 10.0).render("b0");
    let pid = lab.start_vrrp(0, "b0", &text);
    std::thread::sleep(Duration::from_millis(500));
    let switches = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(u64::MAX)
    };
    let before = switches();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let woke = switches().saturating_sub(before);
    // Polling every 100 ms wakes ~20 times in 2 s; an event-driven loop not at all. Margin:
    // a few wake-ups for anything the kernel reports meanwhile.
    assert!(
        woke <= 4,
        "{woke} wake-ups in {:?}\n{}",
        t.elapsed(),
        lab.log_dump()
    );
}
