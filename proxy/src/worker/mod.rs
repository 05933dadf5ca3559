//! Worker threads: one monoio runtime (io_uring, epoll fallback) per thread, each with its own
//! SO_REUSEPORT listener on every `listen` address, its own balancers, upstream pool and
//! access-log buffer. This module builds the runtime and starts the worker; `control` runs its
//! tick (deadlines, reload, drain, log flush) and `listen` its listeners and accept loops.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use crate::log::AccessLog;
use crate::pool::Pool;
use crate::rt::backoff::LogEvery;
use crate::rt::buffers::BufferPool;
use crate::rt::deadline::Deadlines;
use crate::rt::event::LocalEvent;
pub use crate::state::{Engine, Shared, WorkerCtx};

mod control;
mod listen;

pub use listen::bind;

/// io_uring submission queue entries per worker.
const SQ_ENTRIES: u32 = 4096;
/// io_uring completion queue entries per worker.
const CQ_ENTRIES: u32 = 32768;

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

/// Descriptors this worker may hold in idle upstream connections (see [`crate::pool::fd_budget`]).
fn idle_fd_budget(workers: usize) -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _hard)| soft);
    crate::pool::fd_budget(soft, workers)
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
            control_epoch: Cell::new(0),
            balancers: RefCell::new(Vec::new()),
            pool: RefCell::new(Pool::new(idle_fd_budget(shared.stats.len()))),
            buffers: BufferPool::default(),
            deadlines: Rc::new(Deadlines::default()),
            log: RefCell::new(AccessLog::new(shared.log_sink())),
            drain: LocalEvent::default(),
            listeners: RefCell::new(HashMap::new()),
            accept_failures: RefCell::new(LogEvery::second()),
            panic_target: std::env::var_os("PROXY_TEST_PANIC_TARGET")
                .map(|t| t.into_encoded_bytes().into_boxed_slice()),
            over_limit: RefCell::new(LogEvery::second()),
            config: RefCell::new(Rc::new((*config).clone())),
            shared,
        });
        control::rebuild_balancers(&ctx, &config);
        control::apply_control(&ctx, std::time::Instant::now());
        if let Err(e) = listen::sync_listeners(&ctx, &config) {
            let _ = ready.send((id, Err(e)));
            return;
        }
        if let Some(rx) = ctx.shared.wakeups.take_receiver(id) {
            monoio::spawn(control::wakeup_loop(ctx.clone(), rx));
        }
        stats.alive.store(true, Ordering::Relaxed);
        let _ = ready.send((id, Ok(engine)));
        control::control_loop(&ctx).await;
        stats.alive.store(false, Ordering::Relaxed);
    });
}
