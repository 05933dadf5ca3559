//! Long-lived client connections through the router: each is an HTTP/1.1 keep-alive
//! connection that asks for the page again every `period`. A connection whose request fails
//! (reset, closed, no answer in time) counts as broken and is replaced by a new one. This is
//! what ECMP costs established flows: those on a balancer that goes away, and those the router
//! hashes onto another balancer when its set of paths changes (a balancer coming back takes its
//! share of the flows, and the ones opened elsewhere meanwhile are reset).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::probe::REQUEST_TIMEOUT;
use crate::sys;

/// A kept connection broke at `at` (since the recorder's start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub at: Duration,
    pub why: String,
}

pub struct Held {
    stop: Arc<AtomicBool>,
    /// Bumped by [`Held::renew`]: every thread then closes its connections and opens new ones.
    generation: Arc<AtomicU64>,
    broken: Arc<Mutex<Vec<Broken>>>,
    threads: Vec<JoinHandle<()>>,
}

/// Reads one response with a Content-Length body from a keep-alive connection.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::result::Result<(), String> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).to_string();
            if !head.starts_with("HTTP/1.1 200") {
                return Err(head.lines().next().unwrap_or_default().to_string());
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or("no Content-Length")?;
            if buf.len() >= end + 4 + len {
                return Ok(());
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed".into()),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) => return Err(e.to_string()),
        }
        if buf.len() > 1 << 20 {
            return Err("response too large".into());
        }
    }
}

/// One request on `conn`, opening it first if needed.
fn ask(
    conn: &mut Option<TcpStream>,
    addr: SocketAddr,
    buf: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    if conn.is_none() {
        let s = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(REQUEST_TIMEOUT * 2))
            .map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        *conn = Some(s);
        // A connection that cannot be opened is not a broken one: only established ones count.
    }
    let Some(s) = conn.as_mut() else {
        return Ok(());
    };
    let req = format!(
        "GET /?held HTTP/1.1\r\nHost: {}\r\nUser-Agent: lab-held\r\n\r\n",
        addr.ip()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    read_response(s, buf)
}

impl Held {
    /// `count` connections to `vip`:80 from `client_ns`, over two threads.
    pub fn start(
        client_ns: &str,
        vip: Ipv4Addr,
        count: usize,
        period: Duration,
        start: Instant,
    ) -> Result<Held> {
        let mut held = Held {
            stop: Arc::new(AtomicBool::new(false)),
            generation: Arc::new(AtomicU64::new(0)),
            broken: Arc::new(Mutex::new(Vec::new())),
            threads: Vec::new(),
        };
        for part in [count / 2, count - count / 2] {
            let generation = held.generation.clone();
            let (stop, broken, ns) = (
                held.stop.clone(),
                held.broken.clone(),
                client_ns.to_string(),
            );
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            held.threads.push(thread::spawn(move || {
                let entered = sys::enter_netns(&ns);
                let _ = ready_tx.send(entered.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                if entered.is_err() {
                    return;
                }
                let addr = SocketAddr::from((vip, 80));
                let mut conns: Vec<Option<TcpStream>> = (0..part).map(|_| None).collect();
                let mut buf = Vec::with_capacity(4096);
                let mut seen = generation.load(Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    let now = generation.load(Ordering::Relaxed);
                    if now != seen {
                        seen = now;
                        conns.iter_mut().for_each(|c| *c = None);
                    }
                    for c in conns.iter_mut() {
                        let was_open = c.is_some();
                        if let Err(why) = ask(c, addr, &mut buf) {
                            if was_open {
                                if let Ok(mut b) = broken.lock() {
                                    b.push(Broken {
                                        at: start.elapsed(),
                                        why,
                                    });
                                }
                            }
                            *c = None;
                        }
                    }
                    thread::sleep(period);
                }
            }));
            ready_rx
                .recv()
                .map_err(|_| LabError::Other("held-connection thread died".into()))?
                .map_err(LabError::Other)?;
        }
        Ok(held)
    }

    /// Closes every connection (not counted as broken) and opens new ones: connections opened
    /// while the router has its current paths, which is what a client that connects during an
    /// outage has.
    pub fn renew(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops the threads; returns every breakage, in time order.
    pub fn finish(mut self) -> Vec<Broken> {
        self.halt();
        let mut v = self.broken.lock().map(|b| b.clone()).unwrap_or_default();
        v.sort_by_key(|b| b.at);
        v
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn keep_alive_requests_and_a_closed_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 1024];
            for _ in 0..2 {
                let _ = s.read(&mut b).unwrap();
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                    .unwrap();
            }
            // Then the server goes away: the next request on the connection fails.
        });
        let mut conn = None;
        let mut buf = Vec::new();
        assert_eq!(ask(&mut conn, addr, &mut buf), Ok(()));
        assert_eq!(ask(&mut conn, addr, &mut buf), Ok(()));
        server.join().unwrap();
        assert!(ask(&mut conn, addr, &mut buf).is_err());
    }
}
