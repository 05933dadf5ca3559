//! Thread-per-core workers: one monoio runtime (io_uring, epoll fallback) per thread, each with
//! its own SO_REUSEPORT listener on every `listen` address, its own balancers, upstream pool and
//! access-log buffer. Workers share no locks on the request path: they only read an atomic
//! config generation per tick and take the config mutex when it changed (reload).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use monoio::net::TcpListener;

use crate::balance::Balancer;
use crate::config::{Config, Upstream};
use crate::log::{AccessLog, LogSink};
use crate::metrics::WorkerStats;
use crate::pool::Pool;

/// How often a worker looks at the shared flags (reload, drain), fires connection deadlines and
/// flushes its log buffer.
const TICK: Duration = Duration::from_millis(50);
/// How often (in ticks) a worker publishes its peers' state for /metrics.
const PUBLISH_EVERY: u32 = 4;

/// io_uring submission queue entries per worker.
const SQ_ENTRIES: u32 = 4096;
/// io_uring completion queue entries per worker.
const CQ_ENTRIES: u32 = 32768;

/// Concurrent accept ops per listener on io_uring.
const ACCEPTORS_URING: usize = 16;

/// Which I/O engine to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// Force epoll (for testing the fallback, or kernels where io_uring is disabled).
    Epoll,
}

/// State shared by all workers and the control thread.
pub struct Shared {
    config: Mutex<Arc<Config>>,
    generation: AtomicU64,
    pub draining: AtomicBool,
    pub stats: Vec<Arc<WorkerStats>>,
    log: Mutex<Option<LogSink>>,
    pub engine: Engine,
}

impl Shared {
    pub fn new(
        config: Arc<Config>,
        workers: usize,
        log: Option<LogSink>,
        engine: Engine,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            config: Mutex::new(config),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            stats: (0..workers).map(WorkerStats::new).collect(),
            log: Mutex::new(log),
            engine,
        })
    }

    pub fn config(&self) -> Arc<Config> {
        match self.config.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Publish a new config (and log sink); workers pick it up on their next tick.
    pub fn replace(&self, config: Arc<Config>, log: Option<LogSink>) {
        match self.config.lock() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        match self.log.lock() {
            Ok(mut l) => *l = log,
            Err(poisoned) => *poisoned.into_inner() = log,
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn log_sink(&self) -> Option<LogSink> {
        match self.log.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn serving(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && self.stats.iter().all(|w| w.alive.load(Ordering::Relaxed))
    }
}

/// A worker's thread-local state, shared by its connection tasks.
pub struct WorkerCtx {
    pub id: usize,
    /// Running on io_uring (else epoll).
    pub uring: bool,
    pub shared: Arc<Shared>,
    pub stats: Arc<WorkerStats>,
    /// The worker's own copy: cloning an `Rc` per request costs no cross-core atomic, where a
    /// shared `Arc` refcount would bounce between workers' caches.
    config: RefCell<Rc<Config>>,
    generation: Cell<u64>,
    /// Parallel to `config.upstreams`. A request keeps the `Rc` of the balancer it picked from,
    /// so a reload in the middle of it releases the peer into the right one.
    balancers: RefCell<Vec<Rc<RefCell<Balancer>>>>,
    pub pool: RefCell<Pool>,
    /// Reusable I/O buffers for connections with a request in flight.
    pub buffers: BufferPool,
    /// Idle-connection deadlines (keep-alive waits).
    pub deadlines: Deadlines,
    pub log: RefCell<AccessLog>,
    /// Set when the worker drains (graceful stop): idle keep-alive connections close.
    pub drain: LocalEvent,
    listeners: RefCell<HashMap<SocketAddr, Rc<LocalEvent>>>,
}

impl WorkerCtx {
    pub fn config(&self) -> Rc<Config> {
        self.config.borrow().clone()
    }

    pub fn balancer(&self, upstream: usize) -> Option<Rc<RefCell<Balancer>>> {
        self.balancers.borrow().get(upstream).cloned()
    }

    pub fn draining(&self) -> bool {
        self.drain.is_set()
    }
}

/// Start worker `id` on its own thread. Reports bind/runtime errors through `ready` before
/// serving; returns the thread handle.
pub fn spawn(
    id: usize,
    shared: Arc<Shared>,
    ready: mpsc::Sender<(usize, io::Result<&'static str>)>,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || run(id, shared, ready))
}

type Runtime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

fn build_runtime(engine: Engine) -> io::Result<(Runtime, &'static str)> {
    if engine == Engine::Auto && monoio::utils::detect_uring() {
        let mut urb = io_uring::IoUring::builder();
        // A completion queue deep enough for every connection's in-flight ops at once: an
        // overflowing CQ parks completions in the kernel until the next enter (latency spikes
        // with thousands of connections).
        urb.setup_cqsize(CQ_ENTRIES);
        // COOP_TASKRUN: completions are run when we next enter the kernel instead of through an
        // interrupting IPI; SINGLE_ISSUER: only this thread submits. Both cut wake-ups.
        if std::env::var_os("PROXY_URING_PLAIN").is_none() {
            urb.setup_coop_taskrun().setup_single_issuer();
        }
        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(SQ_ENTRIES)
            .uring_builder(urb)
            .enable_timer()
            .build()
        {
            Ok(rt) => return Ok((rt.into(), "io_uring")),
            // e.g. RLIMIT_MEMLOCK too low, or io_uring disabled by sysctl: fall back.
            Err(e) => tracing::warn!(error = %e, "io_uring unavailable, falling back to epoll"),
        }
    }
    let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()?;
    Ok((rt.into(), "epoll"))
}

fn run(id: usize, shared: Arc<Shared>, ready: mpsc::Sender<(usize, io::Result<&'static str>)>) {
    let config = shared.config();
    if config.pin_workers {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Err(e) = monoio::utils::bind_to_cpu_set([id % cores]) {
            tracing::warn!(worker = id, error = ?e, "could not pin worker to a core");
        }
    }
    let (mut rt, engine) = match build_runtime(shared.engine) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send((id, Err(e)));
            return;
        }
    };
    rt.block_on(async move {
        let stats = shared.stats[id].clone();
        let ctx = Rc::new(WorkerCtx {
            id,
            uring: engine == "io_uring",
            stats: stats.clone(),
            generation: Cell::new(shared.generation.load(Ordering::Acquire)),
            balancers: RefCell::new(Vec::new()),
            pool: RefCell::new(Pool::new()),
            buffers: BufferPool::default(),
            deadlines: Deadlines::default(),
            log: RefCell::new(AccessLog::new(shared.log_sink())),
            drain: LocalEvent::default(),
            listeners: RefCell::new(HashMap::new()),
            config: RefCell::new(Rc::new((*config).clone())),
            shared,
        });
        rebuild_balancers(&ctx, &config);
        if let Err(e) = sync_listeners(&ctx, &config) {
            let _ = ready.send((id, Err(e)));
            return;
        }
        stats.alive.store(true, Ordering::Relaxed);
        let _ = ready.send((id, Ok(engine)));
        control_loop(&ctx).await;
        stats.alive.store(false, Ordering::Relaxed);
    });
}

async fn control_loop(ctx: &Rc<WorkerCtx>) {
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
    if let Err(e) = sync_listeners(ctx, &config) {
        tracing::error!(worker = ctx.id, error = %e, "reload: could not bind a new listen address");
    }
    tracing::info!(worker = ctx.id, "configuration reloaded");
}

/// Keep the balancer (and so the peers' health state) of every upstream whose definition did
/// not change; build new ones for the rest.
fn rebuild_balancers(ctx: &WorkerCtx, config: &Config) {
    let old_config = ctx.config.borrow().clone();
    let old = ctx.balancers.borrow().clone();
    let find_old = |u: &Upstream| -> Option<Rc<RefCell<Balancer>>> {
        let i = old_config.upstreams.iter().position(|o| o == u)?;
        old.get(i).cloned()
    };
    let new: Vec<_> = config
        .upstreams
        .iter()
        .map(|u| find_old(u).unwrap_or_else(|| Rc::new(RefCell::new(Balancer::new(u)))))
        .collect();
    *ctx.balancers.borrow_mut() = new;
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

/// Start accept loops for new listen addresses and stop the ones no longer configured.
fn sync_listeners(ctx: &Rc<WorkerCtx>, config: &Config) -> io::Result<()> {
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
        // "[::]:80" and "0.0.0.0:80" are separate listeners, as in nginx's seed config.
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
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                crate::metrics::add(&ctx.stats.accepted, 1);
                let conn = crate::forward::serve(stream, peer, listen, ctx.clone());
                monoio::spawn(CatchUnwind::new(conn, ctx.id));
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off instead of spinning.
                tracing::warn!(worker = ctx.id, %listen, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracing::debug!(worker = ctx.id, %listen, "listener closed");
}

/// Size of a pooled I/O buffer.
pub const BUFFER_SIZE: usize = 16 * 1024;
/// Buffers kept for reuse (16 requests in flight); more are freed, so a burst of connections
/// does not pin memory.
const POOL_KEEP: usize = 64;

/// Per-worker free list of I/O buffers: requests take them, idle connections give them back,
/// so neither a request nor an idle connection pays for an allocation in the steady state.
#[derive(Default)]
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    /// Buffers freed to the allocator since the last trim.
    dropped: Cell<usize>,
}

impl BufferPool {
    pub fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE))
    }

    pub fn give(&self, mut buf: Vec<u8>) {
        // Only ordinary buffers go back: one that grew for a large head or body is freed.
        if buf.capacity() < BUFFER_SIZE || buf.capacity() > 4 * BUFFER_SIZE {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < POOL_KEEP {
            buf.clear();
            free.push(buf);
        } else {
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    /// After a burst, hand the freed buffers' memory back to the OS: glibc keeps freed heap
    /// chunks of this size resident otherwise, and idle connections would seem to cost it.
    pub fn trim(&self) {
        if self.dropped.replace(0) > 0 {
            // SAFETY: malloc_trim only releases free heap memory; it touches no live allocation.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

/// Per-connection deadline slots for every connection timeout (request path and keep-alive
/// idle), checked by the worker's tick.
///
/// monoio's `timeout` reads the clock, registers a 128-byte-aligned `Sleep` in its wheel and
/// makes every future holding one 128-byte aligned, so each boxed request future needed an
/// aligned allocation. Here a connection owns one slot for its life; a timed operation sets
/// the slot's deadline from the tick's coarse clock (no clock read), and the tick wakes the
/// expired ones. Timeouts fire up to two ticks (100 ms) late, which is fine for timeouts of
/// seconds.
#[derive(Default)]
pub struct Deadlines {
    slots: RefCell<Vec<DeadlineSlot>>,
    free: RefCell<Vec<usize>>,
    /// The tick's clock reading (`None` before the first tick).
    now: Cell<Option<Instant>>,
}

#[derive(Default)]
struct DeadlineSlot {
    deadline: Option<Instant>,
    fired: bool,
    waker: Option<Waker>,
}

/// The operation did not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Deadlines {
    /// A slot for one connection; give it back with [`Deadlines::release`].
    pub fn acquire(&self) -> usize {
        if let Some(id) = self.free.borrow_mut().pop() {
            return id;
        }
        let mut slots = self.slots.borrow_mut();
        slots.push(DeadlineSlot::default());
        slots.len() - 1
    }

    pub fn release(&self, id: usize) {
        if let Some(s) = self.slots.borrow_mut().get_mut(id) {
            *s = DeadlineSlot::default();
            self.free.borrow_mut().push(id);
        }
    }

    /// The coarse clock: the last tick's reading.
    pub fn now(&self) -> Instant {
        match self.now.get() {
            Some(t) => t,
            None => {
                let t = Instant::now();
                self.now.set(Some(t));
                t
            }
        }
    }

    /// Run `fut` with slot `id` armed for `timeout` from now.
    pub async fn timed<F: Future>(
        &self,
        id: usize,
        timeout: Duration,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        let at = self.now() + timeout;
        self.timed_at(id, at, fut).await
    }

    /// Run `fut` with slot `id` armed until `deadline`.
    pub async fn timed_at<F: Future>(
        &self,
        id: usize,
        deadline: Instant,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        self.arm_at(id, deadline);
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                self.disarm(id);
                return Poll::Ready(Ok(v));
            }
            if self.expired(id, cx) {
                return Poll::Ready(Err(Elapsed));
            }
            Poll::Pending
        })
        .await
    }

    /// Arm slot `id` for `deadline` (for a caller that polls [`Deadlines::expired`] itself).
    pub fn arm_at(&self, id: usize, deadline: Instant) {
        if let Some(s) = self.slots.borrow_mut().get_mut(id) {
            s.deadline = Some(deadline);
            s.fired = false;
        }
    }

    pub fn disarm(&self, id: usize) {
        if let Some(s) = self.slots.borrow_mut().get_mut(id) {
            s.deadline = None;
            s.fired = false;
        }
    }

    /// True (once) if slot `id`'s deadline has been fired; otherwise the task in `cx` is woken
    /// when it fires.
    pub fn expired(&self, id: usize, cx: &Context<'_>) -> bool {
        let mut slots = self.slots.borrow_mut();
        let Some(s) = slots.get_mut(id) else {
            return true;
        };
        if s.fired {
            s.fired = false;
            return true;
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        false
    }

    /// Mark every slot whose deadline has passed and wake its task.
    pub fn fire(&self, now: Instant) {
        self.now.set(Some(now));
        let mut wake = Vec::new();
        for s in self.slots.borrow_mut().iter_mut() {
            if s.deadline.is_some_and(|d| d <= now) {
                s.deadline = None;
                s.fired = true;
                if let Some(w) = s.waker.take() {
                    wake.push(w);
                }
            }
        }
        for w in wake {
            w.wake();
        }
    }
}

/// A one-shot, thread-local event (no atomics, no locks): `set` wakes every `wait`er.
#[derive(Default)]
pub struct LocalEvent {
    set: Cell<bool>,
    next_key: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl LocalEvent {
    pub fn set(&self) {
        self.set.set(true);
        for (_, w) in self.waiters.borrow_mut().drain() {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    pub fn wait(&self) -> Wait<'_> {
        Wait {
            event: self,
            key: None,
        }
    }
}

pub struct Wait<'a> {
    event: &'a LocalEvent,
    key: Option<u64>,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.is_set() {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(k) => k,
            None => {
                let k = self.event.next_key.get();
                self.event.next_key.set(k.wrapping_add(1));
                self.key = Some(k);
                k
            }
        };
        self.event
            .waiters
            .borrow_mut()
            .insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            self.event.waiters.borrow_mut().remove(&k);
        }
    }
}

/// Contains a panic to the one connection task that raised it, so a bug triggered by one
/// client cannot take the worker (and every other connection on it) down.
struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
    worker: usize,
}

impl<F: Future<Output = ()>> CatchUnwind<F> {
    fn new(inner: F, worker: usize) -> Self {
        CatchUnwind {
            inner: Box::pin(inner),
            worker,
        }
    }
}

impl<F: Future<Output = ()>> Future for CatchUnwind<F> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let worker = self.worker;
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                tracing::error!(worker, "connection task panicked; connection dropped");
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive `fut` on a monoio runtime while `tick` runs alongside it, like the worker's tick.
    fn run<T>(fut: impl Future<Output = T>) -> T {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(fut)
    }

    #[test]
    fn a_timed_operation_expires_only_after_its_deadline_is_fired() {
        run(async {
            let d = Rc::new(Deadlines::default());
            let t0 = Instant::now();
            d.fire(t0);
            let id = d.acquire();
            let ticker = {
                let d = d.clone();
                monoio::spawn(async move {
                    // Fake clock: each "tick" advances 400 ms of deadline time.
                    for i in 1..=5u32 {
                        monoio::time::sleep(Duration::from_millis(5)).await;
                        d.fire(t0 + Duration::from_millis(400) * i);
                    }
                })
            };
            let never = std::future::pending::<()>();
            let r = d.timed(id, Duration::from_secs(1), never).await;
            assert_eq!(r, Err(Elapsed));
            // Expired at the third tick (1.2 s of fake time), not before.
            assert_eq!(d.now(), t0 + Duration::from_millis(1200));
            ticker.await;
        });
    }

    #[test]
    fn a_finished_operation_disarms_its_slot_and_slots_are_reused() {
        run(async {
            let d = Deadlines::default();
            let t0 = Instant::now();
            d.fire(t0);
            let a = d.acquire();
            let b = d.acquire();
            assert_ne!(a, b);
            let r = d.timed(a, Duration::from_millis(10), async { 7 }).await;
            assert_eq!(r, Ok(7));
            // Long past the deadline: nothing is marked, the next operation is unaffected.
            d.fire(t0 + Duration::from_secs(60));
            let r = d.timed(a, Duration::from_secs(1), async { 8 }).await;
            assert_eq!(r, Ok(8));
            d.release(a);
            assert_eq!(d.acquire(), a);
        });
    }
}
