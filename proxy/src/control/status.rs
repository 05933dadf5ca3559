//! `GET /api/upstreams` (and the upstream part of the status page): every upstream and server
//! with the shared state from the registry and the per-worker counters the workers publish
//! (about every 200 ms) summed up. Also the registry's lines of /metrics.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::balance::PeerState;
use crate::config::Balance;
use crate::metrics::WorkerStats;

use super::health::{Health, LastCheck};
use super::registry::{unix, ServerEntry, UpstreamEntry};
use super::{AdminState, Registry};

/// The JSON of `GET /api/upstreams`. Fields are only ever added, never renamed.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamsStatus {
    pub upstreams: Vec<UpstreamStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    /// "round_robin", "least_conn" or "ip_hash".
    pub balance: &'static str,
    /// The active check, when configured.
    pub health_check: Option<CheckStatus>,
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    pub uri: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub fall: u32,
    pub rise: u32,
    /// Accepted statuses, as in the config ("2xx|3xx").
    pub expect: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    /// As written in the config (what POST /api/upstreams/NAME/servers/ADDR takes).
    pub address: String,
    /// The resolved ip:port (also accepted by the POST).
    pub resolved: String,
    pub backup: bool,
    /// One word for the table: "up", "down", "drain", "maint" or "slow_start".
    pub state: &'static str,
    /// What an operator set: "ready", "drain" or "maint".
    pub admin_state: AdminState,
    /// Active checks: "unchecked", "up" or "down".
    pub health: Health,
    /// In the config.
    pub configured_weight: u32,
    /// In force: configured or set at run time.
    pub weight: u32,
    /// Now, after slow start and failures (lowest over the workers).
    pub effective_weight: f64,
    pub slow_start_ms: u64,
    pub last_check: Option<LastCheck>,
    pub checks_passed: u64,
    pub checks_failed: u64,
    /// Passive failures within fail_timeout, summed over the workers.
    pub fails: u64,
    pub fails_total: u64,
    /// Requests in flight to the server, summed over the workers.
    pub active: u64,
    /// Requests handed to the server (each try), summed over the workers.
    pub requests: u64,
    pub responses_5xx: u64,
    /// Unix seconds of the last change of admin state or health.
    pub last_change: f64,
    /// Total seconds out of service (maint, or down by checks), the current stretch included.
    pub downtime_s: f64,
}

/// Everything `GET /api/upstreams` shows.
pub fn upstreams(registry: &Registry, workers: &[Arc<WorkerStats>]) -> UpstreamsStatus {
    let published: Vec<Vec<(String, Vec<PeerState>)>> = workers
        .iter()
        .filter_map(|w| w.peers.lock().ok().map(|p| p.clone()))
        .collect();
    let now = Instant::now();
    let wall = SystemTime::now();
    registry.with_entries(|entries| UpstreamsStatus {
        upstreams: entries
            .iter()
            .map(|u| upstream(u, &published, now, wall))
            .collect(),
    })
}

fn upstream(
    u: &UpstreamEntry,
    published: &[Vec<(String, Vec<PeerState>)>],
    now: Instant,
    wall: SystemTime,
) -> UpstreamStatus {
    UpstreamStatus {
        name: u.name.clone(),
        balance: match u.balance {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
            Balance::IpHash => "ip_hash",
        },
        health_check: u.check.as_ref().map(|c| CheckStatus {
            uri: c.uri.clone(),
            interval_ms: c.interval.as_millis() as u64,
            timeout_ms: c.timeout.as_millis() as u64,
            fall: c.fall,
            rise: c.rise,
            expect: c.expect.to_string(),
        }),
        servers: u
            .servers
            .iter()
            .map(|s| {
                let views: Vec<&PeerState> = published
                    .iter()
                    .flat_map(|w| w.iter().filter(|(n, _)| *n == u.name))
                    .flat_map(|(_, peers)| peers.iter())
                    .filter(|p| p.address == s.address && p.name == s.name)
                    .collect();
                server(s, &views, now, wall)
            })
            .collect(),
    }
}

fn server(s: &ServerEntry, views: &[&PeerState], now: Instant, wall: SystemTime) -> ServerStatus {
    let sum = |f: &dyn Fn(&PeerState) -> u64| views.iter().map(|p| f(p)).sum::<u64>();
    let effective = views
        .iter()
        .map(|p| p.effective_weight)
        .fold(f64::from(s.weight()), f64::min);
    let ramping = s
        .back_since
        .is_some_and(|b| now.saturating_duration_since(b) < s.slow_start)
        || effective < f64::from(s.weight());
    let passive_out = !views.is_empty() && views.iter().all(|p| !p.available);
    let state = if s.config_down || s.health == Health::Down {
        "down"
    } else if s.admin == AdminState::Maint {
        "maint"
    } else if s.admin == AdminState::Drain {
        "drain"
    } else if passive_out {
        "down"
    } else if ramping {
        "slow_start"
    } else {
        "up"
    };
    ServerStatus {
        address: s.name.clone(),
        resolved: s.address.to_string(),
        backup: s.backup,
        state,
        admin_state: s.admin,
        health: s.health,
        configured_weight: s.config_weight,
        weight: s.weight(),
        effective_weight: (effective * 100.0).round() / 100.0,
        slow_start_ms: s.slow_start.as_millis() as u64,
        last_check: s.last_check.clone(),
        checks_passed: s.checks_passed,
        checks_failed: s.checks_failed,
        fails: sum(&|p| u64::from(p.fails)),
        fails_total: sum(&|p| p.fails_total),
        active: sum(&|p| u64::from(p.active_conns)),
        requests: sum(&|p| p.requests),
        responses_5xx: sum(&|p| p.responses_5xx),
        last_change: unix(s.changed_at),
        downtime_s: s.downtime(wall).as_secs_f64(),
    }
}

/// The registry's part of /metrics: admin state, check health, checks and transitions.
pub fn render_metrics(registry: &Registry, out: &mut String) {
    let mut state = String::new();
    let mut health = String::new();
    let mut checks = String::new();
    let mut moves = String::new();
    registry.with_entries(|entries| {
        for u in entries {
            for s in &u.servers {
                let l = format!("upstream=\"{}\",server=\"{}\"", u.name, s.address);
                let _ = writeln!(
                    state,
                    "proxy_upstream_server_admin_state{{{l},state=\"{}\"}} 1",
                    s.admin.as_str()
                );
                let h = match s.health {
                    Health::Down => 0,
                    Health::Up | Health::Unchecked => 1,
                };
                let _ = writeln!(health, "proxy_upstream_server_health_up{{{l}}} {h}");
                if u.check.is_some() {
                    let _ = writeln!(
                        checks,
                        "proxy_upstream_server_checks_total{{{l},result=\"pass\"}} {}",
                        s.checks_passed
                    );
                    let _ = writeln!(
                        checks,
                        "proxy_upstream_server_checks_total{{{l},result=\"fail\"}} {}",
                        s.checks_failed
                    );
                    let _ = writeln!(
                        moves,
                        "proxy_upstream_server_health_changes_total{{{l},to=\"down\"}} {}",
                        s.went_down
                    );
                    let _ = writeln!(
                        moves,
                        "proxy_upstream_server_health_changes_total{{{l},to=\"up\"}} {}",
                        s.went_up
                    );
                }
            }
        }
    });
    let sections = [
        (
            "proxy_upstream_server_admin_state",
            "gauge",
            "Admin state set at run time (ready, drain, maint).",
            state,
        ),
        (
            "proxy_upstream_server_health_up",
            "gauge",
            "0 while the active health checks hold the server down.",
            health,
        ),
        (
            "proxy_upstream_server_checks_total",
            "counter",
            "Active health checks, by result.",
            checks,
        ),
        (
            "proxy_upstream_server_health_changes_total",
            "counter",
            "Health changes decided by the active checks.",
            moves,
        ),
    ];
    for (name, kind, help, body) in sections {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{body}");
    }
}
