//! The kernel interfaces, thin: each file owns one kind of socket and turns syscalls into
//! typed results; the formats on the wire live in `wire`.
//!
//! - [`socket`]: the raw IP-protocol-112 socket of one instance (send and filter adverts).
//! - [`netlink`]: the rtnetlink client (add/remove VIPs, read addresses and link state).
//! - [`announce`]: gratuitous ARP and unsolicited NA for the VIPs of a new master.
//! - [`realtime`]: SCHED_RR and locked memory for the advert pacer.

pub mod announce;
pub mod netlink;
pub mod realtime;
pub mod socket;
#[cfg(test)]
pub(crate) mod testns;
