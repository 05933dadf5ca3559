//! Micro-benches of peer selection: one `pick` + `release` per request, as the connection code (`conn`) does it.
//! `cargo bench -p proxy --bench balancer`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use proxy::balance::{Balancer, Outcome, Tried};
use proxy::config::{Balance, Upstream, UpstreamServer};
use proxy::control::Cycle;
use std::sync::Arc;

fn upstream(balance: Balance, peers: u8) -> Upstream {
    Upstream {
        name: "bench".into(),
        servers: (0..peers)
            .map(|i| UpstreamServer {
                name: format!("10.0.0.{i}:80"),
                address: SocketAddr::from(([10, 0, 0, i], 80)),
                // Unequal weights so smooth WRR does real work.
                weight: 1 + u32::from(i % 3),
                max_fails: 1,
                fail_timeout: Duration::from_secs(10),
                backup: false,
                down: false,
                max_conns: 0,
                slow_start: Duration::ZERO,
            })
            .collect(),
        balance,
        keepalive: proxy::config::Keepalive::Max(32),
        keepalive_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(60),
        read_timeout: Duration::from_secs(60),
        send_timeout: Duration::from_secs(60),
        health_check: None,
        queue: 0,
        queue_timeout: std::time::Duration::from_secs(60),
    }
}

fn pick_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick_release");
    // `shared`: round robin through the cycle all workers share (one atomic per pick), as
    // workers run it; without it, each worker's own smooth WRR.
    let cases = [
        ("round_robin_2", Balance::RoundRobin, 2, false),
        ("round_robin_2_shared", Balance::RoundRobin, 2, true),
        ("round_robin_16", Balance::RoundRobin, 16, false),
        ("round_robin_16_shared", Balance::RoundRobin, 16, true),
        ("least_conn_16", Balance::LeastConn, 16, false),
        ("ip_hash_16", Balance::IpHash, 16, false),
    ];
    for (name, balance, peers, shared) in cases {
        let up = upstream(balance, peers);
        let mut b = Balancer::new(&up);
        if shared {
            let weights: Vec<(usize, u64)> = up
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| (i, u64::from(s.weight)))
                .collect();
            b.set_cycle(Cycle::build(&weights).map(Arc::new));
        }
        let now = Instant::now();
        let mut n: u32 = 0;
        g.bench_function(name, |bench| {
            bench.iter(|| {
                // Vary the client so ip_hash does not hit one bucket only.
                n = n.wrapping_add(1);
                let client = IpAddr::V4(Ipv4Addr::from(0xC0A8_0000 | (n & 0xFFFF) << 8));
                let mut tried = Tried::default();
                let id = b.pick(now, black_box(client), &mut tried);
                if let Some(id) = id {
                    b.release(id, now, Outcome::Success);
                }
                black_box(id)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pick_release);
criterion_main!(benches);
