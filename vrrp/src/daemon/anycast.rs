//! `[anycast]` in the daemon: the announcement state machine fed with the tracked scripts and
//! links, its actions turned into addresses on the anycast interface (created as a dummy when
//! missing), kept in line with the kernel after address changes, withdrawn on stop.

use std::net::IpAddr;
use std::time::Instant;

use super::snapshot::unix_ms;
use super::Daemon;
use crate::anycast::{verdict, Action, Announcement, Event, State, Verdict};
use crate::config::Anycast;

/// The running `[anycast]`.
pub(super) struct AnycastRunner {
    pub(super) conf: Anycast,
    pub(super) machine: Announcement,
    /// The interface's index; None while it cannot be created (withdrawn meanwhile).
    pub(super) ifindex: Option<u32>,
    /// Why the interface could not be created.
    pub(super) unbound: String,
    /// `track_interface`s with their last seen state.
    pub(super) links: Vec<(String, bool)>,
    /// Which VIPs the interface had at the last look.
    pub(super) vips_present: Vec<IpAddr>,
    /// Unix ms of the last transition (or the start).
    pub(super) since_ms: u64,
}

impl Daemon {
    /// Starts `[anycast]` if configured: the interface, then the first decision (which also
    /// takes off VIPs a predecessor killed with SIGKILL left while unhealthy).
    pub(super) fn start_anycast(&mut self, now: Instant) {
        let Some(conf) = self.cfg.anycast.clone() else {
            return;
        };
        let links = conf
            .track_interface
            .iter()
            .map(|n| (n.clone(), self.link_up(n)))
            .collect();
        self.anycast = Some(AnycastRunner {
            conf,
            machine: Announcement::new(),
            ifindex: None,
            unbound: String::new(),
            links,
            vips_present: Vec::new(),
            since_ms: unix_ms(std::time::SystemTime::now()),
        });
        self.bind_anycast();
        self.apply_anycast_health(now);
        self.reconcile_anycast(now);
        if let Some(a) = &self.anycast {
            tracing::info!(interface = %a.conf.interface, vips = a.conf.vips.len(), state = %a.machine.state(), "anycast started");
        }
    }

    /// Finds or creates the anycast interface (again, after it was deleted).
    fn bind_anycast(&mut self) {
        let Some(a) = self.anycast.as_mut() else {
            return;
        };
        match self.netlink.ensure_dummy(&a.conf.interface) {
            Ok(idx) => {
                if a.ifindex != Some(idx) {
                    tracing::info!(interface = %a.conf.interface, ifindex = idx, "anycast interface ready");
                }
                a.ifindex = Some(idx);
                a.unbound.clear();
            }
            Err(e) => {
                let why = format!("cannot create interface {}: {e}", a.conf.interface);
                if why != a.unbound {
                    tracing::error!("{why}");
                }
                a.ifindex = None;
                a.unbound = why;
            }
        }
    }

    fn anycast_verdict(&self, a: &AnycastRunner) -> Verdict {
        if a.ifindex.is_none() {
            return Verdict::Unhealthy(a.unbound.clone());
        }
        let scripts: Vec<(&str, Option<bool>)> = a
            .conf
            .track_script
            .iter()
            .filter_map(|&i| self.cfg.scripts.get(i))
            .map(|s| {
                let st = self.tracked.get(&s.name).and_then(|t| t.fall_rise.state());
                (s.name.as_str(), st)
            })
            .collect();
        let links: Vec<(&str, bool)> = a.links.iter().map(|(n, up)| (n.as_str(), *up)).collect();
        verdict(&scripts, &links)
    }

    /// Feeds the current tracking to the state machine and carries out what it decides.
    pub(super) fn apply_anycast_health(&mut self, now: Instant) {
        let Some(a) = self.anycast.take() else {
            return;
        };
        let v = self.anycast_verdict(&a);
        self.anycast = Some(a);
        self.anycast_event(now, Event::Health(v));
    }

    fn anycast_event(&mut self, now: Instant, event: Event) {
        let Some(a) = self.anycast.as_mut() else {
            return;
        };
        a.machine.handle(now, event);
        while let Some(action) = a.machine.poll_action() {
            match action {
                Action::Announce => set_vips(&mut self.netlink, a, true),
                Action::Withdraw => set_vips(&mut self.netlink, a, false),
                Action::Transition { from, to, reason } => {
                    tracing::info!(%from, %to, "anycast: {reason}");
                    a.since_ms = unix_ms(std::time::SystemTime::now());
                    let cmd = match to {
                        State::Announced => a.conf.notify_announce.as_deref(),
                        State::Withdrawn | State::Stopped => a.conf.notify_withdraw.as_deref(),
                        State::Init => None,
                    };
                    if let Some(cmd) = cmd {
                        self.children.run(now, cmd);
                    }
                }
            }
        }
    }

    /// After the kernel announced link changes: the anycast interface (re-created if it was
    /// deleted, brought up again if someone set it down: BIRD exports nothing from a down
    /// interface) and the tracked links' states. The caller re-evaluates health next.
    pub(super) fn refresh_anycast_links(&mut self) {
        let Some(a) = self.anycast.as_ref() else {
            return;
        };
        let current = crate::sys::netlink::ifindex(&a.conf.interface).ok();
        let up = current.is_some_and(|i| self.netlink.link(i).is_ok_and(|l| l.up));
        if current.is_none() || current != a.ifindex || !up {
            self.bind_anycast();
        }
        let names: Vec<String> = self
            .anycast
            .iter()
            .flat_map(|a| a.links.iter().map(|(n, _)| n.clone()))
            .collect();
        let states: Vec<bool> = names.iter().map(|n| self.link_up(n)).collect();
        if let Some(a) = self.anycast.as_mut() {
            for ((name, up), now_up) in a.links.iter_mut().zip(states) {
                if *up != now_up {
                    tracing::info!(interface = %name, up = now_up, "anycast: tracked link changed");
                    *up = now_up;
                }
            }
        }
    }

    /// After the kernel announced address changes: VIPs missing while announced go back,
    /// VIPs present while withdrawn come off.
    pub(super) fn reconcile_anycast(&mut self, now: Instant) {
        let Some(a) = self.anycast.as_mut() else {
            return;
        };
        let Some(ifindex) = a.ifindex else {
            return;
        };
        let present: Vec<IpAddr> = match self.netlink.addrs(ifindex) {
            Ok(addrs) => addrs.into_iter().map(|x| x.addr).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "anycast: cannot list addresses");
                return;
            }
        };
        a.vips_present = a
            .conf
            .vips
            .iter()
            .copied()
            .filter(|v| present.contains(v))
            .collect();
        let all_on = a.vips_present.len() == a.conf.vips.len();
        let restore = match a.machine.state() {
            State::Announced if !all_on => true,
            State::Announced => return,
            _ if !a.vips_present.is_empty() => false,
            _ => return,
        };
        if restore {
            tracing::warn!(interface = %a.conf.interface, "anycast: VIPs were removed while announced: restored");
            self.anycast_event(now, Event::VipsMissing);
        } else {
            tracing::warn!(interface = %a.conf.interface, "anycast: VIPs found on the interface while withdrawn: removed");
            set_vips(&mut self.netlink, a, false);
        }
    }

    /// SIGHUP: the new `[anycast]` (or none). VIPs no longer listed come off; the rest is
    /// decided again with the new tracking.
    pub(super) fn reload_anycast(&mut self, now: Instant) {
        let new = self.cfg.anycast.clone();
        let same_interface = match (&self.anycast, &new) {
            (None, None) => return,
            (Some(a), Some(n)) => a.conf.interface == n.interface,
            _ => false,
        };
        let (Some(conf), true) = (new, same_interface) else {
            // Gone, new, or on another interface: withdraw here, start over there.
            self.shutdown_anycast(now);
            self.anycast = None;
            self.start_anycast(now);
            return;
        };
        let Some(a) = self.anycast.as_mut() else {
            return;
        };
        if let Some(ifindex) = a.ifindex {
            for vip in a.conf.vips.iter().filter(|v| !conf.vips.contains(v)) {
                let prefix = Anycast::prefix(*vip);
                if let Err(e) = self.netlink.del_addr(ifindex, *vip, prefix) {
                    tracing::error!(%vip, error = %e, "anycast: cannot remove VIP");
                }
            }
        }
        // Link states are read again below.
        a.links = conf
            .track_interface
            .iter()
            .map(|n| (n.clone(), true))
            .collect();
        a.conf = conf;
        self.refresh_anycast_links();
        self.apply_anycast_health(now);
        // Newly listed VIPs of an announced balancer go on now.
        self.reconcile_anycast(now);
    }

    /// Graceful stop: the VIPs come off, so BIRD withdraws the routes.
    pub(super) fn shutdown_anycast(&mut self, now: Instant) {
        self.anycast_event(now, Event::Shutdown);
    }
}

/// Puts every VIP on the interface (`on`) or takes it off.
fn set_vips(netlink: &mut crate::sys::netlink::Netlink, a: &mut AnycastRunner, on: bool) {
    let Some(ifindex) = a.ifindex else {
        return;
    };
    for &vip in &a.conf.vips {
        let prefix = Anycast::prefix(vip);
        let res = if on {
            netlink.add_addr(ifindex, vip, prefix)
        } else {
            netlink.del_addr(ifindex, vip, prefix)
        };
        match res {
            Ok(_) => {
                a.vips_present.retain(|v| *v != vip);
                if on {
                    a.vips_present.push(vip);
                }
            }
            Err(e) => tracing::error!(%vip, on, error = %e, "anycast: cannot change VIP"),
        }
    }
}
