//! VIP reconciliation: the kernel announced an address change, so compare each instance's
//! VIPs on its interface with what its state says. A Master whose VIP was removed behind its
//! back (`ip addr flush`, NetworkManager, a provisioning step) puts it back and announces it
//! again; a Backup or Fault instance removes a VIP someone added, since it would answer for
//! the master's address.

use std::net::IpAddr;
use std::time::Instant;

use super::router::drive;
use super::Daemon;
use crate::instance::{Event, State};

impl Daemon {
    pub(super) fn reconcile_vips(&mut self, now: Instant) {
        for i in 0..self.routers.len() {
            let Some(ifindex) = self.routers[i].binding.as_ref().map(|b| b.ifindex) else {
                continue;
            };
            let present: Vec<IpAddr> = match self.netlink.addrs(ifindex) {
                Ok(addrs) => addrs.into_iter().map(|a| a.addr).collect(),
                Err(e) => {
                    tracing::warn!(instance = %self.routers[i].conf.name, error = %e, "cannot list addresses");
                    continue;
                }
            };
            let router = &mut self.routers[i];
            router.vips_present = router
                .conf
                .vips
                .iter()
                .map(|(v, _)| *v)
                .filter(|v| present.contains(v))
                .collect();
            let master = router.instance.state() == State::Master;
            let mut restored = false;
            for &(vip, prefix) in &router.conf.vips {
                let on = present.contains(&vip);
                let res = match (master, on) {
                    (true, false) => self.netlink.add_addr(ifindex, vip, prefix),
                    (false, true) => self.netlink.del_addr(ifindex, vip, prefix),
                    _ => continue,
                };
                if res.is_ok() {
                    if master {
                        router.vips_present.push(vip);
                    } else {
                        router.vips_present.retain(|v| *v != vip);
                    }
                }
                match res {
                    Ok(_) if master => {
                        restored = true;
                        tracing::warn!(instance = %router.conf.name, %vip, "VIP was removed from the interface while MASTER: restored");
                    }
                    Ok(_) => {
                        tracing::warn!(instance = %router.conf.name, %vip, state = %router.instance.state(), "VIP found on the interface while not MASTER: removed");
                    }
                    Err(e) => {
                        tracing::error!(instance = %router.conf.name, %vip, error = %e, "cannot reconcile VIP")
                    }
                }
            }
            if restored {
                router.instance.handle(now, Event::VipsRestored);
                drive(router, &mut self.netlink, &mut self.children);
            }
        }
        self.reconcile_anycast(now);
    }
}
