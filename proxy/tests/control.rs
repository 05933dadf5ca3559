//! Server state shared by all workers: round robin across workers, runtime control through
//! the admin API (drain, maint, weight, token), the state file, active health checks and
//! `proxy ctl`. Real proxy processes and real backend sockets on loopback.

mod common;

use common::{Backend, Proxy};

/// A proxy with `workers` workers in front of `backends`, plus extra top-level and upstream
/// settings.
fn proxy(workers: usize, backends: &[&Backend], top: &str, upstream_extra: &str) -> Proxy {
    let dir = common::temp_dir("control");
    let port = common::free_port();
    let admin = common::free_port();
    let log = dir.join("access.log");
    let upstream = format!("{}\n{upstream_extra}", common::servers(backends));
    let top = format!(
        "client_body_temp_path = \"{}\"\n{top}",
        dir.join("body").display()
    );
    let text = common::config_text(port, admin, &top, &upstream, "", &log.display().to_string())
        .replace("workers = 1\n", &format!("workers = {workers}\n"));
    let config_path = dir.join("proxy.toml");
    std::fs::write(&config_path, text).unwrap();
    Proxy::spawn(config_path, dir, port, admin, &[])
}

/// The bodies of `n` requests, each on its own connection (like a curl loop).
fn bodies(p: &Proxy, n: usize) -> Vec<String> {
    (0..n).map(|_| p.get("/").text()).collect()
}

#[test]
fn round_robin_alternates_strictly_across_workers() {
    let a = Backend::page("NODE01");
    let b = Backend::page("NODE02");
    let p = proxy(2, &[&a, &b], "", "");
    let got = bodies(&p, 40);
    for pair in got.windows(2) {
        assert_ne!(pair[0], pair[1], "two in a row from one server: {got:?}");
    }
    // Both workers picked (else the test would prove nothing about sharing): the per-worker
    // request counters, published by each worker about every 200 ms.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let m = p.admin_get("/metrics").text();
    for w in 0..2 {
        let label = format!("worker=\"{w}\"");
        let n: u64 = m
            .lines()
            .filter(|l| {
                l.starts_with("proxy_upstream_server_requests_total{") && l.contains(&label)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(n > 0, "worker {w} served nothing:\n{m}");
    }
}
