//! `proxy --config proxy.toml` runs the proxy; `proxy --check --config proxy.toml` validates the
//! configuration like `nginx -t`.
//!
//! Signals (as nginx): HUP reload, QUIT graceful stop, TERM/INT fast stop, USR1 reopen the access
//! log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use clap::Parser;
use proxy::config::{self, Config, Workers};
use proxy::log::LogSink;
use proxy::worker::{self, Engine, Shared};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};

#[derive(Parser)]
#[command(
    version,
    about = "Thread-per-core io_uring HTTP/1.1 reverse proxy and load balancer"
)]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/proxy/proxy.toml")]
    config: PathBuf,
    /// Check the configuration and exit (like `nginx -t`).
    #[arg(short = 't', long)]
    check: bool,
    /// I/O engine: "auto" (io_uring, falling back to epoll) or "epoll".
    #[arg(long, default_value = "auto")]
    engine: String,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
    #[command(flatten)]
    Import(proxy::import::Command),
    /// Change or show servers' state at run time through the admin API
    /// (drain|ready|maint UPSTREAM ADDR [--weight N], show).
    Ctl(proxy::ctl::Ctl),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Some(Sub::Import(import)) => return import.run(),
        Some(Sub::Ctl(ctl)) => return ctl.run(),
        None => {}
    }
    // I/O buffers (16 KiB) come from mmap, not the heap: with thousands of idle keep-alive
    // connections, heap-allocated buffers freed between small long-lived objects leave pages
    // that cannot go back to the OS (measured: 3.5 KiB per idle connection, 1.5 with this).
    // Workers reuse buffers through their pool, so the mmap calls stay off the hot path.
    // SAFETY: mallopt only tunes glibc's allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 * 1024);
    }
    conf::init_tracing();
    // Signals are taken over before anything slow (reading and resolving the config, starting
    // workers): a QUIT or TERM that systemd sends right after starting the unit must stop the
    // proxy the way the unit says, not kill it by the default action (the unit then fails).
    // They wait in the channel until the control loop runs.
    let signals = if args.check {
        None
    } else {
        match signal_thread() {
            Ok(rx) => Some(rx),
            Err(e) => {
                eprintln!("proxy: {e}");
                return ExitCode::FAILURE;
            }
        }
    };

    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "proxy: configuration file {} test failed",
                args.config.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let Some(signals) = signals else {
        println!(
            "proxy: configuration file {} test is successful",
            args.config.display()
        );
        return ExitCode::SUCCESS;
    };
    let engine = match args.engine.as_str() {
        "auto" => Engine::Auto,
        "epoll" => Engine::Epoll,
        other => {
            eprintln!("proxy: unknown --engine {other:?} (expected auto or epoll)");
            return ExitCode::FAILURE;
        }
    };
    match run(&args.config, config, engine, signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open_log(config: &Config) -> Result<Option<LogSink>, String> {
    match &config.access_log {
        None => Ok(None),
        Some(path) => LogSink::start(path)
            .map(Some)
            .map_err(|e| format!("cannot open access log {}: {e}", path.display())),
    }
}

fn run(
    path: &Path,
    config: Config,
    engine: Engine,
    sig_rx: mpsc::Receiver<i32>,
) -> Result<(), String> {
    let workers = match config.workers {
        Workers::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Workers::Count(n) => n,
    };
    let log = open_log(&config)?;
    let admin = config.admin;
    let shared = Shared::new(Arc::new(config), workers, log, engine);

    let mut handles = Vec::with_capacity(workers);
    let (ready_tx, ready_rx) = mpsc::channel();
    for id in 0..workers {
        handles
            .push(worker::spawn(id, shared.clone(), ready_tx.clone()).map_err(|e| e.to_string())?);
    }
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok((id, Ok(engine))) => tracing::info!(worker = id, engine, "worker started"),
            Ok((id, Err(e))) => return Err(format!("worker {id}: {e}")),
            Err(_) => return Err("a worker died while starting".into()),
        }
    }
    if let Some(addr) = admin {
        admin_spawn(addr, &shared)?;
    }
    proxy::control::checker::spawn(shared.clone()).map_err(|e| e.to_string())?;
    if let proxy::control::token::Token::Unavailable(why) =
        proxy::control::token::Token::load(shared.config().admin_token_file.as_deref())
    {
        if shared.config().admin_token_file.is_some() {
            tracing::error!("{why}");
        }
    }
    tracing::info!(workers, config = %path.display(), "proxy started");

    loop {
        match sig_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(SIGHUP) => reload(path, &shared),
            Ok(SIGUSR1) => {
                if let Some(sink) = shared.log_sink() {
                    sink.reopen();
                }
            }
            Ok(SIGQUIT) => {
                tracing::info!("graceful stop: finishing in-flight requests");
                shared.draining.store(true, Ordering::Relaxed);
                for h in handles {
                    let _ = h.join();
                }
                tracing::info!("graceful stop complete");
                return Ok(());
            }
            Ok(_) => {
                tracing::info!("fast stop");
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("signal thread died".into()),
        }
        restart_dead_workers(&mut handles, &shared);
    }
}

/// Signals arrive on their own thread and are passed to the control loop.
fn signal_thread() -> Result<mpsc::Receiver<i32>, String> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let (sig_tx, sig_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig_tx.send(sig).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(sig_rx)
}

/// A worker that died (it should not: connection panics are contained) is noticed, logged
/// and replaced.
fn restart_dead_workers(handles: &mut [std::thread::JoinHandle<()>], shared: &Arc<Shared>) {
    for (id, h) in handles.iter_mut().enumerate() {
        if h.is_finished() {
            tracing::error!(worker = id, "worker thread died; restarting it");
            shared.stats[id].alive.store(false, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel();
            match worker::spawn(id, shared.clone(), tx) {
                Ok(new) => {
                    let old = std::mem::replace(h, new);
                    let _ = old.join();
                    if let Ok((_, Err(e))) = rx.recv_timeout(Duration::from_secs(5)) {
                        tracing::error!(worker = id, error = %e, "worker restart failed");
                    }
                }
                Err(e) => tracing::error!(worker = id, error = %e, "cannot restart worker"),
            }
        }
    }
}

fn admin_spawn(addr: std::net::SocketAddr, shared: &Arc<Shared>) -> Result<(), String> {
    proxy::admin::spawn(addr, shared.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// SIGHUP: a bad configuration is refused and the running one stays.
fn reload(path: &Path, shared: &Shared) {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            tracing::error!("reload refused, keeping the running configuration:\n{errors}");
            return;
        }
    };
    let log = match open_log(&config) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("reload refused: {e}");
            return;
        }
    };
    shared.replace(Arc::new(config), log);
    tracing::info!(config = %path.display(), "reload: new configuration published");
}
