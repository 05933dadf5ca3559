//! Per-worker pool of idle keep-alive upstream connections (nginx's `keepalive N`).
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

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

/// Connections idle at least this long are checked with `MSG_PEEK` before reuse.
pub const PEEK_AFTER: Duration = Duration::from_millis(100);

struct Idle {
    addr: SocketAddr,
    stream: TcpStream,
    since: Instant,
}

struct Group {
    cap: usize,
    idle_timeout: Duration,
    /// Most recently returned at the back.
    conns: VecDeque<Idle>,
}

/// Groups by upstream name: a handful at most, so a linear scan beats hashing the name on
/// every request.
#[derive(Default)]
pub struct Pool {
    groups: Vec<(Box<str>, Group)>,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// An idle connection to `addr` of group `upstream`, if one is still usable.
    pub fn take(&mut self, upstream: &str, addr: SocketAddr, now: Instant) -> Option<TcpStream> {
        let group = self.group_mut(upstream)?;
        // Newest first: the least likely to have been closed by the backend.
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

    /// Return a connection after a complete exchange. Over capacity, the oldest is closed.
    pub fn put(
        &mut self,
        upstream: &str,
        cap: usize,
        idle_timeout: Duration,
        addr: SocketAddr,
        stream: TcpStream,
        now: Instant,
    ) {
        if cap == 0 || idle_timeout.is_zero() {
            return;
        }
        let i = match self.groups.iter().position(|(name, _)| &**name == upstream) {
            Some(i) => i,
            None => {
                let group = Group {
                    cap,
                    idle_timeout,
                    conns: VecDeque::new(),
                };
                self.groups.push((upstream.into(), group));
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[i].1;
        group.cap = cap;
        group.idle_timeout = idle_timeout;
        while group.conns.len() >= group.cap {
            group.conns.pop_front();
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

    /// Close connections idle for longer than their group's timeout.
    pub fn prune(&mut self, now: Instant) {
        for (_, g) in &mut self.groups {
            let timeout = g.idle_timeout;
            g.conns
                .retain(|c| now.saturating_duration_since(c.since) < timeout);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.groups.iter().map(|(_, g)| g.conns.len()).sum()
    }

    pub fn clear(&mut self) {
        self.groups.clear();
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
