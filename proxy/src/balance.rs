//! Peer selection exactly as nginx's upstream modules (round robin, least_conn, ip_hash) with
//! passive health accounting (max_fails / fail_timeout), backups, `down` and `max_conns`.
//!
//! Pure: one `Balancer` per upstream per worker (no locks), time passed in as `Instant`.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::config;

/// Index of a peer inside its balancer (primaries first, then backups, in config order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub usize);

/// Set of peers already tried for one request (nginx's `tried` bitmap).
#[derive(Debug, Clone, Default)]
pub struct Tried {
    bits: Vec<u64>,
}

impl Tried {
    pub fn contains(&self, id: PeerId) -> bool {
        self.bits
            .get(id.0 / 64)
            .is_some_and(|w| w & (1 << (id.0 % 64)) != 0)
    }
    pub fn insert(&mut self, id: PeerId) {
        let word = id.0 / 64;
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << (id.0 % 64);
    }
    pub fn clear(&mut self) {
        self.bits.clear();
    }
}

/// How a use of a peer ended, reported back with [`Balancer::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Connect error/timeout, or an upstream error before a response (counts toward max_fails).
    Failure,
}

/// Snapshot of one peer for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerState {
    pub name: String,
    pub address: SocketAddr,
    pub backup: bool,
    /// false while marked down by config or by passive health.
    pub available: bool,
    pub active_conns: u32,
    pub fails_total: u64,
}

// TEMPORARY stub until the balancer lands (merge takes the real implementation).
pub struct Balancer {
    peers: Vec<config::UpstreamServer>,
    next: usize,
}
impl Balancer {
    pub fn new(upstream: &config::Upstream) -> Balancer {
        Balancer {
            peers: upstream.servers.clone(),
            next: 0,
        }
    }
    pub fn pick(&mut self, _now: Instant, _client: IpAddr, tried: &mut Tried) -> Option<PeerId> {
        for _ in 0..self.peers.len() {
            let id = PeerId(self.next % self.peers.len());
            self.next += 1;
            if !tried.contains(id) {
                tried.insert(id);
                return Some(id);
            }
        }
        None
    }
    pub fn release(&mut self, _id: PeerId, _now: Instant, _outcome: Outcome) {}
    pub fn address(&self, id: PeerId) -> SocketAddr {
        self.peers[id.0].address
    }
    pub fn states(&self, _now: Instant) -> Vec<PeerState> {
        Vec::new()
    }
}
