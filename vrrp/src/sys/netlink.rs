//! The rtnetlink client (NETLINK_ROUTE): VIPs added and removed with RTM_NEWADDR /
//! RTM_DELADDR (one ack per request), addresses and links read with RTM_GETADDR /
//! RTM_GETLINK. Messages are built and parsed by `netlink-packet-route`; this file only runs
//! the request/reply exchange on a blocking `netlink-sys` socket.
//!
//! No `ip` subprocess: the daemon must keep working when PATH or iproute2 are missing, and
//! errors come back as errno values we can interpret (EEXIST on add, EADDRNOTAVAIL on delete
//! mean the work is already done).
//!
//! Not `rtnetlink`: it is async (tokio or async-std), and the daemon is one poll(2) thread.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo as InfoAttr, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
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
    #[error("netlink {op}: malformed reply: {source}")]
    Malformed {
        op: &'static str,
        #[source]
        source: netlink_packet_core::DecodeError,
    },
    #[error("netlink {op}: {detail}")]
    Protocol {
        op: &'static str,
        detail: &'static str,
    },
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

/// Interface index by name.
pub fn ifindex(name: &str) -> Result<u32, NetlinkError> {
    nix::net::if_::if_nametoindex(name).map_err(|_| NetlinkError::NoInterface(name.to_string()))
}

/// A kernel that never answers must not hang the daemon's event loop forever.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds on reply datagrams read per request: stale replies to earlier requests are skipped,
/// but not forever.
const MAX_ACK_READS: usize = 64;
const MAX_DUMP_READS: usize = 10_000;

/// A NETLINK_ROUTE socket in the caller's network namespace (fixed at creation).
#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    pub fn open() -> Result<Netlink, NetlinkError> {
        let io = |op| move |source| NetlinkError::Io { op, source };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io("socket"))?;
        sock.bind_auto().map_err(io("bind"))?;
        let tv = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
            .map_err(|e| io("SO_RCVTIMEO")(e.into()))?;
        Ok(Netlink {
            sock,
            seq: 1,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// Adds `addr/prefix` to the interface. Ok(false): it was already there.
    pub fn add_addr(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<bool, NetlinkError> {
        let msg = RouteNetlinkMessage::NewAddress(addr_message(ifindex, addr, prefix));
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.request_ack("RTM_NEWADDR", msg, flags)? {
            None => Ok(true),
            Some(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Some(source) => Err(NetlinkError::Kernel {
                op: "RTM_NEWADDR",
                what: format!("{addr}/{prefix} on ifindex {ifindex}"),
                source,
            }),
        }
    }

    /// Removes `addr/prefix` from the interface. Ok(false): it was not there.
    pub fn del_addr(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<bool, NetlinkError> {
        let msg = RouteNetlinkMessage::DelAddress(addr_message(ifindex, addr, prefix));
        match self.request_ack("RTM_DELADDR", msg, NLM_F_REQUEST | NLM_F_ACK)? {
            None => Ok(true),
            Some(e) if matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => {
                Ok(false)
            }
            Some(source) => Err(NetlinkError::Kernel {
                op: "RTM_DELADDR",
                what: format!("{addr}/{prefix} on ifindex {ifindex}"),
                source,
            }),
        }
    }

    /// All addresses (both families) of one interface, in kernel order.
    pub fn addrs(&mut self, ifindex: u32) -> Result<Vec<IfAddr>, NetlinkError> {
        let msg = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        let mut out = Vec::new();
        self.dump("RTM_GETADDR", msg, NLM_F_REQUEST | NLM_F_DUMP, |m| {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                if a.header.index == ifindex {
                    out.extend(if_addr(&a));
                }
            }
        })?;
        Ok(out)
    }

    /// Up/running state and MAC address of one interface.
    pub fn link(&mut self, ifindex: u32) -> Result<LinkInfo, NetlinkError> {
        let mut req = LinkMessage::default();
        req.header.index = ifindex;
        let mut info = None;
        self.dump(
            "RTM_GETLINK",
            RouteNetlinkMessage::GetLink(req),
            NLM_F_REQUEST,
            |m| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    info = Some(link_info(&l));
                }
            },
        )?;
        info.ok_or(NetlinkError::Protocol {
            op: "RTM_GETLINK",
            detail: "no link in reply",
        })
    }

    /// The index of interface `name`, created as a `dummy` (administratively up) if it does
    /// not exist. A kernel built without the dummy driver gets an `ifb` device instead: it
    /// is as inert (NOARP, drops what is sent to it) and its addresses are local addresses
    /// all the same. An existing interface is used as it is, only brought up.
    pub fn ensure_dummy(&mut self, name: &str) -> Result<u32, NetlinkError> {
        if let Ok(idx) = ifindex(name) {
            self.set_up(idx)?;
            return Ok(idx);
        }
        let mut created = self.create_link(name, InfoKind::Dummy)?;
        if let Some(e) = created.take_if(|e| e.raw_os_error() == Some(libc::EOPNOTSUPP)) {
            tracing::info!(interface = name, error = %e, "no dummy interfaces in this kernel: using an ifb device");
            created = self.create_link(name, InfoKind::Ifb)?;
        }
        match created {
            None => {}
            Some(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Some(source) => {
                return Err(NetlinkError::Kernel {
                    op: "RTM_NEWLINK",
                    what: name.to_string(),
                    source,
                })
            }
        }
        let idx = ifindex(name)?;
        self.set_up(idx)?;
        Ok(idx)
    }

    /// RTM_NEWLINK for a new interface of `kind`. `Ok(Some(e))`: the kernel refused.
    fn create_link(
        &mut self,
        name: &str,
        kind: InfoKind,
    ) -> Result<Option<io::Error>, NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![InfoAttr::Kind(kind)]));
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        self.request_ack("RTM_NEWLINK", RouteNetlinkMessage::NewLink(m), flags)
    }

    /// Sets IFF_UP on the interface.
    pub fn set_up(&mut self, ifindex: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = ifindex;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        match self.request_ack(
            "RTM_NEWLINK",
            RouteNetlinkMessage::SetLink(m),
            NLM_F_REQUEST | NLM_F_ACK,
        )? {
            None => Ok(()),
            Some(source) => Err(NetlinkError::Kernel {
                op: "RTM_SETLINK",
                what: format!("up on ifindex {ifindex}"),
                source,
            }),
        }
    }

    /// Removes every address in `vips` that is present on the interface (whatever its prefix):
    /// the VIPs a killed predecessor left behind. Returns what was removed.
    pub fn remove_stale(
        &mut self,
        ifindex: u32,
        vips: &[(IpAddr, u8)],
    ) -> Result<Vec<IfAddr>, NetlinkError> {
        let mut removed = Vec::new();
        for a in self.addrs(ifindex)? {
            if vips.iter().any(|(v, _)| *v == a.addr) && self.del_addr(ifindex, a.addr, a.prefix)? {
                removed.push(a);
            }
        }
        Ok(removed)
    }

    fn send(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<u32, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.sock
            .send(&bytes, 0)
            .map_err(|source| NetlinkError::Io { op, source })?;
        Ok(self.seq)
    }

    /// Reads one datagram into `self.buf`, retrying on EINTR.
    fn recv(&mut self, op: &'static str) -> Result<(), NetlinkError> {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(NetlinkError::Io { op, source }),
            }
        }
    }

    /// Sends a request with NLM_F_ACK. `Ok(Some(e))`: the kernel refused it with errno `e`.
    fn request_ack(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Option<io::Error>, NetlinkError> {
        let seq = self.send(op, msg, flags)?;
        for _ in 0..MAX_ACK_READS {
            self.recv(op)?;
            for m in messages(&self.buf) {
                let m = m.map_err(|source| NetlinkError::Malformed { op, source })?;
                if m.header.sequence_number != seq {
                    continue;
                }
                if let NetlinkPayload::Error(e) = m.payload {
                    return Ok(e.code.map(|_| e.to_io()));
                }
            }
        }
        Err(NetlinkError::Protocol {
            op,
            detail: "no ack",
        })
    }

    /// Sends a dump (or get) request and feeds every reply to `f` until NLMSG_DONE (dump) or
    /// the first reply (get).
    fn dump(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut f: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), NetlinkError> {
        let is_dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let seq = self.send(op, msg, flags)?;
        for _ in 0..MAX_DUMP_READS {
            self.recv(op)?;
            let mut got_reply = false;
            for m in messages(&self.buf) {
                let m = m.map_err(|source| NetlinkError::Malformed { op, source })?;
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(_) => Err(NetlinkError::Kernel {
                                op,
                                what: String::new(),
                                source: e.to_io(),
                            }),
                        }
                    }
                    NetlinkPayload::InnerMessage(inner) => {
                        f(inner);
                        got_reply = true;
                    }
                    _ => {}
                }
            }
            if got_reply && !is_dump {
                return Ok(());
            }
        }
        Err(NetlinkError::Protocol {
            op,
            detail: "dump did not end",
        })
    }
}

/// The kernel's announcements of link and address changes (RTNLGRP_LINK,
/// RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR): the daemon sleeps on this socket instead of
/// polling, and re-reads what it needs when something changed.
#[derive(Debug)]
pub struct Events {
    sock: Socket,
    buf: Vec<u8>,
}

/// What one drain of [`Events`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// A link appeared, went, or changed state.
    pub links: bool,
    /// An address was added or removed (ours included).
    pub addrs: bool,
}

impl Events {
    pub fn open() -> Result<Events, NetlinkError> {
        let io = |op| move |source| NetlinkError::Io { op, source };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io("socket"))?;
        sock.bind_auto().map_err(io("bind"))?;
        for group in [
            libc::RTNLGRP_LINK,
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV6_IFADDR,
        ] {
            sock.add_membership(group)
                .map_err(io("NETLINK_ADD_MEMBERSHIP"))?;
        }
        sock.set_non_blocking(true)
            .map_err(io("set_non_blocking"))?;
        Ok(Events {
            sock,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// Reads every pending announcement. An overflowed queue (ENOBUFS: the kernel dropped
    /// some) reports everything as changed, so the caller re-reads all state.
    pub fn drain(&mut self) -> Result<Changes, NetlinkError> {
        let mut changes = Changes::default();
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(changes),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    changes = Changes {
                        links: true,
                        addrs: true,
                    };
                    continue;
                }
                Err(source) => {
                    return Err(NetlinkError::Io {
                        op: "recv events",
                        source,
                    })
                }
            }
            for m in messages(&self.buf).flatten() {
                match m.payload {
                    NetlinkPayload::InnerMessage(
                        RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_),
                    ) => changes.links = true,
                    NetlinkPayload::InnerMessage(
                        RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_),
                    ) => changes.addrs = true,
                    _ => {}
                }
            }
        }
    }
}

impl std::os::fd::AsFd for Events {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }
}

/// RTM_NEWADDR / RTM_DELADDR body for one VIP.
fn addr_message(ifindex: u32, addr: IpAddr, prefix: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = prefix;
    m.header.index = ifindex;
    // VIPs skip duplicate address detection (as keepalived): during DAD an IPv6 address is
    // "tentative" and cannot be used, which would delay the takeover by a second.
    if addr.is_ipv6() {
        m.header.flags = AddressHeaderFlags::Nodad;
    }
    m.attributes.push(AddressAttribute::Local(addr));
    m.attributes.push(AddressAttribute::Address(addr));
    m
}

/// What an RTM_NEWADDR says, or None for a family we do not use.
pub(crate) fn if_addr(a: &AddressMessage) -> Option<IfAddr> {
    let (mut local, mut address) = (None, None);
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address (it differs from IFA_ADDRESS only on
    // point-to-point links); IPv6 reports only IFA_ADDRESS.
    let addr = local.or(address)?;
    Some(IfAddr {
        addr,
        prefix: a.header.prefix_len,
        secondary: a.header.flags.contains(AddressHeaderFlags::Secondary),
        scope: u8::from(a.header.scope),
    })
}

/// What an RTM_NEWLINK says about the link's state.
pub(crate) fn link_info(l: &LinkMessage) -> LinkInfo {
    let mac = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
        _ => None,
    });
    LinkInfo {
        up: l.header.flags.contains(LinkFlags::Up | LinkFlags::Running),
        mac,
    }
}

/// The netlink messages of one datagram, each parsed; stops at the first malformed one.
pub(crate) fn messages(
    buf: &[u8],
) -> impl Iterator<
    Item = Result<NetlinkMessage<RouteNetlinkMessage>, netlink_packet_core::DecodeError>,
> + '_ {
    let mut off = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || off >= buf.len() {
            return None;
        }
        let rest = buf.get(off..)?;
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest) {
            Ok(m) => {
                let len = m.header.length as usize;
                if len == 0 {
                    failed = true;
                    return None;
                }
                off += (len + 3) & !3;
                Some(Ok(m))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
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
mod tests;
