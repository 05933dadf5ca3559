//! SIGHUP: re-read the configuration and apply it to the running daemon.

use std::time::Instant;

use super::router::drive;
use super::Daemon;
use crate::config::{self, Config, TrackScript, VrrpInstance};
use crate::instance::Event;

impl Daemon {
    /// SIGHUP: re-parse; a bad config is refused and the running one kept. Instances whose
    /// configuration (or tracked scripts) changed are restarted; unchanged ones keep running.
    pub(super) fn reload(&mut self) {
        let new = match config::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload refused, keeping the running configuration:\n{e}");
                return;
            }
        };
        for w in config::lint(&new) {
            tracing::warn!("{w}");
        }
        if new.runtime_dir != self.runtime_dir {
            tracing::warn!(
                "runtime_dir change to {} needs a restart; keeping {}",
                new.runtime_dir.display(),
                self.runtime_dir.display()
            );
        }
        let key = |cfg: &Config, i: &VrrpInstance| {
            let scripts: Vec<TrackScript> = i
                .track_script
                .iter()
                .filter_map(|&k| cfg.scripts.get(k).cloned())
                .collect();
            let mut bare = i.clone();
            bare.track_script.clear();
            (bare, scripts)
        };
        let now = Instant::now();
        let old_insts = std::mem::take(&mut self.routers);
        let mut kept = Vec::new();
        for mut router in old_insts {
            let old_key = key(&self.cfg, &router.conf);
            let same = new
                .instances
                .iter()
                .any(|n| n.name == router.conf.name && key(&new, n) == old_key);
            if same {
                kept.push(router);
            } else {
                tracing::info!(instance = %router.conf.name, "configuration changed or removed: stopping instance");
                router.instance.handle(now, Event::Shutdown);
                drive(&mut router, &mut self.netlink, &mut self.children);
            }
        }
        self.cfg = Config {
            runtime_dir: self.runtime_dir.clone(),
            ..new
        };
        self.sync_scripts();
        let confs = self.cfg.instances.clone();
        for conf in &confs {
            if let Some(pos) = kept.iter().position(|k| k.conf.name == conf.name) {
                let mut router = kept.remove(pos);
                // Script indices may have moved; names and weights are what we use.
                router.conf = conf.clone();
                self.routers.push(router);
                continue;
            }
            let router = self.start_instance(conf, now);
            self.routers.push(router);
        }
        self.drive_all();
        self.apply_health(now);
        tracing::info!(instances = self.routers.len(), "configuration reloaded");
    }
}
