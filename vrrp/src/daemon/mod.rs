//! The daemon: the I/O shell around the pure state machines of `instance`.
//!
//! One thread runs everything that must be on time: poll(2) over every instance's raw socket,
//! the kernel's rtnetlink announcements (links, addresses) and a wake socket (probe results,
//! signals), sleeping until the earliest protocol timer of any instance. It feeds the instances their inputs (adverts, timeouts, tracking) and turns
//! their actions into I/O (adverts, VIPs via netlink, GARP/NA, notify scripts, the status
//! file). Probes run on their own threads: a slow script must not delay adverts. With
//! `realtime = true` a SCHED_RR pacer thread repeats the masters' adverts, so a busy machine
//! cannot make them late.
//!
//! - `setup`: pid file, signals, starting instances, the graceful stop.
//! - `poll`: the event loop.
//! - `router`: one running instance; `receive` (packets in) and `drive` (actions out).
//! - `scripts` and `tracking`: probe threads, links, and the priority or Fault they give.
//! - `reconcile`: VIPs on the interface made to match the state after address changes.
//! - `reload`: SIGHUP.
//! - [`status`], `snapshot` and `metrics`: the status file, the state it is built from, and
//!   the Prometheus endpoint.
//! - `pacer`: with `realtime = true`, the SCHED_RR thread that repeats the masters' adverts.
//! - [`notify`]: the notify scripts.
//! - `anycast`: `[anycast]`, the VIPs on the dummy interface while the checks pass.

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

use crate::config::{self, Config, ConfigErrors};
use crate::sys::netlink::{Events, Netlink, NetlinkError};
use crate::sys::socket::NetError;

mod anycast;
mod metrics;
pub mod notify;
mod pacer;
mod poll;
mod reconcile;
mod reload;
mod router;
mod scripts;
mod setup;
mod snapshot;
pub mod status;
mod tracking;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("another vrrp (pid {pid}) uses runtime_dir {dir}")]
    Busy { pid: u32, dir: PathBuf },
}

/// Why an instance cannot bind to its interface yet (it waits in Fault and retries when the
/// kernel announces a change).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Socket(#[from] NetError),
    #[error("interface {interface} has no {family} address to send from")]
    NoAddress {
        interface: String,
        family: &'static str,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Runs the daemon for `config_path` until SIGTERM/SIGINT.
pub fn run(config_path: &Path) -> Result<(), DaemonError> {
    let cfg = config::load(config_path)?;
    for w in config::lint(&cfg) {
        tracing::warn!("{w}");
    }
    let mut daemon = Daemon::new(config_path.to_path_buf(), cfg)?;
    let res = daemon.start_all().and_then(|()| daemon.event_loop());
    daemon.shutdown();
    res
}

/// Everything the event loop owns.
struct Daemon {
    config_path: PathBuf,
    cfg: Config,
    runtime_dir: PathBuf,
    netlink: Netlink,
    /// Link and address announcements from the kernel.
    events: Events,
    routers: Vec<router::Router>,
    tracked: HashMap<String, scripts::TrackedScript>,
    next_runner_id: u64,
    /// (runner id, probe succeeded) from the probe threads.
    results_tx: mpsc::Sender<(u64, bool)>,
    results_rx: mpsc::Receiver<(u64, bool)>,
    /// Written by probe threads and signal handlers to interrupt poll(2).
    wake_rx: UnixStream,
    wake_tx: Arc<UnixStream>,
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    children: notify::Children,
    /// The last status written, to skip identical rewrites.
    status_sig: Option<String>,
    status_volatile: Vec<u64>,
    status_written: Option<std::time::Instant>,
    /// What the metrics endpoint serves, when `global_defs.metrics` is set.
    metrics: Option<metrics::Shared>,
    /// With `realtime = true`: the thread that repeats the masters' adverts.
    pacer: Option<pacer::Pacer>,
    /// `[anycast]`, when configured.
    anycast: Option<anycast::AnycastRunner>,
}
