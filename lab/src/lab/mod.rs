//! The lab as a whole: `up` and `down` here, the operations on a running lab (status, exec,
//! start/stop of services, link cut/heal, reboot of a host) in [`running`].

mod init;
pub mod running;

pub use running::Running;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use provision::inventory::{Inventory, Role};

use crate::cgroup;
use crate::error::{LabError, Result};
use crate::host::keeper::{self, Boot, Keeper};
use crate::host::{self, Context, HostHandle, Service};
use crate::router;
use crate::state::{Init, Names, State, StateDir};
use crate::sys;
use crate::topology::{self, Plan, Topology};

/// The systemd a lab host boots.
pub const SYSTEMD: &str = "/lib/systemd/systemd";

/// A lab, identified by its id; it may or may not be up.
#[derive(Debug, Clone)]
pub struct Lab {
    pub names: Names,
    pub dir: StateDir,
    /// Where the `proxy` and `vrrp` binaries are (next to `lab`).
    pub bin_dir: PathBuf,
}

/// Options of `lab up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Services not to start (debugging aid, e.g. a lab without vrrp).
    pub without: Vec<Service>,
    /// Print a line per phase on stdout.
    pub progress: bool,
    /// Hosts as freshly installed servers: sshd only, no role files, no other service; for
    /// `provision` to set up over SSH.
    pub bare: bool,
    /// The hosts' init; `None`: systemd where it can boot, else none (said on stderr).
    pub init: Option<Init>,
    /// The network's shape: the seed's one segment, or a BGP/ECMP router in front.
    pub topology: Topology,
}

/// How long a systemd host may take to boot (about 1 s when the machine is idle).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `down` waits for a powered-off host to stop its units (the proxy's graceful stop
/// drains connections) before it kills the host.
pub const POWEROFF_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpOutcome {
    Created,
    AlreadyUp,
}

/// Directory of the running executable (`target/<profile>/`), where cargo puts every binary of
/// the workspace.
pub fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

impl Lab {
    pub fn new(id: &str, state_root: &Path, bin_dir: PathBuf) -> Result<Lab> {
        let names = Names::new(id)?;
        // Absolute, because the hosts' mounts refer to it from other working directories.
        let state_root = std::path::absolute(state_root)
            .map_err(|e| LabError::io(format!("resolve {}", state_root.display()), e))?;
        let dir = StateDir::new(&state_root, &names);
        let bin_dir = std::path::absolute(&bin_dir)
            .map_err(|e| LabError::io(format!("resolve {}", bin_dir.display()), e))?;
        Ok(Lab {
            names,
            dir,
            bin_dir,
        })
    }

    /// Whether a completed `up` is recorded and every host's keeper still runs.
    pub fn is_up(&self) -> bool {
        self.open()
            .is_ok_and(|r| r.hosts().iter().all(HostHandle::alive))
    }

    /// Everything `up` needs from the machine, checked before anything is created.
    fn preflight(&self, inv: &Inventory, opts: &UpOptions) -> Result<()> {
        if !sys::is_root() {
            return Err(LabError::NotRoot);
        }
        // overlayfs refuses an upper directory inside its own lower directory.
        if let Some(dir) = host::OVERLAID.iter().find(|d| self.dir.dir.starts_with(d)) {
            return Err(LabError::Other(format!(
                "the state directory {} is inside {dir}, which every lab host overlays; \
                 choose a --state-root elsewhere (default {})",
                self.dir.dir.display(),
                crate::state::DEFAULT_STATE_ROOT
            )));
        }
        let mut tools = vec![
            ("ip", "iproute2"),
            ("unshare", "util-linux"),
            ("nsenter", "util-linux"),
            ("ssh-keygen", "openssh-client"),
            ("sshd", "openssh-server"),
        ];
        if inv.backends().next().is_some() {
            tools.push(("apache2", "apache2"));
        }
        if opts.topology == Topology::Ecmp {
            tools.push(("/usr/lib/frr/zebra", "frr"));
            tools.push(("bird", "bird2"));
        }
        for (tool, pkg) in tools {
            if !sys::have_program(tool) {
                return Err(LabError::Missing {
                    what: format!("`{tool}`"),
                    path: PathBuf::from(tool),
                    hint: format!("apt-get install {pkg}"),
                });
            }
        }
        for bin in ["proxy", "vrrp"] {
            let svc = Service::parse(bin);
            if svc.is_some_and(|s| opts.without.contains(&s)) {
                continue;
            }
            let path = self.bin_dir.join(bin);
            if !path.exists() {
                return Err(LabError::Missing {
                    what: format!("the `{bin}` binary"),
                    path,
                    hint: "build the workspace first: cargo build --bins (or --release)".into(),
                });
            }
        }
        Ok(())
    }

    /// Creates the lab from `inventory`. A lab that is already up is left alone; leftovers of a
    /// crashed or interrupted `up` are removed first. On failure, whatever was created is
    /// removed again.
    pub fn up(&self, inventory: &Path, opts: &UpOptions) -> Result<UpOutcome> {
        let text = self.inventory_text(inventory, opts.topology)?;
        let inv = Inventory::parse(&text, &inventory.display().to_string())?;
        self.preflight(&inv, opts)?;
        if self.is_up() {
            return Ok(UpOutcome::AlreadyUp);
        }
        if self.dir.exists() {
            eprintln!(
                "lab {:?}: removing leftovers of an unfinished `lab up` first",
                self.names.id
            );
            self.down()?;
        }
        match self.create(&text, &inv, opts) {
            Ok(()) => Ok(UpOutcome::Created),
            Err(e) => {
                eprintln!(
                    "lab {:?}: `up` failed, removing what it created",
                    self.names.id
                );
                if let Err(e2) = self.down() {
                    eprintln!("lab {:?}: cleanup failed too: {e2}", self.names.id);
                }
                Err(e)
            }
        }
    }

    /// The inventory the lab runs: the file itself, or for the ECMP topology the file with
    /// `[bgp] mode = "anycast"` (see [`router::anycast_inventory`]). A flat lab runs an anycast
    /// inventory as it is: its announcements go to whatever router the user runs (provision's
    /// end-to-end test runs BIRD in the client namespace).
    fn inventory_text(&self, inventory: &Path, topology: Topology) -> Result<String> {
        let text = std::fs::read_to_string(inventory)
            .map_err(|e| LabError::io(format!("read {}", inventory.display()), e))?;
        match topology {
            Topology::Ecmp => router::anycast_inventory(&text, &inventory.display().to_string()),
            Topology::Flat => Ok(text),
        }
    }

    fn create(&self, text: &str, inv: &Inventory, opts: &UpOptions) -> Result<()> {
        let client = topology::client_address_for(inv, opts.topology)?;
        for h in &inv.hosts {
            if ["client", "bridge", "router"].contains(&h.name.as_str()) {
                return Err(LabError::Other(format!(
                    "host name {:?} is reserved by the lab",
                    h.name
                )));
            }
        }
        let (init, layout) = init::choose(opts)?;
        let plan = Plan::new(inv, &self.names, client, opts.topology);
        let say = |msg: String| {
            if opts.progress {
                println!("  {msg}");
            }
        };
        let mut state = State {
            id: self.names.id.clone(),
            client_address: Some(client),
            init,
            topology: opts.topology,
            ..State::default()
        };
        self.dir.save(&state)?;
        std::fs::write(self.dir.inventory_file(), text)
            .map_err(|e| LabError::io("write the lab's inventory", e))?;

        say(format!(
            "network: bridge in {}, {} hosts and the client ({client}) on {}/{}",
            plan.bridge_ns,
            plan.hosts.len(),
            inv.network.network_address(),
            inv.network.prefix
        ));
        self.create_network(&plan, &mut state, init)?;
        if let Some(r) = &plan.router {
            say(format!(
                "router: {} ({} on the hosts' bridge{}, {} towards the client), FRR bgpd AS {} \
                 peering with the balancers (AS {}), BFD {}, maximum-paths {}",
                r.ns,
                r.address,
                r.gateway
                    .map(|g| format!(", gateway {g}"))
                    .unwrap_or_default(),
                topology::CLIENT_SUBNET_ROUTER,
                r.peering.router_asn,
                r.peering.local_asn,
                if r.peering.bfd { "on" } else { "off" },
                router::MAXIMUM_PATHS
            ));
            self.start_router(inv, r, &mut state)?;
        }
        let pubkey = self.create_ssh_key()?;
        say(hosts_summary(init));
        let keepers = self.spawn_keepers(inv, &plan, layout.as_ref(), &mut state)?;
        let handles = self.handles(inv, &state);
        self.setup_hosts(inv, &plan, &handles, &pubkey, opts.bare)?;
        for k in keepers {
            k.boot()?;
        }
        if init == Init::Systemd {
            for hh in &handles {
                hh.wait_booted(BOOT_TIMEOUT)?;
            }
            say(format!("booted {}", lab_target_summary(&handles)));
        }
        self.start_services(inv, &handles, opts, &say)?;
        state.complete = true;
        self.dir.save(&state)?;
        let running = self.open()?;
        say("waiting for every service to answer and for a VRRP master".into());
        running.wait_ready(Duration::from_secs(15))?;
        Ok(())
    }

    /// Each host's keeper (with systemd: in its cgroups, recorded before they are created),
    /// mounts in place, systemd not started yet.
    fn spawn_keepers(
        &self,
        inv: &Inventory,
        plan: &Plan,
        layout: Option<&cgroup::Layout>,
        state: &mut State,
    ) -> Result<Vec<Keeper>> {
        let mut keepers = Vec::new();
        for (h, node) in inv.hosts.iter().zip(&plan.hosts) {
            let boot = match layout {
                Some(layout) => {
                    let dirs = layout.host_dirs(&self.names.id, &h.name);
                    state.cgroups.extend(dirs.iter().cloned());
                    self.dir.save(state)?;
                    dirs.iter().try_for_each(|d| cgroup::create(d))?;
                    Boot::Systemd {
                        cgroups: dirs,
                        hybrid: layout.is_hybrid(),
                    }
                }
                None => Boot::Plain,
            };
            let k = Keeper::spawn(&node.ns, &h.name, &self.dir.host_dir(&h.name), &boot)?;
            state.keepers.insert(h.name.clone(), k.pid);
            self.dir.save(state)?;
            keepers.push(k);
        }
        Ok(keepers)
    }

    /// The namespaces (each recorded before it is created, so `down` finds it whatever happens
    /// next), the bridge and every node's link.
    fn create_network(&self, plan: &Plan, state: &mut State, init: Init) -> Result<()> {
        let mut all_ns = vec![plan.bridge_ns.clone()];
        all_ns.extend(plan.hosts.iter().map(|n| n.ns.clone()));
        all_ns.extend(plan.router.iter().map(|r| r.ns.clone()));
        all_ns.push(plan.client.ns.clone());
        for ns in &all_ns {
            if sys::netns_exists(ns) {
                return Err(LabError::Other(format!(
                    "network namespace {ns} already exists but is not recorded by lab {:?}; \
                     remove it with `ip netns del {ns}` or use another --id",
                    self.names.id
                )));
            }
            state.netns.push(ns.clone());
            self.dir.save(state)?;
            sys::ip(&["netns", "add", ns])?;
        }
        topology::create_bridge(plan)?;
        for node in &plan.hosts {
            topology::attach(plan, node, init == Init::None)?;
            // A systemd host's ifupdown sets its gateway at boot.
            if let (Init::None, Some(gw)) = (init, plan.hosts_gateway()) {
                topology::add_default_route(node, gw)?;
            }
        }
        match &plan.router {
            Some(r) => {
                topology::create_router(plan, r)?;
                topology::attach_client_to_router(plan)
            }
            None => topology::attach(plan, &plan.client, true),
        }
    }

    /// The router's keeper (recorded before FRR starts) and FRR peering with every balancer.
    fn start_router(&self, inv: &Inventory, r: &topology::Router, state: &mut State) -> Result<()> {
        let k = Keeper::spawn(&r.ns, "router", &self.dir.router_dir(), &Boot::Plain)?;
        state.router_keeper = Some(k.pid);
        self.dir.save(state)?;
        let pid = k.pid;
        k.boot()?;
        let balancers: Vec<_> = inv.balancers().map(|b| b.address).collect();
        router::start_frr(pid, &r.peering, &balancers)
    }

    /// The lab's SSH key pair; returns the public key.
    fn create_ssh_key(&self) -> Result<String> {
        let key = self.dir.ssh_key();
        sys::run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("lab-{}", self.names.id))
                .arg("-f")
                .arg(&key),
        )?;
        let pubkey_path = key.with_extension("pub");
        std::fs::read_to_string(&pubkey_path)
            .map_err(|e| LabError::io(format!("read {}", pubkey_path.display()), e))
    }

    /// Handles of the hosts recorded in `state`.
    fn handles(&self, inv: &Inventory, state: &State) -> Vec<HostHandle> {
        inv.hosts
            .iter()
            .filter_map(|h| {
                Some(HostHandle {
                    host: h.clone(),
                    ns: self.names.host_ns(&h.name),
                    keeper: *state.keepers.get(&h.name)?,
                    init: state.init,
                    console: Some(keeper::Keeper::console_log(&self.dir.host_dir(&h.name))),
                    anycast: router::anycast(inv),
                })
            })
            .collect()
    }

    /// Host keys, the lab key, (with systemd) what the host boots, role files unless `bare`,
    /// and the lab's known_hosts: all before any host runs a service.
    fn setup_hosts(
        &self,
        inv: &Inventory,
        plan: &Plan,
        handles: &[HostHandle],
        pubkey: &str,
        bare: bool,
    ) -> Result<()> {
        let ctx = Context {
            inventory: inv,
            bin_dir: &self.bin_dir,
        };
        let mut known_hosts = String::new();
        let gateway = plan.hosts_gateway();
        for hh in handles {
            hh.setup_ssh(&inv.ssh, pubkey)?;
            if hh.init == Init::Systemd {
                hh.prepare_boot(&inv.ssh, inv.network.prefix, gateway, bare)?;
            }
            if !bare {
                hh.setup_role(&ctx)?;
            }
            if let Some(k) = hh.host_key() {
                // OpenSSH's known_hosts spells non-default ports as "[host]:port".
                let _ = match inv.ssh.port {
                    22 => writeln!(known_hosts, "{} {k}", hh.host.address),
                    p => writeln!(known_hosts, "[{}]:{p} {k}", hh.host.address),
                };
            }
        }
        std::fs::write(self.dir.known_hosts(), known_hosts)
            .map_err(|e| LabError::io("write known_hosts", e))
    }

    /// Starts (with systemd: enables and starts) each host's services, backends first, so a
    /// proxy that comes up finds its upstreams.
    fn start_services(
        &self,
        inv: &Inventory,
        handles: &[HostHandle],
        opts: &UpOptions,
        say: &dyn Fn(String),
    ) -> Result<()> {
        let ctx = Context {
            inventory: inv,
            bin_dir: &self.bin_dir,
        };
        let mut order: Vec<&HostHandle> = handles
            .iter()
            .filter(|h| h.host.role == Role::Backend)
            .collect();
        order.extend(handles.iter().filter(|h| h.host.role == Role::Balancer));
        for hh in order {
            let mut started = Vec::new();
            for &svc in hh.services() {
                if !opts.without.contains(&svc) && (!opts.bare || svc == Service::Sshd) {
                    let pid = hh.enable(svc, &ctx)?;
                    started.push(format!("{svc} {pid}"));
                }
            }
            say(format!("{}: {}", hh.host.name, started.join(", ")));
        }
        Ok(())
    }

    /// Removes everything the lab created: kills every process in its namespaces (so also the
    /// keepers and with them the hosts' mounts), deletes the namespaces and the state directory.
    /// Works on a half-created lab and is a no-op on a lab that is not there.
    pub fn down(&self) -> Result<Vec<String>> {
        if !sys::is_root() {
            return Err(LabError::NotRoot);
        }
        let Some(state) = self.dir.load()? else {
            self.dir.remove()?;
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        if state.init == Init::Systemd {
            // Power the hosts off first: systemd stops the units in order (vrrp says goodbye
            // with priority 0), and PID 1 exiting ends each host's PID namespace. Only pids
            // still in their host's namespace: a recycled pid is someone else's process.
            let live: Vec<i32> = state
                .keepers
                .iter()
                .filter(|(h, &pid)| sys::pid_in_netns(pid, &self.names.host_ns(h)))
                .map(|(_, &pid)| pid)
                .collect();
            if !keeper::poweroff(&live, POWEROFF_GRACE) {
                eprintln!(
                    "lab {:?}: a host did not power off within {} s and was killed",
                    self.names.id,
                    POWEROFF_GRACE.as_secs()
                );
            }
        }
        for ns in state.netns.iter().rev() {
            // Again until none is left: a process may fork while it is being stopped, and on a
            // loaded machine a killed one can take a while to go.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let pids = sys::pids_in_netns(ns);
                if pids.is_empty() || Instant::now() >= deadline {
                    break;
                }
                sys::terminate(&pids, Duration::from_secs(3));
            }
            if sys::netns_exists(ns) {
                sys::ip(&["netns", "del", ns])?;
                removed.push(ns.clone());
            }
        }
        // A keeper that was spawned but never joined its namespace cannot exist (it is started
        // inside it), so the namespace sweep above covered every process, and with them every
        // process in the hosts' cgroups. The state stays if a cgroup cannot be removed, so that
        // another `down` tries again.
        for cg in &state.cgroups {
            cgroup::remove(cg)?;
            removed.push(cg.display().to_string());
        }
        self.dir.remove()?;
        Ok(removed)
    }

    /// The running lab, or `NotUp`.
    pub fn open(&self) -> Result<Running> {
        let not_up = || LabError::NotUp(self.names.id.clone());
        let state = self.dir.load()?.ok_or_else(not_up)?;
        if !state.complete {
            return Err(LabError::Other(format!(
                "lab {:?} was not completely created (an interrupted `lab up`?); run `lab down`",
                self.names.id
            )));
        }
        let inventory = Inventory::load(&self.dir.inventory_file())?;
        let client = state.client_address.ok_or_else(not_up)?;
        let plan = Plan::new(&inventory, &self.names, client, state.topology);
        Ok(Running {
            lab: self.clone(),
            state,
            inventory,
            plan,
        })
    }
}

/// How the hosts are built, for `up`'s progress.
fn hosts_summary(init: Init) -> String {
    match init {
        Init::Systemd => format!(
            "hosts: systemd as PID 1 in own PID/mount/UTS/IPC/cgroup namespaces, overlays on \
             {}, own /dev /run /tmp, without CAP_{{SYS_TIME,SYS_MODULE,SYS_BOOT}}",
            host::OVERLAID_SYSTEMD.join(" ")
        ),
        Init::None => format!(
            "hosts: own PID/mount/UTS namespaces, overlays on {}, tmpfs on /run",
            host::OVERLAID.join(" ")
        ),
    }
}

/// "server1 (pid 123), server2 (pid 456) ...": each host's systemd, by its pid outside.
fn lab_target_summary(handles: &[HostHandle]) -> String {
    let hosts: Vec<String> = handles
        .iter()
        .map(|h| format!("{} (systemd {})", h.host.name, h.keeper))
        .collect();
    format!("{} to {}", hosts.join(", "), host::boot::TARGET)
}
