//! Tracked scripts: one probe thread per `vrrp_script`, kept across reloads while its
//! definition is unchanged, and the fall/rise hysteresis of its results.

use std::io::Write;
use std::sync::Arc;

use super::Daemon;
use crate::config::TrackScript;
use crate::track::{FallRise, Runner, ScriptSpec};

/// One tracked script: its hysteresis state and its probe thread.
pub(super) struct TrackedScript {
    pub(super) spec: TrackScript,
    pub(super) id: u64,
    pub(super) fall_rise: FallRise,
    _runner: Runner,
}

impl Daemon {
    /// Starts runners for scripts that are new or changed, keeps unchanged ones (with their
    /// state), stops the rest.
    pub(super) fn sync_scripts(&mut self) {
        let mut old = std::mem::take(&mut self.tracked);
        for spec in &self.cfg.scripts {
            if let Some(rt) = old.remove(&spec.name) {
                if rt.spec == *spec {
                    self.tracked.insert(spec.name.clone(), rt);
                    continue;
                }
            }
            let id = self.next_runner_id;
            self.next_runner_id += 1;
            let tx = self.results_tx.clone();
            let wake = Arc::clone(&self.wake_tx);
            let report = Arc::new(move |ok: bool| {
                let _ = tx.send((id, ok));
                let _ = (&*wake).write(&[1]);
            });
            let runner = Runner::spawn(
                ScriptSpec {
                    name: spec.name.clone(),
                    probe: spec.probe.clone(),
                    interval: spec.interval,
                    timeout: spec.timeout,
                },
                report,
            );
            match runner {
                Ok(r) => {
                    self.tracked.insert(
                        spec.name.clone(),
                        TrackedScript {
                            spec: spec.clone(),
                            id,
                            fall_rise: FallRise::new(spec.fall, spec.rise),
                            _runner: r,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(script = %spec.name, error = %e, "cannot start track script thread")
                }
            }
        }
        // Dropping `old` stops the remaining runners.
    }

    /// Feeds the probe results that arrived to their scripts' hysteresis; true when a
    /// script's state changed.
    pub(super) fn record_results(&mut self) -> bool {
        let mut changed = false;
        while let Ok((id, ok)) = self.results_rx.try_recv() {
            if let Some(s) = self.tracked.values_mut().find(|s| s.id == id) {
                if let Some(now_ok) = s.fall_rise.record(ok) {
                    tracing::info!(script = %s.spec.name, ok = now_ok, "track script state changed");
                    changed = true;
                }
            }
        }
        changed
    }
}
