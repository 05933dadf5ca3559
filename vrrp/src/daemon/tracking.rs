//! Tracking: links and scripts turned into each instance's effective priority or Fault, and
//! the interface re-created under a running instance.

use std::net::IpAddr;
use std::time::Instant;

use super::router::Router;
use super::Daemon;
use crate::instance::Event;
use crate::sys::announce::Announcer;
use crate::sys::netlink;
use crate::sys::socket::{SocketConfig, VrrpSocket};
use crate::track::{self, Health};

impl Daemon {
    pub(super) fn link_up(&mut self, name: &str) -> bool {
        match netlink::ifindex(name) {
            Ok(idx) => self.netlink.link(idx).map(|l| l.up).unwrap_or(false),
            Err(_) => false,
        }
    }

    pub(super) fn health_of(&self, router: &Router) -> Health {
        if router.binding.is_none() {
            return Health::Fault(router.unbound.clone());
        }
        let scripts: Vec<(&str, i32, Option<bool>)> = router
            .track_weights
            .iter()
            .map(|(name, w)| {
                let st = self.tracked.get(name).and_then(|s| s.fall_rise.state());
                (name.as_str(), *w, st)
            })
            .collect();
        let links: Vec<(&str, bool)> = router
            .links
            .iter()
            .map(|(n, up)| (n.as_str(), *up))
            .collect();
        track::health(router.conf.priority, &scripts, &links)
    }

    /// Re-evaluates tracking for every instance and feeds changes to the state machines.
    pub(super) fn apply_health(&mut self, now: Instant) {
        for i in 0..self.routers.len() {
            let health = self.health_of(&self.routers[i]);
            let router = &mut self.routers[i];
            if health == router.health {
                continue;
            }
            tracing::info!(instance = %router.conf.name, old = ?router.health, new = ?health, "tracking changed");
            match &health {
                Health::Fault(why) => {
                    router.last_reason = why.clone();
                    router.instance.handle(now, Event::Fault(true));
                }
                Health::Priority(p) => {
                    router.instance.handle(now, Event::SetPriority(*p));
                    if router.health.is_fault() {
                        router.instance.handle(now, Event::Fault(false));
                    }
                }
            }
            router.health = health;
        }
        self.drive_all();
        self.apply_anycast_health(now);
    }

    /// Re-reads links after the kernel announced a change: binds instances whose interface
    /// became usable, reopens sockets on re-created interfaces, updates link states.
    pub(super) fn refresh_links(&mut self, now: Instant) {
        let mut routers = std::mem::take(&mut self.routers);
        for router in routers.iter_mut().filter(|r| r.binding.is_none()) {
            if self.try_bind(router) {
                // The rebuilt state machine starts in Fault, as the old one was; tracking below
                // takes it out. Its Initialize -> Fault step is not news to anyone.
                router.instance.handle(now, Event::Fault(true));
                router.instance.handle(now, Event::Startup);
                while router.instance.poll_action().is_some() {}
            }
        }
        self.routers = routers;
        for i in 0..self.routers.len() {
            // A deleted and re-created interface has a new index: sockets bound to the old
            // one would never see a packet again.
            let bound_to = self.routers[i].binding.as_ref().map(|b| b.ifindex);
            if let (Ok(idx), Some(old)) =
                (netlink::ifindex(&self.routers[i].conf.interface), bound_to)
            {
                if idx != old {
                    self.reopen(i, idx);
                }
            }
            for j in 0..self.routers[i].links.len() {
                let name = self.routers[i].links[j].0.clone();
                let up = self.link_up(&name);
                let router = &mut self.routers[i];
                if router.links[j].1 != up {
                    tracing::info!(instance = %router.conf.name, interface = %name, up, "link state changed");
                    router.links[j].1 = up;
                }
            }
        }
        self.refresh_anycast_links();
        self.apply_health(now);
    }

    pub(super) fn reopen(&mut self, i: usize, ifindex: u32) {
        let mac = self.netlink.link(ifindex).ok().and_then(|l| l.mac);
        let Some(router) = self.routers.get_mut(i) else {
            return;
        };
        let Some(binding) = router.binding.as_mut() else {
            return;
        };
        let socket = VrrpSocket::open(SocketConfig {
            ifname: router.conf.interface.clone(),
            ifindex,
            src: binding.src,
            peers: router.conf.unicast_peer.clone(),
        });
        match socket {
            Ok(socket) => {
                tracing::info!(instance = %router.conf.name, interface = %router.conf.interface, ifindex, "interface re-created: sockets reopened");
                binding.socket = socket;
                binding.ifindex = ifindex;
                let vips: Vec<IpAddr> = router.conf.vips.iter().map(|(a, _)| *a).collect();
                binding.announcer = mac.and_then(|mac| {
                    Announcer::open(&router.conf.interface, ifindex, mac, &vips)
                        .map_err(|e| tracing::warn!(instance = %router.conf.name, error = %e, "no gratuitous ARP/NA"))
                        .ok()
                });
            }
            Err(e) => {
                tracing::warn!(instance = %router.conf.name, error = %e, "cannot reopen socket on re-created interface; retrying")
            }
        }
    }
}
