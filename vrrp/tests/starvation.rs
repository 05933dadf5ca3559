//! The starvation harness, run on demand (ignored by default; it loads the machine):
//!
//! ```text
//! cargo build -p vrrp --bins
//! VRRP_STARVE_HOGS=64 VRRP_STARVE_SECS=20 VRRP_STARVE_INT=0.01 VRRP_STARVE_IMPL=ours \
//!   VRRP_STARVE_REALTIME=1 cargo nextest run -p vrrp --test starvation --run-ignored only --no-capture
//! ```
//!
//! One VRRPv3 pair (priorities 150 and 100) in namespaces at `VRRP_STARVE_INT` seconds, then
//! `VRRP_STARVE_HOGS` CPU-bound processes (each in its own session, as separate services would
//! be) for `VRRP_STARVE_SECS` seconds. Prints the transitions both routers made under load and
//! how long both held the VIP (split brain), sampled every 2 ms. `VRRP_STARVE_IMPL=keepalived`
//! runs keepalived instead (`VRRP_STARVE_REALTIME=1` then sets its `vrrp_rt_priority 1`). Hogs
//! are killed by pid when the run ends, also when it fails.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const VIP: &str = "10.99.0.80";

/// CPU hogs, killed (by pid) and reaped on drop.
struct Hogs(Vec<Child>);

impl Hogs {
    fn start(n: usize) -> Hogs {
        let hogs = (0..n)
            .map(|_| {
                // setsid: each hog leads its own session, as an unrelated service would.
                Command::new("setsid")
                    .args(["sh", "-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn hog")
            })
            .collect();
        Hogs(hogs)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for h in &mut self.0 {
            let _ = h.kill();
        }
        for h in &mut self.0 {
            let _ = h.wait();
        }
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Transitions a router logged: ours "transition:", keepalived "Entering ... STATE".
fn transitions(lab: &Lab, name: &str) -> usize {
    let log = lab.log(name);
    log.matches("transition:").count()
        + log.matches("Entering MASTER STATE").count()
        + log.matches("Entering BACKUP STATE").count()
}

#[test]
#[ignore = "loads the machine: run on demand (see the file's doc)"]
fn starved_pair() {
    let hogs_n: usize = env("VRRP_STARVE_HOGS", 32);
    let secs: f64 = env("VRRP_STARVE_SECS", 20.0);
    let int: f64 = env("VRRP_STARVE_INT", 0.01);
    let keepalived = std::env::var("VRRP_STARVE_IMPL").is_ok_and(|v| v == "keepalived");
    let realtime = env("VRRP_STARVE_REALTIME", 0u8) == 1;
    let mut lab = Lab::new("starve", 2);
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    for (host, prio) in [(0usize, 150u8), (1, 100)] {
        let name = format!("r{host}");
        if keepalived {
            let mut conf = keepalived_conf(prio, 3, int, &["10.99.0.80/24"], "");
            if realtime {
                conf = conf.replace("global_defs {\n", "global_defs {\n    vrrp_rt_priority 1\n");
            }
            lab.start_keepalived(host, &name, &conf);
        } else {
            let mut c = cfg(&lab, host, prio, 3, int);
            c.vips = vec!["10.99.0.80/24"];
            let mut text = c.render(&name);
            if realtime {
                text = text.replace("[global_defs]\n", "[global_defs]\nrealtime = true\n");
            }
            lab.start_vrrp(host, &name, &text);
        }
    }
    assert!(
        wait_for(Duration::from_secs(5), || w0.has(VIP) && !w1.has(VIP)).is_some(),
        "no election\n{}",
        lab.log_dump()
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = transitions(&lab, "r0") + transitions(&lab, "r1");
    let hogs = Hogs::start(hogs_n);
    let start = Instant::now();
    let (mut split, mut samples, mut last) = (Duration::ZERO, 0u64, Instant::now());
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let both = w0.has(VIP) && w1.has(VIP);
        let now = Instant::now();
        if both {
            split += now - last;
        }
        last = now;
        samples += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(hogs);
    std::thread::sleep(Duration::from_millis(500));
    let under_load = transitions(&lab, "r0") + transitions(&lab, "r1") - before;
    println!(
        "STARVATION impl={} realtime={realtime} advert_int={int} hogs={hogs_n} secs={secs} \
         transitions={under_load} split_brain_ms={} samples={samples}",
        if keepalived { "keepalived" } else { "ours" },
        split.as_millis()
    );
    if !keepalived {
        for name in ["r0", "r1"] {
            let st = Command::new(VRRP)
                .args(["status", "--runtime-dir"])
                .arg(lab.path(&format!("run-{name}")))
                .output()
                .expect("status");
            println!("{}", String::from_utf8_lossy(&st.stdout));
        }
    }
}
