//! nginx Plus `queue` behind `max_conns`, against real sockets: requests over a server's
//! max_conns wait in turn instead of getting 502, and the queue's limit and timeout answer 502.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Backend, Proxy, Reply};

/// A backend that takes `hold` per request and records the most requests it ever had at once.
fn slow_backend(hold: Duration) -> (Backend, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (n, m) = (now.clone(), most.clone());
    let b = Backend::start(move |r| {
        let at_once = n.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(at_once, Ordering::SeqCst);
        thread::sleep(hold);
        n.fetch_sub(1, Ordering::SeqCst);
        Reply::text(&format!("served {}", r.target))
    });
    (b, most)
}

/// GET `path` on its own connection from a new thread after `delay`: (status, elapsed).
fn get_later(p: &Proxy, path: &str, delay: Duration) -> thread::JoinHandle<(u16, Duration)> {
    let mut client = p.client();
    let path = path.to_string();
    thread::spawn(move || {
        thread::sleep(delay);
        let t = Instant::now();
        client.send(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        (client.response().status, t.elapsed())
    })
}

#[test]
fn requests_over_max_conns_wait_their_turn() {
    let (b, most) = slow_backend(Duration::from_millis(150));
    let upstream = format!(
        "servers = [{{ address = \"{}\", max_conns = 1 }}]\nqueue = 10",
        b.addr
    );
    let p = Proxy::start("", &upstream, "");
    // Staggered by 20 ms so the arrival order is known.
    let clients: Vec<_> = (0..5)
        .map(|i| get_later(&p, &format!("/{i}"), Duration::from_millis(20 * i)))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().0, 200, "no 502 while the queue has room");
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "max_conns = 1 held");
    let order: Vec<String> = b
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(
        order,
        ["/0", "/1", "/2", "/3", "/4"],
        "first come, first served"
    );
    assert_eq!(p.metric("proxy_upstream_queued_total"), 4);
    assert_eq!(p.metric("proxy_upstream_queue_rejected_total"), 0);
}

#[test]
fn a_full_queue_and_a_queue_timeout_answer_502() {
    let (b, _) = slow_backend(Duration::from_millis(1000));
    let upstream = format!(
        "servers = [{{ address = \"{}\", max_conns = 1 }}]\nqueue = 1\nqueue_timeout = \"300ms\"",
        b.addr
    );
    let p = Proxy::start("", &upstream, "");
    let served = get_later(&p, "/served", Duration::ZERO);
    let waits = get_later(&p, "/waits", Duration::from_millis(100));
    let turned_away = get_later(&p, "/full", Duration::from_millis(200));
    let (s, took) = served.join().unwrap();
    assert_eq!(s, 200);
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    let (s, took) = waits.join().unwrap();
    eprintln!("queued request answered after {took:?}");
    assert_eq!(s, 502, "queue_timeout passed");
    // 300 ms of queue_timeout; measured 301-302 ms, bound: + 300 ms of margin for a busy CI.
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(600),
        "{took:?}"
    );
    let (s, took) = turned_away.join().unwrap();
    eprintln!("request over the queue's limit answered after {took:?}");
    assert_eq!(s, 502, "queue = 1 was full");
    // Answered at once (measured 0.5-0.6 ms); bound 200 ms, long before the others finish.
    assert!(took < Duration::from_millis(200), "{took:?}");
    assert_eq!(p.metric("proxy_upstream_queue_rejected_total"), 2);
    let log = p.stderr();
    assert!(log.contains("upstream queue is full"), "{log}");
    assert!(log.contains("upstream queue timeout"), "{log}");
    assert!(
        !log.contains("no live upstreams"),
        "one line per rejection: {log}"
    );
    assert_eq!(b.count(), 1, "only the first request reached the backend");
}

/// Requests each worker sent to upstream servers, from /metrics (published at the workers' tick).
fn upstream_requests_by_worker(p: &Proxy) -> Vec<u64> {
    let m = p.admin_get("/metrics").text();
    let mut by_worker = vec![0u64; 2];
    for l in m.lines() {
        let Some(rest) = l.strip_prefix("proxy_upstream_server_requests_total{") else {
            continue;
        };
        let worker = rest
            .split("worker=\"")
            .nth(1)
            .and_then(|w| w.split('"').next())
            .and_then(|w| w.parse::<usize>().ok());
        let n = l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok());
        if let (Some(w), Some(n)) = (worker, n) {
            if w < by_worker.len() {
                by_worker[w] += n;
            }
        }
    }
    by_worker
}

/// 16 requests on their own connections through two workers with `max_conns = 1` and a queue,
/// the i-th sent after i x `stagger` (so the kernel's SO_REUSEPORT hash gives both workers some:
/// all on one worker is 2 in 65536): every one answered 200, the backend never had two at
/// once, and both workers served. Returns the backend, to look at the order.
fn sixteen_through_two_workers(hold: Duration, stagger: Duration) -> Backend {
    let (b, most) = slow_backend(hold);
    let upstream = format!(
        "servers = [{{ address = \"{}\", max_conns = 1 }}]\nqueue = 100",
        b.addr
    );
    let p = Proxy::start("workers = 2", &upstream, "");
    let clients: Vec<_> = (0..16)
        .map(|i| get_later(&p, &format!("/{i}"), stagger * i))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().0, 200, "no 502 while the queue has room");
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "max_conns = 1 held across both workers"
    );
    thread::sleep(Duration::from_millis(200)); // a tick publishes the per-worker counts
    let by_worker = upstream_requests_by_worker(&p);
    assert!(
        by_worker.iter().all(|n| *n > 0),
        "both workers served: {by_worker:?}"
    );
    assert_eq!(by_worker.iter().sum::<u64>(), 16);
    b
}

/// `max_conns` counts across workers (HAProxy's `maxconn`, nginx's with a `zone`): with two
/// workers and `max_conns = 1` the server still gets one request at a time, and a waiter in
/// one worker is called when a request of the other worker frees the slot.
#[test]
fn max_conns_and_the_queue_span_the_workers() {
    sixteen_through_two_workers(Duration::from_millis(60), Duration::ZERO);
}

/// First come, first served across workers too: a slot freed in one worker goes to the oldest
/// request queued in any worker, not to the freeing worker's own queue first.
#[test]
fn the_queue_order_spans_the_workers() {
    // Staggered by 20 ms (as the one-worker test; the backend takes 80 ms each), so the
    // arrival order is known and most requests queue.
    let b = sixteen_through_two_workers(Duration::from_millis(80), Duration::from_millis(20));
    let order: Vec<String> = b
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    let sent: Vec<String> = (0..16).map(|i| format!("/{i}")).collect();
    assert_eq!(order, sent, "first come, first served across workers");
}
