//! The three selection algorithms, each a transcription of its nginx function.

use std::net::IpAddr;
use std::ops::Range;
use std::time::Instant;

use super::{Balancer, PeerId, Tried, SCALE};

/// nginx gives up hashing after this many unusable peers and falls back to round robin.
const IP_HASH_MAX_TRIES: u32 = 20;

impl Balancer {
    fn primary_range(&self) -> Range<usize> {
        0..self.primaries
    }

    fn backup_range(&self) -> Range<usize> {
        self.primaries..self.peers.len()
    }

    /// In service (not down, drained, in maintenance or failing checks), not failed within
    /// fail_timeout, not at max_conns, not tried by this request.
    pub(super) fn eligible(&self, i: usize, now: Instant, tried: &Tried) -> bool {
        self.peers.get(i).is_some_and(|p| {
            !tried.contains(PeerId(i)) && p.in_service(false) && !p.failed(now) && !p.full()
        })
    }

    /// [`Self::eligible`] for ip_hash, where a drained peer keeps its sticky clients.
    fn eligible_sticky(&self, i: usize, now: Instant, tried: &Tried) -> bool {
        self.peers.get(i).is_some_and(|p| {
            !tried.contains(PeerId(i)) && p.in_service(true) && !p.failed(now) && !p.full()
        })
    }

    /// `ngx_http_upstream_get_round_robin_peer`: the primaries, then (once, for the rest of the
    /// request) the backups.
    pub(super) fn pick_round_robin(&mut self, now: Instant, tried: &mut Tried) -> Option<usize> {
        if !tried.backup {
            let found = if self.single {
                self.single_peer(tried)
            } else if let Some(i) = self.next_in_cycle(now, tried) {
                Some(i)
            } else {
                self.smooth_wrr(self.primary_range(), now, tried)
            };
            if found.is_some() || self.backup_range().is_empty() {
                return found;
            }
            tried.backup = true;
        }
        self.smooth_wrr(self.backup_range(), now, tried)
    }

    /// nginx's `peers->single` fast path: no weights, no failure accounting.
    fn single_peer(&self, tried: &Tried) -> Option<usize> {
        let peer = self.peers.first()?;
        if !peer.in_service(false) || peer.full() || tried.contains(PeerId(0)) {
            return None;
        }
        Some(0)
    }

    /// `ngx_http_upstream_get_peer`: smooth weighted round robin over the eligible peers of
    /// `range`; the first of equal `current_weight`s wins.
    fn smooth_wrr(&mut self, range: Range<usize>, now: Instant, tried: &Tried) -> Option<usize> {
        let mut best: Option<(usize, i64)> = None;
        let mut total: i64 = 0;
        for i in range {
            if !self.eligible(i, now, tried) {
                continue;
            }
            let Some(peer) = self.peers.get(i) else {
                continue;
            };
            let w = self.wrr_weight(peer, now);
            let Some(peer) = self.peers.get_mut(i) else {
                continue;
            };
            peer.current_weight += w;
            total += w;
            if peer.effective_weight < peer.weight {
                peer.effective_weight += SCALE;
            }
            if best.is_none_or_lower(peer.current_weight) {
                best = Some((i, peer.current_weight));
            }
        }
        let (b, _) = best?;
        let peer = self.peers.get_mut(b)?;
        peer.current_weight -= total;
        peer.touch_checked(now);
        Some(b)
    }

    /// `ngx_http_upstream_get_least_conn_peer`.
    pub(super) fn pick_least_conn(&mut self, now: Instant, tried: &mut Tried) -> Option<usize> {
        if self.single && !tried.backup {
            return self.pick_round_robin(now, tried);
        }
        if !tried.backup {
            let found = self.least_conn_in(self.primary_range(), now, tried);
            if found.is_some() || self.backup_range().is_empty() {
                return found;
            }
            tried.backup = true;
        }
        self.least_conn_in(self.backup_range(), now, tried)
    }

    /// Fewest active connections per weight (`conns_a * weight_b < conns_b * weight_a`, no
    /// division); among several equally good peers, smooth WRR starting at the first of them.
    fn least_conn_in(&mut self, range: Range<usize>, now: Instant, tried: &Tried) -> Option<usize> {
        // Active conns and weight as u64: u32 * u32 cannot overflow.
        let load = |b: &Balancer, i: usize| {
            b.peers.get(i).map_or((0, 1), |p| {
                (u64::from(p.conns), p.base_weight.unsigned_abs())
            })
        };
        let mut best: Option<usize> = None;
        let mut many = false;
        for i in range.clone() {
            if !self.eligible(i, now, tried) {
                continue;
            }
            let (conns, weight) = load(self, i);
            match best {
                None => {
                    best = Some(i);
                    many = false;
                }
                Some(b) => {
                    let (best_conns, best_weight) = load(self, b);
                    if conns * best_weight < best_conns * weight {
                        best = Some(i);
                        many = false;
                    } else if conns * best_weight == best_conns * weight {
                        many = true;
                    }
                }
            }
        }
        let mut best = best?;
        let mut total: i64 = 0;
        if many {
            let mut best_current = i64::MIN;
            let first = best;
            for i in first..range.end {
                if !self.eligible(i, now, tried) {
                    continue;
                }
                let (conns, weight) = load(self, i);
                let (best_conns, best_weight) = load(self, best);
                if conns * best_weight != best_conns * weight {
                    continue;
                }
                let Some(peer) = self.peers.get(i) else {
                    continue;
                };
                let w = self.wrr_weight(peer, now);
                let Some(peer) = self.peers.get_mut(i) else {
                    continue;
                };
                peer.current_weight += w;
                total += w;
                if peer.effective_weight < peer.weight {
                    peer.effective_weight += SCALE;
                }
                // The first peer of the loop is `best` itself; later ones must beat it strictly.
                if i == first {
                    best_current = peer.current_weight;
                } else if peer.current_weight > best_current {
                    best = i;
                    best_current = peer.current_weight;
                }
            }
        }
        let peer = self.peers.get_mut(best)?;
        peer.current_weight -= total;
        peer.touch_checked(now);
        Some(best)
    }

    /// `ngx_http_upstream_get_ip_hash_peer`: hash the client's /24 (IPv4) or whole address
    /// (IPv6) into the primaries' weights; rehash past unusable peers, and after 20 of them
    /// use round robin.
    pub(super) fn pick_ip_hash(
        &mut self,
        now: Instant,
        client: IpAddr,
        tried: &mut Tried,
    ) -> Option<usize> {
        if tried.ip_tries > IP_HASH_MAX_TRIES || self.primaries < 2 || self.primary_weight <= 0 {
            return self.pick_round_robin(now, tried);
        }
        let v4;
        let v6;
        let bytes: &[u8] = match client {
            IpAddr::V4(a) => {
                v4 = a.octets();
                &v4[..3]
            }
            IpAddr::V6(a) => {
                v6 = a.octets();
                &v6[..]
            }
        };
        let mut hash = tried.ip_hash.unwrap_or(89);
        let chosen = loop {
            for &byte in bytes {
                hash = (hash * 113 + u32::from(byte)) % 6271;
            }
            let mut w = i64::from(hash) % self.primary_weight;
            let mut p = 0;
            // Walk the primaries subtracting weights; w < primary_weight keeps p in range.
            while let Some(peer) = self.peers.get(p).filter(|_| p < self.primaries) {
                if w < peer.base_weight {
                    break;
                }
                w -= peer.base_weight;
                p += 1;
            }
            if p < self.primaries && self.eligible_sticky(p, now, tried) {
                break p;
            }
            tried.ip_tries += 1;
            if tried.ip_tries > IP_HASH_MAX_TRIES {
                return self.pick_round_robin(now, tried);
            }
        };
        tried.ip_hash = Some(hash);
        self.peers.get_mut(chosen)?.touch_checked(now);
        Some(chosen)
    }
}

/// `best == NULL || peer->current_weight > best->current_weight`.
trait BestSoFar {
    fn is_none_or_lower(&self, current: i64) -> bool;
}

impl BestSoFar for Option<(usize, i64)> {
    fn is_none_or_lower(&self, current: i64) -> bool {
        match self {
            None => true,
            Some((_, best)) => current > *best,
        }
    }
}
