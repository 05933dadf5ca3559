//! The balancer side of the shared control state: applying a worker's copy of it, slow start,
//! and round robin through the shared cycle.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::control::{Cycle, UpstreamView};

use super::{Balancer, Peer, Tried, SCALE};

impl Balancer {
    /// Take over the shared state of this upstream's servers (matched by address and name as
    /// configured); servers the view does not name keep theirs.
    pub fn apply(&mut self, view: &UpstreamView, now: Instant) {
        for i in 0..self.peers.len() {
            let Some(s) = view.servers.iter().find(|s| {
                let p = &self.peers[i];
                s.address == p.address && s.name == p.name
            }) else {
                continue;
            };
            let peer = &mut self.peers[i];
            if peer.busy.as_ref() != Some(&s.busy) {
                // This worker's requests in flight move to the shared count (at most once:
                // the counter of a server is kept across reloads).
                if peer.max_conns != 0 {
                    if let Some(old) = &peer.busy {
                        let _ = old
                            .0
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                                Some(n.saturating_sub(peer.conns))
                            });
                    }
                    s.busy.0.fetch_add(peer.conns, Ordering::AcqRel);
                }
                peer.busy = Some(s.busy.clone());
            }
            peer.admin = s.admin;
            peer.health_down = s.health_down;
            let base = i64::from(s.weight.max(1));
            if base != peer.base_weight {
                peer.base_weight = base;
                peer.weight = base * SCALE;
                peer.effective_weight = peer.weight;
            }
            if let Some(since) = s.back_since {
                let newer = match peer.ramp {
                    None => true,
                    Some(r) => r < since,
                };
                let within = now.saturating_duration_since(since) < peer.slow_start;
                if newer && within {
                    self.set_ramp(i, since);
                }
            }
        }
        self.primary_weight = self.peers[..self.primaries]
            .iter()
            .map(|p| p.base_weight)
            .sum();
        self.cycle = view.cycle.clone();
        self.waiting = Some(view.waiting.clone());
        self.call_waiters(now);
    }

    /// Use a shared cycle (tests and benches; workers get it through [`Self::apply`]).
    pub fn set_cycle(&mut self, cycle: Option<Arc<Cycle>>) {
        self.cycle = cycle;
    }

    /// A slow start for peer `i` from `now` (when it has one configured).
    pub(super) fn start_ramp(&mut self, id: super::PeerId, now: Instant) {
        if self
            .peers
            .get(id.0)
            .is_some_and(|p| !p.slow_start.is_zero())
        {
            self.set_ramp(id.0, now);
        }
    }

    fn set_ramp(&mut self, i: usize, since: Instant) {
        let Some(peer) = self.peers.get_mut(i) else {
            return;
        };
        if peer.ramp.is_none() {
            self.ramping += 1;
        }
        peer.ramp = Some(since);
    }

    /// End the ramps that are over. From then on the weights are whole again, and with every
    /// `current_weight` back at 0 the picks follow nginx's sequence from its start.
    pub(super) fn settle_ramps(&mut self, now: Instant) {
        let mut ended = false;
        for p in &mut self.peers {
            if let Some(since) = p.ramp {
                if now.saturating_duration_since(since) >= p.slow_start {
                    p.ramp = None;
                    ended = true;
                    self.ramping = self.ramping.saturating_sub(1);
                }
            }
        }
        if ended {
            for p in &mut self.peers {
                p.current_weight = 0;
            }
        }
    }

    /// The weight smooth WRR adds for `p` now: its effective weight, capped during a slow
    /// start at the linear ramp from 0 to its weight.
    pub(super) fn wrr_weight(&self, p: &Peer, now: Instant) -> i64 {
        let Some(since) = p.ramp else {
            return p.effective_weight;
        };
        let elapsed = now.saturating_duration_since(since).as_nanos();
        let span = p.slow_start.as_nanos().max(1);
        if elapsed >= span {
            return p.effective_weight;
        }
        let cap = (p.weight.max(0) as u128 * elapsed / span) as i64;
        p.effective_weight.min(cap)
    }

    /// Round robin through the shared cycle: only for a request's first pick, and only while
    /// every primary in service is in its steady state (no failure being counted, no slow
    /// start, no max_conns reached). Otherwise the worker's own smooth WRR decides, exactly
    /// as nginx would without a shared zone.
    pub(super) fn next_in_cycle(&mut self, now: Instant, tried: &Tried) -> Option<usize> {
        let cycle = self.cycle.as_ref()?;
        if !tried.is_empty() || !self.steady(now) {
            return None;
        }
        let i = cycle.next();
        if !self.eligible(i, now, tried) {
            return None;
        }
        self.peers.get_mut(i)?.touch_checked(now);
        Some(i)
    }

    fn steady(&self, now: Instant) -> bool {
        // Cheap field tests first: the clock is only read for a peer with failures counted.
        self.ramping == 0
            && self.peers[..self.primaries].iter().all(|p| {
                !p.in_service(false)
                    || (p.effective_weight >= p.weight
                        && !p.full()
                        && (p.fails == 0 || p.fails_in_window(now) == 0))
            })
    }
}
