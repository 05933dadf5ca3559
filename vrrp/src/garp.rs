//! Gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6) for the VIPs.
//!
//! A new master must tell the segment that the VIPs moved: neighbours' caches still hold the
//! old master's MAC. IPv4: an ARP request with sender = target = VIP, broadcast (what Linux
//! treats as gratuitous and uses to override an existing entry). IPv6: an unsolicited NA to
//! ff02::1 with the Override flag and the target link-layer address option, hop limit 255
//! (RFC 4861 7.2.6; receivers drop NAs with any other hop limit).
//!
//! The caller repeats `announce` a few times (keepalived's vrrp_garp_master_repeat) because a
//! single frame can be lost.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

#[derive(Debug, thiserror::Error)]
pub enum GarpError {
    #[error("{op} on interface {ifname}: {source}")]
    Io {
        op: &'static str,
        ifname: String,
        #[source]
        source: io::Error,
    },
}

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// An Ethernet frame carrying a gratuitous ARP request for `vip` from `mac`.
pub fn arp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
    f[18] = 6; // hardware address length
    f[19] = 4; // protocol address length
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // op: request
    f[22..28].copy_from_slice(&mac); // sender hardware address
    f[28..32].copy_from_slice(&vip.octets()); // sender protocol address
    f[32..38].copy_from_slice(&BROADCAST); // target hardware address (as keepalived)
    f[38..42].copy_from_slice(&vip.octets()); // target protocol address = sender: gratuitous
    f
}

/// An ICMPv6 neighbour advertisement for `vip` (checksum left 0: the kernel fills it in for
/// ICMPv6 raw sockets).
pub fn na_message(mac: [u8; 6], vip: Ipv6Addr) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136; // type: neighbour advertisement
    m[1] = 0; // code
    m[4] = 0x20; // flags: Override (not Solicited: it is unsolicited; not Router)
    m[8..24].copy_from_slice(&vip.octets());
    m[24] = 2; // option: target link-layer address
    m[25] = 1; // length in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

/// Sockets to announce VIPs on one interface.
#[derive(Debug)]
pub struct Announcer {
    ifname: String,
    ifindex: u32,
    mac: [u8; 6],
    arp: Option<OwnedFd>,
    nd: Option<Socket>,
}

impl Announcer {
    /// Opens what is needed for the families in `vips` (CAP_NET_RAW).
    pub fn open(
        ifname: &str,
        ifindex: u32,
        mac: [u8; 6],
        vips: &[IpAddr],
    ) -> Result<Announcer, GarpError> {
        let io = |op: &'static str| {
            let ifname = ifname.to_string();
            move |source| GarpError::Io { op, ifname, source }
        };
        let arp = if vips.iter().any(IpAddr::is_ipv4) {
            // Protocol 0: the socket is only for sending (the protocol is given per sendto),
            // so the kernel delivers nothing to it and no receive queue fills up.
            // SAFETY: plain socket(2) call; the result is checked before use.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    0,
                )
            };
            if fd < 0 {
                return Err(io("socket(AF_PACKET)")(io::Error::last_os_error()));
            }
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Some(fd)
        } else {
            None
        };
        let nd = if vips.iter().any(IpAddr::is_ipv6) {
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
                .map_err(io("socket(ICMPv6)"))?;
            s.set_nonblocking(true).map_err(io("set_nonblocking"))?;
            s.bind_device(Some(ifname.as_bytes()))
                .map_err(io("SO_BINDTODEVICE"))?;
            s.set_multicast_hops_v6(255)
                .map_err(io("IPV6_MULTICAST_HOPS"))?;
            s.set_multicast_if_v6(ifindex)
                .map_err(io("IPV6_MULTICAST_IF"))?;
            s.set_multicast_loop_v6(false)
                .map_err(io("IPV6_MULTICAST_LOOP"))?;
            // Only send: an ICMPv6 filter that blocks every type keeps the queue empty.
            let filter = [0xffff_ffffu32; 8];
            // SAFETY: `filter` is a live icmp6_filter-sized array and the length is its size.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_ICMPV6,
                    1, // ICMP6_FILTER
                    filter.as_ptr().cast(),
                    mem::size_of_val(&filter) as libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(io("ICMP6_FILTER")(io::Error::last_os_error()));
            }
            Some(s)
        } else {
            None
        };
        Ok(Announcer {
            ifname: ifname.to_string(),
            ifindex,
            mac,
            arp,
            nd,
        })
    }

    /// Sends one gratuitous ARP / unsolicited NA per VIP. Tries every VIP and reports the
    /// first error, so one failing address does not silence the others.
    pub fn announce(&self, vips: &[IpAddr]) -> Result<(), GarpError> {
        let mut first_err = None;
        for vip in vips {
            let res = match vip {
                IpAddr::V4(v4) => self.send_arp(*v4),
                IpAddr::V6(v6) => self.send_na(*v6),
            };
            if let Err(e) = res {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn send_arp(&self, vip: Ipv4Addr) -> Result<(), GarpError> {
        let err = |source| GarpError::Io {
            op: "send gratuitous ARP",
            ifname: self.ifname.clone(),
            source,
        };
        let Some(fd) = &self.arp else {
            return Err(err(io::Error::other("no ARP socket (no IPv4 VIP at open)")));
        };
        let frame = arp_frame(self.mac, vip);
        let sll = sockaddr_ll(self.ifindex, ETH_P_ARP);
        // SAFETY: `frame` and `sll` are valid for the duration of the call.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn send_na(&self, vip: Ipv6Addr) -> Result<(), GarpError> {
        let err = |source| GarpError::Io {
            op: "send unsolicited NA",
            ifname: self.ifname.clone(),
            source,
        };
        let Some(s) = &self.nd else {
            return Err(err(io::Error::other(
                "no ICMPv6 socket (no IPv6 VIP at open)",
            )));
        };
        let msg = na_message(self.mac, vip);
        let dst = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, self.ifindex));
        s.send_to(&msg, &dst).map_err(err)?;
        Ok(())
    }
}

fn sockaddr_ll(ifindex: u32, proto: u16) -> libc::sockaddr_ll {
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&BROADCAST);
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: proto.to_be(),
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testns::{in_ns, ip, ns_exec, NsPair};

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

    fn neigh(ns: &str, addr: &str) -> String {
        ns_exec(ns, &["ip", "neigh", "show", addr, "dev", "vb"])
    }

    #[test]
    fn peer_neighbour_entries_follow_the_announcement() {
        let ns = NsPair::new("garp");
        // The peer believes the VIPs live at some other MAC (the old master).
        for vip in ["10.77.0.100", "fd77::100"] {
            ip(&[
                "-n",
                &ns.b,
                "neigh",
                "replace",
                vip,
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                "vb",
                "nud",
                "stale",
            ]);
            assert!(neigh(&ns.b, vip).contains("02:00:00:00:00:99"));
        }
        let vips: Vec<IpAddr> = vec!["10.77.0.100".parse().unwrap(), "fd77::100".parse().unwrap()];
        in_ns(&ns.a, || {
            let mut nl = crate::vip::Netlink::open().unwrap();
            let idx = crate::vip::ifindex("va").unwrap();
            let mac = nl.link(idx).unwrap().mac.unwrap();
            assert_eq!(mac, [2, 0x77, 0, 0, 0, 1]);
            for v in &vips {
                nl.add_addr(idx, *v, if v.is_ipv4() { 24 } else { 64 })
                    .unwrap();
            }
            let ann = Announcer::open("va", idx, mac, &vips).unwrap();
            ann.announce(&vips).unwrap();
        });
        // Bounded wait for the kernel to process the frames.
        let mut last = (String::new(), String::new());
        for _ in 0..40 {
            last = (neigh(&ns.b, "10.77.0.100"), neigh(&ns.b, "fd77::100"));
            if last.0.contains("02:77:00:00:00:01") && last.1.contains("02:77:00:00:00:01") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("neighbour entries not updated: {last:?}");
    }
}
