//! The seed's four hosts on one machine with network namespaces (issue 4).
//!
//! `lab up` builds the hosts of lab.toml (a bridge in its own namespace, one namespace per host
//! plus a client, each host with its own filesystem view), runs Apache on the backends and our
//! `proxy` and `vrrp` on the balancers with configs rendered by [`provision::render`], and an
//! sshd everywhere; `lab scenario` replays the seed's test procedure against it.

pub mod bench;
pub mod error;
pub mod host;
pub mod lab;
pub mod probe;
pub mod scenario;
pub mod state;
pub mod sys;
pub mod timeline;
pub mod topology;

pub use error::{LabError, Result};
pub use lab::{default_bin_dir, Lab, Running, UpOptions, UpOutcome};
