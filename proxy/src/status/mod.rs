//! The admin listener's status page: `GET /api/status` (JSON) and `GET /` (one self-contained
//! HTML page that fetches the JSON every two seconds).
//!
//! One document for the whole balancer, as an operator of the pair needs it: the local vrrp's
//! role and why (from its status file, [`vrrp`]), every upstream server's state and counters
//! (the control API's view, [`crate::control::status`]), and the process (version, config digest and reloads, uptime, workers).
//! Rates (requests and 5xx per second) are left to the page, which divides the difference of
//! two samples' totals by the time between them: the JSON holds only totals, so two clients
//! polling at different periods both see correct rates.

pub mod vrrp;

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use serde::Serialize;

use crate::admin::Response;
use crate::control::status::UpstreamStatus;
use crate::state::Shared;
use vrrp::VrrpView;

/// The page, served as is: inline CSS and JS, no external asset.
pub const PAGE: &str = include_str!("page.html");

/// What the page may load: only itself and /api/status. A page that pulled a script or font
/// from elsewhere would break offline, so the browser is told to refuse it.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The whole `/api/status` document.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub host: String,
    /// Unix time in milliseconds when this document was made (the page's clock for ages).
    pub now_ms: u64,
    pub process: Process,
    pub workers: Vec<Worker>,
    /// As `GET /api/upstreams` shows them.
    pub upstreams: Vec<UpstreamStatus>,
    pub vrrp: VrrpView,
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub version: &'static str,
    pub pid: u32,
    pub started_ms: u64,
    pub uptime_s: f64,
    /// 1 while accepting and serving (what /healthz says).
    pub serving: bool,
    pub config: String,
    pub config_sha256: String,
    /// The last successful reload, `None` if never reloaded.
    pub reloaded_ms: Option<u64>,
    pub reloads: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Worker {
    pub id: usize,
    pub alive: bool,
    pub active_connections: u64,
    pub accepted: u64,
    pub requests: u64,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The document for this process now.
pub fn collect(shared: &Shared) -> Status {
    let now = SystemTime::now();
    let config = shared.config();
    let (reloaded, reloads) = shared.reloads();
    let process = Process {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        started_ms: unix_ms(shared.started),
        uptime_s: now
            .duration_since(shared.started)
            .unwrap_or_default()
            .as_secs_f64(),
        serving: shared.serving(),
        config: config.source.display().to_string(),
        config_sha256: config.sha256.clone(),
        reloaded_ms: reloaded.map(unix_ms),
        reloads,
    };
    let workers = shared
        .stats
        .iter()
        .map(|w| Worker {
            id: w.id,
            alive: w.alive.load(Relaxed),
            active_connections: w.active_connections.load(Relaxed),
            accepted: w.accepted.load(Relaxed),
            requests: w.requests.load(Relaxed),
        })
        .collect();
    Status {
        host: hostname(),
        now_ms: unix_ms(now),
        process,
        workers,
        upstreams: crate::control::status::upstreams(&shared.control, &shared.stats).upstreams,
        vrrp: vrrp::read(config.vrrp_status.as_deref(), unix_ms(now)),
    }
}

/// `GET /`: the page, with a policy that lets it load nothing but itself and /api/status.
pub fn page() -> Response {
    let mut r = Response::new(200, "text/html; charset=utf-8", PAGE);
    r.headers
        .push(("Content-Security-Policy", PAGE_CSP.to_string()));
    r
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        // No external asset: nothing loaded from another origin, nothing but inline code.
        for needle in ["http://", "https://", "<link", "src=", "@import", "url("] {
            assert!(!PAGE.contains(needle), "page contains {needle:?}");
        }
        assert!(PAGE.contains("/api/status"));
        // The token is typed by the operator and kept in sessionStorage; never in the page.
        assert!(PAGE.contains("sessionStorage"));
        assert!(!PAGE.contains("localStorage"));
    }
}
