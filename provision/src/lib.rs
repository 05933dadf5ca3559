//! SSH provisioning of the lab hosts (issue 5).
//!
//! `inventory` (lab.toml) and `render` (each host's proxy.toml / vrrp.toml) are shared with the
//! `lab` crate, so what the lab runs is exactly what `provision` deploys.

pub mod inventory;
pub mod render;
