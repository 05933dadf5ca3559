//! proxy.toml: the raw serde layer (`deny_unknown_fields`) and the validated [`Config`].
//!
//! Every error names the file and line (`file:line:col: message`), and validation collects all
//! errors instead of stopping at the first one, like `nginx -t`.
//!
//! How: the file is parsed once into `toml_edit`'s span-preserving document; then every section
//! (the top-level keys, each `[upstream.NAME]`, each entry of its `servers`, each `[[server]]`,
//! each `[[server.location]]`) is deserialized on its own into the raw serde structs of
//! [`raw`], and validation turns those into [`Config`]. The one limit: serde stops at the first
//! unknown key or wrong type *inside one section* (one table or one `servers` entry), so two such
//! mistakes in the same table are reported one per `--check` run; mistakes in different
//! sections, and every validation error (bad durations, sizes, addresses, ranges, references),
//! are all reported together. A TOML syntax error stops everything (there is no document).

mod build;
mod check;
mod raw;
mod units;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::pool::Keepalive;
pub use units::{parse_duration, parse_size};

/// How many worker threads to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One per available core.
    Auto,
    Count(usize),
}

/// Balancing method of an upstream group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    IpHash,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamServer {
    /// As written in the config (for logs and metrics labels).
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub backup: bool,
    pub down: bool,
    /// Requests in flight to this server from all workers together (HAProxy's `maxconn`,
    /// nginx's `max_conns` with a `zone`); 0 = unlimited.
    pub max_conns: u32,
    /// nginx Plus `slow_start`: after the server comes back its weight ramps up from 0 over
    /// this long. Zero = off.
    pub slow_start: Duration,
}

/// Active health checks of an upstream's servers (nginx Plus `health_check`, HAProxy `check`).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// Request target of the check (`GET uri HTTP/1.1`).
    pub uri: String,
    pub interval: Duration,
    /// For connecting and the whole response head.
    pub timeout: Duration,
    /// Consecutive failed checks that take an up server down.
    pub fall: u32,
    /// Consecutive passed checks that bring a down server back.
    pub rise: u32,
    pub expect: Expect,
}

/// Status codes a check accepts, e.g. "2xx|3xx", "200", "200-399" (alternatives joined by `|`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect(pub Vec<(u16, u16)>);

impl Expect {
    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// Back in the config's notation: "2xx|3xx", "200", "301-302".
impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &(lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            if lo % 100 == 0 && hi == lo + 99 {
                write!(f, "{}xx", lo / 100)?;
            } else if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<UpstreamServer>,
    pub balance: Balance,
    /// Idle pooled connections kept per worker: `"auto"` (as many as were recently in use at
    /// once) or nginx's `keepalive N` (0 disables pooling).
    pub keepalive: Keepalive,
    /// How long an idle pooled connection may be reused (nginx `keepalive_timeout` in upstream).
    pub keepalive_timeout: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    pub health_check: Option<HealthCheck>,
    /// nginx Plus `queue`: requests that may wait, per worker, for a server below its
    /// `max_conns` instead of getting 502 at once (a slot freed by any worker calls a waiter).
    /// 0 = no queue (nginx's open-source behaviour).
    pub queue: u32,
    /// How long a request may wait in the queue before it gets 502 (nginx Plus `timeout=`).
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub path: String,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// Overrides the server's `proxy_request_buffering` when set.
    pub proxy_request_buffering: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    /// Largest request body accepted; larger gets 413. 0 = no limit (nginx's meaning).
    pub client_max_body_size: u64,
    /// Largest request head accepted; larger gets 431.
    pub max_header_size: usize,
    pub keepalive_timeout: Duration,
    /// Request body bytes held in memory; the rest of a buffered body goes to a temporary file.
    pub client_body_buffer_size: usize,
    /// Read the whole request body before picking an upstream (nginx's default).
    pub proxy_request_buffering: bool,
    /// Longest prefix match wins, as nginx prefix locations.
    pub locations: Vec<Location>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was loaded from.
    pub source: PathBuf,
    pub workers: Workers,
    /// Pin worker N to core N.
    pub pin_workers: bool,
    /// Forward large bodies with splice(2) through a pipe instead of copying them through
    /// user space (default on).
    pub splice: bool,
    /// Client connections one worker holds at most (nginx's `worker_connections`); more are
    /// closed at accept.
    pub worker_connections: usize,
    /// Where request bodies beyond `client_body_buffer_size` are kept while buffered.
    pub client_body_temp_path: PathBuf,
    /// `None` = "off".
    pub access_log: Option<PathBuf>,
    pub admin: Option<SocketAddr>,
    /// The local vrrp daemon's status file, shown on the admin status page; `None` = "off".
    pub vrrp_status: Option<PathBuf>,
    /// SHA-256 of the file's text (hex), so an operator can tell which config a process runs
    /// and whether both balancers run the same one (`sha256sum proxy.toml` gives the same).
    pub sha256: String,
    /// File holding the bearer token that admin mutations (POST) require; must not be
    /// readable by group or others.
    pub admin_token_file: Option<PathBuf>,
    /// Where drain/maint/weight set at run time are kept across restarts (HAProxy's
    /// server-state-file).
    pub state_file: Option<PathBuf>,
    pub upstreams: Vec<Upstream>,
    pub servers: Vec<Server>,
}

pub use conf::{ConfigError, ConfigErrors};

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) => Err(ConfigError::unreadable(path, &e).into()),
    }
}

/// Validates config text; `path` is only used in error messages and as [`Config::source`].
/// Upstream server host names are resolved here (once, like nginx at startup).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut config = build::build(text, path, &build::system_resolver)?;
    config.sha256 = sha256_hex(text.as_bytes());
    Ok(config)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Default values, nginx's where nginx has one.
pub mod defaults {
    use std::time::Duration;

    pub const WEIGHT: u32 = 1;
    pub const MAX_FAILS: u32 = 1;
    pub const FAIL_TIMEOUT: Duration = Duration::from_secs(10);
    /// Sized from recent use: a fixed count either churns connections when more requests run
    /// at once than it keeps, or holds idle descriptors nobody needs.
    pub const KEEPALIVE: super::Keepalive = super::Keepalive::Auto;
    /// Below Apache's default `KeepAliveTimeout 5`, so we drop an idle pooled connection before
    /// the backend does (a backend close racing our reuse is the classic spurious 502).
    pub const UPSTREAM_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(4);
    /// nginx Plus's default `queue ... timeout=`.
    pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
    pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
    pub const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
    pub const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
    /// 1m, as nginx; 0 disables the check (nginx too).
    pub const CLIENT_MAX_BODY_SIZE: u64 = 1 << 20;
    pub const MAX_HEADER_SIZE: usize = 8 << 10;
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(65);
    /// Per worker. Each costs ~1.5 KiB idle and up to ~100 KiB with a request in flight
    /// (buffers, body buffer), so 4096 bounds a worker near 400 MiB at worst.
    pub const WORKER_CONNECTIONS: usize = 4096;
    /// nginx's default on 64-bit machines (two pages).
    pub const CLIENT_BODY_BUFFER_SIZE: usize = 16 << 10;
    pub const CHECK_URI: &str = "/";
    pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
    pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
    pub const CHECK_FALL: u32 = 3;
    pub const CHECK_RISE: u32 = 2;
    pub const CHECK_EXPECT: &str = "2xx|3xx";
    /// Writable by the service: systemd makes it with `CacheDirectory=proxy`.
    pub const CLIENT_BODY_TEMP_PATH: &str = "/var/cache/proxy/client_body_temp";
    /// Where vrrp (runtime_dir /run/vrrp) writes its status.
    pub const VRRP_STATUS: &str = "/run/vrrp/status.toml";
}
