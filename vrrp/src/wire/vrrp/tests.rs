use super::*;
use proptest::prelude::*;

/// A fixture from vrrp/tests/fixtures (see its README): src, dst, payload.
struct Fixture {
    src: IpAddr,
    dst: IpAddr,
    bytes: Vec<u8>,
}

fn fixture(text: &str) -> Fixture {
    let mut src = None;
    let mut dst = None;
    let mut bytes = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("src", v)) => src = v.parse().ok(),
            Some(("dst", v)) => dst = v.parse().ok(),
            Some(("hex", v)) => {
                bytes = Some(
                    (0..v.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap())
                        .collect(),
                )
            }
            _ => {}
        }
    }
    Fixture {
        src: src.unwrap(),
        dst: dst.unwrap(),
        bytes: bytes.unwrap(),
    }
}

macro_rules! fx {
    ($name:literal) => {
        fixture(include_str!(concat!(
            "../../../tests/fixtures/",
            $name,
            ".hex"
        )))
    };
}

fn all_fixtures() -> Vec<Fixture> {
    vec![
        fx!("v2_pass_prio150"),
        fx!("v2_pass_prio0"),
        fx!("v3_v4_prio150"),
        fx!("v3_v4_prio0"),
        fx!("v3_v6_prio200"),
        fx!("v3_v6_prio0"),
        fx!("v3_unicast_prio150"),
        fx!("v3_unicast_prio0"),
    ]
}

fn seed_vips() -> Vec<IpAddr> {
    ["172.16.249.80", "172.16.249.90", "172.16.249.100"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn keepalived_v2_pass_decodes_and_reencodes_byte_exact() {
    for (f, prio) in [(fx!("v2_pass_prio150"), 150), (fx!("v2_pass_prio0"), 0)] {
        let adv = decode(&f.bytes, f.src, f.dst).unwrap();
        assert_eq!(
            adv,
            Advert {
                version: Version::V2,
                vrid: 51,
                priority: prio,
                interval_cs: 100,
                addrs: seed_vips(),
                auth: Auth::pass("1111"),
            }
        );
        let mut out = Vec::new();
        encode(&adv, f.src, f.dst, ChecksumMode::PseudoHeader, &mut out).unwrap();
        assert_eq!(out, f.bytes);
    }
}

#[test]
fn keepalived_v3_ipv4_uses_pseudo_header_and_reencodes_byte_exact() {
    for (f, prio) in [(fx!("v3_v4_prio150"), 150), (fx!("v3_v4_prio0"), 0)] {
        let adv = decode(&f.bytes, f.src, f.dst).unwrap();
        assert_eq!(
            adv,
            Advert {
                version: Version::V3,
                vrid: 51,
                priority: prio,
                interval_cs: 10,
                addrs: seed_vips(),
                auth: Auth::None,
            }
        );
        let mut out = Vec::new();
        encode(&adv, f.src, f.dst, ChecksumMode::PseudoHeader, &mut out).unwrap();
        assert_eq!(out, f.bytes, "keepalived 2.2.7 uses the pseudo-header");
        // RFC 9568 form differs only in the checksum, and is accepted too.
        encode(&adv, f.src, f.dst, ChecksumMode::Rfc9568, &mut out).unwrap();
        assert_eq!(out[..6], f.bytes[..6]);
        assert_eq!(out[8..], f.bytes[8..]);
        assert_ne!(out[6..8], f.bytes[6..8]);
        assert_eq!(decode(&out, f.src, f.dst).unwrap(), adv);
        // The message-only checksum does not depend on the addresses; the pseudo one does.
        let other: IpAddr = "192.168.251.9".parse().unwrap();
        assert_eq!(decode(&out, other, f.dst).unwrap(), adv);
        assert!(matches!(
            decode(&f.bytes, other, f.dst),
            Err(PacketError::BadChecksum { .. })
        ));
    }
}

#[test]
fn keepalived_v3_unicast_checksums_over_the_peer_address() {
    let uni = fx!("v3_unicast_prio150");
    let multi = fx!("v3_v4_prio150");
    assert_eq!(uni.dst, v4("192.168.251.2"));
    let adv = decode(&uni.bytes, uni.src, uni.dst).unwrap();
    assert_eq!(adv, decode(&multi.bytes, multi.src, multi.dst).unwrap());
    let mut out = Vec::new();
    encode(&adv, uni.src, uni.dst, ChecksumMode::PseudoHeader, &mut out).unwrap();
    assert_eq!(out, uni.bytes);
    assert_ne!(uni.bytes[6..8], multi.bytes[6..8]);
    assert!(
        decode(&uni.bytes, uni.src, multi.dst).is_err(),
        "wrong destination"
    );
}

#[test]
fn keepalived_v3_ipv6_decodes_and_reencodes_byte_exact() {
    for (f, prio) in [(fx!("v3_v6_prio200"), 200), (fx!("v3_v6_prio0"), 0)] {
        let adv = decode(&f.bytes, f.src, f.dst).unwrap();
        assert_eq!(adv.version, Version::V3);
        assert_eq!((adv.vrid, adv.priority, adv.interval_cs), (52, prio, 50));
        let want: Vec<IpAddr> = vec![
            "fd00:249::80".parse().unwrap(),
            "fd00:249::90".parse().unwrap(),
        ];
        assert_eq!(adv.addrs, want);
        for mode in [ChecksumMode::PseudoHeader, ChecksumMode::Rfc9568] {
            let mut out = Vec::new();
            encode(&adv, f.src, f.dst, mode, &mut out).unwrap();
            assert_eq!(out, f.bytes, "IPv6 always uses the pseudo-header");
        }
    }
}

#[test]
fn every_truncation_and_extension_is_rejected() {
    for f in all_fixtures() {
        for n in 0..f.bytes.len() {
            let err = decode(&f.bytes[..n], f.src, f.dst).unwrap_err();
            assert!(
                matches!(
                    err,
                    PacketError::Truncated { .. } | PacketError::LengthMismatch { .. }
                ),
                "{n}: {err}"
            );
        }
        let mut long = f.bytes.clone();
        long.push(0);
        assert!(matches!(
            decode(&long, f.src, f.dst),
            Err(PacketError::LengthMismatch { .. })
        ));
    }
}

#[test]
fn every_single_bit_flip_is_rejected() {
    for f in all_fixtures() {
        for bit in 0..f.bytes.len() * 8 {
            let mut b = f.bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            // v3 reserved bits are ignored by the parser but still covered by the checksum.
            assert!(
                decode(&b, f.src, f.dst).is_err(),
                "bit {bit} of {:02x?}",
                f.bytes
            );
        }
    }
}

#[test]
fn bad_checksum_reports_expected_value() {
    let f = fx!("v2_pass_prio150");
    let mut b = f.bytes.clone();
    b[7] ^= 0xff;
    match decode(&b, f.src, f.dst) {
        Err(PacketError::BadChecksum { got, expected }) => {
            assert_eq!(got, u16::from_be_bytes([b[6], b[7]]));
            assert_eq!(expected, u16::from_be_bytes([f.bytes[6], f.bytes[7]]));
        }
        other => panic!("{other:?}"),
    }
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v3_advert(addrs: Vec<IpAddr>) -> Advert {
    Advert {
        version: Version::V3,
        vrid: 7,
        priority: 100,
        interval_cs: 100,
        addrs,
        auth: Auth::None,
    }
}

#[test]
fn field_checks() {
    let f = fx!("v3_v4_prio150");
    let (src, dst) = (f.src, f.dst);
    let good = f.bytes.clone();
    // Rewrites one byte and fixes the checksum so only the field check can fail.
    let with = |at: usize, val: u8| {
        let mut b = good.clone();
        b[at] = val;
        b[6] = 0;
        b[7] = 0;
        let sum = checksum(&b, src, dst, true).to_be_bytes();
        b[6..8].copy_from_slice(&sum);
        b
    };
    assert_eq!(
        decode(&with(0, 0x11), src, dst),
        Err(PacketError::BadVersion(1))
    );
    assert_eq!(
        decode(&with(0, 0x41), src, dst),
        Err(PacketError::BadVersion(4))
    );
    assert_eq!(
        decode(&with(0, 0x32), src, dst),
        Err(PacketError::BadType(2))
    );
    assert_eq!(decode(&with(1, 0), src, dst), Err(PacketError::ZeroVrid));
    assert_eq!(decode(&with(3, 0), src, dst), Err(PacketError::ZeroCount));
    assert!(matches!(
        decode(&with(3, 2), src, dst),
        Err(PacketError::LengthMismatch {
            count: 2,
            expected: 16,
            len: 20,
            ..
        })
    ));
    assert_eq!(
        decode(&with(5, 0), src, dst),
        Err(PacketError::ZeroInterval)
    );
    // Reserved bits are ignored on receive.
    let reserved = with(4, 0xf0);
    assert_eq!(decode(&reserved, src, dst).unwrap().interval_cs, 10);
    // The v4 payload read as IPv6: 3 addresses would need 56 bytes.
    let s6: IpAddr = "fe80::1".parse().unwrap();
    let d6: IpAddr = "ff02::12".parse().unwrap();
    assert!(matches!(
        decode(&good, s6, d6),
        Err(PacketError::LengthMismatch { family: "IPv6", .. })
    ));
    assert!(matches!(
        decode(&good, src, d6),
        Err(PacketError::FamilyMismatch { .. })
    ));
}

#[test]
fn v2_specific_checks() {
    let f = fx!("v2_pass_prio150");
    let fix = |mut b: Vec<u8>| {
        b[6] = 0;
        b[7] = 0;
        let sum = checksum(&b, f.src, f.dst, false).to_be_bytes();
        b[6..8].copy_from_slice(&sum);
        b
    };
    let mut ah = f.bytes.clone();
    ah[4] = 2;
    assert_eq!(
        decode(&fix(ah), f.src, f.dst),
        Err(PacketError::BadAuthType(2))
    );
    let mut none = f.bytes.clone();
    none[4] = 0;
    assert_eq!(decode(&fix(none), f.src, f.dst).unwrap().auth, Auth::None);
    let mut zero = f.bytes.clone();
    zero[5] = 0;
    assert_eq!(
        decode(&fix(zero), f.src, f.dst),
        Err(PacketError::ZeroInterval)
    );
    // keepalived's non-standard v2-over-IPv6 is refused both ways.
    let s6: IpAddr = "fe80::1".parse().unwrap();
    let d6: IpAddr = "ff02::12".parse().unwrap();
    let mut v2v6 = f.bytes.clone();
    v2v6[3] = 1;
    v2v6.truncate(8);
    v2v6.extend_from_slice(&[0; 24]);
    assert_eq!(decode(&v2v6, s6, d6), Err(PacketError::V2OverIpv6));
    let mut adv = decode(&f.bytes, f.src, f.dst).unwrap();
    adv.addrs = vec!["fd00::1".parse().unwrap()];
    assert_eq!(
        encode(&adv, s6, d6, ChecksumMode::PseudoHeader, &mut Vec::new()),
        Err(PacketError::V2OverIpv6)
    );
}

/// ucarp's advertisement: version 2, type 1, vhid, advskew, authlen 7, demote, advbase,
/// checksum, 8-byte counter, 20-byte SHA1 HMAC = 36 bytes, on protocol 112 / 224.0.0.18.
#[test]
fn carp_is_rejected_by_name() {
    let mut carp = vec![0x21, 51, 0, 7, 0, 1, 0, 0];
    carp.extend_from_slice(&[0x11; 8]);
    carp.extend_from_slice(&[0x22; 20]);
    let sum = checksum(&carp, v4("10.0.0.1"), v4("224.0.0.18"), false).to_be_bytes();
    carp[6..8].copy_from_slice(&sum);
    assert_eq!(
        decode(&carp, v4("10.0.0.1"), v4("224.0.0.18")),
        Err(PacketError::Carp)
    );
}

/// smoltcp style: garbage buffers never panic, and encode writes every byte it returns.
#[test]
fn a5_filled_buffers() {
    let buf = [0xa5u8; 2048];
    for n in 0..buf.len() {
        assert!(decode(&buf[..n], v4("10.0.0.1"), v4("224.0.0.18")).is_err());
        let s6: IpAddr = "fe80::1".parse().unwrap();
        assert!(decode(&buf[..n], s6, "ff02::12".parse().unwrap()).is_err());
    }
    let f = fx!("v2_pass_prio150");
    let adv = decode(&f.bytes, f.src, f.dst).unwrap();
    let mut out = vec![0xa5u8; 100];
    encode(&adv, f.src, f.dst, ChecksumMode::PseudoHeader, &mut out).unwrap();
    assert_eq!(out, f.bytes);
}

#[test]
fn encode_rejects_what_cannot_be_sent() {
    let (s, d) = (v4("10.0.0.1"), v4("224.0.0.18"));
    let mut out = vec![0xa5];
    let mut mixed = v3_advert(vec![v4("10.0.0.2"), "fd00::1".parse().unwrap()]);
    assert!(matches!(
        encode(&mixed, s, d, ChecksumMode::PseudoHeader, &mut out),
        Err(PacketError::AddrFamily { .. })
    ));
    assert!(out.is_empty(), "nothing half-written");
    mixed.addrs = (0..256u32).map(|i| IpAddr::V4(Ipv4Addr::from(i))).collect();
    assert!(matches!(
        encode(&mixed, s, d, ChecksumMode::PseudoHeader, &mut out),
        Err(PacketError::TooManyAddrs { count: 256 })
    ));
    let mut a = v3_advert(vec![v4("10.0.0.2")]);
    a.interval_cs = 4096;
    assert!(matches!(
        encode(&a, s, d, ChecksumMode::PseudoHeader, &mut out),
        Err(PacketError::BadInterval { .. })
    ));
    a.interval_cs = 10;
    a.auth = Auth::pass("x");
    assert_eq!(
        encode(&a, s, d, ChecksumMode::PseudoHeader, &mut out),
        Err(PacketError::AuthWithV3)
    );
    a.version = Version::V2;
    assert!(matches!(
        encode(&a, s, d, ChecksumMode::PseudoHeader, &mut out),
        Err(PacketError::BadInterval { .. })
    ));
    a.interval_cs = 25600;
    assert!(matches!(
        encode(&a, s, d, ChecksumMode::PseudoHeader, &mut out),
        Err(PacketError::BadInterval { .. })
    ));
    a.interval_cs = 25500;
    assert!(encode(&a, s, d, ChecksumMode::PseudoHeader, &mut out).is_ok());
    assert_eq!(
        encode(
            &a,
            s,
            "ff02::12".parse().unwrap(),
            ChecksumMode::PseudoHeader,
            &mut out
        ),
        Err(PacketError::FamilyMismatch {
            src: s,
            dst: "ff02::12".parse().unwrap()
        })
    );
}

#[test]
fn auth_pass_pads_and_truncates_like_keepalived() {
    assert_eq!(Auth::pass("1111"), Auth::Pass(*b"1111\0\0\0\0"));
    assert_eq!(Auth::pass("0123456789"), Auth::Pass(*b"01234567"));
}

fn arb_advert() -> impl Strategy<Value = (Advert, IpAddr, IpAddr, ChecksumMode)> {
    let v4s = prop::collection::vec(
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        1..=255,
    );
    let v6s = prop::collection::vec(
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        1..=255,
    );
    let v2 = (
        1..=255u8,
        any::<u8>(),
        1..=255u16,
        v4s.clone(),
        prop::option::of(any::<[u8; 8]>()),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(vrid, priority, secs, addrs, pass, s, d)| {
            let adv = Advert {
                version: Version::V2,
                vrid,
                priority,
                interval_cs: secs * 100,
                addrs,
                auth: pass.map_or(Auth::None, Auth::Pass),
            };
            let s = IpAddr::V4(Ipv4Addr::from(s));
            let d = IpAddr::V4(Ipv4Addr::from(d));
            (adv, s, d, ChecksumMode::PseudoHeader)
        });
    let v3 = (
        1..=255u8,
        any::<u8>(),
        1..=V3_MAX_INTERVAL_CS,
        prop_oneof![v4s, v6s],
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<bool>(),
    )
        .prop_map(|(vrid, priority, interval_cs, addrs, s, d, rfc9568)| {
            let (s, d) = if addrs[0].is_ipv4() {
                (
                    IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3])),
                    IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3])),
                )
            } else {
                (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
            };
            let adv = Advert {
                version: Version::V3,
                vrid,
                priority,
                interval_cs,
                addrs,
                auth: Auth::None,
            };
            let mode = if rfc9568 {
                ChecksumMode::Rfc9568
            } else {
                ChecksumMode::PseudoHeader
            };
            (adv, s, d, mode)
        });
    prop_oneof![v2, v3]
}

proptest! {
    #[test]
    fn round_trip((adv, src, dst, mode) in arb_advert()) {
        let mut out = Vec::new();
        encode(&adv, src, dst, mode, &mut out).unwrap();
        prop_assert_eq!(decode(&out, src, dst).unwrap(), adv);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), v6 in any::<bool>()) {
        let (s, d): (IpAddr, IpAddr) = if v6 {
            ("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap())
        } else {
            ("10.0.0.1".parse().unwrap(), "224.0.0.18".parse().unwrap())
        };
        if let Ok(adv) = decode(&bytes, s, d) {
            let mut out = Vec::new();
            encode(&adv, s, d, ChecksumMode::PseudoHeader, &mut out).unwrap();
            prop_assert_eq!(decode(&out, s, d).unwrap(), adv);
        }
    }
}
