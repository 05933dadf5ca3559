//! The admin listener: `GET /healthz` (200 while the proxy serves, 503 while draining or with a
//! dead worker), `GET /metrics` (Prometheus text), and the status page `GET /` with its JSON
//! twin `GET /api/status` (see [`crate::status`]).
//!
//! The VRRP health track probes /healthz a few times a second and moves the VIP when it fails,
//! so no admin client may hold it up: the listener runs its own small event loop (monoio on
//! epoll, off the request path) serving every connection concurrently, each with one total
//! deadline for its whole request and a bounded head, and the number of admin connections is
//! capped (a new connection over the cap closes the oldest one).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

use crate::metrics;
use crate::rt::backoff::LogEvery;
use crate::rt::event::LocalEvent;
use crate::state::Shared;
use crate::status;

/// The most time one admin connection gets for its request and response.
pub const ADMIN_DEADLINE: Duration = Duration::from_secs(2);
/// Largest admin request head read; the rest is ignored.
const MAX_HEAD: usize = 4096;
/// Admin connections served at once; a new one beyond this closes the oldest.
const MAX_CONNS: usize = 256;

pub fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<std::thread::JoinHandle<()>> {
    let std_listener = std::net::TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("admin bind {addr}: {e}")))?;
    std_listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            match rt {
                Ok(mut rt) => rt.block_on(serve(std_listener, shared)),
                Err(e) => tracing::error!(error = %e, "admin listener cannot start"),
            }
        })
}

async fn serve(std_listener: std::net::TcpListener, shared: Arc<Shared>) {
    let listener = match TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "admin listener cannot start"),
    };
    let live = Rc::new(Live::default());
    let mut evicted = LogEvery::second();
    let mut failed = LogEvery::second();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE/ENFILE: the error repeats until a descriptor frees up; wait instead of
                // spinning, and say so once a second.
                if let Some(n) = failed.tick() {
                    tracing::warn!(error = %e, times = n, "admin accept failed; backing off");
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if live.evict_oldest_over(MAX_CONNS - 1) {
            if let Some(n) = evicted.tick() {
                tracing::warn!(
                    limit = MAX_CONNS,
                    times = n,
                    "admin connections over the limit; closed the oldest"
                );
            }
        }
        let (id, cut) = live.add();
        let (shared, live) = (shared.clone(), live.clone());
        monoio::spawn(async move {
            let served = monoio::time::timeout(ADMIN_DEADLINE, handle(stream, &shared));
            monoio::select! {
                r = served => match r {
                    Ok(Err(e)) => tracing::debug!(error = %e, "admin request failed"),
                    Err(_) => tracing::debug!("admin request cut at its deadline"),
                    Ok(Ok(())) => {}
                },
                _ = cut.wait() => tracing::debug!("admin connection closed to make room"),
            }
            live.remove(id);
        });
    }
}

/// The admin connections being served, oldest first, each with the event that cuts it.
/// Over the limit the oldest is cut, so a flood of idle connections can never keep a new
/// /healthz probe out (the flood only cuts itself).
#[derive(Default)]
struct Live {
    next: Cell<u64>,
    conns: RefCell<VecDeque<(u64, Rc<LocalEvent>)>>,
}

impl Live {
    fn add(&self) -> (u64, Rc<LocalEvent>) {
        let id = self.next.get();
        self.next.set(id + 1);
        let cut = Rc::new(LocalEvent::default());
        self.conns.borrow_mut().push_back((id, cut.clone()));
        (id, cut)
    }

    fn remove(&self, id: u64) {
        self.conns.borrow_mut().retain(|(c, _)| *c != id);
    }

    /// Cut the oldest connections until at most `keep` remain; true if any was cut.
    fn evict_oldest_over(&self, keep: usize) -> bool {
        let mut conns = self.conns.borrow_mut();
        let mut cut_any = false;
        while conns.len() > keep {
            if let Some((_, cut)) = conns.pop_front() {
                cut.set();
                cut_any = true;
            }
        }
        cut_any
    }
}

async fn handle(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let head = read_head(&mut stream).await?;
    let line = head.split(|&c| c == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let mut extra = "Cache-Control: no-store\r\n".to_string();
    let (status, ctype, body) = match (method, path) {
        ("GET", "/") => {
            extra.push_str(&format!(
                "Content-Security-Policy: {}\r\n",
                status::PAGE_CSP
            ));
            (
                "200 OK",
                "text/html; charset=utf-8",
                status::PAGE.to_string(),
            )
        }
        ("GET", "/api/status") => ("200 OK", "application/json", status::json(shared)),
        ("GET", "/healthz") if shared.serving() => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/healthz") => (
            "503 Service Unavailable",
            "text/plain",
            "unavailable\n".to_string(),
        ),
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            metrics::render(&shared.stats, shared.serving()),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    let (r, _) = stream.write_all(response.into_bytes()).await;
    r.map(|_| ())
}

/// Read until the end of the head (or [`MAX_HEAD`] bytes, or EOF).
async fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    while head.len() < MAX_HEAD && !head_complete(&head) {
        let room = vec![0u8; (MAX_HEAD - head.len()).min(1024)];
        let (r, got) = stream.read(room).await;
        match r? {
            0 => break,
            n => head.extend_from_slice(&got[..n]),
        }
    }
    Ok(head)
}

fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}
