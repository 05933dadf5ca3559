//! Per-worker counters, read by the admin thread for `/metrics`.
//!
//! Each worker owns one [`WorkerStats`] and is its only writer, so the relaxed atomics never
//! contend between workers; the admin thread only reads. Peer state lives in each worker's
//! balancers (thread-local), so workers publish a snapshot about once a second.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::balance::PeerState;

/// Status codes are counted in a flat table indexed by code (100..=599).
const STATUS_SLOTS: usize = 600;

#[derive(Debug)]
pub struct WorkerStats {
    pub id: usize,
    pub alive: AtomicBool,
    pub requests: AtomicU64,
    statuses: Box<[AtomicU64]>,
    pub active_connections: AtomicU64,
    pub accepted: AtomicU64,
    pub bytes_from_clients: AtomicU64,
    pub bytes_to_clients: AtomicU64,
    /// Body bytes moved with splice(2), never copied through user space.
    pub spliced_bytes: AtomicU64,
    pub upstream_failures: AtomicU64,
    pub upstream_retries: AtomicU64,
    /// Upstream connections opened (attempted): with a pool that fits the load, this grows
    /// only when backends close connections, not per request.
    pub upstream_connects: AtomicU64,
    /// Requests that waited in an upstream's `queue` for a server below its max_conns.
    pub upstream_queued: AtomicU64,
    /// Requests answered 502 by the queue: it was full, or `queue_timeout` passed.
    pub upstream_queue_rejected: AtomicU64,
    /// (upstream name, peer states), replaced about once a second by the worker.
    pub peers: Mutex<Vec<(String, Vec<PeerState>)>>,
}

/// Add to a counter of this worker's stats. Only the owning worker thread writes them (the
/// admin thread only reads), so a plain load and store does: no locked read-modify-write on
/// the request path.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtract from a counter written only by its worker (see [`add`]).
#[inline]
pub fn sub(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}

impl WorkerStats {
    pub fn new(id: usize) -> Arc<WorkerStats> {
        Arc::new(WorkerStats {
            id,
            alive: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            active_connections: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            bytes_from_clients: AtomicU64::new(0),
            bytes_to_clients: AtomicU64::new(0),
            spliced_bytes: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
            upstream_retries: AtomicU64::new(0),
            upstream_connects: AtomicU64::new(0),
            upstream_queued: AtomicU64::new(0),
            upstream_queue_rejected: AtomicU64::new(0),
            peers: Mutex::new(Vec::new()),
        })
    }

    pub fn count_status(&self, status: u16) {
        add(&self.requests, 1);
        if let Some(slot) = self.statuses.get(usize::from(status)) {
            add(slot, 1);
        }
    }

    pub fn status_count(&self, status: u16) -> u64 {
        self.statuses
            .get(usize::from(status))
            .map_or(0, |s| s.load(Relaxed))
    }
}

/// Render all workers' counters in the Prometheus text exposition format.
pub fn render(workers: &[Arc<WorkerStats>], serving: bool) -> String {
    let mut out = String::with_capacity(4096);
    render_process(&mut out, workers, serving);
    render_counters(&mut out, workers);
    render_peers(&mut out, workers);
    out
}

/// Liveness and the per-status request counts.
fn render_process(out: &mut String, workers: &[Arc<WorkerStats>], serving: bool) {
    let sum = |f: &dyn Fn(&WorkerStats) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();

    out.push_str("# HELP proxy_up 1 while the proxy accepts and serves requests.\n");
    out.push_str("# TYPE proxy_up gauge\n");
    let _ = writeln!(out, "proxy_up {}", u8::from(serving));

    out.push_str("# HELP proxy_workers_alive Worker threads currently running.\n");
    out.push_str("# TYPE proxy_workers_alive gauge\n");
    let alive = workers.iter().filter(|w| w.alive.load(Relaxed)).count();
    let _ = writeln!(out, "proxy_workers_alive {alive}");

    out.push_str("# HELP proxy_requests_total Requests answered, by status code.\n");
    out.push_str("# TYPE proxy_requests_total counter\n");
    for code in 100..STATUS_SLOTS as u16 {
        let n = sum(&|w| w.status_count(code));
        if n > 0 {
            let _ = writeln!(out, "proxy_requests_total{{status=\"{code}\"}} {n}");
        }
    }
}

/// Connection, byte and upstream counters summed over the workers.
fn render_counters(out: &mut String, workers: &[Arc<WorkerStats>]) {
    let sum = |f: &dyn Fn(&WorkerStats) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
    let gauges: [(&str, &str, &str, u64); 10] = [
        (
            "proxy_active_connections",
            "gauge",
            "Client connections currently open.",
            sum(&|w| w.active_connections.load(Relaxed)),
        ),
        (
            "proxy_accepted_connections_total",
            "counter",
            "Client connections accepted.",
            sum(&|w| w.accepted.load(Relaxed)),
        ),
        (
            "proxy_received_bytes_total",
            "counter",
            "Bytes received from clients.",
            sum(&|w| w.bytes_from_clients.load(Relaxed)),
        ),
        (
            "proxy_sent_bytes_total",
            "counter",
            "Bytes sent to clients.",
            sum(&|w| w.bytes_to_clients.load(Relaxed)),
        ),
        (
            "proxy_spliced_bytes_total",
            "counter",
            "Body bytes forwarded with splice(2) (kernel to kernel, not through user space).",
            sum(&|w| w.spliced_bytes.load(Relaxed)),
        ),
        (
            "proxy_upstream_failures_total",
            "counter",
            "Failed attempts to use an upstream server (connect, send or read).",
            sum(&|w| w.upstream_failures.load(Relaxed)),
        ),
        (
            "proxy_upstream_retries_total",
            "counter",
            "Requests passed to the next upstream server after a failure.",
            sum(&|w| w.upstream_retries.load(Relaxed)),
        ),
        (
            "proxy_upstream_connects_total",
            "counter",
            "Upstream connections opened (connect attempts); per request, the pool's miss rate.",
            sum(&|w| w.upstream_connects.load(Relaxed)),
        ),
        (
            "proxy_upstream_queued_total",
            "counter",
            "Requests that waited in an upstream queue for a server below its max_conns.",
            sum(&|w| w.upstream_queued.load(Relaxed)),
        ),
        (
            "proxy_upstream_queue_rejected_total",
            "counter",
            "Requests answered 502 by an upstream queue (full, or queue_timeout passed).",
            sum(&|w| w.upstream_queue_rejected.load(Relaxed)),
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// Each worker's view of each upstream server.
fn render_peers(out: &mut String, workers: &[Arc<WorkerStats>]) {
    out.push_str(
        "# HELP proxy_upstream_server_up 1 if the server is eligible in a worker (by worker).\n",
    );
    out.push_str("# TYPE proxy_upstream_server_up gauge\n");
    let mut fails = String::new();
    let mut conns = String::new();
    let mut requests = String::new();
    for w in workers {
        let Ok(peers) = w.peers.lock() else { continue };
        for (upstream, states) in peers.iter() {
            for p in states {
                let labels = format!(
                    "upstream=\"{upstream}\",server=\"{}\",backup=\"{}\",worker=\"{}\"",
                    p.address, p.backup, w.id
                );
                let _ = writeln!(
                    out,
                    "proxy_upstream_server_up{{{labels}}} {}",
                    u8::from(p.available)
                );
                let _ = writeln!(
                    fails,
                    "proxy_upstream_server_failures_total{{{labels}}} {}",
                    p.fails_total
                );
                let _ = writeln!(
                    conns,
                    "proxy_upstream_server_active{{{labels}}} {}",
                    p.active_conns
                );
                let _ = writeln!(
                    requests,
                    "proxy_upstream_server_requests_total{{{labels}}} {}",
                    p.requests
                );
            }
        }
    }
    out.push_str("# HELP proxy_upstream_server_failures_total Failures counted against the server (by worker).\n");
    out.push_str("# TYPE proxy_upstream_server_failures_total counter\n");
    out.push_str(&fails);
    out.push_str(
        "# HELP proxy_upstream_server_active Requests in flight to the server (by worker).\n",
    );
    out.push_str("# TYPE proxy_upstream_server_active gauge\n");
    out.push_str(&conns);
    out.push_str("# HELP proxy_upstream_server_requests_total Requests handed to the server (by worker; each try counts).\n");
    out.push_str("# TYPE proxy_upstream_server_requests_total counter\n");
    out.push_str(&requests);
}
