//! Virtual addresses via rtnetlink (NETLINK_ROUTE), hand-rolled with libc: RTM_NEWADDR /
//! RTM_DELADDR with an ack per request, RTM_GETADDR / RTM_GETLINK dumps. No `ip` subprocess:
//! the daemon must keep working when PATH or iproute2 are missing, and errors come back as
//! errno values we can interpret (EEXIST on add, EADDRNOTAVAIL on delete = already done).

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("netlink {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("netlink {op} {what}: {source}")]
    Kernel {
        op: &'static str,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink {op}: malformed reply: {detail}")]
    Malformed { op: &'static str, detail: String },
    #[error("no interface named {0:?}")]
    NoInterface(String),
}

/// One address of an interface, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix: u8,
    /// IFA_F_SECONDARY: an IPv4 address added after another in the same subnet.
    pub secondary: bool,
    /// RT_SCOPE_*: 0 universe, 253 link, 254 host.
    pub scope: u8,
}

/// Link state of an interface (RTM_GETLINK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    /// IFF_UP (administratively up) and IFF_RUNNING (carrier): keepalived's notion of "up".
    pub up: bool,
    pub mac: Option<[u8; 6]>,
}

/// Interface index by name (if_nametoindex).
pub fn ifindex(name: &str) -> Result<u32, VipError> {
    let c = std::ffi::CString::new(name).map_err(|_| VipError::NoInterface(name.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(VipError::NoInterface(name.to_string()))
    } else {
        Ok(idx)
    }
}

const NLMSG_HDR: usize = 16;
const IFA_F_NODAD: u8 = 0x02;
const IFA_F_SECONDARY: u8 = 0x01;

/// A NETLINK_ROUTE socket in the caller's network namespace (fixed at creation).
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink, VipError> {
        let io = |op| move |source| VipError::Io { op, source };
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io("socket")(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; zero = kernel assigns the port id.
        let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io("bind")(io::Error::last_os_error()));
        }
        // A kernel that never answers must not hang the daemon's event loop forever.
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a valid timeval and the length is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io("SO_RCVTIMEO")(io::Error::last_os_error()));
        }
        Ok(Netlink { fd, seq: 1 })
    }

    /// Adds `addr/prefix` to the interface. Ok(false): it was already there.
    pub fn add_addr(&mut self, ifindex: u32, addr: IpAddr, prefix: u8) -> Result<bool, VipError> {
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL;
        let msg = self.addr_msg(libc::RTM_NEWADDR, flags, ifindex, addr, prefix);
        match self.request_ack("RTM_NEWADDR", &msg) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(source) => Err(VipError::Kernel {
                op: "RTM_NEWADDR",
                what: format!("{addr}/{prefix} on ifindex {ifindex}"),
                source,
            }),
        }
    }

    /// Removes `addr/prefix` from the interface. Ok(false): it was not there.
    pub fn del_addr(&mut self, ifindex: u32, addr: IpAddr, prefix: u8) -> Result<bool, VipError> {
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
        let msg = self.addr_msg(libc::RTM_DELADDR, flags, ifindex, addr, prefix);
        match self.request_ack("RTM_DELADDR", &msg) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(source) => Err(VipError::Kernel {
                op: "RTM_DELADDR",
                what: format!("{addr}/{prefix} on ifindex {ifindex}"),
                source,
            }),
        }
    }

    /// All addresses (both families) of one interface, in kernel order.
    pub fn addrs(&mut self, ifindex: u32) -> Result<Vec<IfAddr>, VipError> {
        let seq = self.next_seq();
        let mut msg = nlmsg(
            libc::RTM_GETADDR,
            libc::NLM_F_REQUEST | libc::NLM_F_DUMP,
            seq,
        );
        msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0]);
        finish(&mut msg);
        let mut out = Vec::new();
        self.dump("RTM_GETADDR", &msg, seq, |ty, body| {
            if ty != libc::RTM_NEWADDR {
                return Ok(());
            }
            let Some(h) = body.get(..8) else {
                return Err("short ifaddrmsg".to_string());
            };
            let (family, prefix, flags, scope) = (h[0], h[1], h[2], h[3]);
            let index = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
            if index != ifindex {
                return Ok(());
            }
            let (mut local, mut address) = (None, None);
            for (t, data) in attrs(body.get(8..).unwrap_or(&[])) {
                let a = parse_ip(i32::from(family), data);
                if t == libc::IFA_LOCAL {
                    local = a;
                } else if t == libc::IFA_ADDRESS {
                    address = a;
                }
            }
            // IFA_LOCAL is the interface's own address (differs from IFA_ADDRESS only on
            // point-to-point links); IPv6 reports only IFA_ADDRESS.
            if let Some(addr) = local.or(address) {
                out.push(IfAddr {
                    addr,
                    prefix,
                    secondary: flags & IFA_F_SECONDARY != 0,
                    scope,
                });
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Up/running state and MAC address of one interface.
    pub fn link(&mut self, ifindex: u32) -> Result<LinkInfo, VipError> {
        let seq = self.next_seq();
        let mut msg = nlmsg(libc::RTM_GETLINK, libc::NLM_F_REQUEST, seq);
        // ifinfomsg: family, pad, type, index, flags, change.
        msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        msg.extend_from_slice(&[0; 8]);
        finish(&mut msg);
        let mut info = None;
        self.dump("RTM_GETLINK", &msg, seq, |ty, body| {
            if ty != libc::RTM_NEWLINK {
                return Ok(());
            }
            let Some(h) = body.get(..16) else {
                return Err("short ifinfomsg".to_string());
            };
            let flags = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
            let mut mac = None;
            for (t, data) in attrs(body.get(16..).unwrap_or(&[])) {
                if t == libc::IFLA_ADDRESS {
                    if let Ok(m) = <[u8; 6]>::try_from(data) {
                        mac = Some(m);
                    }
                }
            }
            let want = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
            info = Some(LinkInfo {
                up: flags & want == want,
                mac,
            });
            Ok(())
        })?;
        info.ok_or_else(|| VipError::Malformed {
            op: "RTM_GETLINK",
            detail: "no link in reply".to_string(),
        })
    }

    /// Removes every address in `vips` that is present on the interface (whatever its prefix):
    /// the VIPs a killed predecessor left behind. Returns what was removed.
    pub fn remove_stale(
        &mut self,
        ifindex: u32,
        vips: &[(IpAddr, u8)],
    ) -> Result<Vec<IfAddr>, VipError> {
        let mut removed = Vec::new();
        for a in self.addrs(ifindex)? {
            if vips.iter().any(|(v, _)| *v == a.addr) && self.del_addr(ifindex, a.addr, a.prefix)? {
                removed.push(a);
            }
        }
        Ok(removed)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn addr_msg(&mut self, ty: u16, flags: i32, ifindex: u32, addr: IpAddr, prefix: u8) -> Vec<u8> {
        let seq = self.next_seq();
        let mut msg = nlmsg(ty, flags, seq);
        let (family, bytes): (u8, Vec<u8>) = match addr {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        // VIPs skip duplicate address detection (as keepalived): during DAD an IPv6 address
        // is "tentative" and cannot be used, which would delay the takeover by a second.
        let ifa_flags = if addr.is_ipv6() { IFA_F_NODAD } else { 0 };
        msg.extend_from_slice(&[family, prefix, ifa_flags, 0]);
        msg.extend_from_slice(&ifindex.to_ne_bytes());
        push_attr(&mut msg, libc::IFA_LOCAL, &bytes);
        push_attr(&mut msg, libc::IFA_ADDRESS, &bytes);
        finish(&mut msg);
        msg
    }

    fn send(&self, op: &'static str, msg: &[u8]) -> Result<(), VipError> {
        // SAFETY: sockaddr_nl is plain data; zero pid = the kernel.
        let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `sa` are valid for the duration of the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(VipError::Io {
                op,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    fn recv(&self, op: &'static str, buf: &mut [u8]) -> Result<usize, VipError> {
        loop {
            // SAFETY: `buf` is writable for its whole length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(VipError::Io { op, source: e });
            }
        }
    }

    /// Sends a request with NLM_F_ACK; the kernel's errno comes back as the io::Error.
    fn request_ack(&mut self, op: &'static str, msg: &[u8]) -> Result<(), io::Error> {
        let seq = header_u32(msg, 8);
        let to_io = |e: VipError| match e {
            VipError::Io { source, .. } => source,
            other => io::Error::other(other.to_string()),
        };
        self.send(op, msg).map_err(to_io)?;
        let mut buf = vec![0u8; 8192];
        // Bounded: stale replies from earlier requests are skipped, but not forever.
        for _ in 0..64 {
            let n = self.recv(op, &mut buf).map_err(to_io)?;
            for (ty, mseq, body) in messages(buf.get(..n).unwrap_or(&[])) {
                if mseq != seq || ty != libc::NLMSG_ERROR as u16 {
                    continue;
                }
                let Some(e) = body.get(..4) else {
                    return Err(io::Error::other("short NLMSG_ERROR"));
                };
                let errno = i32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
                return if errno == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(errno.saturating_neg()))
                };
            }
        }
        Err(io::Error::other("no netlink ack"))
    }

    /// Sends a dump (or get) request and feeds every reply message to `f` until DONE (dump)
    /// or the first reply (get).
    fn dump(
        &mut self,
        op: &'static str,
        msg: &[u8],
        seq: u32,
        mut f: impl FnMut(u16, &[u8]) -> Result<(), String>,
    ) -> Result<(), VipError> {
        // nlmsg_flags is the u16 at offset 6 of the header we built.
        let flags = msg
            .get(6..8)
            .map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]));
        let is_dump = flags & (libc::NLM_F_DUMP as u16) != 0;
        self.send(op, msg)?;
        let mut buf = vec![0u8; 32768];
        for _ in 0..10_000 {
            let n = self.recv(op, &mut buf)?;
            let mut got_reply = false;
            for (ty, mseq, body) in messages(buf.get(..n).unwrap_or(&[])) {
                if mseq != seq {
                    continue;
                }
                if ty == libc::NLMSG_DONE as u16 {
                    return Ok(());
                }
                if ty == libc::NLMSG_ERROR as u16 {
                    let errno = body
                        .get(..4)
                        .map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
                        .unwrap_or(-libc::EIO);
                    if errno == 0 {
                        return Ok(());
                    }
                    return Err(VipError::Kernel {
                        op,
                        what: String::new(),
                        source: io::Error::from_raw_os_error(errno.saturating_neg()),
                    });
                }
                f(ty, body).map_err(|detail| VipError::Malformed { op, detail })?;
                got_reply = true;
            }
            if got_reply && !is_dump {
                return Ok(());
            }
        }
        Err(VipError::Malformed {
            op,
            detail: "dump did not end".to_string(),
        })
    }
}

fn nlmsg(ty: u16, flags: i32, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by finish()
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&(flags as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

/// A native-endian u32 of a message header (0 if the message is shorter).
fn header_u32(m: &[u8], off: usize) -> u32 {
    m.get(off..off + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_ne_bytes)
}

fn finish(m: &mut [u8]) {
    let len = (m.len() as u32).to_ne_bytes();
    if let Some(h) = m.get_mut(..4) {
        h.copy_from_slice(&len);
    }
}

fn push_attr(m: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    m.extend_from_slice(&(len as u16).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(data);
    m.resize(m.len() + (align4(len) - len), 0);
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Splits a datagram into (type, seq, body) netlink messages; stops at anything malformed.
fn messages(buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while let Some(h) = buf.get(off..off + NLMSG_HDR) {
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let ty = u16::from_ne_bytes([h[4], h[5]]);
        let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        if len < NLMSG_HDR {
            break;
        }
        let Some(body) = buf.get(off + NLMSG_HDR..off + len) else {
            break;
        };
        out.push((ty, seq, body));
        off += align4(len);
    }
    out
}

/// Splits rtattrs into (type, data); stops at anything malformed.
fn attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while let Some(h) = buf.get(off..off + 4) {
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let ty = u16::from_ne_bytes([h[2], h[3]]) & 0x3fff; // strip NLA_F_NESTED/BYTEORDER
        if len < 4 {
            break;
        }
        let Some(data) = buf.get(off + 4..off + len) else {
            break;
        };
        out.push((ty, data));
        off += align4(len);
    }
    out
}

fn parse_ip(family: i32, data: &[u8]) -> Option<IpAddr> {
    if family == libc::AF_INET {
        let b: [u8; 4] = data.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    } else if family == libc::AF_INET6 {
        let b: [u8; 16] = data.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    } else {
        None
    }
}

/// The address a VRRP instance sends from: `unicast_src_ip` if configured, else the interface's
/// first IPv4 address that is not a VIP (IPv4 instances) or its link-local address (IPv6).
pub fn primary_addr(addrs: &[IfAddr], ipv6: bool, vips: &[(IpAddr, u8)]) -> Option<IpAddr> {
    let is_vip = |a: &IpAddr| vips.iter().any(|(v, _)| v == a);
    addrs
        .iter()
        .filter(|a| !is_vip(&a.addr))
        .find(|a| match a.addr {
            IpAddr::V4(_) => !ipv6 && !a.secondary,
            IpAddr::V6(v6) => ipv6 && (v6.segments()[0] & 0xffc0) == 0xfe80,
        })
        .or_else(|| {
            // No primary left (all secondaries?): any non-VIP of the family will do.
            addrs
                .iter()
                .filter(|a| !is_vip(&a.addr))
                .find(|a| a.addr.is_ipv6() == ipv6)
        })
        .map(|a| a.addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testns::{in_ns, ip, NsPair};

    #[test]
    fn message_walkers_survive_garbage() {
        assert!(messages(&[]).is_empty());
        assert!(messages(&[0xff; 40]).is_empty());
        assert!(messages(&[0; 40]).is_empty());
        assert!(attrs(&[0xff; 9]).is_empty());
        assert!(attrs(&[1, 0, 1, 0]).is_empty());
        let mut m = Vec::new();
        push_attr(&mut m, 2, &[1, 2, 3]);
        push_attr(&mut m, 1, &[9; 4]);
        assert_eq!(attrs(&m), vec![(2, &[1u8, 2, 3][..]), (1, &[9u8; 4][..])]);
    }

    #[test]
    fn primary_addr_skips_vips_and_secondaries() {
        let a = |s: &str, prefix, secondary, scope| IfAddr {
            addr: s.parse().unwrap(),
            prefix,
            secondary,
            scope,
        };
        let list = [
            a("10.0.0.80", 24, false, 0),
            a("10.0.0.5", 24, true, 0),
            a("10.0.1.1", 24, false, 0),
            a("fd00::1", 64, false, 0),
            a("fe80::1", 64, false, 253),
        ];
        let vips = [("10.0.0.80".parse().unwrap(), 24)];
        assert_eq!(
            primary_addr(&list, false, &vips),
            Some("10.0.1.1".parse().unwrap())
        );
        assert_eq!(
            primary_addr(&list, true, &vips),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(
            primary_addr(&list[..2], false, &vips),
            Some("10.0.0.5".parse().unwrap())
        );
        assert_eq!(primary_addr(&[], false, &vips), None);
    }

    #[test]
    fn add_list_remove_in_namespace() {
        let ns = NsPair::new("vip");
        let (added, listed, again, removed, gone, link, after_stale) = in_ns(&ns.a, || {
            let mut nl = Netlink::open().unwrap();
            let idx = ifindex("va").unwrap();
            assert!(ifindex("nope0").is_err());
            let v4: IpAddr = "10.77.0.100".parse().unwrap();
            let v6: IpAddr = "fd77::100".parse().unwrap();
            let added = (
                nl.add_addr(idx, v4, 24).unwrap(),
                nl.add_addr(idx, v6, 64).unwrap(),
            );
            let listed = nl.addrs(idx).unwrap();
            let again = nl.add_addr(idx, v4, 24).unwrap();
            let removed = (
                nl.del_addr(idx, v4, 24).unwrap(),
                nl.del_addr(idx, v6, 64).unwrap(),
            );
            let gone = nl.del_addr(idx, v4, 24).unwrap();
            let link = nl.link(idx).unwrap();
            // A predecessor's leftovers, with a different prefix than configured.
            nl.add_addr(idx, v4, 32).unwrap();
            let stale = nl.remove_stale(idx, &[(v4, 24), (v6, 64)]).unwrap();
            assert_eq!(stale.len(), 1);
            (
                added,
                listed,
                again,
                removed,
                gone,
                link,
                nl.addrs(idx).unwrap(),
            )
        });
        assert_eq!(added, (true, true));
        let out = crate::net::testns::ns_exec(&ns.a, &["ip", "addr", "show", "dev", "va"]);
        assert!(!out.contains("10.77.0.100"), "{out}");
        let has = |l: &[IfAddr], s: &str| l.iter().any(|a| a.addr == s.parse::<IpAddr>().unwrap());
        assert!(
            has(&listed, "10.77.0.100") && has(&listed, "fd77::100") && has(&listed, "10.77.0.1")
        );
        let vip = listed
            .iter()
            .find(|a| a.addr == "10.77.0.100".parse::<IpAddr>().unwrap());
        assert_eq!(vip.map(|a| (a.prefix, a.secondary)), Some((24, true)));
        assert!(!again);
        assert_eq!(removed, (true, true));
        assert!(!gone);
        assert!(link.up);
        assert!(link.mac.is_some());
        assert!(!has(&after_stale, "10.77.0.100"));
        // Link down is visible.
        ip(&["-n", &ns.b, "link", "set", "vb", "down"]);
        let link = in_ns(&ns.a, || {
            Netlink::open()
                .unwrap()
                .link(ifindex("va").unwrap())
                .unwrap()
        });
        assert!(!link.up);
    }
}
