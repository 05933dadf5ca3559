//! Looking at the lab from inside: threads that enter a lab namespace (setns affects only the
//! calling thread) and talk HTTP from the client, or check which balancer holds a VIP.
//!
//! The holder check binds a UDP socket to the VIP inside a balancer's namespace: the bind only
//! succeeds where the address is configured. No process is spawned, so it can run every few ms.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::sys;

/// Runs `f` on a new thread inside network namespace `ns`.
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = ns.to_string();
    thread::spawn(move || -> Result<T> {
        sys::enter_netns(&ns)?;
        Ok(f())
    })
    .join()
    .map_err(|_| LabError::Other("probe thread panicked".into()))?
}

/// One HTTP/1.1 GET of `/` with a total deadline; returns (status, body).
pub fn http_get(addr: SocketAddr, timeout: Duration) -> std::result::Result<(u16, String), String> {
    http_get_path(addr, "/", timeout)
}

/// One HTTP/1.1 GET of `path` with a total deadline; returns (status, body).
pub fn http_get_path(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::result::Result<(u16, String), String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(left)).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lab-client\r\nConnection: close\r\n\r\n",
        addr.ip()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if start.elapsed() > timeout {
            return Err("timeout".into());
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) => return Err(format!("read: {e}")),
        }
        if buf.len() > 1 << 20 {
            return Err("response too large".into());
        }
    }
    parse_response(&buf)
}

/// One HTTP/1.1 POST of a JSON `body` with a bearer `token`, total deadline `timeout`;
/// returns (status, body).
pub fn http_post_json(
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: &str,
    timeout: Duration,
) -> std::result::Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    parse_response(&buf)
}

/// Status and body of a complete `Connection: close` response.
fn parse_response(buf: &[u8]) -> std::result::Result<(u16, String), String> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("incomplete response ({} bytes)", buf.len()))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "bad status line".to_string())?;
    Ok((status, body.to_string()))
}

/// Whether a TCP connect to `addr` succeeds within `timeout`.
pub fn tcp_open(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

/// Whether `vip` is configured in the calling thread's namespace.
pub fn holds(vip: Ipv4Addr) -> bool {
    UdpSocket::bind((vip, 0)).is_ok()
}

/// One request of the polling client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Since the recorder started.
    pub at: Duration,
    pub latency: Duration,
    /// The body on HTTP 200; otherwise what went wrong.
    pub result: std::result::Result<String, String>,
}

/// The set of balancers holding the VIP changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderChange {
    pub at: Duration,
    /// Names of the balancers holding it from `at` on (sorted).
    pub holders: Vec<String>,
}

#[derive(Default)]
struct Shared {
    samples: Vec<Sample>,
    holders: Vec<HolderChange>,
    /// Current holder flag per balancer.
    current: Vec<bool>,
}

/// Records, in the background, a request to the VIP every `period` from the client namespace and
/// every change of who holds the VIP.
pub struct Recorder {
    start: Instant,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    threads: Vec<JoinHandle<()>>,
    balancers: Vec<String>,
}

/// Per-request deadline: long enough for a loaded machine, short enough to keep polling every
/// ~20 ms while nobody answers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(250);

impl Recorder {
    /// `balancers`: (name, namespace) of each balancer.
    pub fn start(
        client_ns: &str,
        balancers: &[(String, String)],
        vip: Ipv4Addr,
        period: Duration,
    ) -> Result<Recorder> {
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared {
            current: vec![false; balancers.len()],
            ..Shared::default()
        }));
        let names: Vec<String> = balancers.iter().map(|(n, _)| n.clone()).collect();
        let mut threads = Vec::new();
        for (i, (_, ns)) in balancers.iter().enumerate() {
            let (stop, shared, names, ns) =
                (stop.clone(), shared.clone(), names.clone(), ns.clone());
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            threads.push(thread::spawn(move || {
                let entered = sys::enter_netns(&ns);
                let _ = ready_tx.send(entered.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                if entered.is_err() {
                    return;
                }
                let mut last = None;
                while !stop.load(Ordering::Relaxed) {
                    let now = holds(vip);
                    if last != Some(now) {
                        last = Some(now);
                        let at = start.elapsed();
                        if let Ok(mut sh) = shared.lock() {
                            if let Some(flag) = sh.current.get_mut(i) {
                                *flag = now;
                            }
                            let holders = names
                                .iter()
                                .zip(sh.current.iter())
                                .filter(|(_, &h)| h)
                                .map(|(n, _)| n.clone())
                                .collect();
                            sh.holders.push(HolderChange { at, holders });
                        }
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            }));
            ready_rx
                .recv()
                .map_err(|_| LabError::Other("holder probe thread died".into()))?
                .map_err(LabError::Other)?;
        }
        let (stop2, shared2, cns) = (stop.clone(), shared.clone(), client_ns.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        threads.push(thread::spawn(move || {
            let entered = sys::enter_netns(&cns);
            let _ = ready_tx.send(entered.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            if entered.is_err() {
                return;
            }
            let addr = SocketAddr::from((vip, 80));
            let mut next = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let at = start.elapsed();
                let result = match http_get(addr, REQUEST_TIMEOUT) {
                    Ok((200, body)) => Ok(body.trim().to_string()),
                    Ok((status, _)) => Err(format!("HTTP {status}")),
                    Err(e) => Err(e),
                };
                let latency = t0.elapsed();
                if let Ok(mut sh) = shared2.lock() {
                    sh.samples.push(Sample {
                        at,
                        latency,
                        result,
                    });
                }
                next += period;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        }));
        ready_rx
            .recv()
            .map_err(|_| LabError::Other("client thread died".into()))?
            .map_err(LabError::Other)?;
        Ok(Recorder {
            start,
            stop,
            shared,
            threads,
            balancers: names,
        })
    }

    /// Time since the recorder started (the timeline's clock).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn balancers(&self) -> &[String] {
        &self.balancers
    }

    /// Who holds the VIP right now.
    pub fn holders(&self) -> Vec<String> {
        self.shared
            .lock()
            .map(|sh| {
                self.balancers
                    .iter()
                    .zip(sh.current.iter())
                    .filter(|(_, &h)| h)
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Copies of everything recorded so far.
    pub fn snapshot(&self) -> (Vec<Sample>, Vec<HolderChange>) {
        self.shared
            .lock()
            .map(|sh| (sh.samples.clone(), sh.holders.clone()))
            .unwrap_or_default()
    }

    /// Stops the threads and returns everything recorded.
    pub fn finish(mut self) -> (Vec<Sample>, Vec<HolderChange>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.snapshot()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_responses() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Ok((200, "hello".into()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 502 Bad Gateway\r\n\r\n"),
            Ok((502, String::new()))
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn http_get_against_a_loopback_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET / HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nHTTP WEB NODE 01\n")
                .unwrap();
        });
        let got = http_get(addr, Duration::from_secs(2)).unwrap();
        assert_eq!(got, (200, "HTTP WEB NODE 01\n".into()));
        t.join().unwrap();
        // Nothing listens any more: refused, reported as an error, not a panic.
        assert!(http_get(addr, Duration::from_millis(200)).is_err());
        assert!(!tcp_open(addr, Duration::from_millis(200)));
    }

    #[test]
    fn holds_only_local_addresses() {
        assert!(holds(Ipv4Addr::LOCALHOST));
        // TEST-NET-3 is never configured on a test machine.
        assert!(!holds(Ipv4Addr::new(203, 0, 113, 77)));
    }
}
