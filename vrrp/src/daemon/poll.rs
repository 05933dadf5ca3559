//! The event loop: one thread in poll(2) over every bound instance's socket, the rtnetlink
//! announcements and a wake socket (probe results, signals), sleeping until the earliest
//! protocol timer. Nothing is polled on a period: an idle backup sleeps until its
//! Master_Down_Timer.

use std::io::Read;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::router::{drive, receive};
use super::{io_err, Daemon, DaemonError};
use crate::instance::{State, Timer};

/// How often a paced master's counts reach the status file and metrics.
const PACED_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// What woke poll(2).
struct Ready {
    /// rtnetlink announced link or address changes.
    netlink: bool,
    /// Indices of the routers with packets waiting.
    routers: Vec<usize>,
}

impl Daemon {
    pub(super) fn drive_all(&mut self) {
        for router in &mut self.routers {
            drive(router, &mut self.netlink, &mut self.children);
        }
    }

    /// Runs until SIGTERM/SIGINT; SIGHUP reloads.
    pub(super) fn event_loop(&mut self) -> Result<(), DaemonError> {
        let mut rxbuf = vec![0u8; 65536];
        loop {
            if self.term.swap(false, Ordering::SeqCst) {
                tracing::info!("SIGTERM/SIGINT: stopping");
                return Ok(());
            }
            if self.hup.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            let results = self.record_results();
            let now = Instant::now();
            if results {
                self.apply_health(now);
            }
            for router in &mut self.routers {
                if let Some(due) = router.instance.timer(Timer::Adver).filter(|t| now >= *t) {
                    let late = now.duration_since(due).as_micros();
                    router
                        .lateness
                        .record(u64::try_from(late).unwrap_or(u64::MAX));
                }
                if router.instance.poll_timeout().is_some_and(|t| now >= t) {
                    router.instance.handle_timeout(now);
                }
            }
            self.drive_all();
            self.children.reap(now);
            self.write_status();

            let ready = match self.wait(self.sleep()) {
                Ok(r) => r,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io_err("poll")(e.into())),
            };
            if ready.netlink {
                self.on_netlink_events(Instant::now());
            }
            for k in ready.routers {
                if let Some(router) = self.routers.get_mut(k) {
                    receive(router, &mut rxbuf);
                    drive(router, &mut self.netlink, &mut self.children);
                }
            }
        }
    }

    /// Drains the rtnetlink announcements and re-reads what they say changed.
    fn on_netlink_events(&mut self, now: Instant) {
        match self.events.drain() {
            Ok(changes) => {
                if changes.links || changes.addrs {
                    self.refresh_links(now);
                }
                if changes.addrs {
                    self.reconcile_vips(now);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading rtnetlink events failed"),
        }
    }

    /// Until the earliest protocol timer, rounded up to whole milliseconds (waking a little
    /// early would only spin); forever when no timer is armed. A paced master has no timer of
    /// its own here, so the loop wakes once a second to publish the pacer's counts (status
    /// file and metrics).
    fn sleep(&self) -> PollTimeout {
        let paced_master = self
            .routers
            .iter()
            .any(|r| r.pacer.is_some() && r.instance.state() == State::Master);
        let refresh = paced_master.then(|| Instant::now() + PACED_REFRESH);
        let Some(deadline) = self
            .routers
            .iter()
            .filter_map(|r| r.instance.poll_timeout())
            .chain(refresh)
            .min()
        else {
            return PollTimeout::NONE;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        let ms = wait.as_micros().div_ceil(1000);
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
    }

    /// Sleeps in poll(2); drains the wake socket and says what else is ready.
    fn wait(&mut self, timeout: PollTimeout) -> nix::Result<Ready> {
        // The routers' positions in `fds`, from index 2 on.
        let bound: Vec<usize> = (0..self.routers.len())
            .filter(|&k| self.routers[k].binding.is_some())
            .collect();
        let mut fds: Vec<PollFd<'_>> = [self.wake_rx.as_fd(), self.events.as_fd()]
            .into_iter()
            .chain(
                self.routers
                    .iter()
                    .filter_map(|r| r.binding.as_ref().map(|b| b.socket.as_fd())),
            )
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        nix::poll::poll(&mut fds, timeout)?;
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready.first() == Some(&true) {
            let mut b = [0u8; 256];
            while matches!((&self.wake_rx).read(&mut b), Ok(n) if n > 0) {}
        }
        Ok(Ready {
            netlink: ready.get(1) == Some(&true),
            routers: ready
                .iter()
                .skip(2)
                .zip(&bound)
                .filter_map(|(r, k)| r.then_some(*k))
                .collect(),
        })
    }
}
