//! The IPv4 header (RFC 791) as a Linux IPv4 raw socket delivers it in front of each
//! datagram, in network byte order. Only what VRRP checks is read: TTL (must be 255), the
//! protocol, the addresses and where the payload ends.

use std::net::Ipv4Addr;
use std::ops::Range;

/// Byte offsets of the fields read here.
mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// The minimum header length (no options).
pub const MIN_HEADER_LEN: usize = 20;

/// A parsed header; `payload` indexes the slice that was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    pub payload: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    #[error("empty packet")]
    Empty,
    #[error("not an IPv4 header")]
    NotIpv4,
    #[error("truncated IPv4 header")]
    Truncated,
}

fn addr(pkt: &[u8], at: Range<usize>) -> Option<Ipv4Addr> {
    let b: [u8; 4] = pkt.get(at)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

/// Parses the header at the start of `pkt`. Never panics.
pub fn parse(pkt: &[u8]) -> Result<Header, Ipv4Error> {
    let first = *pkt.get(field::VER_IHL).ok_or(Ipv4Error::Empty)?;
    if first >> 4 != 4 {
        return Err(Ipv4Error::NotIpv4);
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < MIN_HEADER_LEN || pkt.len() < ihl {
        return Err(Ipv4Error::Truncated);
    }
    let (Some(&ttl), Some(&protocol), Some(src), Some(dst), Some(tl)) = (
        pkt.get(field::TTL),
        pkt.get(field::PROTOCOL),
        addr(pkt, field::SRC),
        addr(pkt, field::DST),
        pkt.get(field::TOTAL_LEN),
    ) else {
        return Err(Ipv4Error::Truncated);
    };
    let total = usize::from(u16::from_be_bytes([tl[0], tl[1]]));
    // Trust the header's length only when it fits what arrived: Ethernet pads short frames.
    let end = if total >= ihl && total <= pkt.len() {
        total
    } else {
        pkt.len()
    };
    Ok(Header {
        src,
        dst,
        ttl,
        protocol,
        payload: ihl..end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4pkt(ttl: u8, proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, ttl, proto, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let total = (20 + payload.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn parse_ipv4_header() {
        let p = v4pkt(255, 112, [10, 0, 0, 1], [224, 0, 0, 18], &[1, 2, 3]);
        let h = parse(&p).unwrap();
        assert_eq!(h.ttl, 255);
        assert_eq!(h.protocol, 112);
        assert_eq!(h.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(h.dst, Ipv4Addr::new(224, 0, 0, 18));
        assert_eq!(&p[h.payload], &[1, 2, 3]);
        // Ethernet padding after the datagram is not payload.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(parse(&padded).unwrap().payload, 20..23);
        assert_eq!(parse(&[]), Err(Ipv4Error::Empty));
        assert_eq!(parse(&[0x65, 0, 0]), Err(Ipv4Error::NotIpv4));
        assert_eq!(parse(&[0x4f; 10]), Err(Ipv4Error::Truncated));
        for n in 0..p.len() {
            let _ = parse(&p[..n]);
        }
    }
}
