//! Raw IP-protocol-112 sockets: one per VRRP instance, bound to the instance's interface.
//!
//! Multicast mode joins 224.0.0.18 / ff02::12 on that interface only; unicast mode
//! (`unicast_src_ip` + `unicast_peer`) sends to each peer and only accepts packets from them.
//! Everything is sent with TTL / hop limit 255 and everything received with another TTL is
//! dropped (RFC 5798 5.1.1.3): a packet that crossed a router cannot be from our segment.
//!
//! The kernel builds and strips the IP header; the caller encodes and decodes the VRRP message
//! (`packet`). IPv4 raw sockets hand us the IP header, so TTL and addresses come from it; IPv6
//! raw sockets do not, so hop limit and destination come from `IPV6_HOPLIMIT` / `IPV6_PKTINFO`
//! control messages.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

#[cfg(test)]
pub(crate) mod testns;

/// IANA protocol number of VRRP (and, unfortunately, CARP).
pub const IPPROTO_VRRP: i32 = 112;
/// RFC 5798: the IPv4 multicast group of VRRP.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// RFC 5798: the IPv6 multicast group of VRRP.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The only TTL / hop limit VRRP sends and accepts.
pub const VRRP_TTL: u8 = 255;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{op} on interface {ifname}: {source}")]
    Io {
        op: &'static str,
        ifname: String,
        #[source]
        source: io::Error,
    },
    #[error("address family mismatch: {what} {addr} on a {family} socket")]
    Family {
        what: &'static str,
        addr: IpAddr,
        family: &'static str,
    },
    #[error("interface name {0:?} is not a valid interface name")]
    IfName(String),
}

/// What one socket needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    pub ifname: String,
    pub ifindex: u32,
    /// Our source address: the interface's primary address (IPv6: its link-local address in
    /// multicast mode) or `unicast_src_ip`. Its family selects the socket's family.
    pub src: IpAddr,
    /// Empty: multicast mode. Otherwise: unicast mode, send to each, accept only from them.
    pub peers: Vec<IpAddr>,
}

/// Outcome of one receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A packet that passed the link-level checks; the VRRP message is `buf[range]`.
    Packet {
        src: IpAddr,
        dst: IpAddr,
        range: std::ops::Range<usize>,
    },
    /// A packet that must be ignored, with why (for debug logs and counters).
    Dropped { src: Option<IpAddr>, reason: String },
}

#[derive(Debug)]
pub struct VrrpSocket {
    sock: Socket,
    cfg: SocketConfig,
}

impl AsRawFd for VrrpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl VrrpSocket {
    /// Opens a non-blocking raw socket for `cfg` (needs CAP_NET_RAW).
    pub fn open(cfg: SocketConfig) -> Result<VrrpSocket, NetError> {
        let io = |op: &'static str| {
            let ifname = cfg.ifname.clone();
            move |source: io::Error| NetError::Io { op, ifname, source }
        };
        for p in &cfg.peers {
            if p.is_ipv4() != cfg.src.is_ipv4() {
                return Err(NetError::Family {
                    what: "unicast peer",
                    addr: *p,
                    family: family_name(cfg.src),
                });
            }
        }
        if cfg.ifname.is_empty() || cfg.ifname.len() >= libc::IFNAMSIZ || cfg.ifname.contains('\0')
        {
            return Err(NetError::IfName(cfg.ifname.clone()));
        }
        let domain = if cfg.src.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))
            .map_err(io("socket"))?;
        sock.set_nonblocking(true).map_err(io("set_nonblocking"))?;
        // Only this interface's packets: a raw socket otherwise sees protocol 112 from all.
        sock.bind_device(Some(cfg.ifname.as_bytes()))
            .map_err(io("SO_BINDTODEVICE"))?;
        let multicast = cfg.peers.is_empty();
        if cfg.src.is_ipv4() {
            sock.set_ttl(u32::from(VRRP_TTL)).map_err(io("IP_TTL"))?;
            sock.set_multicast_ttl_v4(u32::from(VRRP_TTL))
                .map_err(io("IP_MULTICAST_TTL"))?;
            sock.set_multicast_loop_v4(false)
                .map_err(io("IP_MULTICAST_LOOP"))?;
            set_multicast_if_v4_index(&sock, cfg.ifindex).map_err(io("IP_MULTICAST_IF"))?;
            if multicast {
                sock.join_multicast_v4_n(&GROUP_V4, &InterfaceIndexOrAddress::Index(cfg.ifindex))
                    .map_err(io("IP_ADD_MEMBERSHIP 224.0.0.18"))?;
            }
        } else {
            sock.set_unicast_hops_v6(u32::from(VRRP_TTL))
                .map_err(io("IPV6_UNICAST_HOPS"))?;
            sock.set_multicast_hops_v6(u32::from(VRRP_TTL))
                .map_err(io("IPV6_MULTICAST_HOPS"))?;
            sock.set_multicast_loop_v6(false)
                .map_err(io("IPV6_MULTICAST_LOOP"))?;
            sock.set_multicast_if_v6(cfg.ifindex)
                .map_err(io("IPV6_MULTICAST_IF"))?;
            set_int_opt(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)
                .map_err(io("IPV6_RECVHOPLIMIT"))?;
            set_int_opt(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
                .map_err(io("IPV6_RECVPKTINFO"))?;
            if multicast {
                sock.join_multicast_v6(&GROUP_V6, cfg.ifindex)
                    .map_err(io("IPV6_JOIN_GROUP ff02::12"))?;
            }
        }
        Ok(VrrpSocket { sock, cfg })
    }

    pub fn config(&self) -> &SocketConfig {
        &self.cfg
    }

    /// Where adverts go: the group, or every unicast peer. The VRRP checksum depends on the
    /// destination (pseudo-header), so the caller encodes once per destination.
    pub fn destinations(&self) -> Vec<IpAddr> {
        if self.cfg.peers.is_empty() {
            vec![if self.cfg.src.is_ipv4() {
                IpAddr::V4(GROUP_V4)
            } else {
                IpAddr::V6(GROUP_V6)
            }]
        } else {
            self.cfg.peers.clone()
        }
    }

    /// Sends one VRRP message to `dst` with our configured source address.
    pub fn send_to(&self, payload: &[u8], dst: IpAddr) -> Result<(), NetError> {
        let err = |source| NetError::Io {
            op: "sendmsg",
            ifname: self.cfg.ifname.clone(),
            source,
        };
        match (self.cfg.src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                send_v4(self.sock.as_raw_fd(), payload, src, dst, self.cfg.ifindex).map_err(err)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                send_v6(self.sock.as_raw_fd(), payload, src, dst, self.cfg.ifindex).map_err(err)
            }
            _ => Err(NetError::Family {
                what: "destination",
                addr: dst,
                family: family_name(self.cfg.src),
            }),
        }
    }

    /// Receives one packet into `buf`. `Ok(None)`: nothing pending (non-blocking socket).
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<Incoming>, NetError> {
        let res = if self.cfg.src.is_ipv4() {
            recv_v4(self.sock.as_raw_fd(), buf)
        } else {
            recv_v6(self.sock.as_raw_fd(), buf)
        };
        let raw = match res {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(source) => {
                return Err(NetError::Io {
                    op: "recvmsg",
                    ifname: self.cfg.ifname.clone(),
                    source,
                })
            }
        };
        Ok(Some(self.filter(raw)))
    }

    /// The link-level acceptance rules, separate from the syscalls so they are testable.
    fn filter(&self, raw: RawOrBad) -> Incoming {
        let RawPacket {
            src,
            dst,
            ttl,
            range,
        } = match raw {
            RawOrBad::Ok(p) => p,
            RawOrBad::Bad { src, reason } => return Incoming::Dropped { src, reason },
        };
        let dropped = |reason: String| Incoming::Dropped {
            src: Some(src),
            reason,
        };
        if ttl != VRRP_TTL {
            return dropped(format!("TTL/hop limit {ttl}, not 255"));
        }
        if src == self.cfg.src {
            return dropped("our own packet".to_string());
        }
        if self.cfg.peers.is_empty() {
            let group = self.destinations();
            if !group.contains(&dst) {
                return dropped(format!("destination {dst} is not the VRRP group"));
            }
        } else {
            if dst != self.cfg.src {
                return dropped(format!("destination {dst} is not our unicast_src_ip"));
            }
            if !self.cfg.peers.contains(&src) {
                return dropped("source is not a configured unicast_peer".to_string());
            }
        }
        Incoming::Packet { src, dst, range }
    }
}

fn family_name(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

struct RawPacket {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    range: std::ops::Range<usize>,
}

enum RawOrBad {
    Ok(RawPacket),
    Bad { src: Option<IpAddr>, reason: String },
}

fn set_int_opt(sock: &Socket, level: i32, name: i32, val: libc::c_int) -> io::Result<()> {
    // SAFETY: `val` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&val as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// IP_MULTICAST_IF by interface index (ip_mreqn), so the choice does not depend on which
/// address the interface has right now.
fn set_multicast_if_v4_index(sock: &Socket, ifindex: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    };
    // SAFETY: `mreqn` is a live ip_mreqn and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Control-message buffer, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 128]);

fn send_v4(
    fd: RawFd,
    payload: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ifindex: u32,
) -> io::Result<()> {
    let addr = SockAddr::from(SocketAddrV4::new(dst, 0));
    // IP_PKTINFO pins the source address: without it the kernel would pick the interface's
    // primary address, which is wrong with `unicast_src_ip` and would break the checksum's
    // pseudo-header if the primary changed.
    let info = libc::in_pktinfo {
        ipi_ifindex: ifindex as libc::c_int,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(src).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    // SAFETY: `info` is a plain C struct; the bytes are copied into the control message.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&info as *const libc::in_pktinfo).cast::<u8>(),
            mem::size_of::<libc::in_pktinfo>(),
        )
    };
    sendmsg_with_cmsg(
        fd,
        payload,
        &addr,
        libc::IPPROTO_IP,
        libc::IP_PKTINFO,
        bytes,
    )
}

fn send_v6(
    fd: RawFd,
    payload: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ifindex: u32,
) -> io::Result<()> {
    let scope = if is_link_local_or_mc_link(dst) {
        ifindex
    } else {
        0
    };
    let addr = SockAddr::from(SocketAddrV6::new(dst, 0, 0, scope));
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    // SAFETY: `info` is a plain C struct; the bytes are copied into the control message.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&info as *const libc::in6_pktinfo).cast::<u8>(),
            mem::size_of::<libc::in6_pktinfo>(),
        )
    };
    sendmsg_with_cmsg(
        fd,
        payload,
        &addr,
        libc::IPPROTO_IPV6,
        libc::IPV6_PKTINFO,
        bytes,
    )
}

fn is_link_local_or_mc_link(a: Ipv6Addr) -> bool {
    let s = a.segments();
    (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xff0f) == 0xff02
}

fn sendmsg_with_cmsg(
    fd: RawFd,
    payload: &[u8],
    addr: &SockAddr,
    level: i32,
    ty: i32,
    data: &[u8],
) -> io::Result<()> {
    let mut cbuf = CmsgBuf([0; 128]);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation on a small constant length.
    let space = unsafe { libc::CMSG_SPACE(data.len() as u32) } as usize;
    if space > cbuf.0.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "control message too large",
        ));
    }
    // SAFETY: msghdr is plain data; all pointers set below outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points to `space` bytes of aligned, zeroed buffer, so the first
    // header exists and its data area holds `data.len()` bytes (checked above).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no room for cmsg",
            ));
        }
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = ty;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data.len() as u32) as _;
        std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(cmsg), data.len());
    }
    // SAFETY: `msg` is fully initialised and every pointer in it is valid for the call.
    let n = unsafe { libc::sendmsg(fd, &msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != payload.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// recvmsg into `buf` with a control buffer; returns (bytes, source, control bytes used, cbuf).
fn recvmsg_raw(
    fd: RawFd,
    buf: &mut [u8],
) -> io::Result<(usize, Option<SocketAddr>, CmsgBuf, usize)> {
    let mut cbuf = CmsgBuf([0; 128]);
    // SAFETY: sockaddr_storage is plain data, zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; the pointers set below outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut storage as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len() as _;
    // SAFETY: `msg` describes buffers we own for the duration of the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let clen = msg.msg_controllen as usize;
    let namelen = msg.msg_namelen;
    // SAFETY: the kernel filled `storage` with `namelen` bytes of a socket address.
    let src = unsafe { SockAddr::new(storage, namelen) }.as_socket();
    // A truncated datagram (MSG_TRUNC) is reported with n == buf.len(); the decoder rejects
    // the resulting length mismatch, so no special case is needed.
    Ok((n as usize, src, cbuf, clen))
}

fn recv_v4(fd: RawFd, buf: &mut [u8]) -> io::Result<RawOrBad> {
    let (n, _src, _c, _clen) = recvmsg_raw(fd, buf)?;
    Ok(parse_ipv4(buf.get(..n).unwrap_or(&[])))
}

/// IPv4 raw sockets on Linux deliver the IP header as received (network byte order).
fn parse_ipv4(pkt: &[u8]) -> RawOrBad {
    let bad = |reason: &str| RawOrBad::Bad {
        src: None,
        reason: reason.to_string(),
    };
    let Some(first) = pkt.first() else {
        return bad("empty packet");
    };
    if first >> 4 != 4 {
        return bad("not an IPv4 header");
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || pkt.len() < ihl {
        return bad("truncated IPv4 header");
    }
    let (Some(&ttl), Some(&proto), Some(s), Some(d), Some(tl)) = (
        pkt.get(8),
        pkt.get(9),
        pkt.get(12..16),
        pkt.get(16..20),
        pkt.get(2..4),
    ) else {
        return bad("truncated IPv4 header");
    };
    let src = IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3]));
    let dst = IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]));
    if i32::from(proto) != IPPROTO_VRRP {
        return RawOrBad::Bad {
            src: Some(src),
            reason: format!("IP protocol {proto}"),
        };
    }
    let total = usize::from(u16::from_be_bytes([tl[0], tl[1]]));
    // Trust the smaller of the header's length and what arrived (Ethernet padding).
    let end = if total >= ihl && total <= pkt.len() {
        total
    } else {
        pkt.len()
    };
    RawOrBad::Ok(RawPacket {
        src,
        dst,
        ttl,
        range: ihl..end,
    })
}

fn recv_v6(fd: RawFd, buf: &mut [u8]) -> io::Result<RawOrBad> {
    let (n, src, cbuf, clen) = recvmsg_raw(fd, buf)?;
    let src = match src {
        Some(SocketAddr::V6(a)) => IpAddr::V6(*a.ip()),
        _ => {
            return Ok(RawOrBad::Bad {
                src: None,
                reason: "no IPv6 source address".to_string(),
            })
        }
    };
    let (mut hops, mut dst) = (None, None);
    for (level, ty, data) in cmsgs(cbuf.0.get(..clen).unwrap_or(&[])) {
        if level != libc::IPPROTO_IPV6 {
            continue;
        }
        if ty == libc::IPV6_HOPLIMIT {
            if let Some(b) = data.get(..4) {
                hops = Some(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            }
        } else if ty == libc::IPV6_PKTINFO {
            if let Some(b) = data.get(..16) {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                dst = Some(IpAddr::V6(Ipv6Addr::from(o)));
            }
        }
    }
    let (Some(hops), Some(dst)) = (hops, dst) else {
        return Ok(RawOrBad::Bad {
            src: Some(src),
            reason: "missing hop limit / pktinfo control message".to_string(),
        });
    };
    Ok(RawOrBad::Ok(RawPacket {
        src,
        dst,
        ttl: u8::try_from(hops).unwrap_or(0),
        range: 0..n,
    }))
}

/// Walks a received control buffer without trusting its lengths.
fn cmsgs(buf: &[u8]) -> Vec<(i32, i32, &[u8])> {
    let hdr = mem::size_of::<libc::cmsghdr>();
    let align = mem::size_of::<usize>();
    let mut out = Vec::new();
    let mut off = 0usize;
    while let Some(h) = buf.get(off..off + hdr) {
        // cmsghdr on Linux: len (size_t), level (c_int), type (c_int).
        let len = usize::from_ne_bytes(
            h[..align]
                .try_into()
                .unwrap_or([0; mem::size_of::<usize>()]),
        );
        let level = i32::from_ne_bytes([h[align], h[align + 1], h[align + 2], h[align + 3]]);
        let ty = i32::from_ne_bytes([h[align + 4], h[align + 5], h[align + 6], h[align + 7]]);
        if len < hdr {
            break;
        }
        let Some(data) = buf.get(off + hdr..off + len) else {
            break;
        };
        out.push((level, ty, data));
        off += (len + align - 1) & !(align - 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::testns::{in_ns, NsPair};
    use super::*;
    use std::time::{Duration, Instant};

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
        let RawOrBad::Ok(r) = parse_ipv4(&p) else {
            panic!("rejected")
        };
        assert_eq!(r.ttl, 255);
        assert_eq!(r.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.dst, "224.0.0.18".parse::<IpAddr>().unwrap());
        assert_eq!(&p[r.range], &[1, 2, 3]);
        // Ethernet padding after the datagram is not payload.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 10]);
        let RawOrBad::Ok(r) = parse_ipv4(&padded) else {
            panic!("rejected")
        };
        assert_eq!(r.range, 20..23);
        for bad in [
            &[][..],
            &[0x65, 0, 0][..],
            &[0x4f; 10][..],
            &v4pkt(255, 6, [1; 4], [2; 4], &[])[..],
        ] {
            assert!(matches!(parse_ipv4(bad), RawOrBad::Bad { .. }));
        }
        for n in 0..p.len() {
            let _ = parse_ipv4(&p[..n]);
        }
    }

    #[test]
    fn cmsg_walk_survives_garbage() {
        assert!(cmsgs(&[]).is_empty());
        assert!(cmsgs(&[0xff; 64]).is_empty());
        assert!(cmsgs(&[0; 64]).is_empty());
    }

    fn sock(ns: &str, ifname: &str, src: &str, peers: &[&str]) -> VrrpSocket {
        let ifname = ifname.to_string();
        let src: IpAddr = src.parse().unwrap();
        let peers: Vec<IpAddr> = peers.iter().map(|p| p.parse().unwrap()).collect();
        in_ns(ns, move || {
            let ifindex = crate::vip::ifindex(&ifname).unwrap();
            VrrpSocket::open(SocketConfig {
                ifname,
                ifindex,
                src,
                peers,
            })
            .unwrap()
        })
    }

    type Got = (IpAddr, IpAddr, Vec<u8>);

    /// Waits (bounded) for one packet that passes the filters; collects drops on the way.
    fn recv_one(s: &VrrpSocket, wait: Duration) -> (Option<Got>, Vec<String>) {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        let mut drops = Vec::new();
        while Instant::now() < deadline {
            match s.recv(&mut buf).unwrap() {
                Some(Incoming::Packet { src, dst, range }) => {
                    return (Some((src, dst, buf[range].to_vec())), drops)
                }
                Some(Incoming::Dropped { reason, .. }) => drops.push(reason),
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        (None, drops)
    }

    #[test]
    fn multicast_v4_and_v6_between_namespaces() {
        let ns = NsPair::new("net-mc");
        let a4 = sock(&ns.a, "va", "10.77.0.1", &[]);
        let b4 = sock(&ns.b, "vb", "10.77.0.2", &[]);
        let a6 = sock(&ns.a, "va", &ns.a_ll.to_string(), &[]);
        let b6 = sock(&ns.b, "vb", &ns.b_ll.to_string(), &[]);
        a4.send_to(b"hello4", a4.destinations()[0]).unwrap();
        let (got, _) = recv_one(&b4, Duration::from_secs(2));
        assert_eq!(
            got,
            Some((
                "10.77.0.1".parse().unwrap(),
                IpAddr::V4(GROUP_V4),
                b"hello4".to_vec()
            ))
        );
        // Loopback is off: the sender does not see its own packet.
        assert!(recv_one(&a4, Duration::from_millis(200)).0.is_none());
        b6.send_to(b"hello6", b6.destinations()[0]).unwrap();
        let (got, _) = recv_one(&a6, Duration::from_secs(2));
        assert_eq!(
            got,
            Some((
                IpAddr::V6(ns.b_ll),
                IpAddr::V6(GROUP_V6),
                b"hello6".to_vec()
            ))
        );
    }

    #[test]
    fn ttl_below_255_is_dropped() {
        let ns = NsPair::new("net-ttl");
        let b4 = sock(&ns.b, "vb", "10.77.0.2", &[]);
        // A plain raw socket with TTL 1 plays a router-crossed (or misconfigured) sender.
        in_ns(&ns.a, || {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.bind_device(Some(b"va")).unwrap();
            s.set_multicast_ttl_v4(1).unwrap();
            let idx = crate::vip::ifindex("va").unwrap();
            set_multicast_if_v4_index(&s, idx).unwrap();
            s.send_to(b"lowttl", &SockAddr::from(SocketAddrV4::new(GROUP_V4, 0)))
                .unwrap();
        });
        let (got, drops) = recv_one(&b4, Duration::from_millis(500));
        assert!(got.is_none(), "{got:?}");
        assert!(drops.iter().any(|d| d.contains("TTL")), "{drops:?}");
    }

    #[test]
    fn unicast_accepts_only_configured_peers() {
        let ns = NsPair::new("net-uc");
        let a = sock(&ns.a, "va", "10.77.0.1", &["10.77.0.2"]);
        let b = sock(&ns.b, "vb", "10.77.0.2", &["10.77.0.1"]);
        let b_other = sock(&ns.b, "vb", "10.77.0.2", &["10.77.0.9"]);
        assert_eq!(
            a.destinations(),
            vec!["10.77.0.2".parse::<IpAddr>().unwrap()]
        );
        a.send_to(b"uni", a.destinations()[0]).unwrap();
        let (got, _) = recv_one(&b, Duration::from_secs(2));
        assert_eq!(
            got,
            Some((
                "10.77.0.1".parse().unwrap(),
                "10.77.0.2".parse().unwrap(),
                b"uni".to_vec()
            ))
        );
        let (got, drops) = recv_one(&b_other, Duration::from_millis(300));
        assert!(got.is_none());
        assert!(
            drops.iter().any(|d| d.contains("unicast_peer")),
            "{drops:?}"
        );
        // Unicast to the wrong family is refused, not sent.
        assert!(a.send_to(b"x", "::1".parse().unwrap()).is_err());
    }
}
