//! The file as written: serde structs that reject unknown keys and keep the span of every value
//! that validation may complain about. Everything is optional here so that a missing key is a
//! collected validation error, not a serde error that stops the parse.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub global_defs: Option<Spanned<RawGlobal>>,
    #[serde(default)]
    pub vrrp_script: BTreeMap<String, Spanned<RawScript>>,
    #[serde(default)]
    pub vrrp_instance: BTreeMap<String, Spanned<RawInstance>>,
    pub anycast: Option<Spanned<RawAnycast>>,
}

/// `[anycast]`: VIPs announced over BGP (by BIRD, from the addresses on `interface`) while
/// every tracked check passes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnycast {
    pub interface: Option<Spanned<String>>,
    pub virtual_ipaddress: Option<Spanned<Vec<Spanned<String>>>>,
    pub track_script: Option<Vec<Spanned<String>>>,
    pub track_interface: Option<Vec<Spanned<String>>>,
    pub notify_announce: Option<Spanned<String>>,
    pub notify_withdraw: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub router_id: Option<Spanned<String>>,
    pub runtime_dir: Option<Spanned<String>>,
    /// ADDRESS:PORT of the Prometheus endpoint.
    pub metrics: Option<Spanned<String>>,
    /// Run the event loop SCHED_RR with its memory locked.
    pub realtime: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScript {
    pub script: Option<Spanned<String>>,
    pub http: Option<Spanned<String>>,
    /// Seconds (integer or fractional).
    pub interval: Option<Spanned<f64>>,
    pub timeout: Option<Spanned<f64>>,
    pub weight: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub rise: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub auth_type: Spanned<String>,
    pub auth_pass: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    pub state: Option<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
    pub virtual_router_id: Option<Spanned<i64>>,
    pub priority: Option<Spanned<i64>>,
    pub advert_int: Option<Spanned<f64>>,
    pub version: Option<Spanned<i64>>,
    pub nopreempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<f64>>,
    pub authentication: Option<Spanned<RawAuth>>,
    pub checksum: Option<Spanned<String>>,
    pub unicast_src_ip: Option<Spanned<String>>,
    pub unicast_peer: Option<Vec<Spanned<String>>>,
    pub track_script: Option<Vec<Spanned<String>>>,
    pub track_interface: Option<Vec<Spanned<String>>>,
    pub virtual_ipaddress: Option<Spanned<Vec<Spanned<String>>>>,
    pub notify_master: Option<Spanned<String>>,
    pub notify_backup: Option<Spanned<String>>,
    pub notify_fault: Option<Spanned<String>>,
    pub notify: Option<Spanned<String>>,
}
