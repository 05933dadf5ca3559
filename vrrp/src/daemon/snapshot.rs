//! The daemon's state as a [`Status`]: written to the status file when it changes (counters
//! and peer ages at most once a second) and handed to the metrics endpoint.

use std::time::{Duration, Instant, SystemTime};

use super::anycast::AnycastRunner;
use super::router::Router;
use super::status::{
    write, AnycastStatus, InstanceStatus, PeerStatus, Status, TrackStatus, VipStatus,
};
use super::Daemon;
use crate::config::Anycast;

/// Counters and ages alone refresh the status file at most this often.
const VOLATILE_REFRESH: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch.
pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Daemon {
    pub(super) fn snapshot(&self) -> Status {
        let now_ms = unix_ms(SystemTime::now());
        Status {
            pid: std::process::id(),
            router_id: self.cfg.router_id.clone(),
            config: self.config_path.display().to_string(),
            updated_ms: now_ms,
            instance: self
                .routers
                .iter()
                .map(|r| self.instance_status(r, now_ms))
                .collect(),
            anycast: self.anycast.as_ref().map(|a| self.anycast_status(a)),
        }
    }

    fn anycast_status(&self, a: &AnycastRunner) -> AnycastStatus {
        let scripts = a
            .conf
            .track_script
            .iter()
            .filter_map(|&i| self.cfg.scripts.get(i))
            .map(|s| TrackStatus {
                what: format!("script {}", s.name),
                weight: s.weight,
                ok: self.tracked.get(&s.name).and_then(|t| t.fall_rise.state()),
                contribution: 0,
            });
        let links = a.links.iter().map(|(name, up)| TrackStatus {
            what: format!("interface {name}"),
            weight: 0,
            ok: Some(*up),
            contribution: 0,
        });
        AnycastStatus {
            interface: a.conf.interface.clone(),
            state: a.machine.state().to_string(),
            since_ms: a.since_ms,
            reason: a.machine.reason().to_string(),
            transitions: a.machine.transitions(),
            tracks: scripts.chain(links).collect(),
            vips: a
                .conf
                .vips
                .iter()
                .map(|v| VipStatus {
                    address: format!("{v}/{}", Anycast::prefix(*v)),
                    on_interface: a.vips_present.contains(v),
                })
                .collect(),
        }
    }

    fn instance_status(&self, r: &Router, now_ms: u64) -> InstanceStatus {
        let stats = r.instance.stats();
        // Paced: the repeats are the pacer's to count and time.
        let (lateness, paced_sent) = match &r.pacer {
            Some(p) => p.stats(&r.conf.name),
            None => (r.lateness.clone(), 0),
        };
        InstanceStatus {
            name: r.conf.name.clone(),
            interface: r.conf.interface.clone(),
            vrid: r.conf.vrid,
            state: r.instance.state().to_string(),
            since_ms: r.since_ms,
            reason: r.last_reason.clone(),
            priority: r.instance.effective_priority(),
            base_priority: r.conf.priority,
            master: r.instance.master_addr().map(|a| a.to_string()),
            tracks: self.track_status(r),
            peers: r
                .peers
                .iter()
                .map(|(addr, (priority, at_ms))| PeerStatus {
                    address: addr.to_string(),
                    priority: *priority,
                    last_advert_ms: *at_ms,
                    age_ms: now_ms.saturating_sub(*at_ms),
                })
                .collect(),
            vips: r
                .conf
                .vips
                .iter()
                .map(|(a, p)| VipStatus {
                    address: format!("{a}/{p}"),
                    on_interface: r.vips_present.contains(a),
                })
                .collect(),
            transitions: r.transitions,
            garps_sent: r.garps_sent,
            adverts_sent: stats.adverts_sent + paced_sent,
            adverts_received: stats.adverts_accepted,
            adverts_dropped: stats.dropped_version
                + stats.dropped_auth
                + stats.dropped_addr_list
                + stats.dropped_interval
                + stats.dropped_vrid,
            advert_lateness: lateness,
        }
    }

    /// Each tracked script and interface with its part of the effective priority.
    fn track_status(&self, r: &Router) -> Vec<TrackStatus> {
        let scripts = r.track_weights.iter().map(|(name, weight)| {
            let ok = self.tracked.get(name).and_then(|s| s.fall_rise.state());
            let counts = *weight != 0 && (*weight > 0) == ok.unwrap_or(true);
            TrackStatus {
                what: format!("script {name}"),
                weight: *weight,
                ok,
                contribution: if counts { *weight } else { 0 },
            }
        });
        let links = r.links.iter().map(|(name, up)| TrackStatus {
            what: format!("interface {name}"),
            weight: 0,
            ok: Some(*up),
            contribution: 0,
        });
        scripts.chain(links).collect()
    }

    /// Rewrites the status file when something in it changed, and hands the state to the
    /// metrics endpoint.
    pub(super) fn write_status(&mut self) {
        let st = self.snapshot();
        if let Some(shared) = &self.metrics {
            if let Ok(mut m) = shared.lock() {
                *m = Some(st.clone());
            }
        }
        let sig = signature(&st);
        let now = Instant::now();
        let changed = self.status_sig.as_deref() != Some(sig.as_str());
        let stale = self
            .status_written
            .is_none_or(|t| now.duration_since(t) >= VOLATILE_REFRESH);
        let counters_due = stale && self.status_volatile != volatile(&st);
        if !changed && !counters_due {
            return;
        }
        // Remember the state even when the write fails: retrying on every wake-up would only
        // repeat the warning; the next change tries again.
        self.status_sig = Some(sig);
        self.status_volatile = volatile(&st);
        self.status_written = Some(now);
        if let Err(e) = write(&self.runtime_dir, &st) {
            tracing::warn!(error = %e, "cannot write status file");
        }
    }
}

/// What must reach the file at once: everything but counters, ages and times.
fn signature(st: &Status) -> String {
    let mut st = st.clone();
    st.updated_ms = 0;
    for i in &mut st.instance {
        for p in &mut i.peers {
            p.last_advert_ms = 0;
            p.age_ms = 0;
        }
        i.adverts_sent = 0;
        i.adverts_received = 0;
        i.adverts_dropped = 0;
        i.garps_sent = 0;
        i.advert_lateness = Default::default();
    }
    format!("{st:?}")
}

/// The counters that may wait for the next refresh.
fn volatile(st: &Status) -> Vec<u64> {
    st.instance
        .iter()
        .flat_map(|i| {
            [
                i.adverts_sent,
                i.adverts_received,
                i.adverts_dropped,
                i.garps_sent,
                i.advert_lateness.count,
            ]
            .into_iter()
            .chain(i.peers.iter().map(|p| p.last_advert_ms))
        })
        .collect()
}
