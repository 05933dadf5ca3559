//! Exact pick sequences, worked out by hand from nginx's algorithms (the comments show the
//! `current_weight`s), with time as one base `Instant` plus offsets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::config::{Balance, Upstream, UpstreamServer};

pub(super) const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// Peer "a" is 10.0.0.1:80, "b" 10.0.0.2:80, ...; nginx's defaults otherwise.
pub(super) fn srv(name: &str, weight: u32) -> UpstreamServer {
    let last = name.bytes().next().map_or(0, |c| c - b'a' + 1);
    UpstreamServer {
        name: name.to_string(),
        address: SocketAddr::from(([10, 0, 0, last], 80)),
        weight,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        backup: false,
        down: false,
        max_conns: 0,
        slow_start: Duration::ZERO,
    }
}

pub(super) fn balancer(balance: Balance, servers: Vec<UpstreamServer>) -> Balancer {
    Balancer::new(&Upstream {
        name: "u".into(),
        servers,
        balance,
        keepalive: crate::config::Keepalive::Max(32),
        keepalive_timeout: Duration::from_secs(4),
        connect_timeout: Duration::from_secs(60),
        read_timeout: Duration::from_secs(60),
        send_timeout: Duration::from_secs(60),
        health_check: None,
        queue: 0,
        queue_timeout: std::time::Duration::from_secs(60),
    })
}

fn rr(weights: &[(&str, u32)]) -> Balancer {
    balancer(
        Balance::RoundRobin,
        weights.iter().map(|&(n, w)| srv(n, w)).collect(),
    )
}

pub(super) fn ms(base: Instant, millis: u64) -> Instant {
    base + Duration::from_millis(millis)
}

/// One request: pick with a fresh `Tried`, release at once with `outcome`; "-" when none.
pub(super) fn request(b: &mut Balancer, now: Instant, outcome: Outcome) -> String {
    request_from(b, now, CLIENT, outcome)
}

pub(super) fn request_from(
    b: &mut Balancer,
    now: Instant,
    client: IpAddr,
    outcome: Outcome,
) -> String {
    let mut tried = Tried::default();
    match b.pick(now, client, &mut tried) {
        Some(id) => {
            let name = b.name(id).to_string();
            b.release(id, now, outcome);
            name
        }
        None => "-".to_string(),
    }
}

/// `n` successful requests at `now`, names joined by spaces.
pub(super) fn seq(b: &mut Balancer, now: Instant, n: usize) -> String {
    (0..n)
        .map(|_| request(b, now, Outcome::Success))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pick(b: &mut Balancer, now: Instant, tried: &mut Tried) -> String {
    b.pick(now, CLIENT, tried)
        .map_or("-".to_string(), |id| b.name(id).to_string())
}

fn id(b: &Balancer, name: &str) -> PeerId {
    (0..b.len())
        .map(PeerId)
        .find(|&i| b.name(i) == name)
        .expect("peer name")
}

#[test]
fn equal_weights_alternate() {
    let t = Instant::now();
    let mut b = rr(&[("a", 1), ("b", 1)]);
    // (0,0) -> (1,1) a wins the tie -> (-1,1) -> (0,2) b -> (0,0) ...
    assert_eq!(seq(&mut b, t, 6), "a b a b a b");
    assert_eq!(b.len(), 2);
    assert!(!b.is_empty());
}

#[test]
fn smooth_5_1_1() {
    let t = Instant::now();
    let mut b = rr(&[("a", 5), ("b", 1), ("c", 1)]);
    // nginx's own example: {5,1,1} gives a a b a c a a, repeating every 7.
    assert_eq!(seq(&mut b, t, 14), "a a b a c a a a a b a c a a");
}

#[test]
fn smooth_2_1() {
    let t = Instant::now();
    let mut b = rr(&[("a", 2), ("b", 1)]);
    // (0,0)+(2,1)=(2,1) a -> (-1,1)+(2,1)=(1,2) b -> (1,-1)+(2,1)=(3,0) a -> (0,0)
    assert_eq!(seq(&mut b, t, 9), "a b a a b a a b a");
}

#[test]
fn one_failure_takes_a_peer_out_for_exactly_fail_timeout_then_one_probe_returns_it() {
    let t = Instant::now();
    let mut b = rr(&[("a", 1), ("b", 1)]);
    // Pick 1: (1,1) -> a, cur (-1,1). It fails: fails=1, checked=t, effective_weight 1-1/1=0.
    assert_eq!(request(&mut b, t, Outcome::Failure), "a");
    assert!(!b.states(t)[0].available);
    // While out, only b: its current_weight stays at 1 (1+1-1).
    assert_eq!(request(&mut b, ms(t, 1_000), Outcome::Success), "b");
    assert_eq!(request(&mut b, ms(t, 5_000), Outcome::Success), "b");
    // Exactly fail_timeout later it is still out (nginx: now - checked <= fail_timeout).
    assert_eq!(request(&mut b, ms(t, 10_000), Outcome::Success), "b");
    assert!(!b.states(ms(t, 10_000))[0].available);
    assert!(b.states(ms(t, 10_001))[0].available);

    // Back in the rotation with effective_weight 0, recovering by 1 per pick:
    // a: -1+0=-1 (eff->1), b: 1+1=2, total 1 -> b (1)
    // a: -1+1=0,           b: 1+1=2, total 2 -> b (0)
    // a:  0+1=1,           b: 0+1=1, total 2 -> a, the probe: checked moves to now.
    let now = ms(t, 10_001);
    let mut probe_tried = Tried::default();
    assert_eq!(request(&mut b, now, Outcome::Success), "b");
    assert_eq!(request(&mut b, now, Outcome::Success), "b");
    let probe = b.pick(now, CLIENT, &mut probe_tried).expect("probe");
    assert_eq!(b.name(probe), "a");
    // While the probe is in flight, a is out again (fails=1, checked=now): only one probe.
    assert_eq!(request(&mut b, ms(now, 1), Outcome::Success), "b");
    // The probe succeeds: accessed (t) < checked (now) -> fails=0, a is fully back.
    b.release(probe, ms(now, 2), Outcome::Success);
    assert!(b.states(ms(now, 2))[0].available);
    // cur (-1,1): a 0, b 2 -> b (0); a 1, b 1 -> a (-1); ...
    assert_eq!(seq(&mut b, ms(now, 3), 4), "b a b a");
}

#[test]
fn failed_probe_keeps_the_peer_out_for_another_fail_timeout() {
    let t = Instant::now();
    let mut b = rr(&[("a", 1), ("b", 1)]);
    assert_eq!(request(&mut b, t, Outcome::Failure), "a");
    let now = ms(t, 10_001);
    // As above: b, b, then the probe a, which fails again at now.
    assert_eq!(seq(&mut b, now, 2), "b b");
    assert_eq!(request(&mut b, now, Outcome::Failure), "a");
    assert_eq!(seq(&mut b, ms(now, 10_000), 3), "b b b");
    assert_eq!(b.states(now)[0].fails_total, 2);
}

#[test]
fn max_fails_3_needs_three_failures() {
    let t = Instant::now();
    let mut servers = vec![srv("a", 1), srv("b", 1)];
    servers[0].max_fails = 3;
    let mut b = balancer(Balance::RoundRobin, servers);
    // weight / max_fails = 1/3 = 0: failures do not lower a's effective weight, so the
    // alternation is undisturbed until the third failure.
    assert_eq!(request(&mut b, t, Outcome::Failure), "a");
    assert_eq!(request(&mut b, ms(t, 1), Outcome::Success), "b");
    assert_eq!(request(&mut b, ms(t, 2), Outcome::Failure), "a");
    assert_eq!(request(&mut b, ms(t, 3), Outcome::Success), "b");
    assert!(b.states(ms(t, 3))[0].available);
    assert_eq!(request(&mut b, ms(t, 4), Outcome::Failure), "a");
    assert!(!b.states(ms(t, 4))[0].available);
    assert_eq!(seq(&mut b, ms(t, 5), 4), "b b b b");
    // Out until 10 s after the third failure (t+4ms).
    assert_eq!(request(&mut b, ms(t, 10_004), Outcome::Success), "b");
    // a: -1+1=0, b: 1+1=2 -> b; a: 1, b: 1 -> a (probe)
    assert_eq!(seq(&mut b, ms(t, 10_005), 2), "b a");
}

#[test]
fn success_resets_fails_only_after_a_new_window_started() {
    let t = Instant::now();
    let mut servers = vec![srv("a", 1), srv("b", 1)];
    servers[0].max_fails = 3;
    let mut b = balancer(Balance::RoundRobin, servers.clone());
    // Two failures, then a success within fail_timeout: nginx does not reset fails
    // (accessed == checked), so one more failure takes a out.
    assert_eq!(request(&mut b, t, Outcome::Failure), "a");
    assert_eq!(request(&mut b, ms(t, 1), Outcome::Success), "b");
    assert_eq!(request(&mut b, ms(t, 2), Outcome::Failure), "a");
    assert_eq!(request(&mut b, ms(t, 3), Outcome::Success), "b");
    assert_eq!(request(&mut b, ms(t, 4), Outcome::Success), "a");
    assert_eq!(request(&mut b, ms(t, 5), Outcome::Success), "b");
    assert_eq!(request(&mut b, ms(t, 6), Outcome::Failure), "a");
    assert!(!b.states(ms(t, 6))[0].available);

    // Same, but the success comes from a pick more than fail_timeout after the last failure:
    // that pick moved `checked`, so the success resets fails and one more failure is harmless.
    let mut b = balancer(Balance::RoundRobin, servers);
    assert_eq!(request(&mut b, t, Outcome::Failure), "a");
    assert_eq!(request(&mut b, ms(t, 1), Outcome::Success), "b");
    assert_eq!(request(&mut b, ms(t, 2), Outcome::Failure), "a");
    assert_eq!(request(&mut b, ms(t, 3), Outcome::Success), "b");
    assert_eq!(request(&mut b, ms(t, 10_003), Outcome::Success), "a");
    assert_eq!(request(&mut b, ms(t, 10_004), Outcome::Success), "b");
    assert_eq!(request(&mut b, ms(t, 10_005), Outcome::Failure), "a");
    assert!(b.states(ms(t, 10_005))[0].available);
    assert_eq!(seq(&mut b, ms(t, 10_006), 2), "b a");
}

#[test]
fn effective_weight_recovers_after_a_failure() {
    let t = Instant::now();
    let mut servers = vec![srv("a", 2), srv("b", 1)];
    servers[0].max_fails = 2;
    let mut b = balancer(Balance::RoundRobin, servers);
    // Normally a b a | a b a ... Here pick 1 (a) fails: fails=1 < 2 so a stays in, but its
    // effective_weight drops by weight/max_fails = 1, to 1.
    //   p2: a -1+1=0 (eff->2), b 1+1=2, total 2 -> b (0)
    //   p3: a 0+2=2,           b 0+1=1, total 3 -> a (-1)
    //   p4: a -1+2=1,          b 1+1=2, total 3 -> b (-1)
    //   p5: a 1+2=3,           b -1+1=0         -> a (0)
    //   p6: a 0+2=2,           b 0+1=1          -> a (-1)
    //   p7: a 1, b 2 -> b; then the cycle "a a b" continues one step shifted.
    assert_eq!(request(&mut b, t, Outcome::Failure), "a");
    assert_eq!(seq(&mut b, ms(t, 1), 9), "b a b a a b a a b");
}

#[test]
fn max_fails_0_never_marks_down() {
    let t = Instant::now();
    let mut servers = vec![srv("a", 1), srv("b", 1)];
    servers[0].max_fails = 0;
    servers[1].max_fails = 0;
    let mut b = balancer(Balance::RoundRobin, servers);
    // Every request fails, yet neither peer is ever taken out nor loses weight.
    let got: Vec<String> = (0..8)
        .map(|i| request(&mut b, ms(t, i), Outcome::Failure))
        .collect();
    assert_eq!(got.join(" "), "a b a b a b a b");
    let states = b.states(ms(t, 8));
    assert!(states.iter().all(|s| s.available));
    assert_eq!(states[0].fails_total, 4);

    // With max_fails = 1 the same first failure takes a out: a b b b.
    let mut b = rr(&[("a", 1), ("b", 1)]);
    let got: Vec<String> = (0..4)
        .map(|i| request(&mut b, ms(t, i), Outcome::Failure))
        .collect();
    assert_eq!(got.join(" "), "a b - -");
}

#[test]
fn down_peer_is_never_picked() {
    let t = Instant::now();
    let mut servers = vec![srv("a", 5), srv("b", 1), srv("c", 1)];
    servers[0].down = true;
    let mut b = balancer(Balance::RoundRobin, servers);
    assert_eq!(seq(&mut b, t, 6), "b c b c b c");
    assert!(!b.states(t)[0].available);
    // Even after any amount of time.
    assert_eq!(seq(&mut b, ms(t, 1_000_000), 2), "b c");
}

#[test]
fn backup_only_when_all_primaries_are_out_and_dropped_when_they_recover() {
    let t = Instant::now();
    let mut servers = vec![srv("c", 1), srv("a", 1), srv("b", 1)];
    servers[0].backup = true; // backups may be written anywhere; primaries come first
    let mut b = balancer(Balance::RoundRobin, servers);
    assert_eq!(b.len(), 3);
    assert_eq!(seq(&mut b, t, 4), "a b a b");
    // a fails, then b fails: cur after: a (-1 -> eff 0), b picked alone.
    assert_eq!(request(&mut b, ms(t, 1), Outcome::Failure), "a");
    assert_eq!(request(&mut b, ms(t, 2), Outcome::Failure), "b");
    assert_eq!(seq(&mut b, ms(t, 3), 3), "c c c");
    let states = b.states(ms(t, 3));
    assert!(states[2].backup && states[2].available);
    assert!(!states[0].available && !states[1].available);
    // a's window ends first (t+1ms+10s): it takes over alone; backup dropped.
    assert_eq!(seq(&mut b, ms(t, 10_002), 2), "a a");
    assert_eq!(seq(&mut b, ms(t, 10_003), 1), "b");
}

#[test]
fn a_request_moves_to_backups_after_trying_every_primary() {
    let t = Instant::now();
    let mut servers = vec![srv("a", 1), srv("b", 1), srv("c", 1), srv("d", 1)];
    servers[2].backup = true;
    servers[3].backup = true;
    let mut b = balancer(Balance::RoundRobin, servers);
    let mut tried = Tried::default();
    let first = pick(&mut b, t, &mut tried);
    let second = pick(&mut b, t, &mut tried);
    assert_eq!((first.as_str(), second.as_str()), ("a", "b"));
    assert_eq!(pick(&mut b, t, &mut tried), "c");
    assert_eq!(pick(&mut b, t, &mut tried), "d");
    assert_eq!(pick(&mut b, t, &mut tried), "-");
    assert_eq!(
        b.states(t)
            .iter()
            .map(|s| s.active_conns)
            .collect::<Vec<_>>(),
        vec![1, 1, 1, 1]
    );
    // A new request starts again at the primaries.
    assert_eq!(pick(&mut b, t, &mut Tried::default()), "b");
    tried.clear();
    assert_eq!(pick(&mut b, t, &mut tried), "a");
}

#[test]
fn max_conns_limits_concurrent_picks_until_release() {
    let t = Instant::now();
    let mut servers = vec![srv("a", 1), srv("b", 1)];
    servers[0].max_conns = 1;
    servers[1].max_conns = 1;
    let mut b = balancer(Balance::RoundRobin, servers);
    let a = b.pick(t, CLIENT, &mut Tried::default()).expect("a");
    let bb = b.pick(t, CLIENT, &mut Tried::default()).expect("b");
    assert_eq!((b.name(a), b.name(bb)), ("a", "b"));
    assert_eq!(b.pick(t, CLIENT, &mut Tried::default()), None);
    assert!(b.states(t)[0].available, "max_conns is not 'down'");
    b.release(a, t, Outcome::Success);
    assert_eq!(pick(&mut b, t, &mut Tried::default()), "a");

    // The single-peer fast path honours max_conns too.
    let mut servers = vec![srv("a", 1)];
    servers[0].max_conns = 2;
    let mut b = balancer(Balance::RoundRobin, servers);
    let first = b.pick(t, CLIENT, &mut Tried::default()).expect("1st");
    assert!(b.pick(t, CLIENT, &mut Tried::default()).is_some());
    assert_eq!(b.pick(t, CLIENT, &mut Tried::default()), None);
    b.release(first, t, Outcome::Success);
    assert!(b.pick(t, CLIENT, &mut Tried::default()).is_some());
}

#[test]
fn tried_peers_are_skipped_and_none_when_all_tried() {
    let t = Instant::now();
    let mut b = rr(&[("a", 1), ("b", 1), ("c", 1)]);
    let mut tried = Tried::default();
    // (1,1,1) a (-2,1,1); b,c: (2,2) b (0); c: 3 -> c
    assert_eq!(pick(&mut b, t, &mut tried), "a");
    assert_eq!(pick(&mut b, t, &mut tried), "b");
    assert_eq!(pick(&mut b, t, &mut tried), "c");
    assert_eq!(pick(&mut b, t, &mut tried), "-");
    assert!(tried.contains(id(&b, "a")) && tried.contains(id(&b, "c")));

    // One peer: the fast path also stops after it was tried.
    let mut b = rr(&[("a", 1)]);
    let mut tried = Tried::default();
    assert_eq!(pick(&mut b, t, &mut tried), "a");
    assert_eq!(pick(&mut b, t, &mut tried), "-");
}

#[test]
fn all_peers_failed_gives_none_but_a_lone_peer_is_never_marked_down() {
    let t = Instant::now();
    let mut b = rr(&[("a", 1), ("b", 1)]);
    assert_eq!(request(&mut b, t, Outcome::Failure), "a");
    assert_eq!(request(&mut b, t, Outcome::Failure), "b");
    assert_eq!(request(&mut b, ms(t, 5_000), Outcome::Success), "-");
    assert!(b.states(ms(t, 5_000)).iter().all(|s| !s.available));

    // nginx keeps no failure state for a single server.
    let mut b = rr(&[("a", 1)]);
    for i in 0..5 {
        assert_eq!(request(&mut b, ms(t, i), Outcome::Failure), "a");
    }
    assert!(b.states(ms(t, 5))[0].available);
    assert_eq!(b.states(ms(t, 5))[0].fails_total, 5);
    assert_eq!(b.states(ms(t, 5))[0].active_conns, 0);
}

#[test]
fn least_conn_picks_fewest_active_per_weight() {
    let t = Instant::now();
    let mut b = balancer(Balance::LeastConn, vec![srv("a", 2), srv("b", 1)]);
    let mut held = Vec::new();
    let mut names = Vec::new();
    for _ in 0..5 {
        let p = b.pick(t, CLIENT, &mut Tried::default()).expect("peer");
        names.push(b.name(p).to_string());
        held.push(p);
    }
    // conns (0,0): tie -> WRR among a,b: a 2, b 1 -> a (cur a -1, b 1)
    // (1,0): b has 0/1 < 1/2 -> b
    // (1,1): a 1/2 < 1/1 -> a
    // (2,1): 2/2 == 1/1 -> tie -> WRR: a -1+2=1, b 1+1=2 -> b (cur b -1)
    // (2,2): a 2/2 < 2/1 -> a
    assert_eq!(names.join(" "), "a b a b a");
    // Release two of a's: (1,2): a 1/2 < 2/1 -> a
    b.release(held[0], t, Outcome::Success);
    b.release(held[2], t, Outcome::Success);
    assert_eq!(pick(&mut b, t, &mut Tried::default()), "a");
    assert_eq!(
        b.states(t)
            .iter()
            .map(|s| s.active_conns)
            .collect::<Vec<_>>(),
        vec![2, 2]
    );
}

#[test]
fn least_conn_with_equal_load_is_weighted_round_robin() {
    let t = Instant::now();
    let mut b = balancer(
        Balance::LeastConn,
        vec![srv("a", 5), srv("b", 1), srv("c", 1)],
    );
    // Released at once, every pick is a tie among all: the smooth WRR sequence.
    assert_eq!(seq(&mut b, t, 7), "a a b a c a a");
    // Skips failed, down and tried peers; backups only when no primary is left.
    let mut servers = vec![srv("a", 1), srv("b", 1), srv("c", 1)];
    servers[1].down = true;
    servers[2].backup = true;
    let mut b = balancer(Balance::LeastConn, servers);
    let mut tried = Tried::default();
    assert_eq!(pick(&mut b, t, &mut tried), "a");
    assert_eq!(pick(&mut b, t, &mut tried), "c");
    assert_eq!(pick(&mut b, t, &mut tried), "-");
    assert_eq!(request(&mut b, t, Outcome::Failure), "a");
    assert_eq!(request(&mut b, t, Outcome::Success), "c");
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

fn ip_hash(weights: &[(&str, u32)]) -> Balancer {
    balancer(
        Balance::IpHash,
        weights.iter().map(|&(n, w)| srv(n, w)).collect(),
    )
}

#[test]
fn ip_hash_maps_a_slash_24_to_a_known_peer() {
    let t = Instant::now();
    let mut b = ip_hash(&[("a", 1), ("b", 1), ("c", 1)]);
    // hash = 89; per byte hash = (hash * 113 + byte) % 6271:
    // 192.168.1.x: (89*113+192)%6271 = 3978; (3978*113+168)%6271 = 4441;
    //              (4441*113+1)%6271 = 154; 154 % 3 = 1 -> b
    // 10.0.0.x:    3796, 2520, 2565; 2565 % 3 = 0 -> a
    // 192.168.2.x: 3978, 4441, 155; 155 % 3 = 2 -> c
    for _ in 0..3 {
        assert_eq!(
            request_from(&mut b, t, ip("192.168.1.10"), Outcome::Success),
            "b"
        );
        assert_eq!(
            request_from(&mut b, t, ip("192.168.1.200"), Outcome::Success),
            "b"
        );
        assert_eq!(
            request_from(&mut b, t, ip("10.0.0.1"), Outcome::Success),
            "a"
        );
        assert_eq!(
            request_from(&mut b, t, ip("10.0.0.254"), Outcome::Success),
            "a"
        );
        assert_eq!(
            request_from(&mut b, t, ip("192.168.2.10"), Outcome::Success),
            "c"
        );
    }
    // Weights are walked in order: {a:1, b:2}: 154 % 3 = 1 -> past a (w 1-1=0) -> b;
    // 2565 % 3 = 0 -> a.
    let mut b = ip_hash(&[("a", 1), ("b", 2)]);
    assert_eq!(
        request_from(&mut b, t, ip("192.168.1.10"), Outcome::Success),
        "b"
    );
    assert_eq!(
        request_from(&mut b, t, ip("10.0.0.1"), Outcome::Success),
        "a"
    );
}

#[test]
fn ip_hash_uses_all_16_bytes_of_ipv6() {
    let t = Instant::now();
    let mut b = ip_hash(&[("a", 1), ("b", 1), ("c", 1)]);
    // ::1: fifteen zero bytes then 1 -> hash 5945, 5945 % 3 = 2 -> c. With only the first three
    // bytes (all zero) it would be 295 % 3 = 1 -> b.
    assert_eq!(
        request_from(&mut b, t, IpAddr::V6(Ipv6Addr::LOCALHOST), Outcome::Success),
        "c"
    );
    // 2001:db8::1 -> 2600 % 3 = 2 -> c; 2001:db8::2 differs only in the last byte, so the
    // last step adds 2 instead of 1: 2601 (no wrap below 6271), 2601 % 3 = 0 -> a.
    assert_eq!(
        request_from(&mut b, t, ip("2001:db8::1"), Outcome::Success),
        "c"
    );
    assert_eq!(
        request_from(&mut b, t, ip("2001:db8::2"), Outcome::Success),
        "a"
    );
}

#[test]
fn ip_hash_rehashes_past_an_unusable_peer() {
    let t = Instant::now();
    let mut servers = vec![srv("a", 1), srv("b", 1), srv("c", 1)];
    servers[1].down = true;
    let mut b = balancer(Balance::IpHash, servers);
    // 192.168.1.x -> 154 -> b is down; the loop continues from 154 with the same bytes:
    // (154*113+192)%6271 = 5052, 383, 5654; 5654 % 3 = 2 -> c.
    assert_eq!(
        request_from(&mut b, t, ip("192.168.1.10"), Outcome::Success),
        "c"
    );

    // A retry within one request continues from the saved hash: after b (154) is tried,
    // round 2 -> 5654 -> c; then round 3 -> 5723, 954, 1196: 1196 % 3 = 2 -> c, tried;
    // round 4 -> 3649, 4890, 723: 723 % 3 = 0 -> a. Then all three are tried: None.
    let mut b = ip_hash(&[("a", 1), ("b", 1), ("c", 1)]);
    let mut tried = Tried::default();
    let client = ip("192.168.1.10");
    let first = b.pick(t, client, &mut tried).expect("first");
    assert_eq!(b.name(first), "b");
    b.release(first, t, Outcome::Failure);
    let second = b.pick(t, client, &mut tried).expect("second");
    assert_eq!(b.name(second), "c");
    b.release(second, t, Outcome::Failure);
    let third = b.pick(t, client, &mut tried).expect("third");
    assert_eq!(b.name(third), "a");
    assert_eq!(b.pick(t, client, &mut tried), None);
}

#[test]
fn ip_hash_falls_back_to_round_robin_after_20_rehashes() {
    let t = Instant::now();
    // {a:1, b:1000}, b down: a is hit only when hash % 1001 == 0. For 10.0.0.x the first 21
    // hashes give 563, 752, 398, ... 885, 383 (none 0), so nginx gives up and round robin
    // finds a.
    let mut servers = vec![srv("a", 1), srv("b", 1000)];
    servers[1].down = true;
    let mut b = balancer(Balance::IpHash, servers);
    let mut tried = Tried::default();
    assert_eq!(
        b.pick(t, ip("10.0.0.1"), &mut tried)
            .map(|p| b.name(p).to_string()),
        Some("a".to_string())
    );
    assert_eq!(tried.ip_tries, 21);
    // Everything down: rehash 21 times, round robin finds nothing either.
    let mut servers = vec![srv("a", 1), srv("b", 1)];
    servers[0].down = true;
    servers[1].down = true;
    let mut b = balancer(Balance::IpHash, servers);
    assert_eq!(b.pick(t, ip("10.0.0.1"), &mut Tried::default()), None);
    // A single peer goes straight to round robin.
    let mut b = ip_hash(&[("a", 1)]);
    assert_eq!(
        request_from(&mut b, t, ip("192.168.1.10"), Outcome::Success),
        "a"
    );
}

#[test]
fn ip_hash_failed_peer_is_skipped_until_fail_timeout() {
    let t = Instant::now();
    let mut b = ip_hash(&[("a", 1), ("b", 1), ("c", 1)]);
    let client = ip("192.168.1.10");
    assert_eq!(request_from(&mut b, t, client, Outcome::Failure), "b");
    // b out: rehash -> c.
    assert_eq!(
        request_from(&mut b, ms(t, 1), client, Outcome::Success),
        "c"
    );
    assert_eq!(
        request_from(&mut b, ms(t, 10_000), client, Outcome::Success),
        "c"
    );
    // After fail_timeout, the client is back on b (the probe) and stays there.
    assert_eq!(
        request_from(&mut b, ms(t, 10_001), client, Outcome::Success),
        "b"
    );
    assert_eq!(
        request_from(&mut b, ms(t, 10_002), client, Outcome::Success),
        "b"
    );
}

#[test]
fn states_and_accessors() {
    let t = Instant::now();
    let mut servers = vec![srv("a", 1), srv("b", 1), srv("c", 1)];
    servers[0].backup = true;
    servers[2].down = true;
    let mut b = balancer(Balance::RoundRobin, servers);
    // Primaries first: b, c, then backup a.
    assert_eq!(b.name(PeerId(0)), "b");
    assert_eq!(b.address(PeerId(0)), SocketAddr::from(([10, 0, 0, 2], 80)));
    assert_eq!(b.name(PeerId(2)), "a");
    // Unknown ids do not panic.
    assert_eq!(b.name(PeerId(99)), "");
    assert_eq!(b.address(PeerId(99)).port(), 0);
    b.release(PeerId(99), t, Outcome::Failure);
    let held = b.pick(t, CLIENT, &mut Tried::default()).expect("b");
    assert_eq!(
        b.states(t),
        vec![
            PeerState {
                name: "b".into(),
                address: SocketAddr::from(([10, 0, 0, 2], 80)),
                backup: false,
                available: true,
                active_conns: 1,
                fails_total: 0,
                weight: 1,
                effective_weight: 1.0,
                fails: 0,
                requests: 1,
                responses_5xx: 0,
            },
            PeerState {
                name: "c".into(),
                address: SocketAddr::from(([10, 0, 0, 3], 80)),
                backup: false,
                available: false,
                active_conns: 0,
                fails_total: 0,
                weight: 1,
                effective_weight: 1.0,
                fails: 0,
                requests: 0,
                responses_5xx: 0,
            },
            PeerState {
                name: "a".into(),
                address: SocketAddr::from(([10, 0, 0, 1], 80)),
                backup: true,
                available: true,
                active_conns: 0,
                fails_total: 0,
                weight: 1,
                effective_weight: 1.0,
                fails: 0,
                requests: 0,
                responses_5xx: 0,
            },
        ]
    );
    b.release(held, t, Outcome::Success);
    // An empty upstream (never produced by config validation) just has nothing to pick.
    let mut e = balancer(Balance::RoundRobin, vec![]);
    assert!(e.is_empty());
    assert_eq!(e.pick(t, CLIENT, &mut Tried::default()), None);
    let mut e = balancer(Balance::IpHash, vec![]);
    assert_eq!(e.pick(t, CLIENT, &mut Tried::default()), None);
    let mut e = balancer(Balance::LeastConn, vec![]);
    assert_eq!(e.pick(t, CLIENT, &mut Tried::default()), None);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn servers() -> impl Strategy<Value = Vec<UpstreamServer>> {
        prop::collection::vec(
            (1u32..6, 0u32..4, any::<bool>(), any::<bool>(), 0u32..3),
            1..7,
        )
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (weight, max_fails, backup, down, max_conns))| {
                    let name = char::from(b'a' + i as u8).to_string();
                    let mut s = srv(&name, weight);
                    s.max_fails = max_fails;
                    s.backup = backup && i > 0;
                    s.down = down && i % 3 == 1;
                    s.max_conns = max_conns;
                    s
                })
                .collect()
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Pick for a new request, or a retry of the previous one.
        Pick { retry: bool, client: u8 },
        /// Release the n-th held pick.
        Release { n: usize, fail: bool },
        /// Advance the clock.
        Wait { millis: u64 },
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                (any::<bool>(), any::<u8>()).prop_map(|(retry, client)| Op::Pick { retry, client }),
                (0usize..8, any::<bool>()).prop_map(|(n, fail)| Op::Release { n, fail }),
                (0u64..15_000).prop_map(|millis| Op::Wait { millis }),
            ],
            0..200,
        )
    }

    proptest! {
        /// Whatever happens, a pick never returns a down, tried or full peer, active
        /// connection counts match what is held, and nothing panics.
        #[test]
        fn picks_respect_down_tried_and_max_conns(
            servers in servers(),
            method in 0u8..3,
            ops in ops(),
        ) {
            let balance = match method {
                0 => Balance::RoundRobin,
                1 => Balance::LeastConn,
                _ => Balance::IpHash,
            };
            let mut servers = servers;
            if balance == Balance::IpHash {
                for s in &mut servers {
                    s.backup = false;
                }
            }
            if servers.iter().all(|s| s.backup) {
                servers[0].backup = false;
            }
            let mut b = balancer(balance, servers.clone());
            let base = Instant::now();
            let mut now = base;
            let mut held: Vec<PeerId> = Vec::new();
            let mut tried = Tried::default();
            for op in ops {
                match op {
                    Op::Pick { retry, client } => {
                        if !retry {
                            tried = Tried::default();
                        }
                        let before = tried.clone();
                        let client = IpAddr::V4(Ipv4Addr::new(client, 1, 2, 3));
                        if let Some(p) = b.pick(now, client, &mut tried) {
                            let cfg = servers.iter().find(|s| s.name == b.name(p)).expect("known");
                            prop_assert!(!cfg.down, "picked a down peer");
                            prop_assert!(!before.contains(p), "picked a tried peer");
                            prop_assert!(tried.contains(p));
                            let active = b.states(now)[p.0].active_conns;
                            prop_assert!(cfg.max_conns == 0 || active <= cfg.max_conns);
                            held.push(p);
                        }
                    }
                    Op::Release { n, fail } => {
                        if !held.is_empty() {
                            let p = held.remove(n % held.len());
                            let outcome = if fail { Outcome::Failure } else { Outcome::Success };
                            b.release(p, now, outcome);
                        }
                    }
                    Op::Wait { millis } => now += Duration::from_millis(millis),
                }
                let states = b.states(now);
                for (i, s) in states.iter().enumerate() {
                    let mine = held.iter().filter(|p| p.0 == i).count();
                    prop_assert_eq!(s.active_conns as usize, mine);
                }
            }
        }

        /// Smooth WRR: with no failures, every window of sum(weights) picks gives each peer
        /// exactly its weight, for round robin and for least_conn with immediate releases.
        #[test]
        fn each_cycle_follows_the_weights(
            weights in prop::collection::vec(1u32..8, 1..6),
            least_conn in any::<bool>(),
        ) {
            let servers: Vec<UpstreamServer> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| srv(&char::from(b'a' + i as u8).to_string(), w))
                .collect();
            let balance = if least_conn { Balance::LeastConn } else { Balance::RoundRobin };
            let mut b = balancer(balance, servers);
            let total: u32 = weights.iter().sum();
            let t = Instant::now();
            for _cycle in 0..3 {
                let mut counts = vec![0u32; weights.len()];
                for _ in 0..total {
                    let p = b.pick(t, CLIENT, &mut Tried::default()).expect("a peer");
                    counts[p.0] += 1;
                    b.release(p, t, Outcome::Success);
                }
                prop_assert_eq!(&counts, &weights);
            }
        }
    }
}
