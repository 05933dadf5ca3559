//! Every upstream server as the status page shows it.
//!
//! Workers keep their balancers thread-local (no lock on the request path) and publish a
//! snapshot of their peers about every 200 ms ([`crate::metrics::WorkerStats::peers`]); the
//! page's row for a server sums those snapshots over the workers.

use serde::Serialize;

use crate::balance::PeerState;
use crate::config::{Balance, Config, Upstream};
use crate::state::Shared;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamView {
    pub name: String,
    pub balance: &'static str,
    pub servers: Vec<ServerView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerView {
    /// As written in the config (what the POST API and `proxy ctl` take).
    pub address: String,
    pub backup: bool,
    /// "up", "down" (config `down`, or failed passive or active checks), "drain", "maint" or
    /// "slow_start".
    pub state: &'static str,
    /// Why, when it is not plainly up (e.g. "failed in 1 of 2 workers").
    pub detail: String,
    pub weight: u32,
    /// The weight the balancer uses now (lower during slow start); `None` when not known.
    pub effective_weight: Option<u32>,
    /// Requests in flight to this server, all workers.
    pub active: u64,
    /// Requests answered through this server since start (`None`: not counted).
    pub requests: Option<u64>,
    /// Of those, answered with a 5xx status.
    pub responses_5xx: Option<u64>,
    /// Passive failures (connect, send, read) counted against it since start.
    pub fails: u64,
}

fn balance_name(b: Balance) -> &'static str {
    match b {
        Balance::RoundRobin => "round_robin",
        Balance::LeastConn => "least_conn",
        Balance::IpHash => "ip_hash",
    }
}

/// All upstreams of `config`, from the workers' latest peer snapshots.
pub fn collect(shared: &Shared, config: &Config) -> Vec<UpstreamView> {
    let snapshots: Vec<Vec<(String, Vec<PeerState>)>> = shared
        .stats
        .iter()
        .filter_map(|w| w.peers.lock().ok().map(|p| p.clone()))
        .collect();
    config
        .upstreams
        .iter()
        .map(|u| {
            let per_worker: Vec<&[PeerState]> = snapshots
                .iter()
                .filter_map(|w| w.iter().find(|(n, _)| *n == u.name))
                .map(|(_, s)| s.as_slice())
                .collect();
            view(u, &per_worker)
        })
        .collect()
}

/// One upstream's rows from each worker's snapshot of it (pure).
pub fn view(upstream: &Upstream, per_worker: &[&[PeerState]]) -> UpstreamView {
    let servers = upstream
        .servers
        .iter()
        .map(|s| {
            let states: Vec<&PeerState> = per_worker
                .iter()
                .filter_map(|w| w.iter().find(|p| p.name == s.name))
                .collect();
            let failed_in = states.iter().filter(|p| !p.available).count();
            let (state, detail) = if s.down {
                ("down", "down = true in the config".to_string())
            } else if failed_in > 0 {
                (
                    "down",
                    format!(
                        "failed (max_fails) in {failed_in} of {} workers",
                        states.len()
                    ),
                )
            } else {
                ("up", String::new())
            };
            ServerView {
                address: s.name.clone(),
                backup: s.backup,
                state,
                detail,
                weight: s.weight,
                effective_weight: None,
                active: states.iter().map(|p| u64::from(p.active_conns)).sum(),
                requests: None,
                responses_5xx: None,
                fails: states.iter().map(|p| p.fails_total).sum(),
            }
        })
        .collect();
    UpstreamView {
        name: upstream.name.clone(),
        balance: balance_name(upstream.balance),
        servers,
    }
}
