//! The registry itself: the shared per-server state, its mutations and the views workers copy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Balance, Config, HealthCheck, Upstream, UpstreamServer};

use super::health::{Counter, Health, LastCheck, Probe};
use super::state_file::{self, Saved};
use super::{AdminState, Busy, Cycle, ServerView, UpstreamView, Waiting};

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no upstream named \"{0}\"")]
    UnknownUpstream(String),
    #[error("upstream \"{0}\" has no server \"{1}\"")]
    UnknownServer(String, String),
    #[error("weight must be between 1 and {max}, got {0}", max = MAX_WEIGHT)]
    BadWeight(u64),
}

/// Largest weight settable at run time (keeps the scaled balancer arithmetic far from overflow).
pub const MAX_WEIGHT: u64 = 1_000_000;

/// Shared state of all upstream servers; one per process (see the module comment).
pub struct Registry {
    inner: Mutex<Inner>,
    epoch: AtomicU64,
}

struct Inner {
    upstreams: Vec<UpstreamEntry>,
    state_file: Option<PathBuf>,
}

/// One upstream's shared state.
#[derive(Debug)]
pub(crate) struct UpstreamEntry {
    pub name: String,
    pub balance: Balance,
    pub check: Option<HealthCheck>,
    pub servers: Vec<ServerEntry>,
    pub cycle: Option<Arc<Cycle>>,
    pub waiting: Waiting,
}

/// One server's shared state.
#[derive(Debug, Clone)]
pub(crate) struct ServerEntry {
    pub name: String,
    pub address: SocketAddr,
    pub backup: bool,
    /// `down = true` in the config.
    pub config_down: bool,
    pub config_weight: u32,
    pub slow_start: Duration,
    pub admin: AdminState,
    /// Set at run time; `None` = the configured weight.
    pub weight_set: Option<u32>,
    pub health: Health,
    pub counter: Counter,
    pub last_check: Option<LastCheck>,
    pub checks_passed: u64,
    pub checks_failed: u64,
    /// Times the checks took it down / brought it up.
    pub went_down: u64,
    pub went_up: u64,
    /// Last change of admin state or health (unix seconds).
    pub changed_at: SystemTime,
    /// Out of service (maint or checks down) since.
    pub out_since: Option<SystemTime>,
    /// Time out of service before `out_since`.
    pub downtime: Duration,
    /// Back in service since (for slow start).
    pub back_since: Option<Instant>,
    pub busy: Busy,
}

impl ServerEntry {
    fn new(s: &UpstreamServer) -> ServerEntry {
        ServerEntry {
            name: s.name.clone(),
            address: s.address,
            backup: s.backup,
            config_down: s.down,
            config_weight: s.weight,
            slow_start: s.slow_start,
            admin: AdminState::Ready,
            weight_set: None,
            health: Health::Unchecked,
            counter: Counter::default(),
            last_check: None,
            checks_passed: 0,
            checks_failed: 0,
            went_down: 0,
            went_up: 0,
            changed_at: SystemTime::now(),
            out_since: None,
            downtime: Duration::ZERO,
            back_since: None,
            busy: Busy::default(),
        }
    }

    pub fn weight(&self) -> u32 {
        self.weight_set.unwrap_or(self.config_weight)
    }

    /// Takes new requests (round robin / least_conn).
    pub fn in_service(&self) -> bool {
        !self.config_down && self.admin == AdminState::Ready && self.health != Health::Down
    }

    fn serving_anything(&self) -> bool {
        self.admin != AdminState::Maint && self.health != Health::Down
    }

    /// Total time out of service, the current stretch included.
    pub fn downtime(&self, now: SystemTime) -> Duration {
        let current = self.out_since.map_or(Duration::ZERO, |s| {
            now.duration_since(s).unwrap_or_default()
        });
        self.downtime + current
    }

    /// Apply a change of admin state or health: times, downtime and slow start follow.
    fn changed(&mut self, was_in_service: bool, was_serving: bool, now: Instant) {
        let wall = SystemTime::now();
        self.changed_at = wall;
        match (was_serving, self.serving_anything()) {
            (true, false) => self.out_since = Some(wall),
            (false, true) => {
                self.downtime = self.downtime(wall);
                self.out_since = None;
            }
            _ => {}
        }
        if !was_in_service && self.in_service() {
            self.back_since = Some(now);
        }
    }

    fn matches(&self, server: &str) -> bool {
        self.name == server
            || server
                .parse::<SocketAddr>()
                .is_ok_and(|a| a == self.address)
    }
}

impl UpstreamEntry {
    fn new(u: &Upstream) -> UpstreamEntry {
        UpstreamEntry {
            name: u.name.clone(),
            balance: u.balance,
            check: u.health_check.clone(),
            servers: u.servers.iter().map(ServerEntry::new).collect(),
            cycle: None,
            waiting: Waiting::default(),
        }
    }

    /// Round robin's cycle over the primaries in service, numbered as the balancer numbers
    /// its peers (primaries first, in config order).
    fn rebuild_cycle(&mut self) {
        self.cycle = None;
        if self.balance != Balance::RoundRobin {
            return;
        }
        let peers: Vec<(usize, u64)> = self
            .servers
            .iter()
            .filter(|s| !s.backup)
            .enumerate()
            .filter(|(_, s)| s.in_service())
            .map(|(i, s)| (i, u64::from(s.weight())))
            .collect();
        self.cycle = Cycle::build(&peers).map(Arc::new);
    }

    fn view(&self) -> UpstreamView {
        UpstreamView {
            name: self.name.clone(),
            servers: self
                .servers
                .iter()
                .map(|s| ServerView {
                    name: s.name.clone(),
                    address: s.address,
                    admin: s.admin,
                    health_down: s.health == Health::Down,
                    weight: s.weight(),
                    back_since: s.back_since,
                    busy: s.busy.clone(),
                })
                .collect(),
            cycle: self.cycle.clone(),
            waiting: self.waiting.clone(),
        }
    }
}

impl Registry {
    /// The registry for `config`, with the admin states of its state file (if any).
    pub fn new(config: &Config) -> Registry {
        let mut upstreams: Vec<UpstreamEntry> =
            config.upstreams.iter().map(UpstreamEntry::new).collect();
        if let Some(path) = &config.state_file {
            match state_file::load(path) {
                Ok(saved) => restore(&mut upstreams, &saved, path),
                Err(e) => tracing::warn!("{e}; starting with every server ready"),
            }
        }
        for u in &mut upstreams {
            u.rebuild_cycle();
        }
        Registry {
            inner: Mutex::new(Inner {
                upstreams,
                state_file: config.state_file.clone(),
            }),
            epoch: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves on every change; workers re-read the views when it did.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Every upstream as workers apply it.
    pub fn views(&self) -> Vec<UpstreamView> {
        self.lock()
            .upstreams
            .iter()
            .map(UpstreamEntry::view)
            .collect()
    }

    /// A reload: the new config's upstreams and servers, keeping the state of every server
    /// still configured (same upstream name and address).
    pub fn sync(&self, config: &Config) {
        let mut inner = self.lock();
        let mut fresh: Vec<UpstreamEntry> =
            config.upstreams.iter().map(UpstreamEntry::new).collect();
        for u in &mut fresh {
            let old = inner.upstreams.iter().find(|o| o.name == u.name);
            if let Some(o) = old {
                // Workers keeping their balancer across the reload still publish here.
                u.waiting = o.waiting.clone();
            }
            for s in &mut u.servers {
                let Some(prev) =
                    old.and_then(|o| o.servers.iter().find(|p| p.address == s.address))
                else {
                    continue;
                };
                let configured = s.clone();
                *s = ServerEntry {
                    name: configured.name,
                    backup: configured.backup,
                    config_down: configured.config_down,
                    config_weight: configured.config_weight,
                    slow_start: configured.slow_start,
                    ..prev.clone()
                };
                if u.check.is_none() {
                    // Checks removed: their verdict no longer applies.
                    s.health = Health::Unchecked;
                    s.counter = Counter::default();
                }
            }
            u.rebuild_cycle();
        }
        inner.upstreams = fresh;
        inner.state_file = config.state_file.clone();
        drop(inner);
        self.bump();
    }

    /// Set a server's admin state and/or weight (the admin API). `server` is its address as
    /// configured or as ip:port.
    pub fn set_server(
        &self,
        upstream: &str,
        server: &str,
        state: Option<AdminState>,
        weight: Option<u64>,
        now: Instant,
    ) -> Result<(), ControlError> {
        if let Some(w) = weight {
            if !(1..=MAX_WEIGHT).contains(&w) {
                return Err(ControlError::BadWeight(w));
            }
        }
        let mut inner = self.lock();
        let u = inner
            .upstreams
            .iter_mut()
            .find(|u| u.name == upstream)
            .ok_or_else(|| ControlError::UnknownUpstream(upstream.to_string()))?;
        let s = u
            .servers
            .iter_mut()
            .find(|s| s.matches(server))
            .ok_or_else(|| ControlError::UnknownServer(upstream.to_string(), server.to_string()))?;
        let (was_in, was_serving) = (s.in_service(), s.serving_anything());
        if let Some(state) = state {
            if state != s.admin {
                tracing::info!(upstream, server = %s.address, from = s.admin.as_str(), to = state.as_str(), "server admin state changed");
                s.admin = state;
                s.changed(was_in, was_serving, now);
            }
        }
        if let Some(w) = weight {
            let w = u32::try_from(w).unwrap_or(u32::MAX);
            tracing::info!(upstream, server = %s.address, weight = w, "server weight set");
            s.weight_set = (w != s.config_weight).then_some(w);
        }
        u.rebuild_cycle();
        let saved = saved_states(&inner.upstreams);
        let path = inner.state_file.clone();
        drop(inner);
        self.bump();
        if let Some(path) = path {
            if let Err(e) = state_file::save(&path, &saved) {
                tracing::error!(file = %path.display(), error = %e, "cannot write the server state file");
            }
        }
        Ok(())
    }

    /// One finished health check of a server; returns the new health when it changed.
    pub fn record_check(
        &self,
        upstream: &str,
        address: SocketAddr,
        probe: &Probe,
        latency: Duration,
        now: Instant,
    ) -> Option<Health> {
        let mut inner = self.lock();
        let u = inner.upstreams.iter_mut().find(|u| u.name == upstream)?;
        let check = u.check.clone()?;
        let s = u.servers.iter_mut().find(|s| s.address == address)?;
        let passed = probe.passed(&check);
        let at = unix(SystemTime::now());
        s.last_check = Some(LastCheck::new(probe, passed, latency, at));
        if passed {
            s.checks_passed += 1;
        } else {
            s.checks_failed += 1;
        }
        let before = s.health;
        let (was_in, was_serving) = (s.in_service(), s.serving_anything());
        s.health = s.counter.record(before, passed, check.fall, check.rise);
        if s.health == before {
            return None;
        }
        match s.health {
            Health::Down => s.went_down += 1,
            Health::Up if before == Health::Down => s.went_up += 1,
            _ => {}
        }
        s.changed(was_in, was_serving, now);
        let changed_service = was_in != s.in_service();
        let health = s.health;
        if changed_service {
            u.rebuild_cycle();
        }
        drop(inner);
        self.bump();
        Some(health)
    }

    /// Run `f` over the entries (the status API and /metrics read through this).
    pub(crate) fn with_entries<R>(&self, f: impl FnOnce(&[UpstreamEntry]) -> R) -> R {
        f(&self.lock().upstreams)
    }

    /// The upstreams with active checks and their servers' addresses (for the checker).
    pub fn checked(&self) -> Vec<(String, HealthCheck, Vec<SocketAddr>, Vec<String>)> {
        self.lock()
            .upstreams
            .iter()
            .filter_map(|u| {
                let check = u.check.clone()?;
                let addrs = u.servers.iter().map(|s| s.address).collect();
                let names = u.servers.iter().map(|s| s.name.clone()).collect();
                Some((u.name.clone(), check, addrs, names))
            })
            .collect()
    }
}

/// The admin states and weights worth keeping across a restart.
fn saved_states(upstreams: &[UpstreamEntry]) -> Vec<Saved> {
    upstreams
        .iter()
        .flat_map(|u| {
            u.servers.iter().map(|s| Saved {
                upstream: u.name.clone(),
                address: s.address,
                state: s.admin,
                weight: s.weight_set,
            })
        })
        .collect()
}

/// Apply a loaded state file; entries for servers no longer configured are skipped (logged).
fn restore(upstreams: &mut [UpstreamEntry], saved: &[Saved], path: &std::path::Path) {
    for entry in saved {
        let found = upstreams
            .iter_mut()
            .find(|u| u.name == entry.upstream)
            .and_then(|u| u.servers.iter_mut().find(|s| s.address == entry.address));
        match found {
            Some(s) => {
                s.admin = entry.state;
                s.weight_set = entry.weight.filter(|w| *w != s.config_weight);
                if s.admin == AdminState::Maint {
                    s.out_since = Some(SystemTime::now());
                }
            }
            None => tracing::info!(
                file = %path.display(),
                upstream = %entry.upstream,
                server = %entry.address,
                "state file names a server no longer configured; ignored"
            ),
        }
    }
}

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
