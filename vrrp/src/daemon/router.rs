//! One running virtual router: its configuration, its binding to the interface (socket and
//! announcer, absent while the interface is missing or has no address) and its state machine,
//! and the two directions between them: `receive` feeds adverts to the state machine, `drive`
//! turns its actions into I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::notify;
use super::pacer::Pacer;
use super::snapshot::unix_ms;
use super::status::Lateness;
use crate::config::VrrpInstance;
use crate::instance::InstanceConfig;
use crate::instance::{Action, DropReason, Instance, State};
use crate::sys::announce::Announcer;
use crate::sys::netlink::Netlink;
use crate::sys::socket::{Incoming, VrrpSocket};
use crate::track::Health;
use crate::wire::vrrp;

/// One running vrrp_instance.
pub(super) struct Router {
    pub(super) conf: VrrpInstance,
    /// (script name, weight) of `track_script`, resolved at start.
    pub(super) track_weights: Vec<(String, i32)>,
    /// The instance's own interface and its `track_interface`s, with the last seen state.
    pub(super) links: Vec<(String, bool)>,
    /// None until the interface exists with an address to send from; the instance is in
    /// Fault meanwhile.
    pub(super) binding: Option<Binding>,
    /// Why the last attempt to bind failed (shown as the Fault reason).
    pub(super) unbound: String,
    pub(super) instance: Instance,
    pub(super) health: Health,
    pub(super) last_reason: String,
    pub(super) last_drop_warn: Option<Instant>,
    pub(super) buf: Vec<u8>,
    /// Unix ms of the last transition (or the start).
    pub(super) since_ms: u64,
    pub(super) transitions: u64,
    pub(super) garps_sent: u64,
    /// Every router heard on this VRID: its last advertised priority and when (Unix ms).
    pub(super) peers: BTreeMap<IpAddr, (u8, u64)>,
    /// Which VIPs the interface had at the last address check.
    pub(super) vips_present: Vec<IpAddr>,
    pub(super) lateness: Lateness,
    /// With `realtime = true`: repeats this instance's adverts while it is master.
    pub(super) pacer: Option<Pacer>,
}

impl Router {
    /// The state machine's configuration for source address `src`.
    pub(super) fn instance_config(&self, src: IpAddr) -> InstanceConfig {
        super::setup::paced(self.conf.instance_config(src), &self.pacer)
    }
}

/// What ties an instance to its interface.
pub(super) struct Binding {
    pub(super) ifindex: u32,
    pub(super) src: IpAddr,
    pub(super) socket: VrrpSocket,
    pub(super) announcer: Option<Announcer>,
}

/// Reads every pending packet of one instance and feeds valid adverts to its state machine.
pub(super) fn receive(router: &mut Router, buf: &mut [u8]) {
    // Bounded: a flood must not starve the timers.
    for _ in 0..256 {
        let Some(binding) = &router.binding else {
            return;
        };
        let pkt = match binding.socket.recv(buf) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(instance = %router.conf.name, error = %e, "receive failed");
                return;
            }
        };
        let now = Instant::now();
        match pkt {
            Incoming::Dropped { src, reason } => {
                tracing::debug!(instance = %router.conf.name, ?src, %reason, "packet dropped");
            }
            Incoming::Packet { src, dst, range } => {
                let payload = buf.get(range).unwrap_or(&[]);
                // Other virtual routers on the same link are normal: skip them quietly.
                if vrrp::peek_vrid(payload) != Some(router.conf.vrid) {
                    continue;
                }
                match vrrp::decode(payload, src, dst) {
                    Ok(advert) => {
                        router.peers.insert(
                            src,
                            (advert.priority, unix_ms(std::time::SystemTime::now())),
                        );
                        if let Err(why) = router.instance.handle_advert(now, src, advert) {
                            log_drop(router, now, src, &why);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(instance = %router.conf.name, %src, error = %e, "invalid VRRP packet")
                    }
                }
            }
        }
    }
}

/// How often a misconfigured peer is reported (it sends an advert every interval).
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// Adverts a peer sends with another version, password, interval or VIP list mean a
/// misconfiguration (and split brain): warn, but not on every packet.
fn log_drop(router: &mut Router, now: Instant, src: IpAddr, why: &DropReason) {
    let serious = matches!(
        why,
        DropReason::Version { .. }
            | DropReason::Auth
            | DropReason::Interval { .. }
            | DropReason::AddrList { .. }
    );
    if !serious {
        tracing::trace!(instance = %router.conf.name, %src, "advert ignored: {why}");
        return;
    }
    if router
        .last_drop_warn
        .is_some_and(|t| now.duration_since(t) < DROP_WARN_EVERY)
    {
        return;
    }
    router.last_drop_warn = Some(now);
    tracing::warn!(instance = %router.conf.name, %src, "advert dropped (peer misconfigured?): {why}");
}

fn announce(router: &mut Router) {
    router.garps_sent += 1;
    let vips: Vec<IpAddr> = router.conf.vips.iter().map(|(a, _)| *a).collect();
    match router.binding.as_ref().and_then(|b| b.announcer.as_ref()) {
        Some(a) => {
            if let Err(e) = a.announce(&vips) {
                tracing::warn!(instance = %router.conf.name, error = %e, "gratuitous ARP/NA failed");
            }
        }
        None => tracing::debug!(instance = %router.conf.name, "no announcer; GARP skipped"),
    }
}

fn send_advert(router: &mut Router, adv: &vrrp::Advert) {
    let Some(binding) = &router.binding else {
        return;
    };
    for dst in binding.socket.destinations() {
        if let Err(e) = vrrp::encode(adv, binding.src, dst, router.conf.checksum, &mut router.buf) {
            tracing::error!(instance = %router.conf.name, error = %e, "cannot encode advert");
            continue;
        }
        if let Err(e) = binding.socket.send_to(&router.buf, dst) {
            tracing::warn!(instance = %router.conf.name, %dst, error = %e, "send advert failed");
        }
    }
}

/// Hands the pacer the advert to repeat (encoded per destination), or takes it back.
fn pace(router: &mut Router, advert: Option<&vrrp::Advert>) {
    let Some(pacer) = &router.pacer else {
        return;
    };
    let repeat = match (advert, &router.binding) {
        (Some(adv), Some(binding)) => {
            let mut frames = Vec::new();
            for dst in binding.socket.destinations() {
                let mut buf = Vec::new();
                match vrrp::encode(adv, binding.src, dst, router.conf.checksum, &mut buf) {
                    Ok(()) => frames.push((dst, buf)),
                    Err(e) => {
                        tracing::error!(instance = %router.conf.name, error = %e, "cannot encode advert")
                    }
                }
            }
            match binding.socket.try_clone() {
                Ok(socket) => Some((socket, frames, adv.interval())),
                Err(e) => {
                    tracing::error!(instance = %router.conf.name, error = %e, "cannot hand the socket to the pacer");
                    None
                }
            }
        }
        _ => None,
    };
    pacer.set(&router.conf.name, repeat);
}

/// Executes an instance's pending actions, in order. Notify scripts run after the whole
/// batch, as keepalived runs them after the VIPs are in place: a notify_master script that
/// binds to a VIP must find it.
pub(super) fn drive(router: &mut Router, netlink: &mut Netlink, children: &mut notify::Children) {
    let mut notifications = Vec::new();
    while let Some(action) = router.instance.poll_action() {
        match action {
            Action::SendAdvert(adv) => send_advert(router, &adv),
            Action::AddVips => {
                let Some(ifindex) = router.binding.as_ref().map(|b| b.ifindex) else {
                    continue;
                };
                for (a, p) in &router.conf.vips {
                    match netlink.add_addr(ifindex, *a, *p) {
                        Ok(_) => {
                            tracing::debug!(instance = %router.conf.name, vip = %a, "VIP added")
                        }
                        Err(e) => {
                            tracing::error!(instance = %router.conf.name, error = %e, "cannot add VIP")
                        }
                    }
                }
            }
            Action::RemoveVips => {
                let Some(ifindex) = router.binding.as_ref().map(|b| b.ifindex) else {
                    continue;
                };
                for (a, p) in &router.conf.vips {
                    if let Err(e) = netlink.del_addr(ifindex, *a, *p) {
                        tracing::error!(instance = %router.conf.name, error = %e, "cannot remove VIP");
                    }
                }
            }
            Action::SendGratuitous => announce(router),
            Action::Pace(advert) => pace(router, advert.as_ref()),
            Action::Transition { from, to, reason } => {
                tracing::info!(
                    instance = %router.conf.name,
                    %from,
                    %to,
                    priority = router.instance.effective_priority(),
                    "transition: {reason}"
                );
                router.last_reason = reason;
                router.transitions += 1;
                router.since_ms = unix_ms(std::time::SystemTime::now());
                notifications.push(to);
            }
        }
    }
    for to in notifications {
        let specific = match to {
            State::Master => router.conf.notify_master.as_deref(),
            State::Backup => router.conf.notify_backup.as_deref(),
            State::Fault => router.conf.notify_fault.as_deref(),
            State::Initialize => None,
        };
        children.notify(
            Instant::now(),
            &router.conf.name,
            to,
            router.instance.effective_priority(),
            specific,
            router.conf.notify.as_deref(),
        );
    }
}
