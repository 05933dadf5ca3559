//! Bad client input gets its status and nothing reaches the backend; slow and idle clients are
//! closed; no input takes a worker down.

mod common;

use common::{Backend, Proxy};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn status_for(p: &Proxy, raw: &[u8]) -> u16 {
    let mut c = p.client();
    c.send_bytes(raw);
    c.response().status
}

#[test]
fn each_bad_request_gets_its_status_and_nothing_is_forwarded() {
    let b = Backend::page("must not be reached");
    let p = Proxy::with_backends(
        &[&b],
        "",
        "client_max_body_size = \"1k\"\nmax_header_size = \"4k\"",
    );
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(5000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "CL and TE together",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "conflicting Content-Length",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
            400,
        ),
        (
            "final coding not chunked",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        ("bad request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        ("missing Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("header block over the limit", big_header.into_bytes(), 431),
        (
            "body over client_max_body_size",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n".to_vec(),
            413,
        ),
        (
            "chunked body over client_max_body_size",
            format!(
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
                "b".repeat(0x800)
            )
            .into_bytes(),
            413,
        ),
    ];
    for (name, raw, want) in cases {
        assert_eq!(status_for(&p, &raw), want, "{name}");
    }
    assert_eq!(b.count(), 0, "bad requests must not reach the backend");
    // The proxy still serves.
    assert_eq!(p.get("/").status, 200);
    assert_eq!(b.count(), 1);
}

#[test]
fn slow_header_client_is_closed_after_client_header_timeout() {
    let b = Backend::page("x");
    let p = Proxy::with_backends(&[&b], "", "client_header_timeout = \"1s\"");
    let mut c = p.client();
    c.send("GET / HTTP/1.1\r\nHost: t\r\n");
    let t = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(4)),
        "slow client must be closed"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(b.count(), 0);
}

#[test]
fn idle_keepalive_client_is_closed_after_keepalive_timeout() {
    let b = Backend::page("x");
    let p = Proxy::with_backends(&[&b], "", "keepalive_timeout = \"1s\"");
    let mut c = p.client();
    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 200);
    let t = Instant::now();
    assert!(c.closed_within(Duration::from_secs(4)));
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
}

/// Deterministic pseudo-random garbage and mutated requests: the proxy answers or closes, and
/// keeps serving.
#[test]
fn garbage_never_takes_the_proxy_down() {
    let b = Backend::page("still here");
    let p = Proxy::with_backends(&[&b], "", "client_header_timeout = \"1s\"");
    let seed_req = b"POST /a?b=c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n0\r\n\r\n";
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..300 {
        let mut input = seed_req.to_vec();
        for _ in 0..(next() % 8 + 1) {
            if input.is_empty() {
                input.push(b'G');
            }
            let pos = (next() as usize) % input.len();
            match next() % 4 {
                0 => input[pos] = next() as u8,
                1 => {
                    input.remove(pos);
                }
                2 => input.insert(pos, b"\r\n:;0 \x00\xff"[(next() % 8) as usize]),
                _ => input.truncate(pos.max(1)),
            }
        }
        if i % 50 == 0 {
            input = (0..(next() % 3000)).map(|_| next() as u8).collect();
        }
        let mut s = std::net::TcpStream::connect(p.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = s.write_all(&input);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    assert_eq!(p.get("/").text(), "still here");
    assert_eq!(p.admin_get("/healthz").status, 200);
    // Survived without help: no input panicked a task, no worker was restarted.
    let err = p.stderr();
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("worker thread died"), "{err}");
}
