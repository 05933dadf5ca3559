//! VRRP advertisement codec (RFC 3768 version 2, RFC 5798 version 3), pure and panic-free.
//!
//! Only the VRRP message is handled here: the kernel builds and strips the IP header, so the
//! caller passes the IP source and destination for the checksum pseudo-header.
//!
//! ```text
//! VRRPv2 (RFC 3768 section 5.1)              VRRPv3 (RFC 5798 section 5.1)
//!  0       7 8     15 16    23 24    31       0       7 8     15 16    23 24    31
//! +---+----+--------+--------+--------+      +---+----+--------+--------+--------+
//! |Ver|Type|  VRID  |Priority| Count  |      |Ver|Type|  VRID  |Priority| Count  |
//! +---+----+--------+--------+--------+      +---+----+--------+--------+--------+
//! |AuthType|AdverInt|    Checksum     |      |Rsvd|MaxAdverInt(cs)|   Checksum   |
//! +--------+--------+-----------------+      +----+-------------+-----------------+
//! |  IPv4 address (1) ... (n)         |      |  IPv4 or IPv6 address (1) ... (n)  |
//! +-----------------------------------+      +------------------------------------+
//! |  Authentication data (8 bytes)    |
//! +-----------------------------------+
//! ```
//!
//! Decisions:
//! - Version 2 is IPv4 only. keepalived can send "VRRPv2 over IPv6", but no RFC defines it and
//!   nothing interoperates with it, so both `encode` and `decode` reject it
//!   ([`PacketError::V2OverIpv6`]).
//! - Version 2 always carries the 8 authentication bytes, as keepalived sends them. Auth type 0
//!   ignores their content on receive (zeros on send); type 1 (PASS) carries the password
//!   zero-padded to 8 bytes. Type 2 (IPsec AH) and unknown types are rejected.
//! - A CARP (ucarp) advertisement also uses protocol 112, version 2 and type 1, but is 36 bytes
//!   with an "authlen" of 7 where VRRP has the address count: the length check rejects it and
//!   the error names it ([`PacketError::Carp`]) so the log says what was seen.
//! - v3 reserved bits are ignored on receive and sent as zero.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// VRRP header size without addresses (and without v2 auth data).
const HEADER_LEN: usize = 8;
/// v2 trailing authentication data.
const V2_AUTH_LEN: usize = 8;
/// IP protocol number of VRRP, used in the checksum pseudo-header.
pub const IPPROTO_VRRP: u8 = 112;
/// Advertisement, the only VRRP message type.
const TYPE_ADVERTISEMENT: u8 = 1;
/// CARP advertisement length (ucarp): 8-byte header + 8-byte counter + 20-byte HMAC.
const CARP_LEN: usize = 36;
/// The 12-bit Max Adver Int field of v3.
pub const V3_MAX_INTERVAL_CS: u16 = 0x0fff;

/// Byte offsets of the fixed header fields (smoltcp style).
mod field {
    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// v2: auth type; v3: reserved (4 bits) + high 4 bits of the interval.
    pub const AUTH_TYPE_OR_INT_HI: usize = 4;
    /// v2: interval in seconds; v3: low 8 bits of the interval.
    pub const ADVER_INT_OR_INT_LO: usize = 5;
    pub const CHECKSUM: usize = 6;
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, whole-second interval, optional (keepalived) PASS auth.
    V2,
    /// RFC 5798: IPv4 and IPv6, centisecond interval, no auth.
    V3,
}

impl Version {
    /// The 4-bit version number on the wire.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// v2 authentication (RFC 3768 section 5.3.6; keepalived's PASS layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Auth type 0.
    None,
    /// Auth type 1: the password, zero-padded (keepalived truncates longer ones to 8 bytes).
    Pass([u8; 8]),
}

impl Auth {
    /// Builds PASS auth from a configured password, zero-padded / truncated to 8 bytes as
    /// keepalived does.
    pub fn pass(password: &str) -> Auth {
        let mut buf = [0u8; 8];
        for (dst, src) in buf.iter_mut().zip(password.as_bytes()) {
            *dst = *src;
        }
        Auth::Pass(buf)
    }
}

/// v3 IPv4 checksum flavour used on send (receive accepts both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumMode {
    /// RFC 5798: the checksum covers an IPv4 pseudo-header; keepalived 2.2.7 requires this.
    #[default]
    PseudoHeader,
    /// RFC 9568: the VRRP message only (like v2).
    Rfc9568,
}

/// A decoded VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// v3: Max Adver Int in centiseconds (12 bits); v2: the advert interval in seconds * 100.
    pub interval_cs: u16,
    /// All of the source address's family.
    pub addrs: Vec<IpAddr>,
    /// Always [`Auth::None`] for v3.
    pub auth: Auth,
}

impl Advert {
    /// The advertised interval (v2: whole seconds; v3: Max Adver Int).
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.interval_cs) * 10)
    }
}

/// Why a message could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("truncated VRRP packet: {len} bytes, need at least {need}")]
    Truncated { len: usize, need: usize },
    #[error("unsupported VRRP version {0} (want 2 or 3)")]
    BadVersion(u8),
    #[error("unsupported VRRP message type {0} (want 1 = advertisement)")]
    BadType(u8),
    #[error("looks like a CARP (ucarp) advertisement (36 bytes, authlen 7), not VRRP")]
    Carp,
    #[error("VRID 0 is invalid")]
    ZeroVrid,
    #[error("address count is 0")]
    ZeroCount,
    #[error("advertisement interval is 0")]
    ZeroInterval,
    #[error("length mismatch: {count} {family} addresses need {expected} bytes, got {len}")]
    LengthMismatch {
        count: u8,
        family: &'static str,
        expected: usize,
        len: usize,
    },
    #[error("source {src} and destination {dst} are of different address families")]
    FamilyMismatch { src: IpAddr, dst: IpAddr },
    #[error("VRRPv2 over IPv6 is not standard (keepalived extension) and not supported")]
    V2OverIpv6,
    #[error("unsupported v2 auth type {0} (want 0 = none or 1 = PASS)")]
    BadAuthType(u8),
    #[error("bad checksum {got:#06x}, expected {expected:#06x}")]
    BadChecksum { got: u16, expected: u16 },
    #[error("address {addr} is not of the source's family")]
    AddrFamily { addr: IpAddr },
    #[error("{count} addresses do not fit the 8-bit count field")]
    TooManyAddrs { count: usize },
    #[error("interval {interval_cs} cs cannot be sent as {version:?}")]
    BadInterval { interval_cs: u16, version: Version },
    #[error("auth is only defined for VRRPv2")]
    AuthWithV3,
}

/// RFC 1071 ones' complement sum over `data`, folded into `acc` (not complemented).
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [a, b] = c {
            acc += u32::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // Truncation is the point: after folding the value fits 16 bits.
    !(acc as u16)
}

/// Sum of the pseudo-header for the given flavour; 0 for "message only".
fn pseudo_sum(src: IpAddr, dst: IpAddr, len: usize, with_pseudo: bool) -> u32 {
    if !with_pseudo {
        return 0;
    }
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // src, dst, zero, protocol, VRRP length (16 bits; len <= 8 + 255*4 here).
            let acc = sum16(0, &s.octets());
            let acc = sum16(acc, &d.octets());
            let len16 = u16::try_from(len).unwrap_or(u16::MAX);
            acc + u32::from(IPPROTO_VRRP) + u32::from(len16)
        }
        _ => {
            // IPv6: src, dst, 32-bit upper-layer length, 3 zero bytes, next header.
            let s = ip6_octets(src);
            let d = ip6_octets(dst);
            let acc = sum16(0, &s);
            let acc = sum16(acc, &d);
            let len32 = u32::try_from(len).unwrap_or(u32::MAX);
            acc + (len32 >> 16) + (len32 & 0xffff) + u32::from(IPPROTO_VRRP)
        }
    }
}

fn ip6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// Checksum of `msg` (with its checksum field already zero or included: the caller decides).
fn checksum(msg: &[u8], src: IpAddr, dst: IpAddr, with_pseudo: bool) -> u16 {
    fold(sum16(pseudo_sum(src, dst, msg.len(), with_pseudo), msg))
}

fn family_name(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Encodes `adv` into `out` (cleared first). `src`/`dst` are the IP header's addresses.
pub fn encode(
    adv: &Advert,
    src: IpAddr,
    dst: IpAddr,
    mode: ChecksumMode,
    out: &mut Vec<u8>,
) -> Result<(), PacketError> {
    out.clear();
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(PacketError::FamilyMismatch { src, dst });
    }
    if adv.vrid == 0 {
        return Err(PacketError::ZeroVrid);
    }
    if adv.addrs.is_empty() {
        return Err(PacketError::ZeroCount);
    }
    if adv.interval_cs == 0 {
        return Err(PacketError::ZeroInterval);
    }
    let count = u8::try_from(adv.addrs.len()).map_err(|_| PacketError::TooManyAddrs {
        count: adv.addrs.len(),
    })?;
    if let Some(addr) = adv.addrs.iter().find(|a| a.is_ipv4() != src.is_ipv4()) {
        return Err(PacketError::AddrFamily { addr: *addr });
    }
    let bad_interval = PacketError::BadInterval {
        interval_cs: adv.interval_cs,
        version: adv.version,
    };
    let (byte4, byte5) = match adv.version {
        Version::V2 => {
            if src.is_ipv6() {
                return Err(PacketError::V2OverIpv6);
            }
            if !adv.interval_cs.is_multiple_of(100) {
                return Err(bad_interval);
            }
            let secs = u8::try_from(adv.interval_cs / 100).map_err(|_| bad_interval)?;
            let auth_type = match adv.auth {
                Auth::None => 0,
                Auth::Pass(_) => 1,
            };
            (auth_type, secs)
        }
        Version::V3 => {
            if adv.auth != Auth::None {
                return Err(PacketError::AuthWithV3);
            }
            if adv.interval_cs > V3_MAX_INTERVAL_CS {
                return Err(bad_interval);
            }
            let [hi, lo] = adv.interval_cs.to_be_bytes();
            (hi, lo)
        }
    };
    out.extend_from_slice(&[
        (adv.version.number() << 4) | TYPE_ADVERTISEMENT,
        adv.vrid,
        adv.priority,
        count,
        byte4,
        byte5,
        0,
        0,
    ]);
    for a in &adv.addrs {
        match a {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    if adv.version == Version::V2 {
        match adv.auth {
            Auth::None => out.extend_from_slice(&[0; V2_AUTH_LEN]),
            Auth::Pass(p) => out.extend_from_slice(&p),
        }
    }
    let with_pseudo = match adv.version {
        Version::V2 => false,
        Version::V3 => src.is_ipv6() || mode == ChecksumMode::PseudoHeader,
    };
    let sum = checksum(out, src, dst, with_pseudo).to_be_bytes();
    if let Some(c) = out.get_mut(field::CHECKSUM..field::CHECKSUM + 2) {
        c.copy_from_slice(&sum);
    }
    Ok(())
}

/// The VRID of a received message without decoding it: a router shares its link with other
/// virtual routers, whose adverts it skips before spending a checksum on them.
pub fn peek_vrid(payload: &[u8]) -> Option<u8> {
    payload.get(field::VRID).copied()
}

fn byte(payload: &[u8], at: usize) -> u8 {
    payload.get(at).copied().unwrap_or(0)
}

/// Validates version/type/length/counts/checksum (v3 IPv4: either checksum form is accepted);
/// src/dst are the IP header's addresses (for the pseudo-header). Never panics.
pub fn decode(payload: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, PacketError> {
    let len = payload.len();
    if len < HEADER_LEN {
        return Err(PacketError::Truncated {
            len,
            need: HEADER_LEN,
        });
    }
    let ver_type = byte(payload, field::VER_TYPE);
    let version = match ver_type >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        v => return Err(PacketError::BadVersion(v)),
    };
    let msg_type = ver_type & 0x0f;
    if msg_type != TYPE_ADVERTISEMENT {
        return Err(PacketError::BadType(msg_type));
    }
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(PacketError::FamilyMismatch { src, dst });
    }
    let count = byte(payload, field::COUNT);
    if version == Version::V2 {
        if len == CARP_LEN && count == 7 {
            return Err(PacketError::Carp);
        }
        if src.is_ipv6() {
            return Err(PacketError::V2OverIpv6);
        }
    }
    let vrid = byte(payload, field::VRID);
    if vrid == 0 {
        return Err(PacketError::ZeroVrid);
    }
    if count == 0 {
        return Err(PacketError::ZeroCount);
    }
    let addr_len = if src.is_ipv4() { 4 } else { 16 };
    let auth_len = if version == Version::V2 {
        V2_AUTH_LEN
    } else {
        0
    };
    let expected = HEADER_LEN + usize::from(count) * addr_len + auth_len;
    if len != expected {
        return Err(PacketError::LengthMismatch {
            count,
            family: family_name(src),
            expected,
            len,
        });
    }

    let b4 = byte(payload, field::AUTH_TYPE_OR_INT_HI);
    let b5 = byte(payload, field::ADVER_INT_OR_INT_LO);
    let (interval_cs, auth) = match version {
        Version::V2 => {
            let auth_start = HEADER_LEN + usize::from(count) * 4;
            let auth = match b4 {
                0 => Auth::None,
                1 => {
                    let mut p = [0u8; 8];
                    if let Some(data) = payload.get(auth_start..auth_start + V2_AUTH_LEN) {
                        p.copy_from_slice(data);
                    }
                    Auth::Pass(p)
                }
                t => return Err(PacketError::BadAuthType(t)),
            };
            (u16::from(b5) * 100, auth)
        }
        Version::V3 => (
            u16::from_be_bytes([b4, b5]) & V3_MAX_INTERVAL_CS,
            Auth::None,
        ),
    };
    if interval_cs == 0 {
        return Err(PacketError::ZeroInterval);
    }

    // A correct checksum makes the full sum (including the checksum field) fold to 0.
    let ok = |with_pseudo: bool| checksum(payload, src, dst, with_pseudo) == 0;
    let valid = match (version, src) {
        (Version::V2, _) => ok(false),
        (Version::V3, IpAddr::V4(_)) => ok(true) || ok(false),
        (Version::V3, IpAddr::V6(_)) => ok(true),
    };
    if !valid {
        let got = u16::from_be_bytes([
            byte(payload, field::CHECKSUM),
            byte(payload, field::CHECKSUM + 1),
        ]);
        let mut zeroed = payload.to_vec();
        if let Some(c) = zeroed.get_mut(field::CHECKSUM..field::CHECKSUM + 2) {
            c.copy_from_slice(&[0, 0]);
        }
        let with_pseudo = version == Version::V3;
        let expected = checksum(&zeroed, src, dst, with_pseudo);
        return Err(PacketError::BadChecksum { got, expected });
    }

    let addrs = payload
        .get(HEADER_LEN..HEADER_LEN + usize::from(count) * addr_len)
        .unwrap_or(&[])
        .chunks_exact(addr_len)
        .map(|c| match <[u8; 16]>::try_from(c) {
            Ok(b) => IpAddr::V6(Ipv6Addr::from(b)),
            Err(_) => {
                let mut b = [0u8; 4];
                b.copy_from_slice(c.get(..4).unwrap_or(&[0; 4]));
                IpAddr::V4(Ipv4Addr::from(b))
            }
        })
        .collect();
    Ok(Advert {
        version,
        vrid,
        priority: byte(payload, field::PRIORITY),
        interval_cs,
        addrs,
        auth,
    })
}

#[cfg(test)]
mod tests;
