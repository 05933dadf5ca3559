//! Sends the gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6) that tell
//! the segment a VIP moved: neighbours' caches still hold the old master's MAC. The frames are
//! built in `wire::arp`; this file owns the sockets.
//!
//! `Instance` decides when to announce (it repeats the burst, keepalived's
//! vrrp_garp_master_repeat, because a single frame can be lost).

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;

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

use crate::wire::arp::{arp_frame, na_message, BROADCAST, ETH_P_ARP};

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Sockets to announce VIPs on one interface.
#[derive(Debug)]
pub struct Announcer {
    ifname: String,
    ifindex: u32,
    mac: [u8; 6],
    arp: Option<Socket>,
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
            let s =
                Socket::new(Domain::PACKET, Type::RAW, None).map_err(io("socket(AF_PACKET)"))?;
            s.set_nonblocking(true).map_err(io("set_nonblocking"))?;
            Some(s)
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
    use crate::sys::testns::{in_ns, ip, ns_exec, NsPair};

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
            let mut nl = crate::sys::netlink::Netlink::open().unwrap();
            let idx = crate::sys::netlink::ifindex("va").unwrap();
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
