//! vrrp.toml: keepalived's vocabulary in TOML, so a keepalived.conf reads across key by key.
//!
//! Two layers: `raw` mirrors the file with serde (`deny_unknown_fields`, spans on every value
//! that can be wrong), `validate` turns it into [`Config`], collecting every error with
//! file:line:col. `lint` looks for configs that parse but cannot do what the user wants.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::instance::InstanceConfig;
pub use crate::track::Probe;
use crate::wire::vrrp;

mod anycast;
mod lint;
mod raw;
mod recover;
mod validate;

#[cfg(test)]
mod tests;

pub use lint::{lint, lint_pair};

pub use conf::{ConfigError, ConfigErrors};

/// A lint finding: the config is valid but probably does not do what was meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: {}",
            self.file.display(),
            self.line,
            self.message
        )
    }
}

/// A validated vrrp.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub source: PathBuf,
    pub router_id: String,
    /// `global_defs.runtime_dir`, default "/run/vrrp".
    pub runtime_dir: PathBuf,
    /// `global_defs.metrics`: where the Prometheus endpoint listens (none by default).
    pub metrics: Option<std::net::SocketAddr>,
    /// `global_defs.realtime`: the event loop runs SCHED_RR with its memory locked, so adverts
    /// leave on time on a starved machine (default false).
    pub realtime: bool,
    pub scripts: Vec<TrackScript>,
    pub instances: Vec<VrrpInstance>,
    /// `[anycast]`: VIPs announced over BGP instead of elected with VRRP.
    pub anycast: Option<Anycast>,
    /// Line numbers of items, for lint warnings.
    pub lines: Lines,
}

/// Where things are in the source file (1-based lines), for warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    /// Per script: the line of its `weight` (or its table header).
    pub script_weight: Vec<usize>,
    /// Per instance: the line of `priority`, `advert_int` and `authentication` (0 if absent).
    pub instance_priority: Vec<usize>,
    pub instance_advert_int: Vec<usize>,
    pub instance_auth: Vec<usize>,
}

/// `[vrrp_script.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    pub name: String,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Added to the priority while failing (keepalived: negative) or while succeeding
    /// (positive); 0 = Fault while failing.
    pub weight: i32,
    pub fall: u32,
    pub rise: u32,
}

/// `[anycast]`: the VIPs sit on `interface` (a dummy interface vrrp creates if missing) as
/// host routes while every tracked check passes, and are taken off when one fails or vrrp
/// stops. BIRD exports the addresses of that interface to its BGP neighbour, so "on the
/// interface" means "announced", and taking them off withdraws the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anycast {
    /// Default "vip0".
    pub interface: String,
    /// Each a host route: /32 or /128.
    pub vips: Vec<IpAddr>,
    /// Indices into [`Config::scripts`].
    pub track_script: Vec<usize>,
    pub track_interface: Vec<String>,
    /// Run after the VIPs were put on the interface.
    pub notify_announce: Option<String>,
    /// Run after the VIPs were taken off.
    pub notify_withdraw: Option<String>,
    /// Line of the `[anycast]` header, for warnings.
    pub line: usize,
}

impl Anycast {
    /// Host-route prefix length of `vip`.
    pub fn prefix(vip: IpAddr) -> u8 {
        if vip.is_ipv4() {
            32
        } else {
            128
        }
    }
}

/// `[vrrp_instance.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstance {
    pub name: String,
    pub initial_master_hint: bool,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub version: vrrp::Version,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub auth: vrrp::Auth,
    pub checksum: vrrp::ChecksumMode,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peer: Vec<IpAddr>,
    /// Indices into [`Config::scripts`].
    pub track_script: Vec<usize>,
    pub track_interface: Vec<String>,
    /// VIP and prefix length (default /32 or /128 as keepalived).
    pub vips: Vec<(IpAddr, u8)>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify: Option<String>,
}

impl VrrpInstance {
    /// The state machine's view; `primary_addr` is the interface's address (or unicast_src_ip).
    pub fn instance_config(&self, primary_addr: IpAddr) -> InstanceConfig {
        InstanceConfig {
            name: self.name.clone(),
            vrid: self.vrid,
            version: self.version,
            priority: self.priority,
            advert_interval: self.advert_interval,
            preempt: self.preempt,
            preempt_delay: self.preempt_delay,
            vips: self.vips.iter().map(|(a, _)| *a).collect(),
            auth: match self.version {
                vrrp::Version::V2 => self.auth,
                vrrp::Version::V3 => vrrp::Auth::None,
            },
            primary_addr,
            initial_master_hint: self.initial_master_hint,
            paced: false,
        }
    }
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) => Err(ConfigError::unreadable(path, &e).into()),
    }
}

/// Parses `text` (read from `path`, used in messages).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    validate::parse(text, path)
}
