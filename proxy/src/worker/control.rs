//! A worker's control loop: every tick it fires connection deadlines, picks up a reload,
//! flushes the access log, publishes peer state for /metrics and starts the drain.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::balance::Balancer;
use crate::config::{Config, Upstream};
use crate::state::WorkerCtx;

/// How often a worker looks at the shared flags (reload, drain), fires connection deadlines and
/// flushes its log buffer.
const TICK: Duration = Duration::from_millis(50);
/// How often (in ticks) a worker publishes its peers' state for /metrics.
const PUBLISH_EVERY: u32 = 4;

pub(super) async fn control_loop(ctx: &Rc<WorkerCtx>) {
    let mut ticks = 0u32;
    loop {
        monoio::time::sleep(TICK).await;
        ticks = ticks.wrapping_add(1);
        let now = Instant::now();
        ctx.deadlines.fire(now);
        let gen = ctx.shared.generation.load(Ordering::Acquire);
        if gen != ctx.generation.get() {
            ctx.generation.set(gen);
            reload(ctx);
        }
        if ctx.shared.control.epoch() != ctx.control_epoch.get() {
            apply_control(ctx, now);
        }
        // Queued requests are called when a slot is freed (here or, through a wake-up, in
        // another worker); the tick catches a wake-up that was lost or raced with the queueing.
        call_waiters(ctx, now);
        ctx.log.borrow_mut().flush();
        if ticks.is_multiple_of(PUBLISH_EVERY) {
            publish_peers(ctx);
            ctx.pool.borrow_mut().prune(Instant::now());
            ctx.buffers.trim();
        }
        if ctx.shared.draining.load(Ordering::Relaxed) && !ctx.drain.is_set() {
            tracing::info!(
                worker = ctx.id,
                "draining: closing listeners, finishing in-flight requests"
            );
            for stop in ctx.listeners.borrow_mut().drain().map(|(_, s)| s) {
                stop.set();
            }
            ctx.drain.set();
            ctx.pool.borrow_mut().clear();
        }
        if ctx.drain.is_set() && ctx.stats.active_connections.load(Ordering::Relaxed) == 0 {
            ctx.log.borrow_mut().flush();
            publish_peers(ctx);
            return;
        }
    }
}

fn reload(ctx: &Rc<WorkerCtx>) {
    let config = Rc::new((*ctx.shared.config()).clone());
    rebuild_balancers(ctx, &config);
    ctx.log.borrow_mut().set_sink(ctx.shared.log_sink());
    *ctx.config.borrow_mut() = config.clone();
    // New balancers start from the config: give them the shared state at once.
    apply_control(ctx, Instant::now());
    if let Err(e) = super::listen::sync_listeners(ctx, &config) {
        tracing::error!(worker = ctx.id, error = %e, "reload: could not bind a new listen address");
    }
    tracing::info!(worker = ctx.id, "configuration reloaded");
}

/// Keep the balancer (and so the peers' health state) of every upstream whose definition did
/// not change; build new ones for the rest.
pub(super) fn rebuild_balancers(ctx: &WorkerCtx, config: &Config) {
    let old_config = ctx.config.borrow().clone();
    let old = ctx.balancers.borrow().clone();
    let find_old = |u: &Upstream| -> Option<Rc<RefCell<Balancer>>> {
        let i = old_config.upstreams.iter().position(|o| o == u)?;
        old.get(i).cloned()
    };
    let new: Vec<_> = config
        .upstreams
        .iter()
        .map(|u| {
            find_old(u).unwrap_or_else(|| {
                let mut b = Balancer::new(u);
                b.set_worker(ctx.id);
                Rc::new(RefCell::new(b))
            })
        })
        .collect();
    *ctx.balancers.borrow_mut() = new;
}

/// Copy the shared server state (admin state, health, weights, round robin's cycle) into this
/// worker's balancers. Runs at a tick when the registry's epoch moved, never per request.
pub(super) fn apply_control(ctx: &WorkerCtx, now: Instant) {
    let epoch = ctx.shared.control.epoch();
    let views = ctx.shared.control.views();
    let config = ctx.config();
    for (u, b) in config.upstreams.iter().zip(ctx.balancers.borrow().iter()) {
        if let Some(view) = views.iter().find(|v| v.name == u.name) {
            b.borrow_mut().apply(view, now);
        }
    }
    ctx.control_epoch.set(epoch);
}

/// Let queued requests take what room the servers have now (oldest of all workers first:
/// another worker holding an older one is woken to go on).
pub(super) fn call_waiters(ctx: &WorkerCtx, now: Instant) {
    for b in ctx.balancers.borrow().iter() {
        let wake = b.borrow_mut().call_waiters(now);
        ctx.shared.wakeups.wake(wake);
    }
}

/// Another worker freed a `max_conns` slot while requests of this one were queued for it.
pub(super) async fn wakeup_loop(ctx: Rc<WorkerCtx>, rx: std::os::unix::net::UnixDatagram) {
    let rx = match monoio::net::unix::UnixDatagram::from_std(rx) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(worker = ctx.id, error = %e, "wake-up socket unusable: queued requests are called at the tick");
            return;
        }
    };
    let mut buf = vec![0u8; 64];
    loop {
        let (got, b) = rx.recv(buf).await;
        buf = b;
        if let Err(e) = got {
            tracing::warn!(worker = ctx.id, error = %e, "wake-up socket failed: queued requests are called at the tick");
            return;
        }
        call_waiters(&ctx, Instant::now());
    }
}

fn publish_peers(ctx: &WorkerCtx) {
    let now = Instant::now();
    let config = ctx.config();
    let snapshot: Vec<_> = config
        .upstreams
        .iter()
        .zip(ctx.balancers.borrow().iter())
        .map(|(u, b)| (u.name.clone(), b.borrow().states(now)))
        .collect();
    if let Ok(mut peers) = ctx.stats.peers.lock() {
        *peers = snapshot;
    }
}
