//! Wire formats, pure: parse and emit byte slices, no sockets. Each format names its field
//! offsets in a `field` module (smoltcp style) and exposes typed accessors, so the I/O code in
//! `sys` never indexes a packet by hand.
//!
//! - [`vrrp`]: the VRRP v2/v3 advertisement (RFC 3768 / RFC 5798).
//! - [`ipv4`]: the IPv4 header an IPv4 raw socket hands over with each received datagram.
//! - [`arp`]: the gratuitous ARP frame and the unsolicited neighbour advertisement a new master
//!   sends for its VIPs.
//!
//! rtnetlink messages are not here: `netlink-packet-route` parses and emits them.

pub mod arp;
pub mod ipv4;
pub mod vrrp;
