//! The shared control state on the balancer: admin states, weights set at run time, slow
//! start (fake clock: one base `Instant` plus offsets) and the shared round-robin cycle.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::tests::{balancer, ms, request_from, seq, srv, CLIENT};
use super::*;
use crate::config::Balance;
use crate::control::{AdminState, Cycle, ServerView, UpstreamView};

/// A view of peers "a", "b", ... (as `srv` names them) with the given admin states.
fn view(b: &Balancer, states: &[(&str, AdminState, u32)], back: Option<Instant>) -> UpstreamView {
    UpstreamView {
        name: "u".into(),
        servers: states
            .iter()
            .map(|&(n, admin, weight)| ServerView {
                name: n.into(),
                address: b.address(PeerId(
                    (0..b.len()).find(|&i| b.name(PeerId(i)) == n).unwrap(),
                )),
                admin,
                health_down: false,
                weight,
                back_since: back,
                busy: crate::control::Busy::default(),
            })
            .collect(),
        cycle: None,
        waiting: crate::control::Waiting::default(),
    }
}

fn slow(name: &str, weight: u32, secs: u64) -> crate::config::UpstreamServer {
    let mut s = srv(name, weight);
    s.slow_start = Duration::from_secs(secs);
    s
}

#[test]
fn drain_and_maint_take_a_server_out_of_round_robin() {
    let t = Instant::now();
    let mut b = balancer(Balance::RoundRobin, vec![srv("a", 1), srv("b", 1)]);
    b.apply(
        &view(
            &b,
            &[("a", AdminState::Ready, 1), ("b", AdminState::Drain, 1)],
            None,
        ),
        t,
    );
    assert_eq!(seq(&mut b, t, 4), "a a a a");
    b.apply(
        &view(
            &b,
            &[("a", AdminState::Maint, 1), ("b", AdminState::Ready, 1)],
            None,
        ),
        t,
    );
    assert_eq!(seq(&mut b, t, 3), "b b b");
    assert!(!b.states(t)[0].available);
}

#[test]
fn ip_hash_keeps_sticky_clients_on_a_drained_server_but_not_in_maint() {
    let t = Instant::now();
    let mut b = balancer(Balance::IpHash, vec![srv("a", 1), srv("b", 1), srv("c", 1)]);
    let client: IpAddr = "192.0.2.1".parse().unwrap();
    let home = request_from(&mut b, t, client, Outcome::Success);
    let others: Vec<&str> = ["a", "b", "c"].into_iter().filter(|n| *n != home).collect();
    let states = |s| {
        vec![
            (home.as_str(), s, 1),
            (others[0], AdminState::Ready, 1),
            (others[1], AdminState::Ready, 1),
        ]
    };
    b.apply(&view(&b, &states(AdminState::Drain), None), t);
    assert_eq!(request_from(&mut b, t, client, Outcome::Success), home);
    b.apply(&view(&b, &states(AdminState::Maint), None), t);
    assert_ne!(request_from(&mut b, t, client, Outcome::Success), home);
}

#[test]
fn weight_set_at_run_time_gives_nginx_sequence_for_the_new_weights() {
    let t = Instant::now();
    let mut b = balancer(
        Balance::RoundRobin,
        vec![srv("a", 1), srv("b", 1), srv("c", 1)],
    );
    let r = AdminState::Ready;
    b.apply(&view(&b, &[("a", r, 5), ("b", r, 1), ("c", r, 1)], None), t);
    assert_eq!(seq(&mut b, t, 7), "a a b a c a a");
    assert_eq!(b.states(t)[0].weight, 5);
}

#[test]
fn slow_start_ramps_linearly_then_the_nginx_sequence_holds() {
    let t = Instant::now();
    let mut b = balancer(Balance::RoundRobin, vec![srv("a", 1), slow("b", 1, 10)]);
    let r = AdminState::Ready;
    // b came back (checks up, or maint -> ready) at t.
    b.apply(&view(&b, &[("a", r, 1), ("b", r, 1)], Some(t)), t);
    let share = |b: &mut Balancer, at| {
        let s = seq(b, at, 100);
        s.split(' ').filter(|n| *n == "b").count()
    };
    assert_eq!(share(&mut b, t), 0, "weight 0 at the start of the ramp");
    // At 25% of the ramp b weighs 0.25 against a's 1: one pick in five.
    assert_eq!(share(&mut b, ms(t, 2_500)), 20);
    assert_eq!(share(&mut b, ms(t, 5_000)), 33);
    assert!((b.states(ms(t, 5_000))[1].effective_weight - 0.5).abs() < 1e-9);
    // After the ramp: nginx's own sequence from its start.
    assert_eq!(seq(&mut b, ms(t, 10_000), 6), "a b a b a b");
    assert_eq!(b.ramping, 0);
}

#[test]
fn slow_start_after_fail_timeout() {
    let t = Instant::now();
    let mut b = balancer(Balance::RoundRobin, vec![srv("a", 1), slow("b", 1, 10)]);
    // b fails and is out for fail_timeout (10 s); the probe after it succeeds and b ramps.
    assert_eq!(request_from(&mut b, t, CLIENT, Outcome::Success), "a");
    assert_eq!(request_from(&mut b, t, CLIENT, Outcome::Failure), "b");
    let back = ms(t, 10_001);
    let mut picks = Vec::new();
    for _ in 0..6 {
        picks.push(request_from(&mut b, back, CLIENT, Outcome::Success));
    }
    assert!(picks.contains(&"b".to_string()), "the probe: {picks:?}");
    // Right after the probe the ramp has just begun: b gets nothing for a while.
    let early = seq(&mut b, ms(t, 10_002), 20);
    assert!(!early.contains('b'), "{early}");
    assert_eq!(seq(&mut b, ms(t, 20_002), 4), "a b a b");
}

#[test]
fn a_shared_cycle_alternates_across_balancers_and_steps_aside_when_degraded() {
    let t = Instant::now();
    let cycle = Arc::new(Cycle::build(&[(0, 1), (1, 1)]).unwrap());
    let mut w0 = balancer(Balance::RoundRobin, vec![srv("a", 1), srv("b", 1)]);
    let mut w1 = w0.clone();
    w0.set_cycle(Some(cycle.clone()));
    w1.set_cycle(Some(cycle));
    // Two workers, each with its own balancer: together they alternate.
    let mut got = Vec::new();
    for which in [0, 0, 1, 0, 1, 1] {
        let w = if which == 0 { &mut w0 } else { &mut w1 };
        got.push(request_from(w, t, CLIENT, Outcome::Success));
    }
    assert_eq!(got.join(" "), "a b a b a b");
    // A failure seen by w0 takes it off the cycle (nginx's own WRR decides) until a later
    // window; w1 keeps following the cycle.
    assert_eq!(request_from(&mut w0, t, CLIENT, Outcome::Failure), "a");
    assert_eq!(seq(&mut w0, t, 3), "b b b");
}

/// Two workers' balancers of one upstream, applied from the same view (as the registry hands
/// it to every worker), with `max_conns = 1` on the one server and a queue.
fn two_workers() -> (Balancer, Balancer) {
    let mut s = srv("a", 1);
    s.max_conns = 1;
    let mut one = balancer(Balance::RoundRobin, vec![s]);
    one.queue = super::queue::Queue::new(10);
    let mut two = one.clone();
    one.set_worker(0);
    two.set_worker(1);
    let v = view(&one, &[("a", AdminState::Ready, 1)], None);
    let t = Instant::now();
    one.apply(&v, t);
    two.apply(&v, t);
    (one, two)
}

#[test]
fn max_conns_counts_the_requests_of_every_worker() {
    let (mut one, mut two) = two_workers();
    let t = Instant::now();
    let got = one.pick(t, CLIENT, &mut Tried::default());
    assert!(got.is_some());
    assert_eq!(
        two.pick(t, CLIENT, &mut Tried::default()),
        None,
        "the other worker's request holds the only slot"
    );
    assert!(two.at_max_conns(t), "so the request may queue");
    assert_eq!(
        one.release(got.unwrap(), t, Outcome::Success),
        0,
        "nobody waits anywhere: nobody to wake"
    );
    assert!(two.pick(t, CLIENT, &mut Tried::default()).is_some());
}

#[test]
fn a_freed_slot_goes_to_the_oldest_waiter_of_all_workers() {
    let (mut one, mut two) = two_workers();
    let t = Instant::now();
    let held = one.pick(t, CLIENT, &mut Tried::default()).unwrap();
    // Worker 1 queues first, then worker 0.
    let first = two.join_queue(None).unwrap();
    assert!(one.others_waiting(), "worker 1 waits");
    assert!(!two.others_waiting(), "its own waiter does not count");
    let second = one.join_queue(None).unwrap();
    assert!(one.must_queue(), "a newcomer goes behind both");
    // Worker 0 frees the slot: not its own waiter's turn, worker 1 is woken.
    assert_eq!(one.release(held, t, Outcome::Success), 0b10);
    assert!(!second.called());
    assert_eq!(two.call_waiters(t), 0);
    assert!(first.called());
    assert_eq!(one.call_waiters(t), 0, "the one slot is spoken for");
    assert!(!second.called());
    two.leave_queue(&first);
    let held = two.pick(t, CLIENT, &mut Tried::default()).unwrap();
    // Now worker 0's waiter is the oldest of all: worker 1's release wakes worker 0.
    assert_eq!(two.release(held, t, Outcome::Success), 0b01);
    assert_eq!(one.call_waiters(t), 0);
    assert!(second.called());
    one.leave_queue(&second);
    assert!(!one.must_queue() && !two.must_queue(), "nobody waits");
}

#[test]
fn a_called_waiter_that_gives_up_passes_its_turn_to_another_worker() {
    let (mut one, mut two) = two_workers();
    let t = Instant::now();
    let held = one.pick(t, CLIENT, &mut Tried::default()).unwrap();
    let a = one.join_queue(None).unwrap();
    let b = two.join_queue(None).unwrap();
    assert_eq!(
        one.release(held, t, Outcome::Success),
        0,
        "its own waiter came first"
    );
    assert!(a.called());
    assert_eq!(
        one.abandon_queue(&a, t),
        0b10,
        "the turn goes to worker 1's waiter"
    );
    assert_eq!(two.call_waiters(t), 0);
    assert!(b.called());
}

#[test]
fn a_called_request_that_lost_its_slot_queues_again_in_its_place() {
    let (mut one, _) = two_workers();
    let a = one.join_queue(None).unwrap();
    let b = one.join_queue(None).unwrap();
    let again = one.join_queue(Some(a.number())).unwrap();
    drop(a);
    assert!(again.number() < b.number());
    assert_eq!(one.call_waiters(Instant::now()), 0);
    assert!(again.called() && !b.called(), "ahead of the later one");
}

#[test]
fn a_called_waiter_that_gives_up_passes_its_turn_to_the_next_one_here() {
    let (mut one, _) = two_workers();
    let t = Instant::now();
    let held = one.pick(t, CLIENT, &mut Tried::default()).unwrap();
    let a = one.join_queue(None).unwrap();
    let b = one.join_queue(None).unwrap();
    assert_eq!(one.release(held, t, Outcome::Success), 0);
    assert!(a.called() && !b.called());
    assert_eq!(one.abandon_queue(&a, t), 0, "called here, nobody to wake");
    assert!(b.called(), "the slot a was handed goes to b");
}
