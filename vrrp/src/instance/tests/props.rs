//! Random event sequences: the state machine's invariants hold whatever happens.

use super::{cfg, v3};
use crate::instance::{Action, Event, Instance, State};
use crate::wire::vrrp::Advert;
use proptest::prelude::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Step {
    Ev(u8, u8, u8, bool),
    Wait(u16),
    Timeout,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>())
            .prop_map(|(a, b, c, d)| Step::Ev(a, b, c, d)),
        any::<u16>().prop_map(Step::Wait),
        Just(Step::Timeout),
    ]
}

fn event(kind: u8, prio: u8, addr: u8, flag: bool, template: &Advert) -> Event {
    match kind % 7 {
        0 => Event::Startup,
        1 => Event::Shutdown,
        2 => Event::SetPriority(prio),
        3 => Event::Fault(flag),
        4 => Event::VipsRestored,
        _ => {
            let mut advert = template.clone();
            advert.priority = prio;
            if flag && addr.is_multiple_of(8) {
                advert.vrid = advert.vrid.wrapping_add(1);
            }
            Event::Advert {
                src: IpAddr::from([10, 0, 0, addr % 4]),
                advert,
            }
        }
    }
}

proptest! {
    #[test]
    fn invariants_hold(v3_mode in any::<bool>(), base in 1..=255u8, steps in prop::collection::vec(step(), 1..200)) {
        let c = if v3_mode { v3(cfg(base, "10.0.0.2"), 100) } else { cfg(base, "10.0.0.2") };
        let template = Instance::new(cfg(100, "10.0.0.9")).advert(100);
        let template = if v3_mode { Instance::new(v3(cfg(100, "10.0.0.9"), 100)).advert(100) } else { template };
        let mut i = Instance::new(c);
        let mut now = Instant::now();
        let mut have_vips = false;
        for s in steps {
            let before = i.state();
            match s {
                Step::Ev(k, p, a, f) => i.handle(now, event(k, p, a, f, &template)),
                Step::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
                Step::Timeout => {
                    if let Some(t) = i.poll_timeout() {
                        now = now.max(t);
                        i.handle_timeout(now);
                    }
                }
            }
            let mut state = before;
            while let Some(a) = i.poll_action() {
                match a {
                    Action::Transition { from, to, reason } => {
                        prop_assert_eq!(from, state);
                        prop_assert!(from != to && !reason.is_empty());
                        state = to;
                    }
                    Action::AddVips => { prop_assert!(!have_vips); have_vips = true; }
                    Action::RemoveVips => { prop_assert!(have_vips); have_vips = false; }
                    Action::SendAdvert(adv) => {
                        // Only a master advertises; priority 0 only when it resigns.
                        prop_assert!(state == State::Master);
                        prop_assert!(adv.priority != 0 || have_vips);
                        prop_assert_eq!(adv.addrs.len(), 3);
                    }
                    Action::SendGratuitous => prop_assert!(have_vips && state == State::Master),
                    Action::Pace(p) => prop_assert!(p.is_none() || state == State::Master),
                }
            }
            prop_assert_eq!(state, i.state());
            prop_assert_eq!(have_vips, i.state() == State::Master);
            match i.state() {
                State::Master | State::Backup => prop_assert!(i.poll_timeout().is_some()),
                State::Initialize | State::Fault => prop_assert!(i.poll_timeout().is_none()),
            }
            prop_assert!(i.effective_priority() >= 1);
            if i.state() == State::Master {
                prop_assert_eq!(i.master_addr(), Some(i.config().primary_addr));
            }
        }
    }
}
