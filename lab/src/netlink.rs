//! The router's route to a VIP read over rtnetlink (RTM_GETROUTE dump) from a thread inside the
//! router's namespace: the scenario reads it every few milliseconds, which spawning `ip` on a
//! loaded two-core machine cannot do (each `ip -n` took up to half a second there).

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

/// A NETLINK_ROUTE socket in the network namespace of the thread that opened it.
pub struct Routes {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// Bounds a dump that never ends (it cannot, but a bug must not hang the scenario).
const MAX_READS: usize = 1000;

impl Routes {
    pub fn open() -> io::Result<Routes> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        // No receive timeout: the kernel answers every dump request at once.
        Ok(Routes {
            sock,
            seq: 0,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// The gateways of the IPv4 route to exactly `dst`/32, sorted (empty: no such route).
    pub fn nexthops(&mut self, dst: Ipv4Addr) -> io::Result<Vec<Ipv4Addr>> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetRoute(msg)),
        );
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.sock.send(&bytes, 0)?;
        let mut hops = Vec::new();
        for _ in 0..MAX_READS {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut off = 0usize;
            while let Some(rest) = self.buf.get(off..).filter(|r| !r.is_empty()) {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = m.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Done(_) => {
                        hops.sort();
                        hops.dedup();
                        return Ok(hops);
                    }
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                        hops.extend(gateways_to(&r, dst));
                    }
                    _ => {}
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "route dump did not end",
        ))
    }
}

/// The gateways of `r` if it is the /32 route to `dst` (one path, or RTA_MULTIPATH).
fn gateways_to(r: &RouteMessage, dst: Ipv4Addr) -> Vec<Ipv4Addr> {
    let is_dst = r.header.destination_prefix_length == 32
        && r.attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(RouteAddress::Inet(d)) if *d == dst));
    if !is_dst {
        return Vec::new();
    }
    let gw = |attrs: &[RouteAttribute]| -> Vec<Ipv4Addr> {
        attrs
            .iter()
            .filter_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
                _ => None,
            })
            .collect()
    };
    let mut v = gw(&r.attributes);
    for a in &r.attributes {
        if let RouteAttribute::MultiPath(hops) = a {
            for h in hops {
                v.extend(gw(&h.attributes));
            }
        }
    }
    v
}

/// How long the scenario's watcher sleeps between two dumps.
pub const POLL: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteNextHop;

    fn route(dst: Ipv4Addr, len: u8, attrs: Vec<RouteAttribute>) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.destination_prefix_length = len;
        r.attributes = attrs;
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        r
    }

    #[test]
    fn gateways_of_single_and_multipath_routes() {
        let vip = Ipv4Addr::new(172, 16, 249, 80);
        let a = Ipv4Addr::new(172, 16, 249, 101);
        let b = Ipv4Addr::new(172, 16, 249, 102);
        let one = route(
            vip,
            32,
            vec![RouteAttribute::Gateway(RouteAddress::Inet(b))],
        );
        assert_eq!(gateways_to(&one, vip), vec![b]);
        let hop = |g| {
            let mut h = RouteNextHop::default();
            h.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(g))];
            h
        };
        let two = route(
            vip,
            32,
            vec![RouteAttribute::MultiPath(vec![hop(b), hop(a)])],
        );
        assert_eq!(gateways_to(&two, vip), vec![b, a]);
        // The connected /24 the VIP is in is not its route.
        let net = route(Ipv4Addr::new(172, 16, 249, 0), 24, vec![]);
        assert!(gateways_to(&net, vip).is_empty());
        assert!(gateways_to(&one, Ipv4Addr::new(172, 16, 249, 90)).is_empty());
    }

    #[test]
    fn dumps_the_routes_of_this_namespace() {
        // The machine's own table has no /32 route to TEST-NET-3; the dump still completes.
        let mut r = Routes::open().unwrap();
        assert!(r
            .nexthops(Ipv4Addr::new(203, 0, 113, 77))
            .unwrap()
            .is_empty());
    }
}
