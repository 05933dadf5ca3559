//! Interop with Debian's keepalived 2.2.7 as the peer, both directions, and the failover
//! times of every pairing (printed; run with `-- --nocapture` to see them):
//! v2 PASS advert_int 1 and v3 advert_int 0.1; election, crash (SIGKILL), graceful (SIGTERM)
//! and preemption when the higher-priority router returns.

mod common;

use std::time::{Duration, Instant};

use common::*;

const VIPS: [&str; 3] = ["10.99.0.80", "10.99.0.90", "10.99.0.100"];
const VIPS_CIDR: [&str; 3] = ["10.99.0.80/24", "10.99.0.90/24", "10.99.0.100/24"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ours,
    Keepalived,
}

struct Node {
    kind: Kind,
    host: usize,
    prio: u8,
    name: String,
    pid: u32,
}

struct Run {
    lab: Lab,
    version: u8,
    advert_int: f64,
    starts: usize,
}

impl Run {
    fn start(&mut self, kind: Kind, host: usize, prio: u8) -> Node {
        self.starts += 1;
        let name = format!("{kind:?}{host}-{}", self.starts).to_lowercase();
        let pid = match kind {
            Kind::Ours => {
                let text = cfg(&self.lab, host, prio, self.version, self.advert_int).render(&name);
                self.lab.start_vrrp(host, &name, &text)
            }
            Kind::Keepalived => {
                let conf = keepalived_conf(prio, self.version, self.advert_int, &VIPS_CIDR, "");
                self.lab.start_keepalived(host, &name, &conf)
            }
        };
        Node {
            kind,
            host,
            prio,
            name,
            pid,
        }
    }

    /// SIGKILL: no priority 0, VIPs left behind. keepalived: its VRRP child is the one that
    /// speaks VRRP, so that is the process that "crashes" (-R: the parent does not respawn it).
    fn crash(&mut self, n: &Node) {
        match n.kind {
            Kind::Ours => self.lab.signal(n.pid, libc::SIGKILL),
            Kind::Keepalived => {
                let child = wait_some(|| self.lab.keepalived_vrrp_pid(&n.name));
                self.lab.signal(child, libc::SIGKILL);
            }
        }
    }

    fn stop(&mut self, n: &Node) {
        self.lab.signal(n.pid, libc::SIGTERM);
    }

    fn reap(&mut self, n: &Node) {
        if self.lab.wait_exit(n.pid, Duration::from_secs(5)).is_none() {
            self.lab.signal(n.pid, libc::SIGKILL);
            let _ = self.lab.wait_exit(n.pid, Duration::from_secs(2));
        }
    }

    fn master_down(&self, backup_prio: u8) -> Duration {
        let i = Duration::from_secs_f64(self.advert_int);
        i * 3 + self.skew(backup_prio)
    }

    fn skew(&self, backup_prio: u8) -> Duration {
        let i = if self.version == 2 {
            Duration::from_secs(1)
        } else {
            Duration::from_secs_f64(self.advert_int)
        };
        i * (256 - u32::from(backup_prio)) / 256
    }
}

fn wait_some<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn holds_all(w: &mut Watch) -> bool {
    VIPS.iter().all(|v| w.has(v))
}
fn holds_none(w: &mut Watch) -> bool {
    VIPS.iter().all(|v| !w.has(v))
}

/// The full scenario for one pairing; returns (crash, graceful) failover times.
fn scenario(high: Kind, low: Kind, version: u8, advert_int: f64) -> (Duration, Duration) {
    let tag = format!("ka-v{version}-{high:?}-{low:?}").to_lowercase();
    let mut r = Run {
        lab: Lab::new(&tag, 2),
        version,
        advert_int,
        starts: 0,
    };
    let mut wh = Watch::new(&r.lab, &r.lab.hosts[0].clone());
    let mut wl = Watch::new(&r.lab, &r.lab.hosts[1].clone());
    let settle = r.master_down(100) * 2 + Duration::from_secs(2);
    let dump = |r: &Run| r.lab.log_dump();

    let lo = r.start(low, 1, 100);
    let mut hi = r.start(high, 0, 150);
    assert_eq!((hi.prio, lo.prio, lo.host), (150, 100, 1));

    // Election: the 150 router holds every VIP, the 100 router none, stably.
    let ok = wait_for(settle, || holds_all(&mut wh) && holds_none(&mut wl));
    assert!(ok.is_some(), "[{tag}] election\n{}", dump(&r));
    let end = Instant::now() + Duration::from_secs_f64(advert_int * 4.0);
    while Instant::now() < end {
        assert!(
            holds_all(&mut wh) && holds_none(&mut wl),
            "[{tag}] unstable\n{}",
            dump(&r)
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Crash failover: the backup takes over after Master_Down_Interval.
    let t0 = Instant::now();
    r.crash(&hi);
    let crash = wait_for(settle, || holds_all(&mut wl)).map(|_| t0.elapsed());
    let mdi = r.master_down(100);
    let crash = crash.unwrap_or_else(|| panic!("[{tag}] no crash failover\n{}", dump(&r)));
    assert!(
        crash < mdi + Duration::from_millis(300),
        "[{tag}] crash failover {crash:?} > {mdi:?} + 300 ms\n{}",
        dump(&r)
    );
    r.reap(&hi);

    // Preemption: the 150 router returns (removing any VIPs its crashed predecessor left)
    // and takes the VIPs back; the backup releases them.
    hi = r.start(high, 0, 150);
    let ok = wait_for(settle, || holds_all(&mut wh) && holds_none(&mut wl));
    assert!(ok.is_some(), "[{tag}] no preemption\n{}", dump(&r));

    // Graceful failover: priority 0, takeover after Skew_Time.
    let t0 = Instant::now();
    r.stop(&hi);
    let grace = wait_for(settle, || holds_all(&mut wl)).map(|_| t0.elapsed());
    let grace = grace.unwrap_or_else(|| panic!("[{tag}] no graceful failover\n{}", dump(&r)));
    let skew = r.skew(100);
    assert!(
        grace < skew + Duration::from_millis(400),
        "[{tag}] graceful failover {grace:?} > {skew:?} + 400 ms\n{}",
        dump(&r)
    );
    r.reap(&hi);
    assert!(
        wait_for(Duration::from_secs(2), || holds_none(&mut wh)).is_some(),
        "[{tag}] stopped master kept VIPs"
    );
    eprintln!(
        "FAILOVER v{version} advert_int {advert_int}s master {high:?} -> backup {low:?}: \
         crash {:.0} ms (Master_Down_Interval {:.0} ms), graceful {:.0} ms (Skew_Time {:.0} ms)",
        crash.as_secs_f64() * 1e3,
        mdi.as_secs_f64() * 1e3,
        grace.as_secs_f64() * 1e3,
        skew.as_secs_f64() * 1e3
    );
    (crash, grace)
}

#[test]
fn v3_ours_master_keepalived_backup() {
    scenario(Kind::Ours, Kind::Keepalived, 3, 0.1);
}

#[test]
fn v3_keepalived_master_ours_backup() {
    let (crash, _) = scenario(Kind::Keepalived, Kind::Ours, 3, 0.1);
    assert!(
        crash < Duration::from_millis(450),
        "target: v3 0.1 s crash failover < 0.45 s"
    );
}

#[test]
fn v3_ours_with_ours() {
    let (crash, _) = scenario(Kind::Ours, Kind::Ours, 3, 0.1);
    assert!(
        crash < Duration::from_millis(450),
        "target: v3 0.1 s crash failover < 0.45 s"
    );
}

#[test]
fn v3_keepalived_with_keepalived() {
    scenario(Kind::Keepalived, Kind::Keepalived, 3, 0.1);
}

#[test]
fn v2_ours_master_keepalived_backup() {
    scenario(Kind::Ours, Kind::Keepalived, 2, 1.0);
}

#[test]
fn v2_keepalived_master_ours_backup() {
    scenario(Kind::Keepalived, Kind::Ours, 2, 1.0);
}

#[test]
fn v2_ours_with_ours() {
    scenario(Kind::Ours, Kind::Ours, 2, 1.0);
}

#[test]
fn v2_keepalived_with_keepalived() {
    scenario(Kind::Keepalived, Kind::Keepalived, 2, 1.0);
}

/// IPv6 (v3 only): keepalived master, our backup and the reverse; adverts from link-local
/// addresses with the IPv6 pseudo-header checksum.
#[test]
fn v3_ipv6_both_directions() {
    let mut lab = Lab::new("ka-v6", 2);
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
    let vips = ["fd99::80/64", "fd99::90/64"];
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    let both = |w: &mut Watch| w.has("fd99::80") && w.has("fd99::90");
    let none = |w: &mut Watch| !w.has("fd99::80") && !w.has("fd99::90");
    let ours = |lab: &Lab, host: usize, prio: u8, name: &str| {
        let mut c = cfg(lab, host, prio, 3, 0.1);
        c.vips = vips.to_vec();
        c.render(name)
    };
    // keepalived 150 on host 0, ours 100 on host 1.
    let c1 = ours(&lab, 1, 100, "o1");
    let o1 = lab.start_vrrp(1, "o1", &c1);
    let k0 = lab.start_keepalived(0, "k0", &keepalived_conf(150, 3, 0.1, &vips, ""));
    let t = wait_for(Duration::from_secs(4), || both(&mut w0) && none(&mut w1));
    assert!(t.is_some(), "keepalived master (IPv6)\n{}", lab.log_dump());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        both(&mut w0) && none(&mut w1),
        "unstable\n{}",
        lab.log_dump()
    );
    let child = wait_some(|| lab.keepalived_vrrp_pid("k0"));
    let t0 = Instant::now();
    lab.signal(child, libc::SIGKILL);
    assert!(wait_for(Duration::from_secs(2), || both(&mut w1)).is_some());
    let crash = t0.elapsed();
    assert!(crash < Duration::from_millis(450), "{crash:?}");
    let _ = lab.wait_exit(k0, Duration::from_secs(3));
    lab.signal(o1, libc::SIGTERM);
    assert_eq!(lab.wait_exit(o1, Duration::from_secs(3)), Some(0));
    // Reverse: ours 150 on host 0, where the crashed keepalived left its VIPs (our start
    // removes them), keepalived 100 on host 1.
    assert!(both(&mut w0));
    lab.start_keepalived(1, "k1", &keepalived_conf(100, 3, 0.1, &vips, ""));
    let c0 = ours(&lab, 0, 150, "o0");
    let o0 = lab.start_vrrp(0, "o0", &c0);
    let t = wait_for(Duration::from_secs(4), || both(&mut w0) && none(&mut w1));
    assert!(t.is_some(), "our master (IPv6)\n{}", lab.log_dump());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        both(&mut w0) && none(&mut w1),
        "unstable\n{}",
        lab.log_dump()
    );
    let t0 = Instant::now();
    lab.signal(o0, libc::SIGTERM);
    assert!(wait_for(Duration::from_secs(2), || both(&mut w1)).is_some());
    eprintln!(
        "FAILOVER v3 IPv6 0.1s: keepalived -> ours crash {:.0} ms; ours -> keepalived graceful {:.0} ms",
        crash.as_secs_f64() * 1e3,
        t0.elapsed().as_secs_f64() * 1e3
    );
}
