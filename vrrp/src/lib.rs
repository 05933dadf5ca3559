//! `vrrp`: a VRRP v2/v3 daemon (RFC 3768 / RFC 5798) that owns the virtual IP addresses of a
//! pair of load balancers and interoperates with keepalived, configured with keepalived's
//! vocabulary in TOML.
//!
//! Read it from the inside out. [`instance`] is the protocol: one virtual router's state
//! machine (Initialize / Backup / Master / Fault) with every protocol timer, pure (no I/O, no
//! clock: the caller passes `now`) and driven quinn-proto style (`handle`, `handle_timeout`,
//! `poll_timeout`, `poll_action`). [`wire`] is the bytes: the VRRP advertisement, the IPv4
//! header of received packets and the ARP/NA announcement frames, pure parse and emit.
//! [`config`] reads and validates vrrp.toml (every error with file:line:col) and lints it;
//! [`track`] turns `vrrp_script` and `track_interface` results into an effective priority or
//! Fault (pure) and runs the probes (threads). Around them the thin I/O shell: [`sys`] owns the
//! kernel interfaces (the raw protocol-112 socket, rtnetlink, the announcement sockets) and
//! [`daemon`] is the single-threaded event loop that connects sockets, timers, tracking,
//! reloads, notify scripts and the status file to the state machines. [`cli`] holds the
//! commands (`vrrp --config`, `vrrp --check`, `vrrp status`, `vrrp import`); [`import`] turns a
//! keepalived.conf into vrrp.toml with a report of what does not carry over. [`anycast`] is
//! the other mode: VIPs announced over BGP (through BIRD) by every healthy balancer instead of
//! elected, pure too; the daemon puts them on a dummy interface while the checks pass.

pub mod anycast;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod import;
pub mod instance;
pub mod sys;
pub mod track;
pub mod wire;
