//! Upstream failures: retries, passive health, 502/504, never replaying non-idempotent requests.

mod common;

use common::{free_port, Backend, Proxy, Reply};
use std::time::{Duration, Instant};

/// An address where nothing listens (connection refused).
fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn one_backend_down_every_request_still_succeeds() {
    let good = Backend::page("alive");
    let dead = dead_addr();
    let upstream = format!(
        "servers = [{{ address = \"{dead}\" }}, {{ address = \"{}\" }}]",
        good.addr
    );
    let p = Proxy::start("", &upstream, "");
    for i in 0..30 {
        let r = p.get("/");
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.text(), "alive");
    }
    // Passive health took the dead server out: /metrics shows it down (workers publish peer
    // state a few times a second).
    std::thread::sleep(std::time::Duration::from_millis(400));
    let m = p.admin_get("/metrics").text();
    let up = |server: &str| {
        m.lines()
            .find(|l| {
                l.starts_with("proxy_upstream_server_up{")
                    && l.contains(&format!("server=\"{server}\""))
            })
            .unwrap_or_else(|| panic!("no state for {server}:\n{m}"))
            .ends_with(" 1")
    };
    assert!(!up(&dead), "dead server should be reported down:\n{m}");
    assert!(up(&good.addr.to_string()), "live server should be up:\n{m}");
    assert!(
        m.contains("proxy_upstream_failures_total 1\n"),
        "exactly one failed attempt within fail_timeout:\n{m}"
    );
}

#[test]
fn all_backends_down_gives_502_with_error_page() {
    let upstream = format!(
        "servers = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]",
        dead_addr(),
        dead_addr()
    );
    let p = Proxy::start("", &upstream, "");
    let mut c = p.client();
    for _ in 0..3 {
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 502);
        assert!(r.text().contains("502 Bad Gateway"), "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/html"));
    }
}

#[test]
fn hanging_backend_gives_504_and_connection_stays_usable() {
    let hang = Backend::start(|r| {
        if r.target == "/slow" {
            Reply::Hang
        } else {
            Reply::text("quick")
        }
    });
    let p = Proxy::with_backends(&[&hang], "read_timeout = \"1s\"", "");
    let mut c = p.client();
    let t = Instant::now();
    c.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 504);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(r.text().contains("504 Gateway Time-out") || r.text().contains("504"));
    // read_timeout marked the only server failed; with a single server nginx keeps using it.
    c.send("GET /fast HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().text(), "quick");
}

#[test]
fn post_is_never_replayed_but_get_is_retried() {
    // The first server reads the request and drops the connection without answering.
    let dropper = Backend::start(|_| Reply::Drop);
    let good = Backend::page("second");
    let upstream = format!(
        "servers = [{{ address = \"{}\", max_fails = 0 }}, {{ address = \"{}\", max_fails = 0 }}]",
        dropper.addr, good.addr
    );
    let p = Proxy::start("", &upstream, "");
    // Round robin starts at the dropper.
    let mut c = p.client();
    c.send("POST /pay HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.response();
    assert_eq!(r.status, 502);
    assert_eq!(dropper.count(), 1);
    assert_eq!(
        good.count(),
        0,
        "a POST that reached a server must not be sent to another"
    );
    // GET on the next round: dropper first again? The balancer alternates, so make sure a GET
    // that lands on the dropper is retried on the good server.
    let mut served = 0;
    for _ in 0..4 {
        let r = p.get("/idempotent");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "second");
        served += 1;
    }
    assert_eq!(served, 4);
    assert!(
        dropper.count() >= 2,
        "GETs were tried on the dropper first, then retried"
    );
}

#[test]
fn stale_pooled_connections_do_not_cause_502() {
    // A backend that says Connection: close: the proxy must not pool its connections.
    let closer = Backend::start(|_| Reply::Full {
        status: 200,
        headers: vec![],
        body: b"ok".to_vec(),
        chunked: false,
        close: true,
    });
    let p = Proxy::with_backends(&[&closer], "", "");
    for _ in 0..20 {
        assert_eq!(p.get("/").status, 200);
    }
    // A backend that closes silently after each response (its keep-alive timeout firing
    // while the connection sits in our pool).
    let silent = silent_closer();
    let p2 = Proxy::start("", &format!("servers = [{{ address = \"{silent}\" }}]"), "");
    let mut c = p2.client();
    for i in 0..50 {
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A POST is never replayed, so the pool must notice the closed connection before reuse.
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(150));
        c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(c.response().status, 200, "POST {i}");
    }
}

/// A backend that answers one request per connection with a keep-alive response and then
/// closes silently.
fn silent_closer() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten().take(500) {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            });
        }
    });
    addr
}

#[test]
fn passive_health_skips_failed_server_for_fail_timeout() {
    let good = Backend::page("good");
    let dead = dead_addr();
    let upstream = format!(
        "servers = [{{ address = \"{dead}\", max_fails = 1, fail_timeout = \"1s\" }}, {{ address = \"{}\" }}]",
        good.addr
    );
    let p = Proxy::start("", &upstream, "");
    for _ in 0..10 {
        assert_eq!(p.get("/").status, 200);
    }
    let m = p.admin_get("/metrics").text();
    assert!(m.contains("proxy_upstream_failures_total 1\n"), "{m}");
    // After fail_timeout one request probes the dead server again (and fails over).
    std::thread::sleep(Duration::from_millis(1200));
    for _ in 0..10 {
        assert_eq!(p.get("/").status, 200);
    }
    let m = p.admin_get("/metrics").text();
    assert!(m.contains("proxy_upstream_failures_total 2\n"), "{m}");
}

#[test]
fn backup_server_used_only_when_primaries_are_down() {
    let primary = Backend::page("primary");
    let backup = Backend::page("backup");
    let upstream = format!(
        "servers = [{{ address = \"{}\" }}, {{ address = \"{}\", backup = true }}]",
        primary.addr, backup.addr
    );
    let p = Proxy::start("", &upstream, "");
    for _ in 0..6 {
        assert_eq!(p.get("/").text(), "primary");
    }
    assert_eq!(backup.count(), 0);
    let dead = dead_addr();
    let upstream = format!(
        "servers = [{{ address = \"{dead}\" }}, {{ address = \"{}\", backup = true }}]",
        backup.addr
    );
    let p = Proxy::start("", &upstream, "");
    for _ in 0..6 {
        assert_eq!(p.get("/").text(), "backup");
    }
}

/// A server that sends the response head and part of the body, then resets.
fn cuts_mid_response() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut req = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut req);
            let _ = std::io::Write::write_all(
                &mut s,
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
            );
            let _ = std::io::Write::write_all(&mut s, &[b'p'; 1000]);
            std::thread::sleep(Duration::from_millis(100));
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
    });
    addr
}

/// Once the client has the head, an upstream failure cannot be retried: the client connection
/// is cut, the next server is not tried, and the failure is counted.
#[test]
fn upstream_failure_mid_response_cuts_the_client_and_is_not_retried() {
    let cut = cuts_mid_response();
    let good = Backend::page("second");
    let upstream = format!(
        "servers = [{{ address = \"{cut}\", max_fails = 0 }}, {{ address = \"{}\", max_fails = 0 }}]",
        good.addr
    );
    let p = Proxy::start("", &upstream, "");
    let mut c = p.client();
    c.send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.try_response(false).is_err(), "the body is cut short");
    assert_eq!(good.count(), 0, "not retried once the head went out");
    assert_eq!(p.metric("proxy_upstream_failures_total"), 1);
    assert_eq!(p.metric("proxy_upstream_retries_total"), 0);
}

/// A read timeout with two servers: a GET goes on to the second server, a POST does not, and
/// the retry is counted.
#[test]
fn read_timeout_retries_idempotent_requests_only() {
    let hang = Backend::start(|_| Reply::Hang);
    let good = Backend::page("second");
    let upstream = format!(
        "servers = [{{ address = \"{}\", max_fails = 0 }}, {{ address = \"{}\", max_fails = 0 }}]\nread_timeout = \"500ms\"",
        hang.addr, good.addr
    );
    let p = Proxy::start("", &upstream, "");
    // Round robin starts at the hanging server.
    let mut c = p.client();
    c.send("POST /pay HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.response().status, 504);
    assert_eq!(
        good.count(),
        0,
        "a POST that reached a server is not sent to another"
    );
    assert_eq!(p.metric("proxy_upstream_retries_total"), 0);
    // The next pick is the good server, the one after the hanging one again: that GET is retried.
    for _ in 0..2 {
        let r = p.get("/read");
        assert_eq!((r.status, r.text().as_str()), (200, "second"));
    }
    assert_eq!(hang.count(), 2);
    assert_eq!(p.metric("proxy_upstream_retries_total"), 1);
}
