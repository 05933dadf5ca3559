//! Peer selection exactly as nginx's upstream modules (round robin, least_conn, ip_hash) with
//! passive health accounting (max_fails / fail_timeout), backups, `down` and `max_conns`.
//!
//! Pure: one `Balancer` per upstream per worker (no locks), time passed in as `Instant`. The
//! one exception is `max_conns`: it caps the requests in flight from every worker together,
//! an atomic counter per server shared through [`crate::control`] (HAProxy's `maxconn`,
//! nginx's `max_conns` with a `zone`), and a worker with requests queued says so in a shared
//! bitmask so another worker that frees a slot can wake it (the caller sends the wake-up).
//!
//! What all workers share comes in from [`crate::control`] at the worker's tick (never on the
//! request path): each server's admin state (drain/maint), active-check health, weight set at
//! run time, the start of its slow start, and for round robin the precomputed smooth-WRR
//! cycle with one atomic sequence number per upstream, so consecutive picks alternate across
//! workers as nginx's do with a `zone` (see `control.rs` in this module).
//!
//! Weights are kept multiplied by [`SCALE`] so a slow start can ramp a weight of 1 smoothly;
//! smooth WRR is scale invariant (every quantity scales alike), so the sequences are nginx's.
//!
//! The code follows nginx 1.22's `ngx_http_upstream_round_robin.c`,
//! `ngx_http_upstream_least_conn_module.c` and `ngx_http_upstream_ip_hash_module.c` step by
//! step, so a given sequence of picks and releases yields the same peers as nginx. Differences:
//! nginx's clock has whole seconds, ours is an `Instant` (a peer is out for exactly
//! `fail_timeout`, not "up to a second more"); and the single-peer fast path also honours
//! `tried` (nginx stops retrying a single peer through its `tries` counter instead).

mod control;
pub mod queue;
mod select;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_control;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config;
use crate::control::{AdminState, Busy, Cycle, Waiting};

/// Weights inside the balancer are the configured ones times this (see the module comment).
const SCALE: i64 = 1000;

/// Index of a peer inside its balancer (primaries first, then backups, in config order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub usize);

/// Per-request selection state: the peers already tried (nginx's `tried` bitmap) plus what
/// nginx keeps next to it in its per-request peer data. Use one `Tried::default()` per request
/// and pass it to every [`Balancer::pick`] of that request's retries.
#[derive(Debug, Clone, Default)]
pub struct Tried {
    bits: Vec<u64>,
    /// The request moved on to the backup peers (nginx switches `rrp->peers` to
    /// `peers->next` and stays there for the rest of the request).
    backup: bool,
    /// ip_hash: the hash so far (nginx's `iphp->hash`, starts at 89); a retry continues from it.
    ip_hash: Option<u32>,
    /// ip_hash: how many hashed peers were unusable (nginx's `iphp->tries`; > 20 = round robin).
    ip_tries: u32,
}

impl Tried {
    /// Nothing tried yet: the first pick of a request.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0) && !self.backup
    }
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
        *self = Tried::default();
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
    /// Configured weight, or the one set at run time.
    pub weight: u32,
    /// Weight in effect now (lower during slow start or after failures), in config units.
    pub effective_weight: f64,
    /// Failures counted within the current fail_timeout window.
    pub fails: u32,
    /// Requests handed to this server (each try counts).
    pub requests: u64,
    /// Responses with a 5xx status relayed from this server.
    pub responses_5xx: u64,
}

/// One upstream server and nginx's per-peer state (`ngx_http_upstream_rr_peer_t`).
#[derive(Debug, Clone)]
struct Peer {
    name: String,
    address: SocketAddr,
    /// Weight in config units (ip_hash and least_conn use it as nginx does).
    base_weight: i64,
    /// `base_weight * SCALE`; the smooth-WRR weights below are in the same unit.
    weight: i64,
    effective_weight: i64,
    current_weight: i64,
    max_fails: u32,
    fail_timeout: Duration,
    max_conns: u32,
    down: bool,
    backup: bool,
    /// Requests of this worker currently using this peer.
    conns: u32,
    /// Requests of all workers using it, what `max_conns` caps (None until the worker applied
    /// the shared state: then this worker's `conns` stand in).
    busy: Option<Busy>,
    fails: u32,
    /// Last failure.
    accessed: Option<Instant>,
    /// Start of the current fail_timeout window (set on failure, and when a pick starts a new
    /// window, which is how one request probes a failed peer).
    checked: Option<Instant>,
    /// Failures ever reported, for metrics.
    fails_total: u64,
    requests: u64,
    responses_5xx: u64,
    /// Set at run time (admin API or state file); `down` in the config wins over it.
    admin: AdminState,
    /// Failing its active health checks.
    health_down: bool,
    slow_start: Duration,
    /// Start of the slow start in progress.
    ramp: Option<Instant>,
}

impl Peer {
    fn new(s: &config::UpstreamServer) -> Peer {
        let base_weight = i64::from(s.weight.max(1));
        let weight = base_weight * SCALE;
        Peer {
            name: s.name.clone(),
            address: s.address,
            base_weight,
            weight,
            effective_weight: weight,
            current_weight: 0,
            max_fails: s.max_fails,
            fail_timeout: s.fail_timeout,
            max_conns: s.max_conns,
            down: s.down,
            backup: s.backup,
            conns: 0,
            busy: None,
            fails: 0,
            accessed: None,
            checked: None,
            fails_total: 0,
            requests: 0,
            responses_5xx: 0,
            admin: AdminState::Ready,
            health_down: false,
            slow_start: s.slow_start,
            ramp: None,
        }
    }

    /// Not down by config, maintenance, drain or active checks. A drained peer still takes
    /// ip_hash's sticky clients (`sticky`), as nginx Plus's drain keeps sessions.
    fn in_service(&self, sticky: bool) -> bool {
        let admitted = match self.admin {
            AdminState::Ready => true,
            AdminState::Drain => sticky,
            AdminState::Maint => false,
        };
        admitted && !self.down && !self.health_down
    }

    /// Out after max_fails failures until fail_timeout has passed since `checked`.
    fn failed(&self, now: Instant) -> bool {
        self.max_fails != 0
            && self.fails >= self.max_fails
            && self
                .checked
                .is_some_and(|c| now.saturating_duration_since(c) <= self.fail_timeout)
    }

    /// Failures counted in the current fail_timeout window (0 once it has passed).
    fn fails_in_window(&self, now: Instant) -> u32 {
        let open = self
            .checked
            .is_some_and(|c| now.saturating_duration_since(c) <= self.fail_timeout);
        if open {
            self.fails
        } else {
            0
        }
    }

    fn full(&self) -> bool {
        self.max_conns != 0 && self.in_flight() >= self.max_conns
    }

    /// What `max_conns` is compared with: the shared count, or this worker's own before it
    /// has the shared one.
    fn in_flight(&self) -> u32 {
        self.busy
            .as_ref()
            .map_or(self.conns, |b| b.0.load(Ordering::Acquire))
    }

    /// Count a request against `max_conns` in the shared count; false when another worker took
    /// the last slot since this one looked.
    fn take_slot(&self) -> bool {
        match (&self.busy, self.max_conns) {
            (Some(b), max) if max != 0 => {
                b.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
            }
            _ => true,
        }
    }

    fn give_slot(&self) {
        if let (Some(b), 1..) = (&self.busy, self.max_conns) {
            let _ =
                b.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// nginx: `if (now - best->checked > best->fail_timeout) best->checked = now;`
    fn touch_checked(&mut self, now: Instant) {
        let expired = match self.checked {
            None => true,
            Some(c) => now.saturating_duration_since(c) > self.fail_timeout,
        };
        if expired {
            self.checked = Some(now);
        }
    }
}

/// Peer selection for one upstream in one worker.
#[derive(Debug, Clone)]
pub struct Balancer {
    /// Primaries first (config order), then backups (config order); `PeerId` indexes this.
    peers: Vec<Peer>,
    primaries: usize,
    method: config::Balance,
    /// nginx's `peers->single`: exactly one primary and no backups. Such a peer is only ever
    /// unavailable through `down` or `max_conns`, and its failures are not counted.
    single: bool,
    /// Sum of the primaries' weights, down ones included (ip_hash walks all of them).
    primary_weight: i64,
    /// Round robin shared by all workers: the upstream's smooth-WRR cycle and its sequence
    /// number, used while every primary is in its steady state (see `control.rs`).
    cycle: Option<Arc<Cycle>>,
    /// Peers with a slow start in progress (0 = no ramp to look at on a pick).
    ramping: usize,
    /// Requests waiting for a server below its max_conns (`queue`).
    queue: queue::Queue,
    /// The upstream's queue order across workers, and this worker's slot in it.
    waiting: Option<Waiting>,
    worker_slot: usize,
}

impl Balancer {
    pub fn new(upstream: &config::Upstream) -> Balancer {
        let mut peers: Vec<Peer> = upstream
            .servers
            .iter()
            .filter(|s| !s.backup)
            .map(Peer::new)
            .collect();
        let primaries = peers.len();
        peers.extend(upstream.servers.iter().filter(|s| s.backup).map(Peer::new));
        let primary_weight = peers[..primaries].iter().map(|p| p.base_weight).sum();
        Balancer {
            single: primaries == 1 && peers.len() == 1,
            peers,
            primaries,
            method: upstream.balance,
            primary_weight,
            cycle: None,
            ramping: 0,
            queue: queue::Queue::new(upstream.queue),
            waiting: None,
            worker_slot: 0,
        }
    }

    /// The worker this balancer serves: its slot in the shared queue order (`id % 64`; with
    /// more than 64 workers two share a slot, and the one whose number is overwritten is
    /// still served by its tick).
    pub fn set_worker(&mut self, id: usize) {
        self.worker_slot = id % 64;
    }

    /// Pick a peer for a request (not in `tried`), mark it tried and count it as an active connection.
    /// None = no eligible peer (all down / failed / at max_conns / tried) -> the proxy answers 502.
    pub fn pick(&mut self, now: Instant, client: IpAddr, tried: &mut Tried) -> Option<PeerId> {
        if self.ramping > 0 {
            self.settle_ramps(now);
        }
        // A peer at max_conns is not picked; one whose last slot another worker takes between
        // the look and the count is picked again (bounded: each miss is a slot taken).
        let mut i = None;
        for _ in 0..=self.peers.len() {
            let pick = match self.method {
                config::Balance::RoundRobin => self.pick_round_robin(now, tried),
                config::Balance::LeastConn => self.pick_least_conn(now, tried),
                config::Balance::IpHash => self.pick_ip_hash(now, client, tried),
            }?;
            if self.peers.get(pick)?.take_slot() {
                i = Some(pick);
                break;
            }
        }
        let i = i?;
        let peer = self.peers.get_mut(i)?;
        peer.conns = peer.conns.saturating_add(1);
        peer.requests = peer.requests.saturating_add(1);
        tried.insert(PeerId(i));
        Some(PeerId(i))
    }

    /// The request waiting room (`queue`). Join and leave it through [`Self::join_queue`],
    /// [`Self::leave_queue`] and [`Self::abandon_queue`], which keep the other workers told.
    pub fn queue(&mut self) -> &mut queue::Queue {
        &mut self.queue
    }

    /// Queue a request, numbered in the upstream's order across workers (`number`: the one it
    /// had when it was called before and then found no slot); None when this worker's queue
    /// is full.
    pub fn join_queue(&mut self, number: Option<u64>) -> Option<queue::Ticket> {
        let ticket = match (&self.waiting, number) {
            (_, Some(n)) => self.queue.join_as(n),
            (Some(w), None) => {
                let n = w.0.next.fetch_add(1, Ordering::AcqRel);
                self.queue.join_as(n)
            }
            (None, None) => self.queue.join(),
        };
        self.publish_waiting();
        ticket
    }

    /// A called request picks now: it leaves the queue.
    pub fn leave_queue(&mut self, ticket: &queue::Ticket) {
        if self.queue.leave(ticket) {
            self.picked_called();
        }
        self.publish_waiting();
    }

    /// A queued request gives up (timed out, client gone). A slot it had been called for goes
    /// to the oldest waiter of all workers: returns the bits of workers to wake (see
    /// [`Self::call_waiters`]).
    pub fn abandon_queue(&mut self, ticket: &queue::Ticket, now: Instant) -> u64 {
        let called = self.queue.leave(ticket);
        self.publish_waiting();
        if !called {
            return 0;
        }
        self.picked_called();
        self.call_waiters(now)
    }

    /// A newcomer must queue behind those waiting here or in another worker, and must not
    /// take a slot a called request is about to pick.
    pub fn must_queue(&mut self) -> bool {
        // Asked for every request: an upstream without a queue reads no shared state.
        self.queue.enabled()
            && (self.queue.occupied() || self.called_anywhere() > 0 || self.others_waiting())
    }

    fn called_anywhere(&self) -> usize {
        match &self.waiting {
            Some(w) => w.0.called.load(Ordering::Acquire) as usize,
            None => self.queue.handoff(),
        }
    }

    fn picked_called(&self) {
        if let Some(w) = &self.waiting {
            let _ =
                w.0.called
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Tell the other workers the number of this worker's oldest waiter.
    fn publish_waiting(&mut self) {
        let oldest = self.queue.oldest();
        if let Some(w) = &self.waiting {
            let mine = &w.0.oldest[self.worker_slot];
            if mine.load(Ordering::Acquire) != oldest {
                mine.store(oldest, Ordering::Release);
            }
        }
    }

    /// The worker whose waiter came first among the other workers' (its bit, `1 << slot`), and
    /// that waiter's number; (0, MAX) when no other worker has anyone queued.
    fn oldest_elsewhere(&self) -> (u64, u64) {
        let Some(w) = &self.waiting else {
            return (0, u64::MAX);
        };
        let mut best = (0, u64::MAX);
        for (slot, n) in w.0.oldest.iter().enumerate() {
            let n = n.load(Ordering::Acquire);
            if slot != self.worker_slot && n < best.1 {
                best = (1 << slot, n);
            }
        }
        best
    }

    /// Another worker has requests queued here.
    pub fn others_waiting(&self) -> bool {
        self.oldest_elsewhere().1 != u64::MAX
    }

    /// A pick that found nothing may wait: some server that could take the request is only
    /// at its max_conns (down, failed and drained ones free no slot by finishing requests).
    pub fn at_max_conns(&self, now: Instant) -> bool {
        self.peers
            .iter()
            .any(|p| p.full() && p.in_service(false) && !p.failed(now))
    }

    /// Call queued requests, oldest of all workers first, while the servers in service have
    /// room (slots not spoken for by requests already called). Stops at a waiter older than
    /// this worker's in another worker: returns that worker's bit for the caller to wake (it
    /// goes on from there), 0 when done. After a slot was freed, and when a server comes back
    /// (ready, passing checks: no finished request frees a slot then).
    pub fn call_waiters(&mut self, now: Instant) -> u64 {
        if !self.queue.enabled() {
            return 0;
        }
        let room = self
            .peers
            .iter()
            .filter(|p| p.in_service(false) && !p.failed(now))
            .map(|p| match p.max_conns {
                0 => usize::MAX,
                m => m.saturating_sub(p.in_flight()) as usize,
            })
            .fold(0usize, usize::saturating_add);
        let mut room = room.saturating_sub(self.called_anywhere());
        let mut wake = 0;
        while room > 0 {
            let mine = self.queue.oldest();
            let (other, theirs) = self.oldest_elsewhere();
            if mine == u64::MAX || theirs < mine {
                wake = other;
                break;
            }
            self.queue.call_next();
            if let Some(w) = &self.waiting {
                w.0.called.fetch_add(1, Ordering::AcqRel);
            }
            room -= 1;
        }
        self.publish_waiting();
        wake
    }

    /// The request's use of `id` ended; decrements active conns; Failure does nginx's failure
    /// accounting. Returns the bit of another worker to wake: the freed `max_conns` slot is
    /// for its queued request, the oldest of all (0: called here, or nobody waits).
    pub fn release(&mut self, id: PeerId, now: Instant, outcome: Outcome) -> u64 {
        let single = self.single;
        let Some(peer) = self.peers.get_mut(id.0) else {
            return 0;
        };
        peer.conns = peer.conns.saturating_sub(1);
        peer.give_slot();
        let capped = peer.max_conns != 0;
        let unclaimed = if capped { self.call_waiters(now) } else { 0 };
        let peer = &mut self.peers[id.0];
        if outcome == Outcome::Failure {
            peer.fails_total = peer.fails_total.saturating_add(1);
        }
        if single {
            // nginx keeps no failure state for a lone server: there is nothing to fail over to.
            return unclaimed;
        }
        match outcome {
            Outcome::Failure => {
                peer.fails = peer.fails.saturating_add(1);
                peer.accessed = Some(now);
                peer.checked = Some(now);
                if peer.max_fails != 0 {
                    peer.effective_weight -= peer.base_weight / i64::from(peer.max_fails) * SCALE;
                }
                if peer.effective_weight < 0 {
                    peer.effective_weight = 0;
                }
            }
            Outcome::Success => {
                // A success counts as "the peer is back" only for a pick made after the
                // last failure's window (the probe moved `checked` past `accessed`).
                if peer.accessed < peer.checked {
                    // Back from fail_timeout (it was out): that is where a slow start begins.
                    let was_out = peer.max_fails != 0 && peer.fails >= peer.max_fails;
                    peer.fails = 0;
                    if was_out {
                        self.start_ramp(id, now);
                    }
                }
            }
        }
        unclaimed
    }

    /// The status of a response the peer gave (counts 5xx for the status API).
    pub fn record_status(&mut self, id: PeerId, status: u16) {
        if let Some(peer) = self.peers.get_mut(id.0) {
            if (500..600).contains(&status) {
                peer.responses_5xx = peer.responses_5xx.saturating_add(1);
            }
        }
    }

    /// Address of a peer (0.0.0.0:0 for an id this balancer never handed out).
    pub fn address(&self, id: PeerId) -> SocketAddr {
        self.peers
            .get(id.0)
            .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |p| p.address)
    }

    /// The peer's address as written in the config ("" for an unknown id).
    pub fn name(&self, id: PeerId) -> &str {
        self.peers.get(id.0).map_or("", |p| p.name.as_str())
    }

    /// All peers incl. backups (bounds the retry loop).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Snapshot for /metrics.
    pub fn states(&self, now: Instant) -> Vec<PeerState> {
        self.peers
            .iter()
            .map(|p| PeerState {
                name: p.name.clone(),
                address: p.address,
                backup: p.backup,
                available: p.in_service(false) && !p.failed(now),
                active_conns: p.conns,
                fails_total: p.fails_total,
                weight: u32::try_from(p.base_weight).unwrap_or(u32::MAX),
                effective_weight: self.wrr_weight(p, now) as f64 / SCALE as f64,
                fails: p.fails_in_window(now),
                requests: p.requests,
                responses_5xx: p.responses_5xx,
            })
            .collect()
    }
}
