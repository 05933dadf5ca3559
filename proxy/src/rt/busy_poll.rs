//! An experiment, off unless `PROXY_BUSY_POLL_US` is set: poll the ring without sleeping for a
//! short while after each completed request, instead of blocking in io_uring_enter at once.
//!
//! How: a task that keeps yielding keeps the runtime's run queue non-empty, so between task
//! rounds monoio submits and reaps without waiting (a non-blocking io_uring_enter) rather than
//! parking the thread. The task keeps spinning while requests complete; after `spin` without a
//! completed request it sleeps [`IDLE_CHECK`] and lets the worker block as usual.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::metrics::WorkerStats;

/// How long an idle worker blocks between two spin periods.
const IDLE_CHECK: Duration = Duration::from_millis(10);

/// The spin time from `PROXY_BUSY_POLL_US` (microseconds), if set and positive.
pub fn from_env() -> Option<Duration> {
    let us: u64 = std::env::var("PROXY_BUSY_POLL_US").ok()?.parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us))
}

/// Spin while this worker completes requests; see the module docs.
pub async fn spin(stats: Arc<WorkerStats>, spin: Duration) {
    let requests: &AtomicU64 = &stats.requests;
    let mut last = requests.load(Relaxed);
    let mut quiet_since = Instant::now();
    loop {
        YieldOnce(false).await;
        let n = requests.load(Relaxed);
        if n != last {
            last = n;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > spin {
            monoio::time::sleep(IDLE_CHECK).await;
            last = requests.load(Relaxed);
            quiet_since = Instant::now();
        }
    }
}

/// Pending once (waking itself at once), then ready: back of the run queue.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
