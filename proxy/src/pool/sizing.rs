//! How many idle connections an upstream's pool keeps with `keepalive = "auto"`: as many as were
//! in use at once recently, so a burst of N concurrent requests finds N pooled connections next
//! time instead of opening and closing connections per request (what a fixed `keepalive 64`
//! does at 200 concurrent clients). "Recently" is two windows of the upstream's
//! `keepalive_timeout`: after the load drops, the limit follows it down within two windows and
//! the pool trims the excess. Pure: time is passed in.

use std::time::{Duration, Instant};

/// `keepalive` of an upstream: nginx's fixed count, or sized from recent use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// Keep as many idle connections as were recently in use at once.
    Auto,
    /// Keep at most this many idle connections per worker (nginx's `keepalive N`); 0 = none.
    Max(usize),
}

/// Connections in use to one upstream, and the recent peak of that number.
#[derive(Debug, Clone)]
pub struct RecentPeak {
    window: Duration,
    busy: usize,
    /// Highest `busy` in the current window, and in the one before it.
    current: usize,
    previous: usize,
    window_start: Option<Instant>,
}

impl RecentPeak {
    pub fn new(window: Duration) -> RecentPeak {
        RecentPeak {
            window,
            busy: 0,
            current: 0,
            previous: 0,
            window_start: None,
        }
    }

    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// A connection to the upstream is now in use (taken from the pool or newly opened).
    pub fn checkout(&mut self, now: Instant) {
        self.roll(now);
        self.busy += 1;
        self.current = self.current.max(self.busy);
    }

    /// A connection is no longer in use (back in the pool or closed).
    pub fn checkin(&mut self, now: Instant) {
        self.roll(now);
        self.busy = self.busy.saturating_sub(1);
    }

    pub fn busy(&self) -> usize {
        self.busy
    }

    /// The most connections in use at once over the current and the previous window.
    pub fn peak(&mut self, now: Instant) -> usize {
        self.roll(now);
        self.current.max(self.previous)
    }

    fn roll(&mut self, now: Instant) {
        let Some(start) = self.window_start else {
            self.window_start = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < self.window {
            return;
        }
        // A whole window without any change means the level all along was `busy`.
        self.previous = if elapsed >= self.window.saturating_mul(2) {
            self.busy
        } else {
            self.current
        };
        self.current = self.busy;
        self.window_start = Some(now);
    }
}

/// Idle connections one upstream may keep now: its `keepalive` (for auto, the recent peak of
/// connections in use), never more than the worker's descriptor budget for idle connections.
pub fn idle_limit(keepalive: Keepalive, peak: usize, fd_budget: usize) -> usize {
    let want = match keepalive {
        Keepalive::Auto => peak,
        Keepalive::Max(n) => n,
    };
    want.min(fd_budget)
}

/// The descriptors one worker may spend on idle upstream connections: half its share of the
/// process's `RLIMIT_NOFILE` (the other half stays for client connections and the upstream
/// connections in use).
pub fn fd_budget(nofile: u64, workers: usize) -> usize {
    let share = nofile / workers.max(1) as u64;
    usize::try_from(share / 2).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(4);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn peak_is_the_most_in_use_at_once() {
        let t0 = Instant::now();
        let mut p = RecentPeak::new(W);
        for i in 0..200 {
            p.checkout(at(t0, i));
        }
        for i in 0..150 {
            p.checkin(at(t0, 200 + i));
        }
        assert_eq!(p.busy(), 50);
        assert_eq!(p.peak(at(t0, 500)), 200);
        // Reused one after another, the count never exceeds the earlier peak.
        p.checkout(at(t0, 600));
        p.checkin(at(t0, 601));
        assert_eq!(p.peak(at(t0, 700)), 200);
    }

    #[test]
    fn the_peak_survives_one_window_and_decays_after_two() {
        let t0 = Instant::now();
        let mut p = RecentPeak::new(W);
        for _ in 0..100 {
            p.checkout(t0);
        }
        for _ in 0..90 {
            p.checkin(at(t0, 1000));
        }
        // Next window: the previous window's 100 still counts.
        assert_eq!(p.peak(at(t0, 4_500)), 100);
        // Two windows on, only the 10 still in use remain.
        assert_eq!(p.peak(at(t0, 8_600)), 10);
    }

    #[test]
    fn a_long_quiet_gap_forgets_the_old_peak_at_once() {
        let t0 = Instant::now();
        let mut p = RecentPeak::new(W);
        for _ in 0..30 {
            p.checkout(t0);
        }
        for _ in 0..30 {
            p.checkin(t0);
        }
        assert_eq!(p.peak(at(t0, 60_000)), 0);
    }

    #[test]
    fn checkin_never_underflows() {
        let t0 = Instant::now();
        let mut p = RecentPeak::new(W);
        p.checkin(t0);
        assert_eq!(p.busy(), 0);
        assert_eq!(p.peak(t0), 0);
    }

    #[test]
    fn limits_follow_keepalive_and_the_fd_budget() {
        assert_eq!(idle_limit(Keepalive::Auto, 200, 10_000), 200);
        assert_eq!(idle_limit(Keepalive::Auto, 200, 64), 64);
        assert_eq!(idle_limit(Keepalive::Max(32), 200, 10_000), 32);
        assert_eq!(idle_limit(Keepalive::Max(0), 200, 10_000), 0);
        assert_eq!(fd_budget(1024, 1), 512);
        assert_eq!(fd_budget(1_048_576, 2), 262_144);
        assert_eq!(fd_budget(1024, 0), 512);
    }
}
