//! The frames that announce a VIP's new owner.
//!
//! IPv4: an Ethernet broadcast ARP request with sender = target = VIP (RFC 5227 calls it an
//! ARP announcement; Linux uses it to override an existing neighbour entry). IPv6: an
//! unsolicited neighbour advertisement (RFC 4861 7.2.6) with the Override flag and the target
//! link-layer address option; the kernel fills in the ICMPv6 checksum for raw sockets.
//!
//! Hand-written rather than `pnet_packet`: both frames are fixed-size and emit-only, and pnet
//! would add a proc-macro code generator to the build for 30 lines of offsets.

use std::net::{Ipv4Addr, Ipv6Addr};

/// EtherType of ARP, also the packet socket protocol the frame is sent with.
pub const ETH_P_ARP: u16 = 0x0806;
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// Length of the Ethernet + ARP frame.
pub const ARP_FRAME_LEN: usize = 42;
/// Length of the NA message with its one option.
pub const NA_LEN: usize = 32;

/// Offsets in the Ethernet + ARP frame (RFC 826).
mod arp_field {
    use std::ops::Range;
    pub const ETH_DST: Range<usize> = 0..6;
    pub const ETH_SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const HTYPE: Range<usize> = 14..16;
    pub const PTYPE: Range<usize> = 16..18;
    pub const HLEN: usize = 18;
    pub const PLEN: usize = 19;
    pub const OPER: Range<usize> = 20..22;
    pub const SHA: Range<usize> = 22..28;
    pub const SPA: Range<usize> = 28..32;
    pub const THA: Range<usize> = 32..38;
    pub const TPA: Range<usize> = 38..42;
}

/// Offsets in the ICMPv6 neighbour advertisement (RFC 4861 4.4).
mod na_field {
    use std::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const FLAGS: usize = 4;
    pub const TARGET: Range<usize> = 8..24;
    pub const OPT_TYPE: usize = 24;
    pub const OPT_LEN: usize = 25;
    pub const OPT_LLADDR: Range<usize> = 26..32;
}

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;
const OPER_REQUEST: u16 = 1;
const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;
/// The Override flag: replace the cached link-layer address. Not Solicited (nobody asked),
/// not Router.
const NA_FLAG_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LLADDR: u8 = 2;

/// An Ethernet frame carrying a gratuitous ARP request for `vip` from `mac`.
pub fn arp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[arp_field::ETH_DST].copy_from_slice(&BROADCAST);
    f[arp_field::ETH_SRC].copy_from_slice(&mac);
    f[arp_field::ETHERTYPE].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[arp_field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
    f[arp_field::PTYPE].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
    f[arp_field::HLEN] = 6;
    f[arp_field::PLEN] = 4;
    f[arp_field::OPER].copy_from_slice(&OPER_REQUEST.to_be_bytes());
    f[arp_field::SHA].copy_from_slice(&mac);
    f[arp_field::SPA].copy_from_slice(&vip.octets());
    // Broadcast target hardware address, as keepalived sends it.
    f[arp_field::THA].copy_from_slice(&BROADCAST);
    // Target = sender: what makes the request gratuitous.
    f[arp_field::TPA].copy_from_slice(&vip.octets());
    f
}

/// An ICMPv6 neighbour advertisement for `vip` (checksum left 0 for the kernel).
pub fn na_message(mac: [u8; 6], vip: Ipv6Addr) -> [u8; NA_LEN] {
    let mut m = [0u8; NA_LEN];
    m[na_field::TYPE] = ICMPV6_NEIGHBOUR_ADVERT;
    m[na_field::CODE] = 0;
    m[na_field::FLAGS] = NA_FLAG_OVERRIDE;
    m[na_field::TARGET].copy_from_slice(&vip.octets());
    m[na_field::OPT_TYPE] = OPT_TARGET_LLADDR;
    // Option length in units of 8 bytes.
    m[na_field::OPT_LEN] = 1;
    m[na_field::OPT_LLADDR].copy_from_slice(&mac);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_frame_layout() {
        let f = arp_frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 80));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[10, 0, 0, 80]);
        assert_eq!(&f[38..42], &[10, 0, 0, 80]);
        let m = na_message([2, 0, 0, 0, 0, 1], "fd00::80".parse().unwrap());
        assert_eq!((m[0], m[4], m[24], m[25]), (136, 0x20, 2, 1));
        assert_eq!(&m[26..], &[2, 0, 0, 0, 0, 1]);
    }
}
