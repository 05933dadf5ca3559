//! Two and three routers in simulation: every SendAdvert is encoded, delivered to the other
//! running routers after a chosen delay, decoded and handed to them. Virtual clock only.

use super::{cfg, v3};
use crate::instance::{Action, Event, Instance, InstanceConfig, State};
use crate::wire::vrrp::{self, ChecksumMode};
use std::net::IpAddr;
use std::time::{Duration, Instant};

struct Node {
    inst: Instance,
    /// Powered on and connected (a crashed router is !up: sends and receives nothing).
    up: bool,
}

struct Sim {
    t0: Instant,
    now: Instant,
    delay: Duration,
    nodes: Vec<Node>,
    /// (delivery time, sender index, encoded payload)
    wire: Vec<(Instant, usize, Vec<u8>)>,
    /// While true, adverts are lost (a partition).
    partitioned: bool,
    /// (time, node, from, to, reason)
    log: Vec<(Instant, usize, State, State, String)>,
    /// Per receiver: time of the last advert delivered from anyone.
    last_rx: Vec<Option<Instant>>,
    /// Adverts sent per node.
    sent: Vec<Vec<(Instant, u8)>>,
    /// Times at which two or more routers were master at once.
    overlap: Vec<Instant>,
}

const GROUP: &str = "224.0.0.18";

impl Sim {
    fn new(cfgs: Vec<InstanceConfig>, delay: Duration) -> Sim {
        let t0 = Instant::now();
        let n = cfgs.len();
        Sim {
            t0,
            now: t0,
            delay,
            nodes: cfgs
                .into_iter()
                .map(|c| Node {
                    inst: Instance::new(c),
                    up: false,
                })
                .collect(),
            wire: Vec::new(),
            partitioned: false,
            log: Vec::new(),
            last_rx: vec![None; n],
            sent: vec![Vec::new(); n],
            overlap: Vec::new(),
        }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn addr(&self, i: usize) -> IpAddr {
        self.nodes[i].inst.config().primary_addr
    }

    fn event(&mut self, i: usize, ev: Event) {
        if matches!(ev, Event::Startup) {
            self.nodes[i].up = true;
        }
        self.nodes[i].inst.handle(self.now, ev);
        self.flush(i);
    }

    /// The router vanishes without a word (kill -9, power, cable).
    fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].inst = Instance::new(self.nodes[i].inst.config().clone());
    }

    fn flush(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].inst.poll_action() {
            match a {
                Action::SendAdvert(adv) => {
                    self.sent[i].push((self.now, adv.priority));
                    let mut buf = Vec::new();
                    let (src, dst) = (self.addr(i), GROUP.parse().unwrap());
                    vrrp::encode(&adv, src, dst, ChecksumMode::PseudoHeader, &mut buf).unwrap();
                    if self.nodes[i].up && !self.partitioned {
                        self.wire.push((self.now + self.delay, i, buf));
                    }
                }
                Action::Transition { from, to, reason } => {
                    self.log.push((self.now, i, from, to, reason))
                }
                // The simulation runs unpaced instances.
                Action::AddVips | Action::RemoveVips | Action::SendGratuitous | Action::Pace(_) => {
                }
            }
        }
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].inst.state() == State::Master)
            .collect()
    }

    /// Runs every timer and delivery up to and including `until`.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.inst.poll_timeout())
                .min();
            let next = match (next_wire, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = next;
            // Deliveries first, then timers due at the same instant.
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= self.now);
            self.wire = rest;
            for (_, from, bytes) in due {
                let src = self.addr(from);
                for to in 0..self.nodes.len() {
                    if to == from || !self.nodes[to].up {
                        continue;
                    }
                    let adv = vrrp::decode(&bytes, src, GROUP.parse().unwrap()).unwrap();
                    self.last_rx[to] = Some(self.now);
                    self.nodes[to]
                        .inst
                        .handle(self.now, Event::Advert { src, advert: adv });
                    self.flush(to);
                }
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].up
                    && self.nodes[i]
                        .inst
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now)
                {
                    self.nodes[i].inst.handle_timeout(self.now);
                    self.flush(i);
                }
            }
            if self.masters().len() > 1 {
                self.overlap.push(self.now);
            }
        }
        self.now = until;
    }

    fn run(&mut self, secs: f64) {
        let t = self.at(secs);
        self.run_until(t);
    }

    /// When node `i` last became master.
    fn became_master(&self, i: usize) -> Option<Instant> {
        self.log
            .iter()
            .rev()
            .find(|l| l.1 == i && l.3 == State::Master)
            .map(|l| l.0)
    }

    /// The last advert node `i` sent at or before `t` (the crash time).
    fn last_sent_before(&self, i: usize, t: Instant) -> Instant {
        self.sent[i]
            .iter()
            .map(|(s, _)| *s)
            .rfind(|s| *s <= t)
            .unwrap()
    }

    fn overlap_after(&self, t: Instant) -> Vec<Instant> {
        self.overlap.iter().copied().filter(|&o| o >= t).collect()
    }
}

const DELAY: Duration = Duration::from_millis(5);

fn pair(p0: u8, p1: u8) -> Sim {
    Sim::new(vec![cfg(p0, "10.0.0.1"), cfg(p1, "10.0.0.2")], DELAY)
}

fn start_all(s: &mut Sim) {
    for i in 0..s.nodes.len() {
        s.event(i, Event::Startup);
    }
}

#[test]
fn two_routers_elect_the_higher_priority_and_stay_stable() {
    let mut s = pair(150, 100);
    start_all(&mut s);
    s.run(10.0);
    assert_eq!(s.masters(), vec![0]);
    // The 150 router's down timer (3 + 106/256 s) expires before the 100 router's.
    assert_eq!(s.became_master(0), Some(s.at(3.0 + 106.0 / 256.0)));
    assert_eq!(s.became_master(1), None);
    s.run(120.0);
    assert!(s.overlap.is_empty(), "{:?}", s.overlap);
    assert_eq!(s.masters(), vec![0]);
    assert_eq!(s.nodes[1].inst.master_addr(), Some(s.addr(0)));
    // About one advert per second from the master, none from the backup.
    assert!(
        (115..=118).contains(&s.sent[0].len()),
        "{}",
        s.sent[0].len()
    );
    assert!(s.sent[1].is_empty());
}

#[test]
fn equal_priority_higher_address_wins() {
    // Both start at once with equal timers: both become master at the same instant, then the
    // lower address yields when it hears the higher one.
    let mut s = pair(100, 100);
    start_all(&mut s);
    s.run(10.0);
    assert_eq!(s.masters(), vec![1], "10.0.0.2 > 10.0.0.1");
    let settled = s.at(5.0);
    s.run(60.0);
    assert!(s.overlap_after(settled).is_empty());
    let step_down = s
        .log
        .iter()
        .find(|l| l.1 == 0 && l.3 == State::Backup && l.2 == State::Master);
    assert!(
        step_down.is_some_and(|l| l.4.contains("higher address 10.0.0.2")),
        "{:?}",
        s.log
    );
}

#[test]
fn graceful_shutdown_hands_over_after_skew_time() {
    let mut s = Sim::new(
        vec![
            cfg(150, "10.0.0.1"),
            cfg(100, "10.0.0.2"),
            cfg(50, "10.0.0.3"),
        ],
        DELAY,
    );
    start_all(&mut s);
    s.run(10.0);
    assert_eq!(s.masters(), vec![0]);
    s.now = s.at(10.5);
    s.event(0, Event::Shutdown);
    s.nodes[0].up = false;
    s.run(20.0);
    assert_eq!(s.masters(), vec![1]);
    // Priority 0 arrives after DELAY; the 100 router waits Skew_Time = 156/256 s.
    let want = s.at(10.5) + DELAY + Duration::from_nanos(609_375_000);
    assert_eq!(s.became_master(1), Some(want));
    assert_eq!(
        s.became_master(2),
        None,
        "the 50 router heard the 100 one before its skew ran out"
    );
    assert!(s.overlap.is_empty());
}

#[test]
fn silent_master_is_replaced_after_exactly_master_down_interval() {
    let mut s = Sim::new(
        vec![
            cfg(150, "10.0.0.1"),
            cfg(100, "10.0.0.2"),
            cfg(50, "10.0.0.3"),
        ],
        DELAY,
    );
    start_all(&mut s);
    s.run(10.0);
    s.crash(0);
    s.run(20.0);
    assert_eq!(s.masters(), vec![1]);
    // The 100 router last heard the master at some delivery time R <= 10 s; it takes over at
    // exactly R + 3 s + 156/256 s.
    let became = s.became_master(1).unwrap();
    let r = s.last_sent_before(0, s.at(10.0)) + DELAY;
    assert_eq!(became, r + Duration::from_nanos(3_609_375_000));
    assert!(s.overlap.is_empty());
}

#[test]
fn higher_priority_router_preempts_back_when_it_returns() {
    let mut s = pair(150, 100);
    start_all(&mut s);
    s.run(10.0);
    s.crash(0);
    s.run(20.0);
    assert_eq!(s.masters(), vec![1]);
    s.now = s.at(20.0);
    s.event(0, Event::Startup);
    s.run(40.0);
    assert_eq!(s.masters(), vec![0]);
    // It ignores the lower master's adverts and preempts when its own down timer expires.
    assert_eq!(s.became_master(0), Some(s.at(20.0 + 3.0 + 106.0 / 256.0)));
    // Two masters only for the advert's flight time.
    let o = s.overlap_after(s.at(20.0));
    assert!(
        o.iter().all(|t| *t <= s.became_master(0).unwrap() + DELAY),
        "{o:?}"
    );
    let reason = &s
        .log
        .iter()
        .rev()
        .find(|l| l.1 == 1 && l.3 == State::Backup)
        .unwrap()
        .4;
    assert_eq!(reason, "higher priority 150 from 10.0.0.1 (ours 100)");
}

#[test]
fn nopreempt_keeps_the_current_master() {
    let mut c0 = cfg(150, "10.0.0.1");
    c0.preempt = false;
    let mut s = Sim::new(vec![c0, cfg(100, "10.0.0.2")], DELAY);
    s.event(1, Event::Startup);
    s.run(10.0);
    assert_eq!(s.masters(), vec![1]);
    s.event(0, Event::Startup);
    s.run(60.0);
    assert_eq!(s.masters(), vec![1]);
    assert!(s.overlap.is_empty());
}

#[test]
fn preempt_delay_postpones_preemption() {
    let mut c0 = cfg(150, "10.0.0.1");
    c0.preempt_delay = Duration::from_secs(10);
    let mut s = Sim::new(vec![c0, cfg(100, "10.0.0.2")], DELAY);
    s.event(1, Event::Startup);
    s.run(10.0);
    s.event(0, Event::Startup);
    s.run(18.0);
    assert_eq!(s.masters(), vec![1], "still delaying");
    s.run(40.0);
    assert_eq!(s.masters(), vec![0]);
    let t = s.became_master(0).unwrap();
    // Last lower advert accepted just before 10 + 10 s, then Master_Down_Interval.
    assert!(
        t > s.at(20.0 + 2.6) && t <= s.at(20.0 + 3.0 + 106.0 / 256.0 + 0.01),
        "{:?}",
        t - s.t0
    );
}

#[test]
fn v3_backup_uses_masters_short_interval() {
    // Master advertises every 0.1 s, the backup's own interval is 1 s.
    let mut s = Sim::new(
        vec![
            v3(cfg(150, "10.0.0.1"), 100),
            v3(cfg(100, "10.0.0.2"), 1000),
        ],
        DELAY,
    );
    s.event(0, Event::Startup);
    s.run(1.0);
    s.event(1, Event::Startup);
    s.run(5.0);
    assert_eq!(s.masters(), vec![0]);
    assert_eq!(
        s.nodes[1].inst.master_adver_interval(),
        Duration::from_millis(100)
    );
    let mdi = Duration::from_nanos(360_937_500);
    assert_eq!(s.nodes[1].inst.master_down_interval(), mdi);
    s.crash(0);
    s.run(10.0);
    let r = s.last_sent_before(0, s.at(5.0)) + DELAY;
    assert_eq!(s.became_master(1), Some(r + mdi));
    assert!(
        r + mdi - s.at(5.0) < Duration::from_millis(450),
        "crash failover under 0.45 s"
    );
}

#[test]
fn priority_255_owner_is_master_immediately() {
    let mut s = pair(255, 100);
    s.event(1, Event::Startup);
    s.run(10.0);
    assert_eq!(s.masters(), vec![1]);
    s.event(0, Event::Startup);
    assert_eq!(s.became_master(0), Some(s.at(10.0)));
    s.run(20.0);
    assert_eq!(s.masters(), vec![0]);
    assert!(s
        .overlap_after(s.at(10.0) + DELAY + Duration::from_nanos(1))
        .is_empty());
}

#[test]
fn lower_priority_master_is_answered_after_a_partition() {
    let mut s = pair(150, 100);
    s.partitioned = true;
    start_all(&mut s);
    s.run(10.5);
    assert_eq!(s.masters(), vec![0, 1], "split brain while partitioned");
    s.partitioned = false;
    s.run(15.0);
    assert_eq!(s.masters(), vec![0]);
    // The 100 router speaks first after the heal (its adverts are at x.609 s, the 150 one's at
    // x.414 s); the 150 master answers at the instant it hears it, not at its next interval.
    let low = s.sent[1].iter().find(|(t, _)| *t > s.at(10.5)).unwrap().0;
    let heard = low + DELAY;
    assert!(s.sent[0].contains(&(heard, 150)), "{:?}", s.sent[0]);
    let stepped = s
        .log
        .iter()
        .find(|l| l.1 == 1 && l.2 == State::Master && l.3 == State::Backup)
        .unwrap();
    assert_eq!(stepped.0, heard + DELAY);
    assert!(stepped.0 < s.at(11.0));
    assert!(s
        .overlap_after(stepped.0 + Duration::from_nanos(1))
        .is_empty());
}

#[test]
fn track_failure_lowering_priority_moves_the_vip() {
    let mut s = pair(150, 100);
    start_all(&mut s);
    s.run(10.0);
    // weight -60: 150 -> 90 < 100.
    s.now = s.at(10.2);
    s.event(0, Event::SetPriority(90));
    s.run(20.0);
    assert_eq!(s.masters(), vec![1]);
    let t = s.became_master(1).unwrap();
    assert!(
        t <= s.at(10.0) + DELAY + Duration::from_nanos(3_609_375_000),
        "{:?}",
        t - s.t0
    );
    // The keepalived.conf trap: weight -20 (150 -> 130) never moves it.
    let mut s = pair(150, 100);
    start_all(&mut s);
    s.run(10.0);
    s.event(0, Event::SetPriority(130));
    s.run(60.0);
    assert_eq!(s.masters(), vec![0]);
}

#[test]
fn fault_on_master_hands_over_after_skew_and_garps_on_return() {
    let mut s = pair(150, 100);
    start_all(&mut s);
    s.run(10.0);
    s.now = s.at(10.5);
    s.event(0, Event::Fault(true));
    s.run(20.0);
    assert_eq!(s.masters(), vec![1]);
    assert_eq!(
        s.became_master(1),
        Some(s.at(10.5) + DELAY + Duration::from_nanos(609_375_000))
    );
    s.now = s.at(20.0);
    s.event(0, Event::Fault(false));
    s.run(40.0);
    assert_eq!(s.masters(), vec![0], "preempts back after the fault clears");
}
