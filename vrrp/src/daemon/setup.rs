//! Starting and stopping: the pid file and signals, the instances' sockets and state
//! machines, and the graceful stop (priority 0 from masters, VIPs removed).

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::router::drive;
use super::router::{Binding, Router};
use super::{io_err, metrics, notify, pacer, status, Daemon, DaemonError, StartError};
use crate::config::{Config, VrrpInstance};
use crate::instance::{Event, Instance, InstanceConfig};
use crate::sys::announce::Announcer;
use crate::sys::netlink::{self, Events, Netlink};
use crate::sys::socket::{SocketConfig, VrrpSocket};
use crate::track::Health;

impl Daemon {
    pub(super) fn new(config_path: PathBuf, cfg: Config) -> Result<Daemon, DaemonError> {
        let runtime_dir = cfg.runtime_dir.clone();
        status::create_runtime_dir(&runtime_dir).map_err(io_err(format!(
            "create runtime_dir {}",
            runtime_dir.display()
        )))?;
        let pid_path = runtime_dir.join(status::PID_FILE);
        if let Ok(text) = std::fs::read_to_string(&pid_path) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                if pid != std::process::id() && status::is_vrrp_alive(pid) {
                    return Err(DaemonError::Busy {
                        pid,
                        dir: runtime_dir,
                    });
                }
            }
        }
        std::fs::write(&pid_path, format!("{}\n", std::process::id()))
            .map_err(io_err(format!("write {}", pid_path.display())))?;

        let (wake_rx, wake_tx) = UnixStream::pair().map_err(io_err("socketpair"))?;
        wake_rx
            .set_nonblocking(true)
            .map_err(io_err("wake socket"))?;
        wake_tx
            .set_nonblocking(true)
            .map_err(io_err("wake socket"))?;
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (signal_hook::consts::SIGTERM, &term),
            (signal_hook::consts::SIGINT, &term),
            (signal_hook::consts::SIGHUP, &hup),
        ] {
            signal_hook::flag::register(sig, Arc::clone(flag)).map_err(io_err("signal handler"))?;
            let w = wake_tx.try_clone().map_err(io_err("wake socket"))?;
            signal_hook::low_level::pipe::register(sig, w).map_err(io_err("signal handler"))?;
        }
        let (results_tx, results_rx) = mpsc::channel();
        let mut daemon = Daemon {
            config_path,
            runtime_dir,
            netlink: Netlink::open()?,
            // Subscribed before the instances look at their interfaces: a change between the
            // look and the subscription would otherwise go unnoticed.
            events: Events::open()?,
            routers: Vec::new(),
            tracked: HashMap::new(),
            next_runner_id: 1,
            results_tx,
            results_rx,
            wake_rx,
            wake_tx: Arc::new(wake_tx),
            term,
            hup,
            children: notify::Children::default(),
            status_sig: None,
            status_volatile: Vec::new(),
            status_written: None,
            metrics: None,
            pacer: None,
            anycast: None,
            cfg,
        };
        daemon.sync_scripts();
        daemon.start_metrics();
        if daemon.cfg.realtime {
            // Not fatal: without the pacer the event loop sends the adverts itself.
            match pacer::Pacer::start() {
                Ok(p) => daemon.pacer = Some(p),
                Err(e) => tracing::error!(error = %e, "cannot start the advert pacer thread"),
            }
        }
        Ok(daemon)
    }

    /// Starts every configured instance. One whose interface is not usable yet starts in
    /// Fault and comes up when it is: a late NIC must not keep the others (or itself) down.
    pub(super) fn start_all(&mut self) -> Result<(), DaemonError> {
        let now = Instant::now();
        let confs = self.cfg.instances.clone();
        for conf in &confs {
            let router = self.start_instance(conf, now);
            self.routers.push(router);
        }
        self.drive_all();
        self.start_anycast(now);
        self.reconcile_vips(now);
        self.write_status();
        tracing::info!(
            config = %self.config_path.display(),
            instances = self.routers.len(),
            runtime_dir = %self.runtime_dir.display(),
            "vrrp started"
        );
        Ok(())
    }

    /// The Prometheus endpoint, if configured. A port already taken is logged, not fatal:
    /// the VIPs matter more than their metrics.
    fn start_metrics(&mut self) {
        let Some(addr) = self.cfg.metrics else {
            return;
        };
        let shared = metrics::Shared::default();
        match metrics::start(addr, shared.clone()) {
            Ok(()) => {
                tracing::info!(%addr, "metrics endpoint listening");
                self.metrics = Some(shared);
            }
            Err(e) => tracing::error!(%addr, error = %e, "cannot start the metrics endpoint"),
        }
    }

    /// Starts one instance: bound to its interface if it can be, then its state machine with
    /// the current tracking (Fault while unbound).
    pub(super) fn start_instance(&mut self, conf: &VrrpInstance, now: Instant) -> Router {
        let mut router = Router {
            conf: conf.clone(),
            track_weights: Vec::new(),
            links: vec![(conf.interface.clone(), false)],
            binding: None,
            unbound: String::new(),
            instance: Instance::new(paced(conf.instance_config(unbound_addr(conf)), &self.pacer)),
            pacer: self.pacer.clone(),
            health: Health::Priority(conf.priority),
            last_reason: String::new(),
            last_drop_warn: None,
            buf: Vec::with_capacity(1500),
            since_ms: super::snapshot::unix_ms(std::time::SystemTime::now()),
            transitions: 0,
            garps_sent: 0,
            peers: Default::default(),
            vips_present: Vec::new(),
            lateness: Default::default(),
        };
        self.try_bind(&mut router);
        self.init_router(router, now)
    }

    /// Binds `router` if its interface is usable now; on success its state machine is built
    /// anew with the real source address (it was in Fault or not started, so nothing is
    /// lost). Returns whether it is bound.
    pub(super) fn try_bind(&mut self, router: &mut Router) -> bool {
        match self.bind(&router.conf) {
            Ok(binding) => {
                let link_up = self
                    .netlink
                    .link(binding.ifindex)
                    .map(|l| l.up)
                    .unwrap_or(false);
                router.links[0].1 = link_up;
                router.instance = Instance::new(router.instance_config(binding.src));
                tracing::info!(instance = %router.conf.name, interface = %router.conf.interface, src = %binding.src, "bound to interface");
                router.binding = Some(binding);
                router.unbound.clear();
                true
            }
            Err(e) => {
                let why = e.to_string();
                if why != router.unbound {
                    tracing::warn!(instance = %router.conf.name, "waiting for the interface (FAULT until then): {why}");
                    router.unbound = why;
                }
                false
            }
        }
    }

    /// The interface's index and address, the socket and the announcer of one instance.
    pub(super) fn bind(&mut self, conf: &VrrpInstance) -> Result<Binding, StartError> {
        let ifindex = netlink::ifindex(&conf.interface)?;
        // A predecessor killed with SIGKILL left its VIPs: only a master may hold them.
        for a in self.netlink.remove_stale(ifindex, &conf.vips)? {
            tracing::warn!(instance = %conf.name, vip = %a.addr, prefix = a.prefix, "removed stale VIP left by a previous run");
        }
        let ipv6 = conf.vips.first().map(|(a, _)| a.is_ipv6()).unwrap_or(false);
        let src = match conf.unicast_src_ip {
            Some(a) => a,
            None => {
                let addrs = self.netlink.addrs(ifindex)?;
                netlink::primary_addr(&addrs, ipv6, &conf.vips).ok_or_else(|| {
                    StartError::NoAddress {
                        interface: conf.interface.clone(),
                        family: if ipv6 { "IPv6 link-local" } else { "IPv4" },
                    }
                })?
            }
        };
        let socket = VrrpSocket::open(SocketConfig {
            ifname: conf.interface.clone(),
            ifindex,
            src,
            peers: conf.unicast_peer.clone(),
        })?;
        let link = self.netlink.link(ifindex)?;
        let vips: Vec<IpAddr> = conf.vips.iter().map(|(a, _)| *a).collect();
        let announcer = link.mac.and_then(|mac| {
            Announcer::open(&conf.interface, ifindex, mac, &vips)
                .map_err(
                    |e| tracing::warn!(instance = %conf.name, error = %e, "no gratuitous ARP/NA"),
                )
                .ok()
        });
        Ok(Binding {
            ifindex,
            src,
            socket,
            announcer,
        })
    }

    /// The (script, weight) pairs and tracked links of `router.conf`, with the links' state
    /// now; the instance's own interface stays first.
    pub(super) fn resolve_tracking(&mut self, router: &mut Router) {
        router.track_weights = router
            .conf
            .track_script
            .iter()
            .filter_map(|&i| self.cfg.scripts.get(i))
            .map(|s| (s.name.clone(), s.weight))
            .collect();
        router.links.truncate(1);
        for name in router.conf.track_interface.clone() {
            let up = self.link_up(&name);
            router.links.push((name, up));
        }
    }

    /// Resolves tracking for a freshly opened router and starts its state machine.
    fn init_router(&mut self, mut router: Router, now: Instant) -> Router {
        let conf = router.conf.clone();
        self.resolve_tracking(&mut router);
        let health = self.health_of(&router);
        if let Health::Fault(why) = &health {
            tracing::warn!(instance = %conf.name, "starting in FAULT: {why}");
            router.instance.handle(now, Event::Fault(true));
        }
        if let Health::Priority(p) = health {
            router.instance.handle(now, Event::SetPriority(p));
        }
        router.health = health;
        router.instance.handle(now, Event::Startup);
        tracing::info!(instance = %conf.name, interface = %conf.interface, vrid = conf.vrid, "instance started");
        router
    }

    /// Graceful stop: priority 0 from masters, VIPs removed, final status written.
    pub(super) fn shutdown(&mut self) {
        let now = Instant::now();
        for router in &mut self.routers {
            router.instance.handle(now, Event::Shutdown);
            drive(router, &mut self.netlink, &mut self.children);
        }
        self.shutdown_anycast(now);
        self.write_status();
        self.tracked.clear();
        self.children.finish(Duration::from_secs(2));
        let _ = std::fs::remove_file(self.runtime_dir.join(status::PID_FILE));
        tracing::info!("vrrp stopped");
    }
}

/// `cfg` in paced mode when a pacer repeats the adverts.
pub(super) fn paced(mut cfg: InstanceConfig, pacer: &Option<pacer::Pacer>) -> InstanceConfig {
    cfg.paced = pacer.is_some();
    cfg
}

/// The source address an unbound instance is built with: it sends nothing while unbound, and
/// is rebuilt with the interface's address when bound.
fn unbound_addr(conf: &VrrpInstance) -> IpAddr {
    match conf.vips.first() {
        Some((IpAddr::V6(_), _)) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}
