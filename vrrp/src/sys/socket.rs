//! Raw IP-protocol-112 sockets: one per VRRP instance, bound to the instance's interface.
//!
//! Multicast mode joins 224.0.0.18 / ff02::12 on that interface only; unicast mode
//! (`unicast_src_ip` + `unicast_peer`) sends to each peer and only accepts packets from them.
//! Everything is sent with TTL / hop limit 255 and everything received with another TTL is
//! dropped (RFC 5798 5.1.1.3): a packet that crossed a router cannot be from our segment.
//!
//! The kernel builds and strips the IP header; the caller encodes and decodes the VRRP message
//! (`wire::vrrp`). IPv4 raw sockets hand us the IP header, so TTL and addresses come from it; IPv6
//! raw sockets do not, so hop limit and destination come from `IPV6_HOPLIMIT` / `IPV6_PKTINFO`
//! control messages.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use crate::wire::ipv4;

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

impl std::os::fd::AsFd for VrrpSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
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
            sock.set_recv_hoplimit_v6(true)
                .map_err(io("IPV6_RECVHOPLIMIT"))?;
            setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true)
                .map_err(|e| io("IPV6_RECVPKTINFO")(e.into()))?;
            if multicast {
                sock.join_multicast_v6(&GROUP_V6, cfg.ifindex)
                    .map_err(io("IPV6_JOIN_GROUP ff02::12"))?;
            }
        }
        Ok(VrrpSocket { sock, cfg })
    }

    /// A second handle on the same socket (for the advert pacer thread).
    pub fn try_clone(&self) -> io::Result<VrrpSocket> {
        Ok(VrrpSocket {
            sock: self.sock.try_clone()?,
            cfg: self.cfg.clone(),
        })
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

fn send_v4(
    fd: RawFd,
    payload: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ifindex: u32,
) -> io::Result<()> {
    let addr = SockaddrIn::from(SocketAddrV4::new(dst, 0));
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
    let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
    send_all(fd, payload, &cmsg, Some(&addr))
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
    let addr = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope));
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
    send_all(fd, payload, &cmsg, Some(&addr))
}

fn send_all<A: nix::sys::socket::SockaddrLike>(
    fd: RawFd,
    payload: &[u8],
    cmsg: &[ControlMessage<'_>],
    addr: Option<&A>,
) -> io::Result<()> {
    let n = sendmsg(fd, &[IoSlice::new(payload)], cmsg, MsgFlags::empty(), addr)?;
    if n != payload.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

fn is_link_local_or_mc_link(a: Ipv6Addr) -> bool {
    let s = a.segments();
    (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xff0f) == 0xff02
}

fn recv_v4(fd: RawFd, buf: &mut [u8]) -> io::Result<RawOrBad> {
    let n = recvmsg::<()>(fd, &mut [IoSliceMut::new(buf)], None, MsgFlags::empty())?.bytes;
    // A truncated datagram (MSG_TRUNC) is reported with n == buf.len(); the decoder rejects
    // the resulting length mismatch, so no special case is needed.
    Ok(from_ipv4(buf.get(..n).unwrap_or(&[])))
}

/// IPv4 raw sockets on Linux deliver the IP header as received.
fn from_ipv4(pkt: &[u8]) -> RawOrBad {
    let h = match ipv4::parse(pkt) {
        Ok(h) => h,
        Err(e) => {
            return RawOrBad::Bad {
                src: None,
                reason: e.to_string(),
            }
        }
    };
    if i32::from(h.protocol) != IPPROTO_VRRP {
        return RawOrBad::Bad {
            src: Some(IpAddr::V4(h.src)),
            reason: format!("IP protocol {}", h.protocol),
        };
    }
    RawOrBad::Ok(RawPacket {
        src: IpAddr::V4(h.src),
        dst: IpAddr::V4(h.dst),
        ttl: h.ttl,
        range: h.payload,
    })
}

/// IPv6 raw sockets do not hand over the header: hop limit and destination come from the
/// IPV6_HOPLIMIT and IPV6_PKTINFO control messages asked for at open.
fn recv_v6(fd: RawFd, buf: &mut [u8]) -> io::Result<RawOrBad> {
    let mut cbuf = nix::cmsg_space!(libc::c_int, libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cbuf), MsgFlags::empty())?;
    let n = msg.bytes;
    let Some(src) = msg.address.map(|a| IpAddr::V6(a.ip())) else {
        return Ok(RawOrBad::Bad {
            src: None,
            reason: "no IPv6 source address".to_string(),
        });
    };
    let (mut hops, mut dst) = (None, None);
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6HopLimit(h) => hops = Some(h),
            ControlMessageOwned::Ipv6PacketInfo(i) => {
                dst = Some(IpAddr::V6(Ipv6Addr::from(i.ipi6_addr.s6_addr)))
            }
            _ => {}
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

#[cfg(test)]
mod tests;
