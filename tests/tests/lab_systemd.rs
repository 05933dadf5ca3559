//! Lab hosts that boot a real systemd must never reach the machine: its /tmp, its clock, its
//! units. Needs root; the lab has its own id and state directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use e2e::{inventory, TestLab};
use nix::time::{clock_gettime, ClockId};

/// CLOCK_REALTIME - CLOCK_MONOTONIC: constant unless someone sets (or slews) the clock.
fn clock_offset() -> Duration {
    let real = Duration::from(clock_gettime(ClockId::CLOCK_REALTIME).expect("realtime"));
    let mono = Duration::from(clock_gettime(ClockId::CLOCK_MONOTONIC).expect("monotonic"));
    real - mono
}

/// Names in /tmp last modified more than `age` ago: other programs on the machine create and
/// remove their own entries while the test runs (even hours-old ones), but days-old ones are
/// nobody's work in progress, and they are what a tmpfiles cleanup ("D /tmp", age rules) would
/// remove.
fn old_tmp_entries(age: Duration) -> Vec<String> {
    let now = SystemTime::now();
    let mut v: Vec<String> = std::fs::read_dir("/tmp")
        .expect("read /tmp")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > age)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A file and a directory in the machine's /tmp, dated 40 days back.
fn old_markers(tag: &str) -> Vec<PathBuf> {
    let file = PathBuf::from(format!("/tmp/lab-e2e-marker-{tag}"));
    let dir = PathBuf::from(format!("/tmp/lab-e2e-markerdir-{tag}"));
    std::fs::write(&file, "machine file").expect("marker");
    std::fs::create_dir_all(&dir).expect("marker dir");
    std::fs::write(dir.join("inside"), "x").expect("marker in dir");
    for p in [&dir.join("inside"), &file, &dir] {
        let ok = Command::new("touch")
            .args(["-d", "40 days ago"])
            .arg(p)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "touch {}", p.display());
    }
    vec![file, dir]
}

fn exec_out(lab: &TestLab, host: &str, cmd: &[&str]) -> (bool, String) {
    let mut args = vec!["exec", host, "--"];
    args.extend_from_slice(cmd);
    let out = lab.run(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// CapBnd of a process, as a bit mask.
fn cap_bounding(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd")
        .trim();
    u64::from_str_radix(hex, 16).expect("hex")
}

const CAP_SYS_MODULE: u32 = 16;
const CAP_SYS_BOOT: u32 = 22;
const CAP_SYS_TIME: u32 = 25;

#[test]
fn systemd_hosts_leave_the_machines_tmp_clock_and_units_alone() {
    let lab = TestLab::new("m");
    let tag = lab.id.clone();
    let markers = old_markers(&tag);
    let old_before = old_tmp_entries(Duration::from_secs(2 * 86400));
    assert!(old_before.contains(&format!("lab-e2e-marker-{tag}")));
    let offset_before = clock_offset();

    let out = lab.run(&[
        "up",
        "--init",
        "systemd",
        inventory().to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "lab up --init systemd failed");
    let pids = lab.processes();

    for host in ["server1", "server3"] {
        // A real systemd, booted to the lab's target.
        let (_, state) = exec_out(&lab, host, &["systemctl", "is-system-running"]);
        assert_eq!(state, "running", "{host}");
        let (_, comm) = exec_out(&lab, host, &["cat", "/proc/1/comm"]);
        assert_eq!(comm, "systemd", "{host}: PID 1");
        // Its own /tmp: the machine's marker is not there, and its own files stay in it.
        let (seen, _) = exec_out(
            &lab,
            host,
            &["test", "-e", &format!("/tmp/lab-e2e-marker-{tag}")],
        );
        assert!(!seen, "{host} sees the machine's /tmp");
        // None of the machine's enabled units run; the clock setter and gettys are masked.
        for unit in [
            "systemd-timesyncd.service",
            "getty@tty1.service",
            "nginx.service",
        ] {
            let (_, st) = exec_out(&lab, host, &["systemctl", "is-enabled", unit]);
            assert_eq!(st, "masked", "{host}: {unit}");
        }
        let (_, running) = exec_out(
            &lab,
            host,
            &[
                "systemctl",
                "list-units",
                "--state=running",
                "--no-legend",
                "--plain",
            ],
        );
        for unit in [
            "getty",
            "timesyncd",
            "nginx",
            "keepalived",
            "haproxy",
            "postgresql",
        ] {
            let units = running.lines().filter_map(|l| l.split_whitespace().next());
            assert!(
                !units.clone().any(|u| u.contains(unit)),
                "{host} runs {unit}:\n{running}"
            );
        }
        // No process of the host, nor one the lab starts in it, may set the clock, load
        // modules or reboot the machine.
        let (_, caps) = exec_out(
            &lab,
            host,
            &["grep", "CapBnd", "/proc/1/status", "/proc/self/status"],
        );
        for line in caps.lines() {
            let hex = line.rsplit('\t').next().unwrap_or("").trim();
            let mask = u64::from_str_radix(hex, 16).unwrap_or(u64::MAX);
            for cap in [CAP_SYS_TIME, CAP_SYS_MODULE, CAP_SYS_BOOT] {
                assert_eq!(mask & (1 << cap), 0, "{host}: capability {cap} in {line}");
            }
        }
    }
    // `lab logs` reads the unit's journal inside the host.
    let out = lab.run(&["logs", "server1", "proxy", "-n", "50"]);
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("journalctl -u proxy"), "{logs}");
    assert!(logs.contains("server1 proxy["), "{logs}");
    assert!(logs.contains("proxy started"), "{logs}");
    // The keeper (the hosts' systemd) seen from outside too.
    let state = std::fs::read_to_string(lab.root.join(&lab.id).join("state.toml")).expect("state");
    let keeper = state
        .lines()
        .find_map(|l| l.strip_prefix("server1 = "))
        .expect("server1's keeper in the state file");
    assert_eq!(cap_bounding(keeper) & (1 << CAP_SYS_TIME), 0);
    assert!(!lab.cgroups().is_empty(), "hosts boot in the lab's cgroups");

    assert!(lab.run(&["down"]).status.success());
    lab.assert_gone(&pids);

    for m in &markers {
        assert!(m.exists(), "{} was removed", m.display());
    }
    assert!(Path::new(&markers[1]).join("inside").exists());
    let old_after = old_tmp_entries(Duration::from_secs(2 * 86400));
    let lost: Vec<&String> = old_before
        .iter()
        .filter(|e| !old_after.contains(e))
        .collect();
    assert!(lost.is_empty(), "old /tmp entries gone: {lost:?}");
    // Nothing stepped the clock: realtime moved with the monotonic clock. Measured drift over
    // an up/down on this machine is below 1 ms; 50 ms allows for slewing by a time daemon
    // the machine itself might run.
    let offset_after = clock_offset();
    let drift = offset_after.abs_diff(offset_before);
    eprintln!("clock offset drift across up/down: {drift:?}");
    assert!(
        drift < Duration::from_millis(50),
        "clock offset changed by {drift:?}"
    );
    for m in &markers {
        let _ = std::fs::remove_dir_all(m);
        let _ = std::fs::remove_file(m);
    }
}
