use std::time::{Duration, Instant};

use super::*;
use crate::track::FallRise;

fn drain(a: &mut Announcement) -> Vec<Action> {
    std::iter::from_fn(|| a.poll_action()).collect()
}

fn io(actions: &[Action]) -> Vec<&Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::Transition { .. }))
        .collect()
}

#[test]
fn verdict_rules() {
    assert_eq!(verdict(&[], &[]), Verdict::Healthy);
    assert_eq!(
        verdict(&[("chk", Some(true))], &[("eth0", true)]),
        Verdict::Healthy
    );
    assert_eq!(
        verdict(&[("chk", Some(false))], &[]),
        Verdict::Unhealthy("track script chk is failing".into())
    );
    assert_eq!(
        verdict(&[("chk", None)], &[]),
        Verdict::Unhealthy("waiting for the first result of track script chk".into())
    );
    // A failing check outranks one that has not reported; a down link outranks both.
    assert_eq!(
        verdict(&[("a", None), ("b", Some(false))], &[]),
        Verdict::Unhealthy("track script b is failing".into())
    );
    assert_eq!(
        verdict(&[("b", Some(false))], &[("eth0", false)]),
        Verdict::Unhealthy("interface eth0 is down".into())
    );
}

#[test]
fn announce_withdraw_and_stop() {
    let t0 = Instant::now();
    let mut a = Announcement::new();
    assert_eq!(a.state(), State::Init);
    // Unhealthy at start still withdraws (a SIGKILLed predecessor may have left the VIPs).
    a.handle(t0, Event::Health(Verdict::Unhealthy("waiting".into())));
    let acts = drain(&mut a);
    assert_eq!(io(&acts), [&Action::Withdraw]);
    assert_eq!(a.state(), State::Withdrawn);
    assert_eq!(a.transitions(), 0, "leaving Init is not a transition");

    let t1 = t0 + Duration::from_millis(300);
    a.handle(t1, Event::Health(Verdict::Healthy));
    let acts = drain(&mut a);
    assert_eq!(io(&acts), [&Action::Announce]);
    assert_eq!(
        acts.last(),
        Some(&Action::Transition {
            from: State::Withdrawn,
            to: State::Announced,
            reason: "every tracked check passes".into()
        })
    );
    assert_eq!(
        (a.state(), a.since(), a.transitions()),
        (State::Announced, Some(t1), 1)
    );

    // Healthy again: nothing to do.
    a.handle(t1, Event::Health(Verdict::Healthy));
    assert!(drain(&mut a).is_empty());
    // Our VIPs vanished while announced: put back, no transition.
    a.handle(t1, Event::VipsMissing);
    assert_eq!(drain(&mut a), [Action::Announce]);

    let t2 = t1 + Duration::from_secs(1);
    a.handle(
        t2,
        Event::Health(Verdict::Unhealthy("track script chk is failing".into())),
    );
    assert_eq!(io(&drain(&mut a)), [&Action::Withdraw]);
    assert_eq!(a.reason(), "track script chk is failing");
    // Another reason while withdrawn: reason updated, no I/O, no transition.
    a.handle(
        t2,
        Event::Health(Verdict::Unhealthy("interface eth0 is down".into())),
    );
    assert!(drain(&mut a).is_empty());
    assert_eq!((a.reason(), a.transitions()), ("interface eth0 is down", 2));
    // VipsMissing while withdrawn is what we want: nothing.
    a.handle(t2, Event::VipsMissing);
    assert!(drain(&mut a).is_empty());

    a.handle(t2, Event::Health(Verdict::Healthy));
    drain(&mut a);
    a.handle(t2, Event::Shutdown);
    assert_eq!(io(&drain(&mut a)), [&Action::Withdraw]);
    assert_eq!(a.state(), State::Stopped);
    // Nothing brings a stopped announcement back.
    a.handle(t2, Event::Health(Verdict::Healthy));
    a.handle(t2, Event::VipsMissing);
    a.handle(t2, Event::Shutdown);
    assert!(drain(&mut a).is_empty());
}

/// A probe every `interval` on a virtual clock, fed through keepalived's fall/rise into the
/// announcement: the withdrawal comes `fall` probes after the first failure, the return `rise`
/// probes after the first success.
#[test]
fn fall_and_rise_on_a_virtual_clock() {
    let interval = Duration::from_millis(100);
    let (fall, rise) = (3, 2);
    let t0 = Instant::now();
    let mut fr = FallRise::new(fall, rise);
    let mut a = Announcement::new();
    a.handle(t0, Event::Health(verdict(&[("chk", fr.state())], &[])));
    drain(&mut a);
    // The backend is healthy for 1 s, fails from 1 s to 2 s, then is healthy again.
    let healthy = |t: Duration| t < Duration::from_secs(1) || t >= Duration::from_secs(2);
    let mut changes = Vec::new();
    for k in 1..=30u32 {
        let at = interval * k;
        if fr.record(healthy(at)).is_some() {
            a.handle(t0 + at, Event::Health(verdict(&[("chk", fr.state())], &[])));
        }
        for act in drain(&mut a) {
            if let Action::Transition { to, .. } = act {
                changes.push((at, to));
            }
        }
    }
    assert_eq!(
        changes,
        [
            // The very first result decides at once (keepalived), so the start is quick.
            (interval, State::Announced),
            // Failing from 1.0 s: probes at 1.0, 1.1, 1.2 fail: withdrawn at fall x interval
            // after the failure began (minus one interval: the first failing probe counts).
            (Duration::from_millis(1200), State::Withdrawn),
            // Healthy from 2.0 s: probes at 2.0 and 2.1 pass.
            (Duration::from_millis(2100), State::Announced),
        ]
    );
}
