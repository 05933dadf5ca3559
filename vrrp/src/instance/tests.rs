//! Single-instance transitions with a virtual clock (a base Instant plus Durations).

use super::*;

mod props;
mod sim;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn vips() -> Vec<IpAddr> {
    vec![
        ip("172.16.249.80"),
        ip("172.16.249.90"),
        ip("172.16.249.100"),
    ]
}

pub(super) fn cfg(priority: u8, addr: &str) -> InstanceConfig {
    InstanceConfig {
        paced: false,
        name: "VI_1".into(),
        vrid: 51,
        version: Version::V2,
        priority,
        advert_interval: Duration::from_secs(1),
        preempt: true,
        preempt_delay: Duration::ZERO,
        vips: vips(),
        auth: Auth::pass("1111"),
        primary_addr: ip(addr),
        initial_master_hint: false,
    }
}

pub(super) fn v3(mut c: InstanceConfig, interval_ms: u64) -> InstanceConfig {
    c.version = Version::V3;
    c.auth = Auth::None;
    c.advert_interval = Duration::from_millis(interval_ms);
    c
}

fn drain(i: &mut Instance) -> Vec<Action> {
    std::iter::from_fn(|| i.poll_action()).collect()
}

/// An advert as `peer` with `priority` would send it for the same virtual router.
fn advert_from(c: &InstanceConfig, priority: u8) -> Advert {
    Instance::new(c.clone()).advert(priority)
}

fn rx(i: &mut Instance, now: Instant, src: &str, advert: Advert) {
    i.handle(
        now,
        Event::Advert {
            src: ip(src),
            advert,
        },
    );
}

fn transitions(actions: &[Action]) -> Vec<(State, State, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transition { from, to, reason } => Some((*from, *to, reason.clone())),
            _ => None,
        })
        .collect()
}

fn sent_priorities(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAdvert(a) => Some(a.priority),
            _ => None,
        })
        .collect()
}

/// Backup started at t0 (actions drained).
fn backup(c: InstanceConfig, t0: Instant) -> Instance {
    let mut i = Instance::new(c);
    i.handle(t0, Event::Startup);
    drain(&mut i);
    assert_eq!(i.state(), State::Backup);
    i
}

/// Master (after the down timer) at t0 + MDI; returns the time it became master.
fn master(c: InstanceConfig, t0: Instant) -> (Instance, Instant) {
    let mut i = backup(c, t0);
    let t = i.poll_timeout().unwrap();
    i.handle_timeout(t);
    drain(&mut i);
    assert_eq!(i.state(), State::Master);
    (i, t)
}

#[test]
fn skew_and_master_down_interval_are_exact() {
    // v2: Skew_Time = (256 - p) / 256 s.
    let i = Instance::new(cfg(100, "10.0.0.2"));
    assert_eq!(i.skew_time(), Duration::from_nanos(609_375_000));
    assert_eq!(
        i.master_down_interval(),
        Duration::from_nanos(3_609_375_000)
    );
    // v3 at 0.1 s, priority 100: 156 * 100 ms / 256 = 60.9375 ms, not truncated.
    let i = Instance::new(v3(cfg(100, "10.0.0.2"), 100));
    assert_eq!(i.skew_time(), Duration::from_nanos(60_937_500));
    assert_eq!(i.master_down_interval(), Duration::from_nanos(360_937_500));
    let i = Instance::new(v3(cfg(254, "10.0.0.2"), 100));
    assert_eq!(i.skew_time(), Duration::from_nanos(781_250));
}

#[test]
fn startup_non_owner_goes_backup_even_with_master_hint() {
    let t0 = Instant::now();
    let mut c = cfg(150, "10.0.0.1");
    c.initial_master_hint = true;
    let mut i = Instance::new(c);
    assert_eq!(i.state(), State::Initialize);
    assert_eq!(i.poll_timeout(), None);
    i.handle(t0, Event::Startup);
    let acts = drain(&mut i);
    let tr = transitions(&acts);
    assert_eq!(tr.len(), 1);
    assert_eq!((tr[0].0, tr[0].1), (State::Initialize, State::Backup));
    assert!(
        tr[0].2.contains("startup") && tr[0].2.contains("hint"),
        "{}",
        tr[0].2
    );
    assert_eq!(acts.len(), 1, "a backup sends nothing: {acts:?}");
    assert_eq!(i.poll_timeout(), Some(t0 + i.master_down_interval()));
    assert_eq!(i.master_addr(), None);
}

#[test]
fn startup_owner_is_master_at_once() {
    let t0 = Instant::now();
    let mut i = Instance::new(cfg(255, "10.0.0.1"));
    i.handle(t0, Event::Startup);
    let acts = drain(&mut i);
    assert!(
        matches!(&acts[0], Action::Transition { to: State::Master, reason, .. } if reason.contains("255"))
    );
    assert_eq!(acts[1], Action::AddVips);
    assert!(
        matches!(&acts[2], Action::SendAdvert(a) if a.priority == 255 && a.addrs == vips() && a.auth == Auth::pass("1111") && a.interval_cs == 100)
    );
    assert_eq!(acts[3], Action::SendGratuitous);
    assert_eq!(i.timer(Timer::Adver), Some(t0 + Duration::from_secs(1)));
    assert_eq!(i.master_addr(), Some(ip("10.0.0.1")));
}

#[test]
fn backup_becomes_master_when_down_timer_expires() {
    let t0 = Instant::now();
    let mut i = backup(cfg(100, "10.0.0.2"), t0);
    let deadline = t0 + Duration::from_nanos(3_609_375_000);
    assert_eq!(i.poll_timeout(), Some(deadline));
    i.handle_timeout(deadline - Duration::from_nanos(1));
    assert!(drain(&mut i).is_empty());
    i.handle_timeout(deadline);
    let acts = drain(&mut i);
    assert_eq!(
        transitions(&acts),
        vec![(
            State::Backup,
            State::Master,
            "master down timer expired: no master heard".into()
        )]
    );
    assert!(acts.contains(&Action::AddVips) && acts.contains(&Action::SendGratuitous));
    assert_eq!(sent_priorities(&acts), vec![100]);
    assert_eq!(i.stats().became_master, 1);
}

#[test]
fn backup_resets_timer_on_higher_or_equal_priority_and_learns_master() {
    let t0 = Instant::now();
    let mut i = backup(cfg(100, "10.0.0.2"), t0);
    let t = t0 + Duration::from_secs(2);
    rx(
        &mut i,
        t,
        "10.0.0.1",
        advert_from(&cfg(150, "10.0.0.1"), 150),
    );
    assert!(drain(&mut i).is_empty());
    assert_eq!(i.poll_timeout(), Some(t + i.master_down_interval()));
    assert_eq!(i.master_addr(), Some(ip("10.0.0.1")));
    let t = t + Duration::from_secs(1);
    rx(
        &mut i,
        t,
        "10.0.0.3",
        advert_from(&cfg(100, "10.0.0.3"), 100),
    );
    assert_eq!(i.poll_timeout(), Some(t + i.master_down_interval()));
    assert_eq!(i.stats().adverts_accepted, 2);
}

#[test]
fn backup_ignores_lower_priority_when_preempting() {
    let t0 = Instant::now();
    let mut i = backup(cfg(150, "10.0.0.1"), t0);
    let deadline = i.poll_timeout().unwrap();
    rx(
        &mut i,
        t0 + Duration::from_secs(1),
        "10.0.0.2",
        advert_from(&cfg(100, "10.0.0.2"), 100),
    );
    assert_eq!(i.poll_timeout(), Some(deadline), "timer not reset");
    i.handle_timeout(deadline);
    assert_eq!(i.state(), State::Master);
}

#[test]
fn backup_with_nopreempt_accepts_lower_priority_master() {
    let t0 = Instant::now();
    let mut c = cfg(150, "10.0.0.1");
    c.preempt = false;
    let mut i = backup(c, t0);
    let t = t0 + Duration::from_secs(3);
    rx(
        &mut i,
        t,
        "10.0.0.2",
        advert_from(&cfg(100, "10.0.0.2"), 100),
    );
    assert_eq!(i.poll_timeout(), Some(t + i.master_down_interval()));
    assert_eq!(i.master_addr(), Some(ip("10.0.0.2")));
}

#[test]
fn backup_takes_over_after_skew_time_on_priority_zero() {
    let t0 = Instant::now();
    let mut i = backup(cfg(100, "10.0.0.2"), t0);
    let t = t0 + Duration::from_secs(1);
    rx(&mut i, t, "10.0.0.1", advert_from(&cfg(150, "10.0.0.1"), 0));
    assert_eq!(
        i.poll_timeout(),
        Some(t + Duration::from_nanos(609_375_000))
    );
    assert_eq!(i.stats().priority_zero_received, 1);
}

#[test]
fn master_sends_advert_every_interval() {
    let t0 = Instant::now();
    let (mut i, tm) = master(cfg(100, "10.0.0.2"), t0);
    for k in 1..=3u32 {
        let t = tm + Duration::from_secs(1) * k;
        assert_eq!(i.timer(Timer::Adver), Some(t));
        i.handle_timeout(t);
        assert_eq!(sent_priorities(&drain(&mut i)), vec![100]);
    }
}

#[test]
fn master_answers_priority_zero_and_lower_priority_at_once() {
    let t0 = Instant::now();
    let (mut i, tm) = master(cfg(150, "10.0.0.1"), t0);
    let t = tm + Duration::from_millis(300);
    rx(&mut i, t, "10.0.0.2", advert_from(&cfg(100, "10.0.0.2"), 0));
    assert_eq!(sent_priorities(&drain(&mut i)), vec![150]);
    assert_eq!(i.timer(Timer::Adver), Some(t + Duration::from_secs(1)));
    let t = t + Duration::from_millis(100);
    rx(
        &mut i,
        t,
        "10.0.0.2",
        advert_from(&cfg(100, "10.0.0.2"), 100),
    );
    let acts = drain(&mut i);
    assert_eq!(sent_priorities(&acts), vec![150]);
    // A lower master means a healing split brain: the VIPs are announced again.
    assert_eq!(acts.last(), Some(&Action::SendGratuitous));
    assert_eq!(i.timer(Timer::Garp), Some(t + GARP_SPACING));
    assert!(transitions(&acts).is_empty());
    assert_eq!(i.state(), State::Master);
}

#[test]
fn master_steps_down_for_higher_priority() {
    let t0 = Instant::now();
    let (mut i, tm) = master(cfg(100, "10.0.0.2"), t0);
    let t = tm + Duration::from_millis(500);
    rx(
        &mut i,
        t,
        "10.0.0.1",
        advert_from(&cfg(150, "10.0.0.1"), 150),
    );
    let acts = drain(&mut i);
    assert_eq!(
        transitions(&acts),
        vec![(
            State::Master,
            State::Backup,
            "higher priority 150 from 10.0.0.1 (ours 100)".into()
        )]
    );
    assert!(acts.contains(&Action::RemoveVips));
    // One last advert with our own priority, so the winner learns there were two masters.
    assert_eq!(sent_priorities(&acts), vec![100]);
    assert_eq!(i.poll_timeout(), Some(t + i.master_down_interval()));
    assert_eq!(i.master_addr(), Some(ip("10.0.0.1")));
}

#[test]
fn equal_priority_tie_is_broken_by_higher_address_numerically() {
    let t0 = Instant::now();
    // 10.0.0.10 > 10.0.0.9 numerically (but not as strings).
    let (mut i, tm) = master(cfg(100, "10.0.0.9"), t0);
    rx(
        &mut i,
        tm,
        "10.0.0.10",
        advert_from(&cfg(100, "10.0.0.10"), 100),
    );
    let acts = drain(&mut i);
    assert_eq!(i.state(), State::Backup);
    assert!(transitions(&acts)[0]
        .2
        .contains("equal priority 100 from higher address 10.0.0.10"));

    let (mut j, tm) = master(cfg(100, "10.0.0.10"), t0);
    rx(
        &mut j,
        tm,
        "10.0.0.9",
        advert_from(&cfg(100, "10.0.0.9"), 100),
    );
    assert_eq!(j.state(), State::Master);
    assert_eq!(sent_priorities(&drain(&mut j)), vec![100]);
}

#[test]
fn shutdown_from_master_resigns_with_priority_zero() {
    let t0 = Instant::now();
    let (mut i, tm) = master(cfg(150, "10.0.0.1"), t0);
    i.handle(tm, Event::Shutdown);
    let acts = drain(&mut i);
    assert_eq!(sent_priorities(&acts), vec![0]);
    assert!(acts.contains(&Action::RemoveVips));
    assert_eq!(
        transitions(&acts),
        vec![(State::Master, State::Initialize, "shutdown".into())]
    );
    assert_eq!(i.poll_timeout(), None);
    // From Backup: no advert, no VIP removal.
    let mut b = backup(cfg(100, "10.0.0.2"), t0);
    b.handle(t0, Event::Shutdown);
    let acts = drain(&mut b);
    assert_eq!(acts.len(), 1);
    assert_eq!(b.state(), State::Initialize);
}

#[test]
fn fault_from_master_and_back_garps_again() {
    let t0 = Instant::now();
    let (mut i, tm) = master(cfg(150, "10.0.0.1"), t0);
    i.handle(tm, Event::Fault(true));
    let acts = drain(&mut i);
    assert_eq!(
        sent_priorities(&acts),
        vec![0],
        "keepalived resigns when entering FAULT"
    );
    assert!(acts.contains(&Action::RemoveVips));
    assert_eq!(i.state(), State::Fault);
    assert_eq!(
        i.poll_timeout(),
        None,
        "no adverts, no election while faulty"
    );
    rx(
        &mut i,
        tm,
        "10.0.0.2",
        advert_from(&cfg(100, "10.0.0.2"), 100),
    );
    assert!(drain(&mut i).is_empty());
    assert_eq!(i.stats().ignored_not_running, 1);
    i.handle(tm, Event::Fault(true));
    assert!(drain(&mut i).is_empty(), "idempotent");

    let t = tm + Duration::from_secs(10);
    i.handle(t, Event::Fault(false));
    let acts = drain(&mut i);
    assert_eq!(transitions(&acts)[0].1, State::Backup);
    assert_eq!(transitions(&acts)[0].2, "fault cleared");
    let deadline = i.poll_timeout().unwrap();
    assert_eq!(deadline, t + i.master_down_interval());
    i.handle_timeout(deadline);
    let acts = drain(&mut i);
    assert!(acts.contains(&Action::SendGratuitous) && acts.contains(&Action::AddVips));
}

#[test]
fn fault_from_backup_and_startup_while_faulty() {
    let t0 = Instant::now();
    let mut b = backup(cfg(100, "10.0.0.2"), t0);
    b.handle(t0, Event::Fault(true));
    let acts = drain(&mut b);
    assert_eq!(
        acts.len(),
        1,
        "no advert, no VIP change from Backup: {acts:?}"
    );
    assert_eq!(b.state(), State::Fault);

    let mut i = Instance::new(cfg(255, "10.0.0.1"));
    i.handle(t0, Event::Fault(true));
    i.handle(t0, Event::Startup);
    assert_eq!(i.state(), State::Fault);
    assert!(!drain(&mut i).contains(&Action::AddVips));
    i.handle(t0, Event::Fault(false));
    assert_eq!(
        i.state(),
        State::Master,
        "the owner goes straight back to Master"
    );
}

#[test]
fn mismatched_adverts_are_dropped_and_counted() {
    let t0 = Instant::now();
    let mut i = backup(cfg(100, "10.0.0.2"), t0);
    let deadline = i.poll_timeout().unwrap();
    let good = advert_from(&cfg(150, "10.0.0.1"), 150);
    let t = t0 + Duration::from_secs(1);

    let mut a = good.clone();
    a.vrid = 52;
    assert_eq!(
        i.check_advert(ip("10.0.0.1"), &a),
        Some(DropReason::Vrid { got: 52 })
    );
    rx(&mut i, t, "10.0.0.1", a);
    let mut a = good.clone();
    a.auth = Auth::pass("2222");
    rx(&mut i, t, "10.0.0.1", a);
    let mut a = good.clone();
    a.auth = Auth::None;
    rx(&mut i, t, "10.0.0.1", a);
    let mut a = good.clone();
    a.version = Version::V3;
    rx(&mut i, t, "10.0.0.1", a);
    let mut a = good.clone();
    a.addrs.pop();
    rx(&mut i, t, "10.0.0.1", a);
    let mut a = good.clone();
    a.interval_cs = 200;
    assert_eq!(
        i.check_advert(ip("10.0.0.1"), &a).unwrap().to_string(),
        "advertisement interval mismatch: got 2 s, ours 1 s"
    );
    rx(&mut i, t, "10.0.0.1", a);
    assert_eq!(i.check_advert(ip("10.0.0.1"), &good), None);
    rx(&mut i, t, "10.0.0.2", good.clone());

    assert!(drain(&mut i).is_empty());
    assert_eq!(i.poll_timeout(), Some(deadline), "nothing reset the timer");
    let s = i.stats();
    assert_eq!(
        (
            s.dropped_vrid,
            s.dropped_auth,
            s.dropped_version,
            s.dropped_addr_list,
            s.dropped_interval,
            s.dropped_own
        ),
        (1, 2, 1, 1, 1, 1)
    );
    assert_eq!(s.adverts_accepted, 0);

    // The same addresses in another order are the same list (keepalived checks membership).
    let mut a = good;
    a.addrs.reverse();
    rx(&mut i, t, "10.0.0.1", a);
    assert_eq!(i.stats().adverts_accepted, 1);
}

#[test]
fn set_priority_changes_advertised_priority_at_once() {
    let t0 = Instant::now();
    let (mut i, tm) = master(cfg(150, "10.0.0.1"), t0);
    i.handle(tm, Event::SetPriority(90));
    assert_eq!(sent_priorities(&drain(&mut i)), vec![90]);
    assert_eq!(i.effective_priority(), 90);
    i.handle(tm, Event::SetPriority(90));
    assert!(drain(&mut i).is_empty());
    i.handle(tm, Event::SetPriority(0));
    assert_eq!(
        i.effective_priority(),
        1,
        "0 means resign on the wire, never advertised"
    );
    // A master whose priority dropped steps down to a higher advert.
    rx(
        &mut i,
        tm,
        "10.0.0.2",
        advert_from(&cfg(100, "10.0.0.2"), 100),
    );
    assert_eq!(i.state(), State::Backup);
}

#[test]
fn v3_backup_learns_master_interval() {
    let t0 = Instant::now();
    let mut i = backup(v3(cfg(100, "10.0.0.2"), 1000), t0);
    assert_eq!(
        i.master_down_interval(),
        Duration::from_nanos(3_609_375_000)
    );
    let t = t0 + Duration::from_millis(500);
    rx(
        &mut i,
        t,
        "10.0.0.1",
        advert_from(&v3(cfg(150, "10.0.0.1"), 100), 150),
    );
    assert_eq!(i.master_adver_interval(), Duration::from_millis(100));
    assert_eq!(i.master_down_interval(), Duration::from_nanos(360_937_500));
    assert_eq!(
        i.poll_timeout(),
        Some(t + Duration::from_nanos(360_937_500))
    );
    // Our own adverts keep our configured interval.
    i.handle_timeout(t + Duration::from_secs(1));
    let acts = drain(&mut i);
    assert!(
        matches!(&acts[2], Action::SendAdvert(a) if a.interval_cs == 100 && a.auth == Auth::None)
    );
}

#[test]
fn v2_ignores_interval_learning() {
    let t0 = Instant::now();
    let mut i = backup(cfg(100, "10.0.0.2"), t0);
    rx(
        &mut i,
        t0,
        "10.0.0.1",
        advert_from(&cfg(150, "10.0.0.1"), 150),
    );
    assert_eq!(i.master_adver_interval(), Duration::from_secs(1));
}

#[test]
fn preempt_delay_accepts_lower_master_until_it_passes() {
    let t0 = Instant::now();
    let mut c = cfg(150, "10.0.0.1");
    c.preempt_delay = Duration::from_secs(5);
    let mut i = backup(c, t0);
    let low = advert_from(&cfg(100, "10.0.0.2"), 100);
    // Lower adverts every second: accepted (timer reset) until t0 + 5 s.
    for k in 1..5u64 {
        let t = t0 + Duration::from_secs(k);
        rx(&mut i, t, "10.0.0.2", low.clone());
        assert_eq!(i.poll_timeout(), Some(t + i.master_down_interval()), "{k}");
    }
    let last = i.poll_timeout().unwrap();
    rx(&mut i, t0 + Duration::from_secs(5), "10.0.0.2", low.clone());
    assert_eq!(i.poll_timeout(), Some(last), "delay over: ignored");
    i.handle_timeout(last);
    assert_eq!(i.state(), State::Master);
}

#[test]
fn preempt_delay_restarts_when_a_higher_master_is_seen() {
    let t0 = Instant::now();
    let mut c = cfg(150, "10.0.0.1");
    c.preempt_delay = Duration::from_secs(5);
    let mut i = backup(c, t0);
    let t = t0 + Duration::from_secs(4);
    rx(
        &mut i,
        t,
        "10.0.0.3",
        advert_from(&cfg(200, "10.0.0.3"), 200),
    );
    // 6 s after start (2 s after the higher master was seen) a lower one is still accepted.
    let t = t0 + Duration::from_secs(6);
    rx(
        &mut i,
        t,
        "10.0.0.2",
        advert_from(&cfg(100, "10.0.0.2"), 100),
    );
    assert_eq!(i.poll_timeout(), Some(t + i.master_down_interval()));
    assert_eq!(i.master_addr(), Some(ip("10.0.0.2")));
}

#[test]
fn takeover_announcement_repeats_and_stops_when_leaving_master() {
    let t0 = Instant::now();
    let (mut i, tm) = master(cfg(100, "10.0.0.2"), t0);
    let garps = |acts: &[Action]| {
        acts.iter()
            .filter(|a| **a == Action::SendGratuitous)
            .count()
    };
    // The first of GARP_REPEAT went out with the takeover; the rest follow GARP_SPACING apart.
    for k in 1..GARP_REPEAT {
        let t = tm + GARP_SPACING * k;
        assert_eq!(i.poll_timeout(), Some(t));
        i.handle_timeout(t);
        assert_eq!(garps(&drain(&mut i)), 1, "repeat {k}");
    }
    assert_eq!(i.timer(Timer::Garp), None);
    // A new takeover that ends early stops its repeats.
    let (mut j, tm) = master(cfg(100, "10.0.0.2"), t0);
    rx(
        &mut j,
        tm,
        "10.0.0.3",
        advert_from(&cfg(200, "10.0.0.3"), 200),
    );
    assert_eq!(j.state(), State::Backup);
    assert_eq!(j.timer(Timer::Garp), None);
    j.handle_timeout(tm + GARP_SPACING);
    assert_eq!(garps(&drain(&mut j)), 0);
}

#[test]
fn restored_vips_are_announced_again_only_by_a_master() {
    let t0 = Instant::now();
    let (mut i, tm) = master(cfg(100, "10.0.0.2"), t0);
    let t = tm + Duration::from_secs(5);
    i.handle_timeout(t);
    drain(&mut i);
    i.handle(t, Event::VipsRestored);
    assert_eq!(drain(&mut i), vec![Action::SendGratuitous]);
    assert_eq!(i.timer(Timer::Garp), Some(t + GARP_SPACING));
    let mut b = Instance::new(cfg(100, "10.0.0.2"));
    b.handle(t0, Event::Startup);
    drain(&mut b);
    b.handle(t0, Event::VipsRestored);
    assert!(drain(&mut b).is_empty());
}

#[test]
fn reconfigure_keeps_the_state_and_advertises_what_changed() {
    let t0 = Instant::now();
    let c = cfg(150, "10.0.0.1");
    let (mut i, tm) = master(c.clone(), t0);
    let t = tm + Duration::from_millis(300);
    // Nothing that goes on the wire changed (a notify path, say): nothing happens.
    i.reconfigure(t, c.clone());
    assert!(drain(&mut i).is_empty());
    let mut more = c.clone();
    more.vips.push(ip("10.0.0.110"));
    i.reconfigure(t, more.clone());
    let acts = drain(&mut i);
    assert_eq!(i.state(), State::Master);
    assert!(transitions(&acts).is_empty(), "{acts:?}");
    assert_eq!(acts[0], Action::AddVips);
    assert!(matches!(&acts[1], Action::SendAdvert(a) if a.addrs == more.vips));
    assert_eq!(acts[2], Action::SendGratuitous);
    // A backup keeps its timer.
    let mut b = Instance::new(cfg(100, "10.0.0.2"));
    b.handle(t0, Event::Startup);
    drain(&mut b);
    let down = b.poll_timeout();
    b.reconfigure(t, cfg(100, "10.0.0.2"));
    assert!(drain(&mut b).is_empty());
    assert_eq!(b.poll_timeout(), down);
}

#[test]
fn paced_master_hands_repeats_to_the_pacer_and_stops_it_before_resigning() {
    let t0 = Instant::now();
    let mut c = cfg(150, "10.0.0.1");
    c.paced = true;
    let mut i = backup(c, t0);
    let t = i.poll_timeout().unwrap();
    i.handle_timeout(t);
    let acts = drain(&mut i);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Pace(Some(adv)) if adv.priority == 150)),
        "{acts:?}"
    );
    // No Adver_Timer: the pacer repeats.
    assert_eq!(i.timer(Timer::Adver), None);
    i.handle(t, Event::Shutdown);
    let acts = drain(&mut i);
    let stop = acts.iter().position(|a| *a == Action::Pace(None));
    let resign = acts
        .iter()
        .position(|a| matches!(a, Action::SendAdvert(adv) if adv.priority == 0));
    assert!(stop.is_some() && stop < resign, "{acts:?}");
}

#[test]
fn takeover_reason_names_the_silent_master() {
    let t0 = Instant::now();
    let c = cfg(100, "10.0.0.2");
    let mut i = backup(c, t0);
    let t = t0 + Duration::from_millis(500);
    rx(
        &mut i,
        t,
        "10.0.0.1",
        advert_from(&cfg(150, "10.0.0.1"), 150),
    );
    let down = i.poll_timeout().unwrap();
    i.handle_timeout(down);
    let acts = drain(&mut i);
    assert_eq!(
        transitions(&acts)[0].2,
        "master down timer expired: master 10.0.0.1 silent for 3.61 s"
    );
}
