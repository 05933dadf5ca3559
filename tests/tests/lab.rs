//! The lab end to end: the seed's test procedure against real namespaces, Apache, sshd and our
//! proxy and vrrp; and `lab up`/`lab down` robustness. Needs root; each test uses its own lab id
//! and state directory, so it never touches a user's lab.

use std::path::Path;
use std::process::Stdio;

use e2e::{inventory, root_namespace_view, TestLab};
use std::time::{Duration, Instant};

#[test]
fn seed_scenario_passes_and_leaves_nothing_behind() {
    let lab = TestLab::new("s");
    let out = lab.run(&["up", inventory().to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "lab up failed");
    let pids = lab.processes();
    // 4 keepers, 4 sshd, 2 Apache masters (+ workers), 2 proxies, 2 vrrp.
    assert!(pids.len() >= 14, "too few processes in the lab: {pids:?}");

    let json = lab.root.join("report.json");
    let svg = lab.root.join("timeline.svg");
    let out = lab.run(&[
        "scenario",
        "--svg",
        svg.to_str().expect("utf-8"),
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
            .expect("report is JSON");
    let steps = report["steps"].as_array().expect("steps");
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["1", "2", "3", "4", "5", "6", "6+", "7", "7+", "8", "8+", "9", "9+"]
    );
    let expect = [
        ("1", "server1"),
        ("2", "server2"),
        ("3", "nobody"),
        ("4", "server2"),
        ("5", "server1"),
        ("6", "server2"),
        ("6+", "server1"),
        ("7", "server1"),
        ("7+", "server1"),
        ("8", "server2"),
        ("8+", "server1"),
        ("9", "server1"),
        ("9+", "server1"),
    ];
    for (s, (id, holder)) in steps.iter().zip(expect) {
        let ctx = format!("step {id}: {s:#}");
        assert_eq!(s["expected"], holder, "{ctx}");
        assert_eq!(s["observed"], holder, "{ctx}");
        assert_eq!(s["problems"].as_array().map(Vec::len), Some(0), "{ctx}");
        if holder != "nobody" {
            assert_eq!(s["steady_failed"], 0, "{ctx}");
            assert!(s["steady_sent"].as_u64().unwrap_or(0) >= 20, "{ctx}");
            // Both backends answered (the alternation itself is checked by `lab`).
            if id != "7" {
                assert!(
                    s["bodies"].as_array().map(Vec::len).unwrap_or(0) >= 1,
                    "{ctx}"
                );
            }
        } else {
            assert_eq!(s["steady_failed"], s["steady_sent"], "{ctx}");
        }
        let failover = s["failover_s"].as_f64().expect("failover measured");
        let bound = s["bound_s"].as_f64().expect("bound");
        assert!(failover <= bound, "{ctx}");
    }
    // The seed's mastership changes happen within Master_Down_Interval (3.61 s for priority
    // 100 at advert_int 1) plus slack.
    for (i, id) in [(1, "2"), (3, "4"), (9, "8")] {
        let f = steps[i]["failover_s"].as_f64().unwrap_or(99.0);
        assert!(f < 3.61 + 2.0, "step {id} failover {f} s");
    }
    for i in [0, 1, 3, 4, 5, 6, 9] {
        let bodies = steps[i]["bodies"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(bodies, 2, "step {}: both backends answer", steps[i]["id"]);
    }
    assert_eq!(
        steps[7]["failed"], 0,
        "a stopped backend must cost no request"
    );
    // Maintenance through the admin API: draining server3 costs no request and stops its
    // answers (its last one within the slack of the API call), ready brings them back.
    for (i, expect) in [(11, "drained"), (12, "ready")] {
        let b = &steps[i]["backend"];
        let ctx = format!("step {}: {b:#}", steps[i]["id"]);
        assert_eq!(steps[i]["failed"], 0, "{ctx}");
        assert_eq!(b["backend"], "server3", "{ctx}");
        assert_eq!(b["expect"], expect, "{ctx}");
        assert!(b["took_s"].as_f64().is_some_and(|t| t < 2.0), "{ctx}");
    }
    assert_eq!(steps[11]["backend"]["steady_answers"], 0);
    assert!(steps[12]["backend"]["steady_answers"].as_u64().unwrap_or(0) > 0);
    assert!(out.status.success(), "lab scenario exited non-zero");
    let svg_text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(svg_text.starts_with("<svg") && svg_text.contains("server1 holds VIP"));

    let out = lab.run(&["down"]);
    assert!(out.status.success());
    lab.assert_gone(&pids);
}

#[test]
fn up_twice_and_down_twice() {
    let lab = TestLab::new("t");
    let inv = inventory();
    let inv = inv.to_str().expect("utf-8");
    let root_addrs = root_namespace_view();
    let index = std::fs::read("/var/www/html/index.html").ok();
    assert!(lab.run(&["up", inv]).status.success());
    // Nothing of the lab leaks into the machine: no address or route in the root namespace,
    // hosts' files (index page, authorized key, configs) only in their overlays.
    assert_eq!(root_namespace_view(), root_addrs);
    assert_eq!(std::fs::read("/var/www/html/index.html").ok(), index);
    let authorized = std::fs::read_to_string("/root/.ssh/authorized_keys").unwrap_or_default();
    assert!(!authorized.contains(&format!("lab-{}", lab.id)));
    assert!(
        !Path::new("/etc/proxy/proxy.toml").exists()
            || !std::fs::read_to_string("/etc/proxy/proxy.toml")
                .unwrap_or_default()
                .contains("rendered from lab.toml")
    );
    let status_before = String::from_utf8_lossy(&lab.run(&["status"]).stdout).into_owned();
    let out = lab.run(&["up", inv]);
    assert!(out.status.success(), "second up must not fail");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already up"),
        "second up says so"
    );
    let out = lab.run(&["status"]);
    assert!(out.status.success());
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    // Same keepers and service pids: the second up restarted nothing.
    assert_eq!(status, status_before);
    assert!(
        status.contains("VIP 172.16.249.80   held by server1"),
        "{status}"
    );
    let pids = lab.processes();
    assert!(lab.run(&["down"]).status.success());
    lab.assert_gone(&pids);
    let out = lab.run(&["down"]);
    assert!(out.status.success(), "second down must not fail");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to remove"));
    let out = lab.run(&["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not up"));
}

#[test]
fn down_after_killing_up_halfway_leaves_nothing() {
    let lab = TestLab::new("k");
    let mut child = lab
        .cmd()
        .arg("up")
        .arg(inventory())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lab up");
    // Kill it once some hosts exist but before it finished.
    let state = lab.root.join(&lab.id).join("state.toml");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pids = Vec::new();
    loop {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        if text.contains("server2 =") {
            pids = lab.processes();
            break;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill lab up");
    let _ = child.wait();
    assert!(
        !pids.is_empty(),
        "lab up was killed before it created anything"
    );
    assert!(!lab.namespaces().is_empty());
    let out = lab.run(&["status"]);
    assert!(
        !out.status.success(),
        "a half-done lab is not reported as up"
    );
    let out = lab.run(&["down"]);
    assert!(out.status.success(), "down after a killed up");
    let mut all = pids;
    all.extend(lab.processes());
    lab.assert_gone(&all);
    // And a fresh up works afterwards.
    let out = lab.run(&["up", inventory().to_str().expect("utf-8")]);
    assert!(out.status.success());
    let pids = lab.processes();
    assert!(lab.run(&["down"]).status.success());
    lab.assert_gone(&pids);
}

/// `--init none` (for machines where systemd cannot boot in a namespace) still builds a working
/// lab: the lab starts the services itself and the VIP is served.
#[test]
fn init_none_still_works() {
    let lab = TestLab::new("n");
    let out = lab.run(&["up", "--init", "none", inventory().to_str().expect("utf-8")]);
    assert!(out.status.success(), "lab up --init none");
    let out = lab.run(&["exec", "server1", "--", "cat", "/proc/1/comm"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sh",
        "PID 1 is the keeper shell"
    );
    let status = String::from_utf8_lossy(&lab.run(&["status"]).stdout).into_owned();
    assert!(
        status.contains("VIP 172.16.249.80   held by server1"),
        "{status}"
    );
    assert!(status.contains("hosts with init none"), "{status}");
    assert!(lab.cgroups().is_empty(), "no cgroups without systemd");
    let pids = lab.processes();
    assert!(lab.run(&["down"]).status.success());
    lab.assert_gone(&pids);
}
