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
use super::router::Router;
use super::{io_err, notify, status, Daemon, DaemonError, StartError};
use crate::config::{Config, VrrpInstance};
use crate::instance::{Event, Instance};
use crate::sys::announce::Announcer;
use crate::sys::netlink::{self, Netlink};
use crate::sys::socket::{SocketConfig, VrrpSocket};
use crate::track::Health;

impl Daemon {
    pub(super) fn new(config_path: PathBuf, cfg: Config) -> Result<Daemon, DaemonError> {
        let runtime_dir = cfg.runtime_dir.clone();
        std::fs::create_dir_all(&runtime_dir).map_err(io_err(format!(
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
            link_next: Instant::now(),
            status_sig: None,
            cfg,
        };
        daemon.sync_scripts();
        Ok(daemon)
    }

    /// Starts every configured instance; on error the caller shuts down what did start.
    pub(super) fn start_all(&mut self) -> Result<(), DaemonError> {
        let now = Instant::now();
        let confs = self.cfg.instances.clone();
        for conf in &confs {
            let router = self.start_instance(conf, now)?;
            self.routers.push(router);
        }
        self.drive_all();
        self.write_status();
        tracing::info!(
            config = %self.config_path.display(),
            instances = self.routers.len(),
            runtime_dir = %self.runtime_dir.display(),
            "vrrp started"
        );
        Ok(())
    }

    /// Starts one instance: sockets, then its state machine with the current tracking.
    pub(super) fn start_instance(
        &mut self,
        conf: &VrrpInstance,
        now: Instant,
    ) -> Result<Router, DaemonError> {
        let router = self
            .open_router(conf)
            .map_err(|source| DaemonError::Instance {
                name: conf.name.clone(),
                source,
            })?;
        Ok(self.init_router(router, now))
    }

    /// The interface's index and address, the socket and the announcer of one instance.
    fn open_router(&mut self, conf: &VrrpInstance) -> Result<Router, StartError> {
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
        Ok(Router {
            conf: conf.clone(),
            track_weights: Vec::new(),
            links: vec![(conf.interface.clone(), link.up)],
            ifindex,
            src,
            socket,
            announcer,
            instance: Instance::new(conf.instance_config(src)),
            health: Health::Priority(conf.priority),
            last_reason: String::new(),
            last_drop_warn: None,
            buf: Vec::with_capacity(1500),
        })
    }

    /// Resolves tracking for a freshly opened router and starts its state machine.
    fn init_router(&mut self, mut router: Router, now: Instant) -> Router {
        let conf = router.conf.clone();
        router.track_weights = conf
            .track_script
            .iter()
            .filter_map(|&i| self.cfg.scripts.get(i))
            .map(|s| (s.name.clone(), s.weight))
            .collect();
        for name in &conf.track_interface {
            router.links.push((name.clone(), self.link_up(name)));
        }
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
        tracing::info!(instance = %conf.name, interface = %conf.interface, src = %router.src, vrid = conf.vrid, "instance started");
        router
    }

    /// Graceful stop: priority 0 from masters, VIPs removed, final status written.
    pub(super) fn shutdown(&mut self) {
        let now = Instant::now();
        for router in &mut self.routers {
            router.instance.handle(now, Event::Shutdown);
            drive(router, &mut self.netlink, &mut self.children);
        }
        self.write_status();
        self.tracked.clear();
        self.children.finish(Duration::from_secs(2));
        let _ = std::fs::remove_file(self.runtime_dir.join(status::PID_FILE));
        tracing::info!("vrrp stopped");
    }
}
