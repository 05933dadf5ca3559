//! Per-worker pool of idle keep-alive upstream connections: nginx's `keepalive N`, or sized
//! from recent use with `keepalive = "auto"` ([`sizing`]), never beyond the worker's share of
//! the descriptor limit.
//!
//! The stale-connection problem: a backend closes an idle keep-alive connection (Apache after
//! its 5 s KeepAliveTimeout) while it sits in our pool; reusing it fails and, done naively,
//! becomes a spurious 502. Three defences, cheapest first:
//! 1. idle connections expire after the upstream's `keepalive_timeout` (default 4 s, below
//!    Apache's 5 s), so we normally close first;
//! 2. before reusing a connection that sat idle for a while, a non-blocking `MSG_PEEK` sees a
//!    FIN (or stray bytes) that already arrived (skipped for connections idle under
//!    [`PEEK_AFTER`]: back-to-back reuse is the hot path and a backend closing within that
//!    window is covered by 3);
//! 3. `conn` retries once on a fresh connection when a reused one fails before any response
//!    byte (the request cannot have been processed by a backend that had closed it).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

use crate::rt::deadline::Deadlines;

mod sizing;

pub use sizing::{fd_budget, Keepalive};
use sizing::{idle_limit, RecentPeak};

/// Connections idle at least this long are checked with `MSG_PEEK` before reuse.
pub const PEEK_AFTER: Duration = Duration::from_millis(100);

struct Idle {
    addr: SocketAddr,
    stream: TcpStream,
    since: Instant,
}

struct Group {
    keepalive: Keepalive,
    idle_timeout: Duration,
    /// Connections in use per server, and their recent peaks: their sum is the size for
    /// "auto" (per server, so that round robin over two servers keeps a connection to each).
    in_use: Vec<(SocketAddr, RecentPeak)>,
    /// Most recently returned at the back.
    conns: VecDeque<Idle>,
}

impl Group {
    fn limit(&mut self, now: Instant, fd_budget: usize) -> usize {
        if self.idle_timeout.is_zero() {
            return 0;
        }
        let peak = self.in_use.iter_mut().map(|(_, p)| p.peak(now)).sum();
        idle_limit(self.keepalive, peak, fd_budget)
    }

    fn server(&mut self, addr: SocketAddr) -> &mut RecentPeak {
        let i = match self.in_use.iter().position(|(a, _)| *a == addr) {
            Some(i) => i,
            None => {
                self.in_use.push((addr, RecentPeak::new(self.idle_timeout)));
                self.in_use.len() - 1
            }
        };
        &mut self.in_use[i].1
    }
}

/// Groups by upstream name: a handful at most, so a linear scan beats hashing the name on
/// every request.
pub struct Pool {
    groups: Vec<(Box<str>, Group)>,
    /// Idle connections this worker may hold over all groups ([`fd_budget`]).
    fd_budget: usize,
}

impl Pool {
    pub fn new(fd_budget: usize) -> Pool {
        Pool {
            groups: Vec::new(),
            fd_budget,
        }
    }

    /// An idle connection to `addr` of group `upstream`, if one is still usable.
    pub fn take(&mut self, upstream: &str, addr: SocketAddr, now: Instant) -> Option<TcpStream> {
        let group = self.group_mut(upstream)?;
        // Newest first: the least likely to have been closed by the backend, and the old ones
        // left at the front age out when fewer connections are needed.
        while let Some(pos) = group.conns.iter().rposition(|c| c.addr == addr) {
            let idle = group.conns.remove(pos)?;
            let idle_for = now.saturating_duration_since(idle.since);
            if idle_for < group.idle_timeout && (idle_for < PEEK_AFTER || still_open(&idle.stream))
            {
                return Some(idle.stream);
            }
        }
        None
    }

    /// A connection to `upstream` is in use from now on (taken from the pool or newly opened);
    /// also brings the group's settings up to date (a reload may have changed them).
    pub fn checkout(
        &mut self,
        upstream: &str,
        addr: SocketAddr,
        keepalive: Keepalive,
        idle_timeout: Duration,
        now: Instant,
    ) {
        let i = match self.groups.iter().position(|(name, _)| &**name == upstream) {
            Some(i) => i,
            None => {
                let group = Group {
                    keepalive,
                    idle_timeout,
                    in_use: Vec::new(),
                    conns: VecDeque::new(),
                };
                self.groups.push((upstream.into(), group));
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[i].1;
        group.keepalive = keepalive;
        group.idle_timeout = idle_timeout;
        let server = group.server(addr);
        server.set_window(idle_timeout);
        server.checkout(now);
    }

    /// A connection checked out with [`Pool::checkout`] is no longer in use.
    pub fn checkin(&mut self, upstream: &str, addr: SocketAddr, now: Instant) {
        if let Some(g) = self.group_mut(upstream) {
            g.server(addr).checkin(now);
        }
    }

    /// Return a connection after a complete exchange (while still checked out). Over the
    /// group's limit, the oldest idle connection is closed.
    pub fn put(&mut self, upstream: &str, addr: SocketAddr, stream: TcpStream, now: Instant) {
        let total = self.idle_count();
        let budget = self.fd_budget;
        let Some(group) = self.group_mut(upstream) else {
            return;
        };
        let limit = group.limit(now, budget);
        if limit == 0 {
            return;
        }
        // Full: the oldest idle connection makes room (none to close: this one is not kept).
        let full = group.conns.len() >= limit || total >= budget;
        if full && group.conns.pop_front().is_none() {
            return;
        }
        group.conns.push_back(Idle {
            addr,
            stream,
            since: now,
        });
    }

    fn group_mut(&mut self, upstream: &str) -> Option<&mut Group> {
        self.groups
            .iter_mut()
            .find(|(name, _)| &**name == upstream)
            .map(|(_, g)| g)
    }

    /// Close connections idle for longer than their group's timeout, and the oldest ones beyond
    /// what the group keeps now (for "auto": once the recent peak of use has come down).
    pub fn prune(&mut self, now: Instant) {
        let budget = self.fd_budget;
        for (_, g) in &mut self.groups {
            let timeout = g.idle_timeout;
            g.conns
                .retain(|c| now.saturating_duration_since(c.since) < timeout);
            let limit = g.limit(now, budget);
            while g.conns.len() > limit {
                g.conns.pop_front();
            }
            // Servers gone from the config (reload, DNS) leave nothing behind.
            g.in_use
                .retain_mut(|(_, p)| p.peak(now) > 0 || p.busy() > 0);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.groups.iter().map(|(_, g)| g.conns.len()).sum()
    }

    /// Close every idle connection (a draining worker). Counts of connections in use stay.
    pub fn clear(&mut self) {
        for (_, g) in &mut self.groups {
            g.conns.clear();
        }
    }
}

/// One upstream connection counted as in use for as long as this lives. Times come from the
/// worker's coarse clock (its last tick): windows of seconds need no clock read per request.
pub struct InUse<'a> {
    pool: &'a RefCell<Pool>,
    clock: &'a Deadlines,
    upstream: &'a str,
    addr: SocketAddr,
}

impl<'a> InUse<'a> {
    pub fn new(
        pool: &'a RefCell<Pool>,
        clock: &'a Deadlines,
        upstream: &'a str,
        addr: SocketAddr,
        keepalive: Keepalive,
        idle_timeout: Duration,
    ) -> InUse<'a> {
        pool.borrow_mut()
            .checkout(upstream, addr, keepalive, idle_timeout, clock.now());
        InUse {
            pool,
            clock,
            upstream,
            addr,
        }
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.pool
            .borrow_mut()
            .checkin(self.upstream, self.addr, self.clock.now());
    }
}

/// True when nothing (no FIN, no stray bytes) has arrived on an idle connection.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    matches!(
        recv(stream.as_raw_fd(), &mut byte, flags),
        Err(Errno::EAGAIN)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(4);

    /// `n` connected loopback streams (the accepted ends are kept open by the returned listener
    /// side vector).
    async fn streams(n: usize) -> (SocketAddr, Vec<TcpStream>, Vec<std::net::TcpStream>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..n {
            ours.push(TcpStream::connect_addr(addr).await.unwrap());
            theirs.push(l.accept().unwrap().0);
        }
        (addr, ours, theirs)
    }

    /// `n` requests at once: all checked out, then all returned.
    fn burst(pool: &mut Pool, ka: Keepalive, addr: SocketAddr, s: Vec<TcpStream>, now: Instant) {
        for _ in &s {
            pool.checkout("u", addr, ka, TIMEOUT, now);
        }
        for stream in s {
            pool.put("u", addr, stream, now);
            pool.checkin("u", addr, now);
        }
    }

    fn run(f: impl std::future::Future<Output = ()>) {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(f);
    }

    #[test]
    fn auto_keeps_what_was_in_use_at_once() {
        run(async {
            let (addr, s, _peer) = streams(200).await;
            let mut pool = Pool::new(10_000);
            let t0 = Instant::now();
            burst(&mut pool, Keepalive::Auto, addr, s, t0);
            assert_eq!(pool.idle_count(), 200, "all 200 kept for the next burst");
            // The next burst of 200 finds a pooled connection for every request.
            let now = t0 + Duration::from_millis(10);
            let reused = (0..200).filter_map(|_| pool.take("u", addr, now)).count();
            assert_eq!(reused, 200);
        });
    }

    #[test]
    fn a_number_keeps_nginx_meaning() {
        run(async {
            let (addr, s, _peer) = streams(200).await;
            let mut pool = Pool::new(10_000);
            burst(&mut pool, Keepalive::Max(64), addr, s, Instant::now());
            assert_eq!(pool.idle_count(), 64);
        });
    }

    #[test]
    fn the_fd_budget_bounds_every_group() {
        run(async {
            let (addr, s, _peer) = streams(100).await;
            let mut pool = Pool::new(30);
            burst(&mut pool, Keepalive::Auto, addr, s, Instant::now());
            assert_eq!(pool.idle_count(), 30);
        });
    }

    #[test]
    fn unused_connections_close_after_keepalive_timeout_the_used_one_stays() {
        run(async {
            let (addr, s, _peer) = streams(50).await;
            let mut pool = Pool::new(10_000);
            let t0 = Instant::now();
            burst(&mut pool, Keepalive::Auto, addr, s, t0);
            // Afterwards, one request at a time, well within the idle timeout each.
            let mut now = t0;
            for _ in 0..12 {
                now += Duration::from_secs(1);
                let c = pool.take("u", addr, now).expect("pooled");
                pool.checkout("u", addr, Keepalive::Auto, TIMEOUT, now);
                pool.put("u", addr, c, now);
                pool.checkin("u", addr, now);
                pool.prune(now);
            }
            // The 49 unused ones timed out; the one in use stays.
            assert_eq!(pool.idle_count(), 1);
        });
    }

    #[test]
    fn in_use_guard_counts_until_dropped() {
        let pool = RefCell::new(Pool::new(10));
        let clock = Deadlines::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let busy = || {
            pool.borrow_mut()
                .group_mut("u")
                .unwrap()
                .server(addr)
                .busy()
        };
        {
            let _a = InUse::new(&pool, &clock, "u", addr, Keepalive::Auto, TIMEOUT);
            let _b = InUse::new(&pool, &clock, "u", addr, Keepalive::Auto, TIMEOUT);
            assert_eq!(busy(), 2);
        }
        assert_eq!(busy(), 0);
    }

    /// Round robin over two servers, one request at a time: one connection to each is kept
    /// (a single count for the upstream would keep one and close the other every request).
    #[test]
    fn auto_keeps_one_per_server_used_in_turn() {
        run(async {
            let (a, mut sa, _pa) = streams(1).await;
            let (b, mut sb, _pb) = streams(1).await;
            let mut pool = Pool::new(100);
            let mut now = Instant::now();
            let (mut ca, mut cb) = (sa.pop(), sb.pop());
            for _ in 0..10 {
                for (addr, slot) in [(a, &mut ca), (b, &mut cb)] {
                    now += Duration::from_millis(1);
                    let c = slot.take().or_else(|| pool.take("u", addr, now));
                    let c = c.expect("a pooled connection for each server");
                    pool.checkout("u", addr, Keepalive::Auto, TIMEOUT, now);
                    pool.put("u", addr, c, now);
                    pool.checkin("u", addr, now);
                }
            }
            assert_eq!(pool.idle_count(), 2);
        });
    }
}
