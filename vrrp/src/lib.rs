//! `vrrp`: a VRRP v2/v3 daemon (RFC 3768 / RFC 5798) that owns the VIPs and interoperates with
//! keepalived.
//!
//! Pure protocol logic (`packet`, `instance`, `config`) has no I/O and no clock; `net`, `vip`,
//! `garp`, `track` and `daemon` are the thin I/O shell.

pub mod config;
pub mod daemon;
pub mod garp;
pub mod import;
pub mod instance;
pub mod net;
pub mod packet;
pub mod track;
pub mod vip;
