//! The ECMP lab: a router namespace running FRR between the client and the balancers, which
//! announce the VIPs over BGP (BIRD, vrrp's anycast mode). Needs root; the lab has its own id
//! and state directory, so it never touches a user's lab.

use std::path::Path;
use std::process::Command;

use e2e::{inventory, root_namespace_view, TestLab};

/// `ip -n NS route show PREFIX`.
fn route(ns: &str, prefix: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "route", "show", prefix])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Entries of the machine's /var/tmp/frr (where an unconfined FRR leaves its crash-log
/// directories).
fn machine_frr_tmp() -> Vec<String> {
    std::fs::read_dir("/var/tmp/frr")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Mounts of the machine's own mount namespace that name the lab's state root.
fn machine_mounts(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&root))
        .map(str::to_string)
        .collect()
}

/// `lab scenario --topology ecmp`: who the router routes to after each step, and who answered
/// in each steady state, from the JSON report. Failure counts and times depend on how loaded
/// the machine is and are the scenario's own verdict (printed), not asserted here.
fn check_scenario(lab: &TestLab) {
    let json = lab.root.join("ecmp.json");
    let svg = lab.root.join("ecmp.svg");
    let (json_s, svg_s) = (json.to_str().expect("utf-8"), svg.to_str().expect("utf-8"));
    lab.run(&[
        "scenario",
        "--topology",
        "ecmp",
        "--svg",
        svg_s,
        "--json",
        json_s,
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
            .expect("report is JSON");
    let steps = report["steps"].as_array().expect("steps");
    let expect = [
        ("1", "server1+server2"),
        ("2", "server2"),
        ("2+", "server1+server2"),
        ("3", "server2"),
        ("3+", "server1+server2"),
    ];
    assert_eq!(steps.len(), expect.len(), "{report:#}");
    for (s, (id, routed)) in steps.iter().zip(expect) {
        let ctx = format!("step {id}: {s:#}");
        assert_eq!(s["id"], id, "{ctx}");
        assert_eq!(s["observed"], routed, "{ctx}");
        let (t, bound) = (s["routed_s"].as_f64(), s["bound_s"].as_f64());
        assert!(t.zip(bound).is_some_and(|(t, b)| t <= b), "{ctx}");
        let served: Vec<u64> = ["server1", "server2"]
            .iter()
            .map(|b| {
                s["served"]
                    .as_array()
                    .and_then(|v| v.iter().find(|x| x["balancer"] == *b))
                    .and_then(|x| x["steady"].as_u64())
                    .unwrap_or(0)
            })
            .collect();
        let answered =
            s["steady_sent"].as_u64().unwrap_or(0) - s["steady_failed"].as_u64().unwrap_or(0);
        if routed == "server2" {
            assert_eq!(served[0], 0, "server1 answered while withdrawn: {ctx}");
            assert!(served[1] > 0, "{ctx}");
        } else {
            // Both serve: each well above zero (an even split would be half).
            for n in &served {
                assert!(*n * 8 >= answered && *n > 0, "{ctx}");
            }
        }
    }
    // A proxy death costs requests until the router withdraws server1.
    assert!(
        steps[1]["failed"].as_u64().unwrap_or(0) > 0,
        "{:#}",
        steps[1]
    );
    let svg_text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(svg_text.starts_with("<svg") && svg_text.contains("server1 in router's ECMP"));
}

#[test]
fn ecmp_lab_has_both_balancers_as_nexthops_and_leaves_nothing_behind() {
    let lab = TestLab::new("e");
    let root_view = root_namespace_view();
    let frr_tmp = machine_frr_tmp();
    let out = lab.run(&[
        "up",
        "--topology",
        "ecmp",
        inventory().to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "lab up --topology ecmp failed");
    let router_ns = format!("{}-router", lab.id);
    assert!(
        lab.namespaces().contains(&router_ns),
        "{:?}",
        lab.namespaces()
    );

    // The router's route to the first VIP has one nexthop per balancer (`lab up` waited for
    // both announcements).
    let r = route(&router_ns, "172.16.249.80");
    assert!(
        r.contains("nexthop via 172.16.249.101") && r.contains("nexthop via 172.16.249.102"),
        "router's route to the VIP: {r:?}"
    );
    assert!(r.contains("proto bgp"), "{r}");
    let status = String::from_utf8_lossy(&lab.run(&["status"]).stdout).into_owned();
    assert!(
        status.contains("router nexthops: server1, server2"),
        "{status}"
    );
    let names = lab.process_names();
    for daemon in ["zebra", "bfdd", "bgpd", "bird"] {
        assert!(
            names.iter().any(|n| n == daemon),
            "{daemon} not running: {names:?}"
        );
    }
    // Flows hash on ports too: the router namespace's own sysctl.
    let hash = Command::new("ip")
        .args(["netns", "exec", &router_ns, "sysctl", "-n"])
        .arg("net.ipv4.fib_multipath_hash_policy")
        .output()
        .expect("sysctl");
    assert_eq!(String::from_utf8_lossy(&hash.stdout).trim(), "1");
    // The client reaches the VIP through the router, and only through it.
    let client_routes = route(&format!("{}-client", lab.id), "default");
    assert!(
        client_routes.contains("via 172.16.250.1"),
        "{client_routes}"
    );
    let ok = lab
        .cmd()
        .args(["exec", "client", "--", "curl", "-sf", "-m", "5"])
        .arg("http://172.16.249.80/")
        .status()
        .expect("curl");
    assert!(ok.success(), "the VIP does not answer through the router");
    // Nothing of the lab reached the machine: no address or route, no FRR files.
    assert_eq!(root_namespace_view(), root_view);
    assert_eq!(machine_frr_tmp(), frr_tmp);

    check_scenario(&lab);

    let pids = lab.processes();
    let out = lab.run(&["down"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&router_ns),
        "down names the router namespace"
    );
    lab.assert_gone(&pids);
    assert!(
        machine_mounts(&lab.root).is_empty(),
        "{:?}",
        machine_mounts(&lab.root)
    );
}
