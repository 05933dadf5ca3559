//! SIGHUP: re-read the configuration and apply it to the running daemon.

use std::time::Instant;

use super::router::{drive, Router};
use super::Daemon;
use crate::config::{self, Config, VrrpInstance};
use crate::instance::{Event, State};

impl Daemon {
    /// SIGHUP: re-parse; a bad config is refused and the running one kept. An instance keeps
    /// its state across a reload unless its identity changed (see `same_identity`): priority,
    /// VIPs, tracking, timers, authentication and notify scripts are applied in place, so
    /// editing them never fails over.
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
        let now = Instant::now();
        let old = std::mem::take(&mut self.routers);
        let mut kept = Vec::new();
        for mut router in old {
            if new.instances.iter().any(|n| same_identity(n, &router.conf)) {
                kept.push(router);
            } else {
                tracing::info!(instance = %router.conf.name, "removed, or its identity (VRID, interface, version, family, unicast addresses) changed: stopping instance");
                router.instance.handle(now, Event::Shutdown);
                drive(&mut router, &mut self.netlink, &mut self.children);
            }
        }
        self.cfg = Config {
            runtime_dir: self.runtime_dir.clone(),
            ..new
        };
        self.sync_scripts();
        self.reload_anycast(now);
        let confs = self.cfg.instances.clone();
        for conf in &confs {
            if let Some(pos) = kept.iter().position(|k| k.conf.name == conf.name) {
                let mut router = kept.remove(pos);
                self.apply_in_place(&mut router, conf, now);
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

    /// A changed configuration for a running instance of the same identity.
    fn apply_in_place(&mut self, router: &mut Router, conf: &VrrpInstance, now: Instant) {
        if *conf == router.conf {
            return;
        }
        tracing::info!(instance = %conf.name, "configuration changed: applied in place");
        let src = router.binding.as_ref().map(|b| (b.src, b.ifindex));
        if let (Some((_, ifindex)), State::Master) = (src, router.instance.state()) {
            // The VIPs no longer listed are the shell's to remove; the new ones the instance
            // adds and announces.
            for (vip, prefix) in router.conf.vips.iter().filter(|v| !conf.vips.contains(v)) {
                if let Err(e) = self.netlink.del_addr(ifindex, *vip, *prefix) {
                    tracing::error!(instance = %conf.name, error = %e, "cannot remove VIP");
                }
            }
        }
        router.conf = conf.clone();
        self.resolve_tracking(router);
        let src = src.map_or_else(|| router.instance.config().primary_addr, |(s, _)| s);
        let cfg = router.instance_config(src);
        router.instance.reconfigure(now, cfg);
    }
}

/// What a running instance cannot change without restarting: its virtual router (VRID,
/// version, address family), where it speaks (interface, unicast source and peers: the socket
/// is built from them).
fn same_identity(a: &VrrpInstance, b: &VrrpInstance) -> bool {
    let family = |i: &VrrpInstance| i.vips.first().map(|(v, _)| v.is_ipv6());
    a.name == b.name
        && a.vrid == b.vrid
        && a.interface == b.interface
        && a.version == b.version
        && family(a) == family(b)
        && a.unicast_src_ip == b.unicast_src_ip
        && a.unicast_peer == b.unicast_peer
}
