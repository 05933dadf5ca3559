//! The admin listener: `GET /healthz` (200 while the proxy serves, 503 while draining or with a
//! dead worker), `GET /metrics` (Prometheus text), the control API under `/api/upstreams`
//! ([`api`]), and the status page `GET /` with its JSON twin `GET /api/status`
//! ([`crate::status`]). [`request`] reads a bounded request and writes the response; [`route`]
//! maps requests to handlers.
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

use monoio::net::{TcpListener, TcpStream};

use crate::metrics;
use crate::rt::backoff::LogEvery;
use crate::rt::event::LocalEvent;
use crate::state::Shared;
use crate::status;

pub mod api;
pub mod request;

pub use request::{Request, Response};

/// The most time one admin connection gets for its request and response.
pub const ADMIN_DEADLINE: Duration = Duration::from_secs(2);
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
    let response = match request::read(&mut stream).await? {
        Ok(req) => route(&req, shared),
        Err(refused) => refused,
    };
    response.write(&mut stream).await
}

/// Which handler answers a request.
pub fn route(req: &Request, shared: &Shared) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") => status::page(),
        ("GET", "/api/status") => Response::json(&status::collect(shared)),
        ("GET", "/healthz") if shared.serving() => Response::text(200, "ok\n"),
        ("GET", "/healthz") => Response::text(503, "unavailable\n"),
        ("GET", "/metrics") => {
            let mut text = metrics::render(&shared.stats, shared.serving());
            crate::control::status::render_metrics(&shared.control, &mut text);
            Response::new(200, "text/plain; version=0.0.4", text)
        }
        (_, p) if p == "/api/upstreams" || p.starts_with("/api/upstreams/") => {
            api::handle(req, shared)
        }
        _ => Response::text(404, "not found\n"),
    }
}
