//! Active health checks, the I/O part: one thread for the whole process (not one check per
//! worker per server), running a small epoll event loop with one task per checked server.
//! Each task connects, sends `GET uri`, reads the status line within `timeout`, and hands the
//! result to the registry, which counts fall/rise ([`super::health`]) and tells the workers.
//!
//! A reload restarts the tasks from the new config; the servers' health and counters live in
//! the registry and carry over.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::config::HealthCheck;
use crate::rt::event::LocalEvent;
use crate::state::Shared;

use super::health::{Health, Probe};

/// How often the checker looks for a reload or a stop.
const WATCH: Duration = Duration::from_millis(100);
/// The status line must fit in this many bytes.
const MAX_STATUS_LINE: usize = 1024;

/// Start the checker thread (it idles while no upstream has `health_check`).
pub fn spawn(shared: Arc<Shared>) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            match rt {
                Ok(mut rt) => rt.block_on(run(shared)),
                Err(e) => tracing::error!(error = %e, "health checker cannot start"),
            }
        })
}

async fn run(shared: Arc<Shared>) {
    let mut generation = 0;
    let mut stop = Rc::new(LocalEvent::default());
    loop {
        if shared.draining.load(Ordering::Relaxed) {
            stop.set();
            return;
        }
        let g = shared.generation.load(Ordering::Acquire);
        if g != generation {
            generation = g;
            stop.set();
            stop = Rc::new(LocalEvent::default());
            start_tasks(&shared, &stop);
        }
        monoio::time::sleep(WATCH).await;
    }
}

fn start_tasks(shared: &Arc<Shared>, stop: &Rc<LocalEvent>) {
    for (upstream, check, addrs, names) in shared.control.checked() {
        let check = Rc::new(check);
        for (address, name) in addrs.into_iter().zip(names) {
            let server = Server {
                upstream: upstream.clone(),
                address,
                host: name,
                check: check.clone(),
            };
            monoio::spawn(check_loop(shared.clone(), server, stop.clone()));
        }
    }
}

struct Server {
    upstream: String,
    address: SocketAddr,
    /// Host header: the server as written in the config.
    host: String,
    check: Rc<HealthCheck>,
}

async fn check_loop(shared: Arc<Shared>, server: Server, stop: Rc<LocalEvent>) {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: proxy-health-check\r\nConnection: close\r\n\r\n",
        server.check.uri, server.host
    );
    while !stop.is_set() {
        let started = Instant::now();
        let probe = probe(server.address, &request, server.check.timeout).await;
        let latency = started.elapsed();
        if stop.is_set() {
            return;
        }
        let changed = shared.control.record_check(
            &server.upstream,
            server.address,
            &probe,
            latency,
            Instant::now(),
        );
        match changed {
            Some(Health::Down) => tracing::warn!(
                upstream = %server.upstream, server = %server.address, result = %probe.describe(),
                fall = server.check.fall, "health check: server is down"
            ),
            Some(h) => tracing::info!(
                upstream = %server.upstream, server = %server.address, result = %probe.describe(),
                health = ?h, "health check: server is up"
            ),
            None => {}
        }
        monoio::select! {
            _ = monoio::time::sleep(server.check.interval) => {},
            _ = stop.wait() => return,
        }
    }
}

/// One check: connect, send, read the status line, all within `timeout`.
async fn probe(address: SocketAddr, request: &str, timeout: Duration) -> Probe {
    match monoio::time::timeout(timeout, exchange(address, request.as_bytes().to_vec())).await {
        Ok(Ok(status)) => Probe::Status(status),
        Ok(Err(e)) => Probe::Failed(e),
        Err(_) => Probe::Failed("timeout".into()),
    }
}

async fn exchange(address: SocketAddr, request: Vec<u8>) -> Result<u16, String> {
    let mut stream = TcpStream::connect_addr(address)
        .await
        .map_err(|e| describe(&e))?;
    let (r, _) = stream.write_all(request).await;
    r.map_err(|e| describe(&e))?;
    let mut got = Vec::with_capacity(128);
    while !got.contains(&b'\n') {
        if got.len() >= MAX_STATUS_LINE {
            return Err("status line too long".into());
        }
        let (r, buf) = stream.read(vec![0u8; 512]).await;
        match r.map_err(|e| describe(&e))? {
            0 => return Err("closed without a response".into()),
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    status_code(&got).ok_or_else(|| "not an HTTP response".into())
}

/// "HTTP/1.1 200 OK" -> 200.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then_some(())?;
    code.parse().ok().filter(|c| (100..=599).contains(c))
}

/// "connection refused", "connection reset", ... (short, for the status page).
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::TimedOut => "timeout".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 x\r\n"), Some(503));
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n"[..],
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1 999 x\r\n",
            b"\r\n",
        ] {
            assert_eq!(status_code(bad), None);
        }
    }
}
