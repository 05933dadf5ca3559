//! Namespace lab for the integration tests: a bridge namespace, N balancer namespaces and a
//! client namespace, each host with `eth0` on the bridge (10.99.0.0/24, no default route).
//!
//! Names carry the pid and a counter so tests run in parallel; `Lab`'s Drop kills every
//! process it started (by pid) and deletes every namespace, also when a test fails.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vrrp::sys::netlink::Netlink;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub const VRRP: &str = env!("CARGO_BIN_EXE_vrrp");

pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

pub struct Lab {
    pub br: String,
    pub hosts: Vec<String>,
    pub client: String,
    pub dir: PathBuf,
    procs: Vec<Proc>,
}

/// Address of balancer `i` (0-based).
pub fn host_ip(i: usize) -> String {
    format!("10.99.0.{}", i + 1)
}
pub const CLIENT_IP: &str = "10.99.0.200";

impl Lab {
    pub fn new(tag: &str, n: usize) -> Lab {
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("vit{}-{k}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{id}-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab dir");
        let lab = Lab {
            br: format!("{id}-br"),
            hosts: (0..n).map(|i| format!("{id}-h{i}")).collect(),
            client: format!("{id}-c"),
            dir,
            procs: Vec::new(),
        };
        run("ip", &["netns", "add", &lab.br]);
        run(
            "ip",
            &[
                "-n",
                &lab.br,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        );
        run("ip", &["-n", &lab.br, "link", "set", "br0", "up"]);
        let mut all: Vec<(String, String, String)> = lab
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.clone(), format!("p{i}"), host_ip(i)))
            .collect();
        all.push((lab.client.clone(), "pc".into(), CLIENT_IP.into()));
        for (i, (ns, port, ip)) in all.iter().enumerate() {
            // Register before creating, so Drop removes even a half-built namespace.
            run("ip", &["netns", "add", ns]);
            let mac = format!("02:99:00:00:00:{:02x}", i + 1);
            run(
                "ip",
                &[
                    "-n", &lab.br, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "address", &mac, "netns", ns,
                ],
            );
            run(
                "ip",
                &["-n", &lab.br, "link", "set", port, "master", "br0", "up"],
            );
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.eth0.accept_dad=0",
                ],
            );
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            );
            run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `text` to the lab dir and starts `vrrp --config` in host `i`.
    pub fn start_vrrp(&mut self, i: usize, name: &str, text: &str) -> u32 {
        let cfg = self.path(&format!("{name}.toml"));
        std::fs::write(&cfg, text).expect("write config");
        let cfg = cfg.display().to_string();
        self.spawn(i, name, &[VRRP, "--config", &cfg])
    }

    /// Starts `argv` in namespace `ns` (`ip netns exec` execs it: the pid is the program's).
    pub fn spawn_in(&mut self, ns: &str, name: &str, argv: &[&str]) -> u32 {
        let log = self.path(&format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        let f2 = f.try_clone().expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .env("RUST_LOG", "vrrp=debug")
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .expect("spawn in namespace");
        let pid = child.id();
        self.procs.push(Proc { child, log });
        pid
    }

    pub fn spawn(&mut self, i: usize, name: &str, argv: &[&str]) -> u32 {
        let ns = self.hosts[i].clone();
        self.spawn_in(&ns, name, argv)
    }

    pub fn signal(&mut self, pid: u32, sig: i32) {
        // A pid we spawned and have not reaped yet (we reap only in `wait_exit` and Drop), so
        // it cannot name an unrelated process.
        let sig = nix::sys::signal::Signal::try_from(sig).expect("signal number");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
    }

    /// Waits (bounded) for a process we started to exit; returns its exit code.
    pub fn wait_exit(&mut self, pid: u32, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let p = self.procs.iter_mut().find(|p| p.child.id() == pid)?;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = p.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    pub fn exec(&self, ns: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .output()
            .expect("ip netns exec")
    }

    /// A netlink socket inside namespace `ns`, for fast address polling.
    pub fn netlink(&self, ns: &str) -> Netlink {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                // setns changes only this scoped thread's namespace.
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                Netlink::open().expect("netlink")
            })
            .join()
            .expect("netlink thread")
        })
    }

    pub fn log_dump(&self) -> String {
        let mut s = String::new();
        for p in &self.procs {
            s.push_str(&format!(
                "==== {}\n{}\n",
                p.log.display(),
                std::fs::read_to_string(&p.log).unwrap_or_default()
            ));
        }
        s
    }
}

/// Address poller for one namespace's eth0.
pub struct Watch {
    nl: Netlink,
    ifindex: u32,
}

impl Watch {
    pub fn new(lab: &Lab, ns: &str) -> Watch {
        let mut nl = lab.netlink(ns);
        // eth0 is the second interface created in every host namespace (after lo).
        let ifindex = (1..64)
            .find(|&i| {
                nl.link(i).is_ok()
                    && nl
                        .addrs(i)
                        .map(|a| a.iter().any(|x| x.addr.to_string().starts_with("10.99.0.")))
                        .unwrap_or(false)
            })
            .expect("eth0 in namespace");
        Watch { nl, ifindex }
    }

    pub fn has(&mut self, addr: &str) -> bool {
        let want: IpAddr = addr.parse().expect("addr");
        self.nl
            .addrs(self.ifindex)
            .map(|l| l.iter().any(|a| a.addr == want))
            .unwrap_or(false)
    }
}

/// Polls `f` every 5 ms until it is true or `within` passes; returns the time it took.
pub fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if f() {
        Some(start.elapsed())
    } else {
        None
    }
}

/// Our vrrp.toml for host `i`.
pub struct Cfg<'a> {
    pub lab: &'a Lab,
    pub host: usize,
    pub priority: u8,
    pub version: u8,
    pub advert_int: f64,
    pub vips: Vec<&'a str>,
    pub extra_instance: String,
    pub extra_top: String,
}

impl Cfg<'_> {
    pub fn render(&self, name: &str) -> String {
        let vips = self
            .vips
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let auth = if self.version == 2 {
            "authentication = { auth_type = \"PASS\", auth_pass = \"1111\" }\n"
        } else {
            ""
        };
        format!(
            "[global_defs]\nrouter_id = \"{name}\"\nruntime_dir = \"{}\"\n\n{}\n[vrrp_instance.VI_1]\n\
             interface = \"eth0\"\nvirtual_router_id = 51\npriority = {}\nadvert_int = {}\n\
             version = {}\n{auth}virtual_ipaddress = [{vips}]\n{}\n",
            self.lab.path(&format!("run-{name}")).display(),
            self.extra_top,
            self.priority,
            self.advert_int,
            self.version,
            self.extra_instance,
        )
    }
}

pub fn cfg(lab: &Lab, host: usize, priority: u8, version: u8, advert_int: f64) -> Cfg<'_> {
    Cfg {
        lab,
        host,
        priority,
        version,
        advert_int,
        vips: vec!["10.99.0.80/24", "10.99.0.90/24", "10.99.0.100/24"],
        extra_instance: String::new(),
        extra_top: String::new(),
    }
}

pub fn keepalived_conf(
    priority: u8,
    version: u8,
    advert_int: f64,
    vips: &[&str],
    extra_instance: &str,
) -> String {
    let auth = if version == 2 {
        "    authentication {\n        auth_type PASS\n        auth_pass 1111\n    }\n"
    } else {
        ""
    };
    format!(
        "global_defs {{\n    router_id ka{priority}\n    vrrp_version {version}\n}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n\
         \x20   priority {priority}\n    advert_int {advert_int}\n{auth}{extra_instance}\
         \x20   virtual_ipaddress {{\n{}    }}\n}}\n",
        vips.iter()
            .map(|v| format!("        {v}\n"))
            .collect::<String>()
    )
}

impl Lab {
    /// Starts keepalived in host `i` with its own pid files under the lab dir.
    pub fn start_keepalived(&mut self, i: usize, name: &str, conf: &str) -> u32 {
        let d = self.path(&format!("ka-{name}"));
        std::fs::create_dir_all(&d).expect("keepalived dir");
        let f = d.join("keepalived.conf");
        std::fs::write(&f, conf).expect("write keepalived.conf");
        let p = |n: &str| d.join(n).display().to_string();
        let (fs, kp, vp, cp) = (f.display().to_string(), p("k.pid"), p("v.pid"), p("c.pid"));
        self.spawn(
            i,
            name,
            &[
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-G",
                "-P",
                "-R",
                "-f",
                &fs,
                "-p",
                &kp,
                "-r",
                &vp,
                "-c",
                &cp,
            ],
        )
    }

    /// keepalived's VRRP child pid (the process that holds the VIPs).
    pub fn keepalived_vrrp_pid(&self, name: &str) -> Option<u32> {
        let p = self.path(&format!("ka-{name}")).join("v.pid");
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        // keepalived forks its VRRP child: it dies with its parent (it watches it), but the
        // namespace deletion below makes sure nothing lingers on the bridge either way.
        for ns in self.hosts.iter().chain([&self.client, &self.br]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if std::env::var_os("VRRP_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Two balancers running vrrp v3 at 0.1 s (priorities 150 and 100), host 0 holding the VIPs; returns (lab, watch 0, watch 1).
pub fn pair(tag: &str) -> (Lab, Watch, Watch, [u32; 2]) {
    let mut lab = Lab::new(tag, 2);
    let c0 = cfg(&lab, 0, 150, 3, 0.1).render("b0");
    let c1 = cfg(&lab, 1, 100, 3, 0.1).render("b1");
    let mut w0 = Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = Watch::new(&lab, &lab.hosts[1].clone());
    let p0 = lab.start_vrrp(0, "b0", &c0);
    let p1 = lab.start_vrrp(1, "b1", &c1);
    assert!(
        wait_for(Duration::from_secs(3), || w0.has("10.99.0.80")
            && !w1.has("10.99.0.80"))
        .is_some(),
        "{}",
        lab.log_dump()
    );
    (lab, w0, w1, [p0, p1])
}

/// `ip neigh show ADDR dev eth0` in namespace `ns`.
pub fn neigh(lab: &Lab, ns: &str, addr: &str) -> String {
    String::from_utf8_lossy(
        &lab.exec(ns, &["ip", "neigh", "show", addr, "dev", "eth0"])
            .stdout,
    )
    .into_owned()
}
