//! What an instance counts and why it drops an advert (keepalived logs each of these).

use std::net::IpAddr;

use super::State;
use crate::wire::vrrp::Version;

/// Counters of received adverts, mostly the dropped ones (keepalived logs these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Adverts that passed all checks.
    pub adverts_accepted: u64,
    pub adverts_sent: u64,
    pub priority_zero_received: u64,
    pub dropped_vrid: u64,
    pub dropped_version: u64,
    pub dropped_auth: u64,
    pub dropped_addr_list: u64,
    /// v2 only: interval differs from ours.
    pub dropped_interval: u64,
    /// Our own advert looped back.
    pub dropped_own: u64,
    /// Received while in Initialize or Fault.
    pub ignored_not_running: u64,
    pub became_master: u64,
}

/// Why an advert was dropped (keepalived logs each of these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    Vrid {
        got: u8,
    },
    Version {
        got: Version,
    },
    /// Our own advert looped back.
    Own,
    /// v2 auth type or PASS password differs.
    Auth,
    /// v2: the interval differs from ours.
    Interval {
        got_cs: u16,
        ours_cs: u16,
    },
    /// The address list differs from our VIPs (keepalived drops it: split brain risk).
    AddrList {
        got: Vec<IpAddr>,
    },
    /// Received while in Initialize or Fault.
    NotRunning(State),
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Vrid { got } => write!(f, "VRID {got} is not ours"),
            DropReason::Version { got } => write!(f, "version {} is not ours", got.number()),
            DropReason::Own => f.write_str("our own advert"),
            DropReason::Auth => f.write_str("authentication mismatch (auth type or password)"),
            DropReason::Interval { got_cs, ours_cs } => write!(
                f,
                "advertisement interval mismatch: got {} s, ours {} s",
                got_cs / 100,
                ours_cs / 100
            ),
            DropReason::AddrList { got } => {
                write!(f, "address list {got:?} differs from our virtual_ipaddress")
            }
            DropReason::NotRunning(s) => write!(f, "ignored in state {s}"),
        }
    }
}
