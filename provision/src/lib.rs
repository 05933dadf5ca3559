//! SSH provisioning of the seed's servers (issue 5).
//!
//! `inventory` (lab.toml) and `render` (each host's proxy.toml / vrrp.toml) are shared with the
//! `lab` crate, so what the lab runs is exactly what `provision` deploys. The rest: `os`
//! (os-release -> family), `plan` + `steps` (pure, golden-tested plans), `exec` (check, then
//! apply what differs), `ssh` (libssh2 transport), `run` (hosts in parallel) and `report`.

pub mod adopt;
pub mod diff;
pub mod doubles;
pub mod exec;
pub mod inventory;
pub mod os;
pub mod plan;
pub mod render;
pub mod render_seed;
pub mod report;
pub mod run;
pub mod ssh;
pub mod steps;
