//! A worker's listeners: one SO_REUSEPORT socket per `listen` address, accept loops that spawn
//! a connection task per client, and their stop on reload or drain.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::rt::event::LocalEvent;
use crate::rt::unwind::CatchUnwind;
use crate::state::WorkerCtx;

/// Concurrent accept ops per listener on io_uring.
const ACCEPTORS_URING: usize = 16;

/// Start accept loops for new listen addresses and stop the ones no longer configured.
pub(super) fn sync_listeners(ctx: &Rc<WorkerCtx>, config: &Config) -> io::Result<()> {
    if ctx.drain.is_set() {
        return Ok(());
    }
    let wanted: Vec<SocketAddr> = config
        .servers
        .iter()
        .flat_map(|s| s.listen.iter().copied())
        .collect();
    let mut listeners = ctx.listeners.borrow_mut();
    listeners.retain(|addr, stop| {
        let keep = wanted.contains(addr);
        if !keep {
            stop.set();
        }
        keep
    });
    for addr in wanted {
        if listeners.contains_key(&addr) {
            continue;
        }
        let listener = Rc::new(bind(addr)?);
        let stop = Rc::new(LocalEvent::default());
        listeners.insert(addr, stop.clone());
        // With io_uring each accept is one submitted op completing one loop iteration later:
        // a single accept task admits one connection per iteration, and a burst of a thousand
        // connects waits up to a second in the backlog. Several accept ops in flight drain it.
        // (epoll accepts in a loop on readiness; one task is right there.)
        let acceptors = if ctx.uring { ACCEPTORS_URING } else { 1 };
        for _ in 0..acceptors {
            monoio::spawn(accept_loop(
                listener.clone(),
                addr,
                stop.clone(),
                ctx.clone(),
            ));
        }
    }
    Ok(())
}

/// One SO_REUSEPORT listener per worker and address: the kernel spreads connections over the
/// workers without a shared accept lock.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // "[::]:80" and "0.0.0.0:80" are separate listeners, as nginx binds them (`listen [::]:80 ipv6only=on`).
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// How long an acceptor waits after accept failed (out of descriptors or socket memory): the
/// condition lasts until connections close, so retrying at once would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

async fn accept_loop(
    listener: Rc<TcpListener>,
    listen: SocketAddr,
    stop: Rc<LocalEvent>,
    ctx: Rc<WorkerCtx>,
) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = stop.wait() => break,
        };
        match accepted {
            Ok((stream, peer)) => admit(stream, peer, listen, &ctx),
            Err(e) => {
                if let Some(n) = ctx.accept_failures.borrow_mut().tick() {
                    tracing::warn!(worker = ctx.id, %listen, error = %e, times = n, "accept failed; backing off");
                }
                monoio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    tracing::debug!(worker = ctx.id, %listen, "listener closed");
}

/// Start a connection task, or close the connection at once when the worker already holds
/// `worker_connections`.
fn admit(stream: TcpStream, peer: SocketAddr, listen: SocketAddr, ctx: &Rc<WorkerCtx>) {
    crate::metrics::add(&ctx.stats.accepted, 1);
    let limit = ctx.config.borrow().worker_connections as u64;
    if ctx.stats.active_connections.load(Ordering::Relaxed) >= limit {
        if let Some(n) = ctx.over_limit.borrow_mut().tick() {
            tracing::warn!(
                worker = ctx.id,
                limit,
                closed = n,
                "worker_connections reached; closing new connections"
            );
        }
        return;
    }
    crate::metrics::add(&ctx.stats.active_connections, 1);
    let _ = stream.set_nodelay(true);
    let conn = crate::conn::serve(stream, peer, listen, ctx.clone());
    monoio::spawn(CatchUnwind::new(conn, ctx.id));
}
