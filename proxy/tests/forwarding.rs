//! Forwarding through a real `proxy` process to real loopback backends.

mod common;

use common::{Backend, Client, Proxy, Reply};
use std::time::Duration;

#[test]
fn seed_weights_alternate_node_01_and_02() {
    let b1 = Backend::page("HTTP WEB NODE 01\n");
    let b2 = Backend::page("HTTP WEB NODE 02\n");
    let p = Proxy::with_backends(&[&b1, &b2], "", "");
    let bodies: Vec<String> = (0..10).map(|_| p.get("/").text()).collect();
    for pair in bodies.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "consecutive responses must alternate: {bodies:?}"
        );
    }
    assert_eq!(b1.count(), 5);
    assert_eq!(b2.count(), 5);
}

#[test]
fn smooth_weighted_round_robin_5_1_1() {
    let a = Backend::page("a");
    let b = Backend::page("b");
    let c = Backend::page("c");
    let upstream = format!(
        "servers = [{{ address = \"{}\", weight = 5 }}, {{ address = \"{}\" }}, {{ address = \"{}\" }}]",
        a.addr, b.addr, c.addr
    );
    let p = Proxy::start("", &upstream, "");
    let seq: String = (0..14).map(|_| p.get("/").text()).collect();
    assert_eq!(seq, "aabacaaaabacaa");
}

#[test]
fn two_hundred_requests_on_one_connection() {
    let b1 = Backend::page("one");
    let b2 = Backend::page("two");
    let p = Proxy::with_backends(&[&b1, &b2], "", "");
    let mut c = p.client();
    for i in 0..200 {
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.text(), if i % 2 == 0 { "one" } else { "two" });
    }
    // The upstream side reused pooled connections instead of one per request.
    assert!(b1.connections.load(std::sync::atomic::Ordering::Relaxed) < 10);
}

/// With the default `keepalive = "auto"`, 64 clients sending in lockstep against a slow backend
/// open no more upstream connections than were ever in use at once: every later round finds a
/// pooled connection for each request. (A fixed `keepalive 32` closes 32 of them after every
/// round and opens them again: measured 192 instead of at most 64.)
#[test]
fn auto_pool_opens_no_more_connections_than_were_in_use_at_once() {
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 5;
    let b = Backend::start(|_| {
        std::thread::sleep(Duration::from_millis(30));
        Reply::text("ok")
    });
    let p = Proxy::with_backends(&[&b], "", "");
    let barrier = std::sync::Barrier::new(CLIENTS);
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            let (p, barrier) = (&p, &barrier);
            s.spawn(move || {
                let mut c = p.client();
                for _ in 0..ROUNDS {
                    barrier.wait();
                    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                    assert_eq!(c.response().status, 200);
                }
            });
        }
    });
    let opened = b.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(b.count(), CLIENTS * ROUNDS);
    assert!(
        opened <= CLIENTS,
        "{opened} upstream connections for {CLIENTS} clients"
    );
    assert_eq!(p.metric("proxy_upstream_connects_total"), opened as u64);
}

#[test]
fn pipelined_requests_answered_in_order() {
    let b = Backend::start(|r| Reply::text(&r.target));
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    let mut batch = String::new();
    for i in 0..20 {
        batch.push_str(&format!("GET /req/{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    c.send(&batch);
    for i in 0..20 {
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("/req/{i}"));
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn one_mib_post_is_forwarded_byte_exact() {
    let b = Backend::start(|r| Reply::bytes(r.body.clone()));
    // Streamed (request buffering off), so both directions go through splice.
    let p = Proxy::with_backends(
        &[&b],
        "",
        "client_max_body_size = \"2m\"\nproxy_request_buffering = false",
    );
    let body = pattern(1 << 20);
    let mut c = p.client();
    c.send(&format!(
        "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    c.send_bytes(&body);
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");
    assert_eq!(b.last().body, body);
    assert!(metric_at_least(&p, "proxy_spliced_bytes_total", (1 << 20) + 1) > 1 << 20);
}

#[test]
fn eight_mib_response_byte_exact() {
    let big = pattern(8 << 20);
    let expected = big.clone();
    let b = Backend::start(move |_| Reply::bytes(big.clone()));
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    for _ in 0..2 {
        c.send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("8388608"));
        assert!(r.body == expected, "8 MiB body differs");
    }
    // The bodies went through the splice pipe, not through user space.
    let want = 2 * (8 << 20) - 2 * 64 * 1024;
    let spliced = metric_at_least(&p, "proxy_spliced_bytes_total", want);
    assert!(spliced >= want, "spliced {spliced}");
}

/// Poll an unlabelled counter until it reaches `want` (at most 3 s) and return its value: a
/// worker counts a spliced body when its last splice completes, which can be just after the
/// client has read the bytes.
fn metric_at_least(p: &Proxy, name: &str, want: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let v = metric(p, name);
        if v >= want || std::time::Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Value of an unlabelled metric from /metrics.
fn metric(p: &Proxy, name: &str) -> u64 {
    let m = p.admin_get("/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing:\n{m}"))
}

#[test]
fn large_bodies_byte_exact_with_splice_off_and_on_epoll() {
    let big = pattern(3 << 20);
    let expected = big.clone();
    let b = Backend::start(move |r| {
        if r.method == "POST" {
            Reply::bytes(r.body.clone())
        } else {
            Reply::bytes(big.clone())
        }
    });
    let upstream = common::servers(&[&b]);
    // splice = false: the copy path.
    let p = Proxy::start("splice = false", &upstream, "client_max_body_size = \"4m\"");
    let mut c = p.client();
    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.response().body == expected);
    c.send(&format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        expected.len()
    ));
    c.send_bytes(&expected);
    assert!(c.response().body == expected);
    assert_eq!(metric(&p, "proxy_spliced_bytes_total"), 0);
    // splice on the epoll engine.
    let dir = common::temp_dir("splice-epoll");
    let (port, admin) = (common::free_port(), common::free_port());
    let text = common::config_text(
        port,
        admin,
        "",
        &upstream,
        "client_max_body_size = \"4m\"",
        "off",
    );
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    let p = Proxy::spawn(path, dir, port, admin, &["--engine", "epoll"]);
    let mut c = Client::connect(p.addr);
    c.send(&format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        expected.len()
    ));
    c.send_bytes(&expected);
    assert!(c.response().body == expected);
    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.response().body == expected);
    assert!(metric_at_least(&p, "proxy_spliced_bytes_total", (4 << 20) + 1) > 4 << 20);
}

#[test]
fn chunked_request_and_response_bodies() {
    let b = Backend::start(|r| Reply::chunked(r.body.repeat(3)));
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    c.send("POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "hello worldhello worldhello world");
    // The backend got the de-chunked body with a Content-Length.
    let got = b.last();
    assert_eq!(got.body, b"hello world");
    assert_eq!(got.header("content-length"), Some("11"));
    assert_eq!(got.header("transfer-encoding"), None);
    // And the connection keeps working.
    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 200);
}

#[test]
fn head_204_304_have_no_body_and_keep_the_connection() {
    let b = Backend::start(|r| match r.target.as_str() {
        "/204" => Reply::Full {
            status: 204,
            headers: vec![],
            body: vec![],
            chunked: false,
            close: false,
        },
        "/304" => Reply::Full {
            status: 304,
            headers: vec![],
            body: vec![],
            chunked: false,
            close: false,
        },
        _ => Reply::text("body that HEAD must not see"),
    });
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    c.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("27"));
    for path in ["/204", "/304"] {
        c.send(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let r = c.response();
        assert_eq!(r.status.to_string(), path[1..]);
    }
    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.text(), "body that HEAD must not see");
}

#[test]
fn expect_100_continue() {
    let b = Backend::start(|r| Reply::bytes(r.body.clone()));
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    c.send("PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.response();
    assert_eq!(interim.status, 100);
    c.send("abcde");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "abcde");
    assert_eq!(b.last().header("expect"), None);
}

#[test]
fn http_1_0_client_gets_a_dechunked_close_delimited_body() {
    let b = Backend::start(|_| Reply::chunked(b"old client".to_vec()));
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    c.send("GET / HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.text(), "old client");
    assert!(c.closed_within(Duration::from_secs(2)));
    // The backend saw an HTTP/1.1 request with a Host header.
    assert!(b.last().header("host").is_some());
}

#[test]
fn http_1_0_keep_alive_is_honoured() {
    let b = Backend::page("ka");
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    for _ in 0..3 {
        c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response();
        assert_eq!(r.text(), "ka");
        assert_eq!(
            r.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("keep-alive")
        );
    }
}

#[test]
fn close_delimited_upstream_response() {
    let b = Backend::start(|_| Reply::UntilClose(b"until the end".to_vec()));
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.text(), "until the end");
}

#[test]
fn hop_by_hop_stripped_forwarded_headers_added_host_kept() {
    let b = Backend::page("x");
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    c.send(
        "GET /h HTTP/1.1\r\nHost: www.example.com\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
         Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: websocket\r\n\
         X-Forwarded-For: 10.1.1.1\r\nX-Real-IP: 6.6.6.6\r\nX-Kept: yes\r\n\r\n",
    );
    assert_eq!(c.response().status, 200);
    let r = b.last();
    for h in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert_eq!(r.header(h), None, "{h} must not be forwarded");
    }
    assert_eq!(r.header("host"), Some("www.example.com"));
    assert_eq!(r.header("x-forwarded-for"), Some("10.1.1.1, 127.0.0.1"));
    assert_eq!(r.headers_named("x-real-ip"), vec!["127.0.0.1"]);
    assert_eq!(r.header("x-kept"), Some("yes"));
}

#[test]
fn epoll_engine_serves_too() {
    let b = Backend::page("epoll");
    let dir = common::temp_dir("epoll");
    let (port, admin) = (common::free_port(), common::free_port());
    let text = common::config_text(port, admin, "", &common::servers(&[&b]), "", "off");
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    let p = Proxy::spawn(path, dir, port, admin, &["--engine", "epoll"]);
    let mut c = Client::connect(p.addr);
    for _ in 0..5 {
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().text(), "epoll");
    }
    let err = p.stderr();
    assert!(
        err.contains("worker started worker=0 engine=\"epoll\""),
        "--engine epoll runs epoll:\n{err}"
    );
    assert!(!err.contains("falling back"), "{err}");
}

#[test]
fn listens_on_ipv4_and_ipv6_with_two_workers() {
    let b = Backend::page("dual stack");
    let dir = common::temp_dir("v6");
    let (port, admin) = (common::free_port(), common::free_port());
    let text = format!(
        "workers = 2\nadmin = \"127.0.0.1:{admin}\"\n[upstream.u]\n{}\n\
         [[server]]\nlisten = [\"127.0.0.1:{port}\", \"[::1]:{port}\"]\n\
         [[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n",
        common::servers(&[&b])
    );
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    let p = Proxy::spawn(path, dir, port, admin, &[]);
    for addr in [p.addr, format!("[::1]:{port}").parse().unwrap()] {
        for _ in 0..10 {
            let mut c = Client::connect(addr);
            c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.response().text(), "dual stack");
        }
    }
    // Both workers started, each on io_uring: a silent fallback to epoll on this kernel is a
    // failure, not a detail.
    let err = p.stderr();
    for id in 0..2 {
        assert!(
            err.contains(&format!("worker started worker={id} engine=\"io_uring\"")),
            "worker {id} on io_uring:\n{err}"
        );
    }
    assert!(!err.contains("falling back"), "{err}");
    // The backend saw the IPv6 client's address in X-Forwarded-For.
    assert!(b
        .received
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.header("x-forwarded-for") == Some("::1")));
}

#[test]
fn keep_alive_connection_survives_idle_periods_hot_and_cold() {
    let b = Backend::page("again");
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    // Short pauses keep the read buffer armed; long ones release it and wait for readiness.
    for pause in [0, 20, 150, 5, 300, 0] {
        std::thread::sleep(Duration::from_millis(pause));
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().text(), "again", "after {pause} ms idle");
    }
    // A request split across a cold wait still arrives whole.
    std::thread::sleep(Duration::from_millis(200));
    c.send("GET / HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(150));
    c.send("Host: t\r\n\r\n");
    assert_eq!(c.response().text(), "again");
}
