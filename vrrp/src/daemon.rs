//! The event loop: one thread with poll(2) over every instance's raw socket and a wake
//! socket (track results, signals), timers from each instance's `poll_timeout()`.
//!
//! The loop turns the instances' actions into I/O (adverts, VIP add/remove via netlink,
//! GARP/NA bursts, notify scripts, the status file) and feeds them inputs (decoded adverts,
//! timeouts, tracking health). Tracking probes run on their own threads (a slow script must
//! not delay adverts); link state is polled over netlink every `LINK_POLL`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{self, Config, ConfigErrors, TrackScript, VrrpInstance};
use crate::instance::{Action, DropReason, Event, Instance, State};
use crate::sys::announce::Announcer;
use crate::sys::netlink::{self as vip, Netlink, NetlinkError};
use crate::sys::socket::{Incoming, NetError, SocketConfig, VrrpSocket};
use crate::track::{self, FallRise, Health, Runner, ScriptSpec};
use crate::wire::vrrp as packet;

pub mod notify;
pub mod status;

/// How often link state (instance interface + track_interface) is checked.
pub const LINK_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("instance {name}: {message}")]
    Instance { name: String, message: String },
    #[error("another vrrp (pid {pid}) uses runtime_dir {dir}")]
    Busy { pid: u32, dir: PathBuf },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Runs the daemon for `config_path` until SIGTERM/SIGINT.
pub fn run(config_path: &Path) -> Result<(), DaemonError> {
    let cfg = config::load(config_path)?;
    for w in config::lint(&cfg) {
        tracing::warn!("{w}");
    }
    let mut d = Daemon::new(config_path.to_path_buf(), cfg)?;
    let res = d.start_all().and_then(|()| d.event_loop());
    d.shutdown();
    res
}

/// One tracked script: its hysteresis state and its probe thread.
struct ScriptRt {
    spec: TrackScript,
    id: u64,
    fr: FallRise,
    _runner: Runner,
}

/// One running vrrp_instance.
struct InstRt {
    conf: VrrpInstance,
    /// (script name, weight) of `track_script`, resolved at start.
    scripts: Vec<(String, i32)>,
    /// The instance's own interface and its `track_interface`s, with the last seen state.
    links: Vec<(String, bool)>,
    ifindex: u32,
    src: IpAddr,
    sock: VrrpSocket,
    ann: Option<Announcer>,
    m: Instance,
    health: Health,
    last_reason: String,
    last_drop_warn: Option<Instant>,
    buf: Vec<u8>,
}

struct Daemon {
    config_path: PathBuf,
    cfg: Config,
    runtime_dir: PathBuf,
    nl: Netlink,
    insts: Vec<InstRt>,
    scripts: HashMap<String, ScriptRt>,
    next_runner_id: u64,
    results_tx: mpsc::Sender<(u64, bool)>,
    results_rx: mpsc::Receiver<(u64, bool)>,
    wake_rx: UnixStream,
    wake_tx: Arc<UnixStream>,
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    children: notify::Children,
    link_next: Instant,
    status_sig: Option<String>,
}

impl Daemon {
    fn new(config_path: PathBuf, cfg: Config) -> Result<Daemon, DaemonError> {
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
        let mut d = Daemon {
            config_path,
            runtime_dir,
            nl: Netlink::open()?,
            insts: Vec::new(),
            scripts: HashMap::new(),
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
        d.sync_scripts();
        Ok(d)
    }

    /// Starts every configured instance; on error the caller shuts down what did start.
    fn start_all(&mut self) -> Result<(), DaemonError> {
        let now = Instant::now();
        let confs = self.cfg.instances.clone();
        for conf in &confs {
            let inst = self.start_instance(conf, now)?;
            self.insts.push(inst);
        }
        self.drive_all();
        self.write_status();
        tracing::info!(
            config = %self.config_path.display(),
            instances = self.insts.len(),
            runtime_dir = %self.runtime_dir.display(),
            "vrrp started"
        );
        Ok(())
    }

    /// Starts runners for scripts that are new or changed, keeps unchanged ones (with their
    /// state), stops the rest.
    fn sync_scripts(&mut self) {
        let mut old = std::mem::take(&mut self.scripts);
        for spec in &self.cfg.scripts {
            if let Some(rt) = old.remove(&spec.name) {
                if rt.spec == *spec {
                    self.scripts.insert(spec.name.clone(), rt);
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
                    self.scripts.insert(
                        spec.name.clone(),
                        ScriptRt {
                            spec: spec.clone(),
                            id,
                            fr: FallRise::new(spec.fall, spec.rise),
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

    fn start_instance(&mut self, conf: &VrrpInstance, now: Instant) -> Result<InstRt, DaemonError> {
        let ierr = |message: String| DaemonError::Instance {
            name: conf.name.clone(),
            message,
        };
        let ifindex = vip::ifindex(&conf.interface).map_err(|e| ierr(e.to_string()))?;
        // A predecessor killed with SIGKILL left its VIPs: only a master may hold them.
        for a in self.nl.remove_stale(ifindex, &conf.vips)? {
            tracing::warn!(instance = %conf.name, vip = %a.addr, prefix = a.prefix, "removed stale VIP left by a previous run");
        }
        let ipv6 = conf.vips.first().map(|(a, _)| a.is_ipv6()).unwrap_or(false);
        let src = match conf.unicast_src_ip {
            Some(a) => a,
            None => {
                let addrs = self.nl.addrs(ifindex)?;
                vip::primary_addr(&addrs, ipv6, &conf.vips).ok_or_else(|| {
                    ierr(format!(
                        "interface {} has no {} address to send from",
                        conf.interface,
                        if ipv6 { "IPv6 link-local" } else { "IPv4" }
                    ))
                })?
            }
        };
        let sock = VrrpSocket::open(SocketConfig {
            ifname: conf.interface.clone(),
            ifindex,
            src,
            peers: conf.unicast_peer.clone(),
        })?;
        let link = self.nl.link(ifindex)?;
        let vips: Vec<IpAddr> = conf.vips.iter().map(|(a, _)| *a).collect();
        let ann = match link.mac {
            Some(mac) => match Announcer::open(&conf.interface, ifindex, mac, &vips) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(instance = %conf.name, error = %e, "no gratuitous ARP/NA");
                    None
                }
            },
            None => None,
        };
        let scripts = conf
            .track_script
            .iter()
            .filter_map(|&i| self.cfg.scripts.get(i))
            .map(|s| (s.name.clone(), s.weight))
            .collect();
        let mut links = vec![(conf.interface.clone(), link.up)];
        for name in &conf.track_interface {
            links.push((name.clone(), self.link_up(name)));
        }
        let mut inst = InstRt {
            conf: conf.clone(),
            scripts,
            links,
            ifindex,
            src,
            sock,
            ann,
            m: Instance::new(conf.instance_config(src)),
            health: Health::Priority(conf.priority),
            last_reason: String::new(),
            last_drop_warn: None,
            buf: Vec::with_capacity(1500),
        };
        let health = self.health_of(&inst);
        if let Health::Fault(why) = &health {
            tracing::warn!(instance = %conf.name, "starting in FAULT: {why}");
            inst.m.handle(now, Event::Fault(true));
        }
        if let Health::Priority(p) = health {
            inst.m.handle(now, Event::SetPriority(p));
        }
        inst.health = health;
        inst.m.handle(now, Event::Startup);
        tracing::info!(instance = %conf.name, interface = %conf.interface, %src, vrid = conf.vrid, "instance started");
        Ok(inst)
    }

    fn link_up(&mut self, name: &str) -> bool {
        match vip::ifindex(name) {
            Ok(idx) => self.nl.link(idx).map(|l| l.up).unwrap_or(false),
            Err(_) => false,
        }
    }

    fn health_of(&self, inst: &InstRt) -> Health {
        let scripts: Vec<(&str, i32, Option<bool>)> = inst
            .scripts
            .iter()
            .map(|(name, w)| {
                let st = self.scripts.get(name).and_then(|s| s.fr.state());
                (name.as_str(), *w, st)
            })
            .collect();
        let links: Vec<(&str, bool)> = inst.links.iter().map(|(n, up)| (n.as_str(), *up)).collect();
        track::health(inst.conf.priority, &scripts, &links)
    }

    /// Re-evaluates tracking for every instance and feeds changes to the state machines.
    fn apply_health(&mut self, now: Instant) {
        for i in 0..self.insts.len() {
            let health = self.health_of(&self.insts[i]);
            let inst = &mut self.insts[i];
            if health == inst.health {
                continue;
            }
            tracing::info!(instance = %inst.conf.name, old = ?inst.health, new = ?health, "tracking changed");
            match &health {
                Health::Fault(why) => {
                    inst.last_reason = why.clone();
                    inst.m.handle(now, Event::Fault(true));
                }
                Health::Priority(p) => {
                    inst.m.handle(now, Event::SetPriority(*p));
                    if inst.health.is_fault() {
                        inst.m.handle(now, Event::Fault(false));
                    }
                }
            }
            inst.health = health;
        }
        self.drive_all();
    }

    fn poll_links(&mut self, now: Instant) {
        for i in 0..self.insts.len() {
            // A deleted and re-created interface has a new index: sockets bound to the old
            // one would never see a packet again.
            if let Ok(idx) = vip::ifindex(&self.insts[i].conf.interface) {
                if idx != self.insts[i].ifindex {
                    self.reopen(i, idx);
                }
            }
            for j in 0..self.insts[i].links.len() {
                let name = self.insts[i].links[j].0.clone();
                let up = self.link_up(&name);
                let inst = &mut self.insts[i];
                if inst.links[j].1 != up {
                    tracing::info!(instance = %inst.conf.name, interface = %name, up, "link state changed");
                    inst.links[j].1 = up;
                }
            }
        }
        self.apply_health(now);
    }

    fn reopen(&mut self, i: usize, ifindex: u32) {
        let mac = self.nl.link(ifindex).ok().and_then(|l| l.mac);
        let Some(inst) = self.insts.get_mut(i) else {
            return;
        };
        let sock = VrrpSocket::open(SocketConfig {
            ifname: inst.conf.interface.clone(),
            ifindex,
            src: inst.src,
            peers: inst.conf.unicast_peer.clone(),
        });
        match sock {
            Ok(sock) => {
                tracing::info!(instance = %inst.conf.name, interface = %inst.conf.interface, ifindex, "interface re-created: sockets reopened");
                inst.sock = sock;
                inst.ifindex = ifindex;
                let vips: Vec<IpAddr> = inst.conf.vips.iter().map(|(a, _)| *a).collect();
                inst.ann = mac.and_then(|mac| {
                    Announcer::open(&inst.conf.interface, ifindex, mac, &vips)
                        .map_err(|e| tracing::warn!(instance = %inst.conf.name, error = %e, "no gratuitous ARP/NA"))
                        .ok()
                });
            }
            Err(e) => {
                tracing::warn!(instance = %inst.conf.name, error = %e, "cannot reopen socket on re-created interface; retrying")
            }
        }
    }

    fn drive_all(&mut self) {
        for i in 0..self.insts.len() {
            drive(&mut self.insts[i], &mut self.nl, &mut self.children);
        }
    }

    fn event_loop(&mut self) -> Result<(), DaemonError> {
        let mut rxbuf = vec![0u8; 65536];
        loop {
            if self.term.swap(false, Ordering::SeqCst) {
                tracing::info!("SIGTERM/SIGINT: stopping");
                return Ok(());
            }
            if self.hup.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            let mut results = false;
            while let Ok((id, ok)) = self.results_rx.try_recv() {
                if let Some(s) = self.scripts.values_mut().find(|s| s.id == id) {
                    if let Some(now_ok) = s.fr.record(ok) {
                        tracing::info!(script = %s.spec.name, ok = now_ok, "track script state changed");
                        results = true;
                    }
                }
            }
            let now = Instant::now();
            if results {
                self.apply_health(now);
            }
            if now >= self.link_next {
                self.link_next = now + LINK_POLL;
                self.poll_links(now);
            }
            for inst in &mut self.insts {
                if inst.m.poll_timeout().is_some_and(|t| now >= t) {
                    inst.m.handle_timeout(now);
                }
            }
            self.drive_all();
            self.children.reap(now);
            self.write_status();

            // Sleep until the earliest deadline or I/O.
            let mut deadline = self.link_next;
            for inst in &self.insts {
                if let Some(t) = inst.m.poll_timeout() {
                    deadline = deadline.min(t);
                }
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            // Round up: waking a little early would only spin.
            let ms = i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
            let ready = match self.wait(ms) {
                Ok(r) => r,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io_err("poll")(e.into())),
            };
            for k in ready {
                if let Some(inst) = self.insts.get_mut(k) {
                    receive(inst, &mut rxbuf);
                    drive(inst, &mut self.nl, &mut self.children);
                }
            }
        }
    }

    /// Sleeps in poll(2) up to `ms` on the wake socket and every instance's socket; drains the
    /// wake socket and returns the indices of the instances with packets waiting.
    fn wait(&mut self, ms: i32) -> nix::Result<Vec<usize>> {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds: Vec<PollFd<'_>> = std::iter::once(self.wake_rx.as_fd())
            .chain(self.insts.iter().map(|i| i.sock.as_fd()))
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        )?;
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready.first() == Some(&true) {
            let mut b = [0u8; 256];
            while matches!((&self.wake_rx).read(&mut b), Ok(n) if n > 0) {}
        }
        Ok(ready
            .iter()
            .skip(1)
            .enumerate()
            .filter_map(|(k, r)| r.then_some(k))
            .collect())
    }

    /// SIGHUP: re-parse; a bad config is refused and the running one kept. Instances whose
    /// configuration (or tracked scripts) changed are restarted; unchanged ones keep running.
    fn reload(&mut self) {
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
        let old_insts = std::mem::take(&mut self.insts);
        let mut kept = Vec::new();
        for mut inst in old_insts {
            let old_key = key(&self.cfg, &inst.conf);
            let same = new
                .instances
                .iter()
                .any(|n| n.name == inst.conf.name && key(&new, n) == old_key);
            if same {
                kept.push(inst);
            } else {
                tracing::info!(instance = %inst.conf.name, "configuration changed or removed: stopping instance");
                inst.m.handle(now, Event::Shutdown);
                drive(&mut inst, &mut self.nl, &mut self.children);
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
                let mut inst = kept.remove(pos);
                // Script indices may have moved; names and weights are what we use.
                inst.conf = conf.clone();
                self.insts.push(inst);
                continue;
            }
            match self.start_instance(conf, now) {
                Ok(inst) => self.insts.push(inst),
                Err(e) => tracing::error!("reload: cannot start instance: {e}"),
            }
        }
        self.drive_all();
        self.apply_health(now);
        tracing::info!(instances = self.insts.len(), "configuration reloaded");
    }

    /// Graceful stop: priority 0 from masters, VIPs removed, final status written.
    fn shutdown(&mut self) {
        let now = Instant::now();
        for inst in &mut self.insts {
            inst.m.handle(now, Event::Shutdown);
            drive(inst, &mut self.nl, &mut self.children);
        }
        self.write_status();
        self.scripts.clear();
        self.children.finish(Duration::from_secs(2));
        let _ = std::fs::remove_file(self.runtime_dir.join(status::PID_FILE));
        tracing::info!("vrrp stopped");
    }

    fn write_status(&mut self) {
        let insts: Vec<status::InstanceStatus> = self
            .insts
            .iter()
            .map(|i| status::InstanceStatus {
                name: i.conf.name.clone(),
                interface: i.conf.interface.clone(),
                vrid: i.conf.vrid,
                state: i.m.state().to_string(),
                priority: i.m.effective_priority(),
                base_priority: i.conf.priority,
                master: i.m.master_addr().map(|a| a.to_string()),
                vips: i
                    .conf
                    .vips
                    .iter()
                    .map(|(a, p)| format!("{a}/{p}"))
                    .collect(),
                reason: i.last_reason.clone(),
            })
            .collect();
        let sig = format!("{insts:?}");
        if self.status_sig.as_deref() == Some(sig.as_str()) {
            return;
        }
        let st = status::Status {
            pid: std::process::id(),
            router_id: self.cfg.router_id.clone(),
            config: self.config_path.display().to_string(),
            updated_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            instance: insts,
        };
        // Remember the state even when the write fails: retrying on every wake-up would only
        // repeat the warning; the next change tries again.
        self.status_sig = Some(sig);
        if let Err(e) = status::write(&self.runtime_dir, &st) {
            tracing::warn!(error = %e, "cannot write status file");
        }
    }
}

/// Reads every pending packet of one instance and feeds valid adverts to its state machine.
fn receive(inst: &mut InstRt, buf: &mut [u8]) {
    // Bounded: a flood must not starve the timers.
    for _ in 0..256 {
        let pkt = match inst.sock.recv(buf) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(instance = %inst.conf.name, error = %e, "receive failed");
                return;
            }
        };
        let now = Instant::now();
        match pkt {
            Incoming::Dropped { src, reason } => {
                tracing::debug!(instance = %inst.conf.name, ?src, %reason, "packet dropped");
            }
            Incoming::Packet { src, dst, range } => {
                let payload = buf.get(range).unwrap_or(&[]);
                // Other virtual routers on the same link are normal: skip them quietly.
                if packet::peek_vrid(payload) != Some(inst.conf.vrid) {
                    continue;
                }
                match packet::decode(payload, src, dst) {
                    Ok(advert) => {
                        if let Err(why) = inst.m.handle_advert(now, src, advert) {
                            log_drop(inst, now, src, &why);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(instance = %inst.conf.name, %src, error = %e, "invalid VRRP packet")
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
fn log_drop(inst: &mut InstRt, now: Instant, src: IpAddr, why: &DropReason) {
    let serious = matches!(
        why,
        DropReason::Version { .. }
            | DropReason::Auth
            | DropReason::Interval { .. }
            | DropReason::AddrList { .. }
    );
    if !serious {
        tracing::trace!(instance = %inst.conf.name, %src, "advert ignored: {why}");
        return;
    }
    if inst
        .last_drop_warn
        .is_some_and(|t| now.duration_since(t) < DROP_WARN_EVERY)
    {
        return;
    }
    inst.last_drop_warn = Some(now);
    tracing::warn!(instance = %inst.conf.name, %src, "advert dropped (peer misconfigured?): {why}");
}

fn announce(inst: &InstRt) {
    let vips: Vec<IpAddr> = inst.conf.vips.iter().map(|(a, _)| *a).collect();
    match &inst.ann {
        Some(a) => {
            if let Err(e) = a.announce(&vips) {
                tracing::warn!(instance = %inst.conf.name, error = %e, "gratuitous ARP/NA failed");
            }
        }
        None => tracing::debug!(instance = %inst.conf.name, "no announcer; GARP skipped"),
    }
}

/// Executes an instance's pending actions, in order. Notify scripts run after the whole
/// batch, as keepalived runs them after the VIPs are in place: a notify_master script that
/// binds to a VIP must find it.
fn drive(inst: &mut InstRt, nl: &mut Netlink, children: &mut notify::Children) {
    let mut notifications = Vec::new();
    while let Some(action) = inst.m.poll_action() {
        match action {
            Action::SendAdvert(adv) => {
                for dst in inst.sock.destinations() {
                    if let Err(e) =
                        packet::encode(&adv, inst.src, dst, inst.conf.checksum, &mut inst.buf)
                    {
                        tracing::error!(instance = %inst.conf.name, error = %e, "cannot encode advert");
                        continue;
                    }
                    if let Err(e) = inst.sock.send_to(&inst.buf, dst) {
                        tracing::warn!(instance = %inst.conf.name, %dst, error = %e, "send advert failed");
                    }
                }
            }
            Action::AddVips => {
                for (a, p) in &inst.conf.vips {
                    match nl.add_addr(inst.ifindex, *a, *p) {
                        Ok(_) => tracing::debug!(instance = %inst.conf.name, vip = %a, "VIP added"),
                        Err(e) => {
                            tracing::error!(instance = %inst.conf.name, error = %e, "cannot add VIP")
                        }
                    }
                }
            }
            Action::RemoveVips => {
                for (a, p) in &inst.conf.vips {
                    if let Err(e) = nl.del_addr(inst.ifindex, *a, *p) {
                        tracing::error!(instance = %inst.conf.name, error = %e, "cannot remove VIP");
                    }
                }
            }
            Action::SendGratuitous => announce(inst),
            Action::Transition { from, to, reason } => {
                tracing::info!(
                    instance = %inst.conf.name,
                    %from,
                    %to,
                    priority = inst.m.effective_priority(),
                    "transition: {reason}"
                );
                inst.last_reason = reason;
                notifications.push(to);
            }
        }
    }
    for to in notifications {
        let specific = match to {
            State::Master => inst.conf.notify_master.as_deref(),
            State::Backup => inst.conf.notify_backup.as_deref(),
            State::Fault => inst.conf.notify_fault.as_deref(),
            State::Initialize => None,
        };
        children.notify(
            Instant::now(),
            &inst.conf.name,
            to,
            inst.m.effective_priority(),
            specific,
            inst.conf.notify.as_deref(),
        );
    }
}

/// `vrrp --check`: errors of every file, then lints (across files when several are given).
/// Returns the text to print and whether any file had errors.
pub fn check(paths: &[PathBuf]) -> (String, bool) {
    let mut out = String::new();
    let mut cfgs = Vec::new();
    let mut failed = false;
    for p in paths {
        match config::load(p) {
            Ok(c) => cfgs.push(c),
            Err(e) => {
                failed = true;
                out.push_str(&format!("{e}\n"));
            }
        }
    }
    let warnings = if cfgs.len() > 1 {
        config::lint_pair(&cfgs)
    } else {
        cfgs.iter().flat_map(config::lint).collect()
    };
    for w in &warnings {
        out.push_str(&format!("{w}\n"));
    }
    if !failed {
        out.push_str(&format!(
            "{} OK ({} warning{})\n",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        ));
    }
    (out, failed)
}

/// `vrrp status`: the status file of `runtime_dir`, rendered.
pub fn status_text(runtime_dir: &Path) -> Result<String, DaemonError> {
    let st = status::read(runtime_dir).map_err(io_err(format!(
        "read {}",
        status::status_path(runtime_dir).display()
    )))?;
    let alive = status::is_vrrp_alive(st.pid);
    Ok(status::render(&st, alive))
}
