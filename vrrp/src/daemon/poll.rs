//! The event loop: one thread in poll(2) over every instance's socket and a wake socket
//! (probe results, signals), sleeping until the earliest protocol timer.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::router::{drive, receive};
use super::{io_err, Daemon, DaemonError, LINK_POLL};

impl Daemon {
    pub(super) fn drive_all(&mut self) {
        for i in 0..self.routers.len() {
            drive(&mut self.routers[i], &mut self.netlink, &mut self.children);
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
            if now >= self.link_next {
                self.link_next = now + LINK_POLL;
                self.poll_links(now);
            }
            for router in &mut self.routers {
                if router.instance.poll_timeout().is_some_and(|t| now >= t) {
                    router.instance.handle_timeout(now);
                }
            }
            self.drive_all();
            self.children.reap(now);
            self.write_status();

            let ms = self.sleep_ms();
            let ready = match self.wait(ms) {
                Ok(r) => r,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io_err("poll")(e.into())),
            };
            for k in ready {
                if let Some(router) = self.routers.get_mut(k) {
                    receive(router, &mut rxbuf);
                    drive(router, &mut self.netlink, &mut self.children);
                }
            }
        }
    }

    /// Milliseconds until the earliest protocol timer or link check, rounded up: waking a
    /// little early would only spin.
    fn sleep_ms(&self) -> i32 {
        let deadline = self
            .routers
            .iter()
            .filter_map(|r| r.instance.poll_timeout())
            .fold(self.link_next, Instant::min);
        let wait = deadline.saturating_duration_since(Instant::now());
        i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
    }

    /// Sleeps in poll(2) up to `ms` on the wake socket and every instance's socket; drains the
    /// wake socket and returns the indices of the instances with packets waiting.
    fn wait(&mut self, ms: i32) -> nix::Result<Vec<usize>> {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds: Vec<PollFd<'_>> = std::iter::once(self.wake_rx.as_fd())
            .chain(self.routers.iter().map(|r| r.socket.as_fd()))
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        )?;
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready.first() == Some(&true) {
            let mut b = [0u8; 256];
            while matches!((&self.wake_rx).read(&mut b), Ok(n) if n > 0) {}
        }
        Ok(ready
            .iter()
            .skip(1)
            .enumerate()
            .filter_map(|(k, r)| r.then_some(k))
            .collect())
    }
}
