//! Decode arbitrary bytes as a VRRP message from IPv4 and IPv6 senders; whatever decodes must
//! re-encode and decode to the same advert (with both v3 IPv4 checksum modes).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use vrrp::wire::vrrp::{decode, encode, ChecksumMode};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the address pair so unicast/multicast destinations are covered.
    let (sel, payload) = match data.split_first() {
        Some((s, p)) => (*s, p),
        None => return,
    };
    let pairs: [(IpAddr, IpAddr); 4] = [
        (Ipv4Addr::new(10, 0, 0, 1).into(), Ipv4Addr::new(224, 0, 0, 18).into()),
        (Ipv4Addr::new(192, 168, 251, 1).into(), Ipv4Addr::new(192, 168, 251, 2).into()),
        (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).into(),
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12).into(),
        ),
        (
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(),
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
        ),
    ];
    let (src, dst) = pairs[usize::from(sel) % pairs.len()];
    if let Ok(adv) = decode(payload, src, dst) {
        for mode in [ChecksumMode::PseudoHeader, ChecksumMode::Rfc9568] {
            let mut out = Vec::new();
            encode(&adv, src, dst, mode, &mut out).expect("a decoded advert must encode");
            assert_eq!(out.len(), payload.len());
            let again = decode(&out, src, dst).expect("an encoded advert must decode");
            assert_eq!(again, adv);
        }
    }
});
