//! State a worker's connection tasks read: [`Shared`] (one for the process: config, drain
//! flag, stats, log sink) and [`WorkerCtx`] (one per worker thread: its config copy,
//! balancers, upstream pool, buffers, deadline table, access-log buffer).
//!
//! Workers share no locks on the request path: they only read an atomic config generation per
//! tick and take the config mutex when it changed (reload).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::balance::Balancer;
use crate::config::Config;
use crate::control::Registry;
use crate::log::{AccessLog, LogSink};
use crate::metrics::WorkerStats;
use crate::pool::Pool;
use crate::rt::backoff::LogEvery;
use crate::rt::buffers::BufferPool;
use crate::rt::deadline::Deadlines;
use crate::rt::event::LocalEvent;

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
    pub(crate) generation: AtomicU64,
    pub draining: AtomicBool,
    pub stats: Vec<Arc<WorkerStats>>,
    log: Mutex<Option<LogSink>>,
    pub engine: Engine,
    /// When the process started (the status page's uptime).
    pub started: SystemTime,
    /// The last successful reload (SIGHUP) and how many there were, for the status page.
    reloads: Mutex<(Option<SystemTime>, u64)>,
    /// Server state shared by all workers (admin state, health, weights, round robin).
    pub control: Registry,
    /// Waking a worker whose queued requests may take a slot another worker freed.
    pub wakeups: crate::rt::wakeup::Wakeups,
}

impl Shared {
    pub fn new(
        config: Arc<Config>,
        workers: usize,
        log: Option<LogSink>,
        engine: Engine,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            control: Registry::new(&config),
            config: Mutex::new(config),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            stats: (0..workers).map(WorkerStats::new).collect(),
            log: Mutex::new(log),
            engine,
            started: SystemTime::now(),
            reloads: Mutex::new((None, 0)),
            wakeups: crate::rt::wakeup::Wakeups::new(workers),
        })
    }

    pub fn config(&self) -> Arc<Config> {
        match self.config.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Publish a new config (and log sink); workers pick it up on their next tick. The
    /// servers' shared state follows the new config first.
    pub fn replace(&self, config: Arc<Config>, log: Option<LogSink>) {
        self.control.sync(&config);
        match self.config.lock() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        match self.log.lock() {
            Ok(mut l) => *l = log,
            Err(poisoned) => *poisoned.into_inner() = log,
        }
        match self.reloads.lock() {
            Ok(mut r) => *r = (Some(SystemTime::now()), r.1 + 1),
            Err(poisoned) => *poisoned.into_inner() = (Some(SystemTime::now()), 0),
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The last reload's time (`None`: never reloaded) and the number of reloads.
    pub fn reloads(&self) -> (Option<SystemTime>, u64) {
        match self.reloads.lock() {
            Ok(r) => *r,
            Err(poisoned) => *poisoned.into_inner(),
        }
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
    pub(crate) config: RefCell<Rc<Config>>,
    pub(crate) generation: Cell<u64>,
    /// The [`Registry`] epoch this worker's balancers reflect.
    pub(crate) control_epoch: Cell<u64>,
    /// Parallel to `config.upstreams`. A request keeps the `Rc` of the balancer it picked from,
    /// so a reload in the middle of it releases the peer into the right one.
    pub(crate) balancers: RefCell<Vec<Rc<RefCell<Balancer>>>>,
    pub pool: RefCell<Pool>,
    /// Reusable I/O buffers for connections with a request in flight.
    pub buffers: BufferPool,
    /// Idle-connection deadlines (keep-alive waits).
    pub deadlines: Rc<Deadlines>,
    pub log: RefCell<AccessLog>,
    /// Set when the worker drains (graceful stop): idle keep-alive connections close.
    pub drain: LocalEvent,
    /// Accept failures (EMFILE, ENFILE, ENOBUFS) and connections over `worker_connections`,
    /// each logged at most once a second.
    pub accept_failures: RefCell<LogEvery>,
    /// Test hook: a request for this target panics its connection task (from the environment
    /// variable `PROXY_TEST_PANIC_TARGET`, so the containment of panics can be tested against
    /// the real binary). `None` in any normal run.
    pub panic_target: Option<Box<[u8]>>,
    pub over_limit: RefCell<LogEvery>,
    /// Each listen address's stop event (set when a reload drops the address, or on drain).
    pub(crate) listeners: RefCell<HashMap<SocketAddr, Rc<LocalEvent>>>,
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
