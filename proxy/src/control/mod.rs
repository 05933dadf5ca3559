//! Server state shared by all workers of the process: per upstream and server the admin state
//! (ready / drain / maint), a weight set at run time, the active-check health, when the server
//! came back (for slow start), and round robin's shared cycle.
//!
//! Writers (the admin API, the health checker, a reload) take the registry's mutex and bump
//! its epoch. Workers never lock on the request path: each compares the epoch once per tick
//! and, when it moved, copies a [`UpstreamView`] per upstream into its balancers.
//!
//! Two things are shared on the request path itself, as atomics (see [`Busy`], [`Waiting`]): the
//! requests in flight to each server, so `max_conns` counts across workers, and which workers
//! have requests queued for an upstream.
//!
//! The state survives a reload (servers matched by upstream name and address) and a restart:
//! admin state and weight go to the `state_file` (HAProxy's server-state-file). Health is not
//! saved: after a restart the checks establish it again.

pub mod checker;
mod cycle;
pub mod health;
mod registry;
pub mod state_file;
pub mod status;
pub mod token;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use cycle::{Cycle, MAX_CYCLE};
pub use registry::{ControlError, Registry};

/// What an operator set for a server (HAProxy's `set server state`, nginx Plus's drain/down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// In service.
    #[default]
    Ready,
    /// No new requests; in-flight ones finish; ip_hash clients hashed to it stay (sticky).
    Drain,
    /// Out now: no requests at all.
    Maint,
}

impl AdminState {
    pub fn parse(s: &str) -> Option<AdminState> {
        match s {
            "ready" => Some(AdminState::Ready),
            "drain" => Some(AdminState::Drain),
            "maint" => Some(AdminState::Maint),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

/// One upstream as a worker applies it to its balancer.
#[derive(Debug, Clone)]
pub struct UpstreamView {
    pub name: String,
    pub servers: Vec<ServerView>,
    /// Round robin's shared cycle over the servers in service (None: each worker's own WRR).
    pub cycle: Option<Arc<Cycle>>,
    pub waiting: Waiting,
}

/// Requests in flight to one server from every worker: `max_conns` is a cap on this count
/// (HAProxy's server `maxconn`, nginx's `max_conns` with a `zone`). Kept across reloads with
/// the server's other state. Equal when it is the same counter.
#[derive(Debug, Clone, Default)]
pub struct Busy(pub Arc<AtomicU32>);

impl PartialEq for Busy {
    fn eq(&self, other: &Busy) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The upstream's queue across workers: every queued request draws a number from `next`, and
/// each worker publishes the number of its oldest waiter in its slot of `oldest` (`id % 64`;
/// `u64::MAX`: none). A freed slot goes to the worker holding the smallest number, so the
/// queue is first come, first served across workers as well.
#[derive(Debug, Clone)]
pub struct Waiting(pub Arc<WaitingOrder>);

#[derive(Debug)]
pub struct WaitingOrder {
    pub next: AtomicU64,
    pub oldest: [AtomicU64; 64],
    /// Requests called (a slot is free for each) that have not picked yet, in all workers:
    /// their slots are spoken for, so nobody else calls or takes them.
    pub called: AtomicU32,
}

impl Default for Waiting {
    fn default() -> Waiting {
        Waiting(Arc::new(WaitingOrder {
            next: AtomicU64::new(0),
            oldest: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            called: AtomicU32::new(0),
        }))
    }
}

/// One server as a worker applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerView {
    /// As written in the config.
    pub name: String,
    pub address: SocketAddr,
    pub admin: AdminState,
    /// Failing its active checks.
    pub health_down: bool,
    /// The weight in force: configured, or set at run time.
    pub weight: u32,
    /// When the server last came back into service (checks up, maint/drain -> ready): a
    /// slow start runs from here.
    pub back_since: Option<Instant>,
    pub busy: Busy,
}
