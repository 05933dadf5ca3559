//! `vrrp`: a VRRP v2/v3 daemon (RFC 3768 / RFC 5798) that owns the VIPs and interoperates with
//! keepalived.

pub mod config;
pub mod daemon;
pub mod instance;
pub mod sys;
pub mod track;
pub mod wire;
