//! proxy.toml: the raw serde layer (`deny_unknown_fields`) and the validated [`Config`].
//!
//! Every error names the file and line (`file:line:col: message`), and validation collects all
//! errors instead of stopping at the first one, like `nginx -t`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// 0 = unlimited.
    pub max_conns: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<UpstreamServer>,
    pub balance: Balance,
    /// Idle pooled connections kept per worker (nginx `keepalive`). 0 disables pooling.
    pub keepalive: usize,
    /// How long an idle pooled connection may be reused (nginx `keepalive_timeout` in upstream).
    pub keepalive_timeout: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub path: String,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub client_max_body_size: u64,
    /// Largest request head accepted; larger gets 431.
    pub max_header_size: usize,
    pub keepalive_timeout: Duration,
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
    /// `None` = "off".
    pub access_log: Option<PathBuf>,
    pub admin: Option<SocketAddr>,
    pub upstreams: Vec<Upstream>,
    pub servers: Vec<Server>,
}

// TEMPORARY stub until the config module lands (merge takes the real implementation).
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);
impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join("\n"))
    }
}
pub fn load(_path: &std::path::Path) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(vec!["stub".into()]))
}
