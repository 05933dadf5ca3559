//! `provision` end to end against lab hosts over real SSH (Debian's sshd in each host).
//!
//! The lab boots each host's own systemd with only sshd; provision does the rest with the real
//! systemctl, firewalld and chrony. What cannot run here (yum/dnf against EL repositories,
//! apt-get on the machine's shared /usr, SELinux tools, EL's network-scripts) is stood in for by
//! TEST DOUBLES from provision/doubles/, installed into each host's own /usr/local/bin and
//! /etc/systemd/system (overlays: the machine's are untouched; `provision::doubles`); each
//! records every invocation in the host's /var/log/test-doubles.log. server2 gets the seed's CentOS 7 personality (a fake
//! /etc/os-release in its overlay), so the EL7 plan (yum, firewalld, SELinux, ifcfg) runs there;
//! the others run the Debian 12 plan with real nftables, chrony's config and Apache.
//!
//! Needs root and the workspace's binaries (`cargo build --bins`). One test, one lab (unique id
//! and state directory), removed on drop even when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::host::Service;
use lab::{Lab, Running, UpOptions};

/// target/<profile>/ (the test executable is in target/<profile>/deps/).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("profile dir")
        .to_path_buf()
}

fn inventory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab.toml")
}

/// The lab, taken down on drop.
struct Guard {
    lab: Lab,
    root: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.lab.down() {
            eprintln!("lab down failed: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

struct Run {
    code: i32,
    out: String,
}

/// Runs provision from the lab's client namespace (the only place the hosts are reachable from).
fn provision(r: &Running, inventory: &Path, known_hosts: &Path, extra: &[&str]) -> Run {
    provision_with(r, inventory, known_hosts, extra, None)
}

/// provision from the lab's client namespace, not yet started; `agent` = an ssh-agent socket to
/// authenticate with instead of the lab's key.
fn provision_command(
    r: &Running,
    inventory: &Path,
    known_hosts: &Path,
    extra: &[&str],
    agent: Option<&Path>,
) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["150", "ip", "netns", "exec", &r.plan.client.ns])
        .arg(env!("CARGO_BIN_EXE_provision"))
        .arg(inventory)
        .arg("--known-hosts")
        .arg(known_hosts)
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(extra)
        .env_remove("SSH_AUTH_SOCK")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    match agent {
        Some(sock) => cmd.env("SSH_AUTH_SOCK", sock),
        None => cmd.arg("--key").arg(r.lab.dir.ssh_key()),
    };
    cmd
}

/// A child this test started, killed (by its pid) if the test fails before waiting for it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `cond` every 20 ms for up to `secs`.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {secs}s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// New TCP connections from the lab's client to `addr`:22 dropped (nft in the client
/// namespace only), until dropped.
struct ClientBlock {
    ns: String,
}

impl ClientBlock {
    fn new(r: &Running, addr: &str) -> ClientBlock {
        let ns = r.plan.client.ns.clone();
        let rules = format!(
            "table inet provision_e2e_block {{ chain out {{ type filter hook output priority 0; ip daddr {addr} tcp dport 22 ct state new drop; }}; }}"
        );
        let ok = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", &rules])
            .status()
            .expect("nft");
        assert!(ok.success(), "nft block");
        ClientBlock { ns }
    }
}

impl Drop for ClientBlock {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "nft",
                "delete table inet provision_e2e_block",
            ])
            .status();
    }
}

/// Runs provision with `inventory`; `agent` = an ssh-agent socket to authenticate with
/// instead of `--key`.
fn provision_with(
    r: &Running,
    inventory: &Path,
    known_hosts: &Path,
    extra: &[&str],
    agent: Option<&Path>,
) -> Run {
    let t0 = Instant::now();
    let mut cmd = provision_command(r, inventory, known_hosts, extra, agent);
    let out = cmd.output().expect("run provision");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "---- provision {extra:?} ({:.1}s) ----\n{text}",
        t0.elapsed().as_secs_f64()
    );
    Run {
        code: out.status.code().unwrap_or(-1),
        out: text,
    }
}

/// The recap row of `host`: (ok, changed, failed, unreachable, skipped).
fn recap(out: &str, host: &str) -> (usize, usize, usize, usize, usize) {
    let tail = out.split("RECAP\n").nth(1).expect("recap table");
    let line = tail
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no recap row for {host}:\n{tail}"));
    let n: Vec<usize> = line
        .split_whitespace()
        .skip(3)
        .map(|x| x.parse().expect("count"))
        .collect();
    (n[0], n[1], n[2], n[3], n[4])
}

fn double_log(r: &Running, host: &str) -> String {
    r.host(host)
        .expect("host")
        .read_file("/var/log/test-doubles.log")
        .unwrap_or_default()
}

fn install_doubles(r: &Running) {
    for h in r.hosts() {
        for (name, text) in provision::doubles::ALL {
            h.write_file(&format!("/usr/local/bin/{name}"), text, 0o755)
                .expect("install double");
        }
        for (name, text) in provision::doubles::UNITS {
            h.write_file(&format!("/etc/systemd/system/{name}"), text, 0o644)
                .expect("install unit double");
        }
        h.systemctl(&["daemon-reload"]).expect("daemon-reload");
    }
}

/// `systemctl ARGS` inside `host`, its stdout trimmed (also when it exits non-zero, as
/// `is-active` does for inactive units).
fn systemctl(r: &Running, host: &str, args: &[&str]) -> String {
    let out = r
        .host(host)
        .expect("host")
        .command("systemctl")
        .args(args)
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare lab with systemd hosts running only sshd (provision installs and starts the rest),
/// for inventory `text` written to /run/provision-e2e-ID/lab.toml (not under /tmp: lab hosts
/// overlay /tmp, and the state must be outside every overlay). Returns the guard, the running
/// lab and the inventory's path.
fn bare_lab(id: &str, text: &str) -> (Guard, Running, PathBuf) {
    let root = PathBuf::from(format!("/run/provision-e2e-{id}"));
    std::fs::create_dir_all(&root).expect("state root");
    let inv = root.join("lab.toml");
    std::fs::write(&inv, text).expect("write inventory");
    let lab = Lab::new(id, &root.join("state"), bin_dir()).expect("lab");
    let guard = Guard {
        lab: lab.clone(),
        root,
    };
    lab.up(
        &inv,
        &UpOptions {
            without: vec![Service::Httpd, Service::Proxy, Service::Vrrp],
            progress: false,
            bare: true,
            // Real servers boot systemd: provision's systemctl steps run against it.
            init: Some(lab::state::Init::Systemd),
            ..UpOptions::default()
        },
    )
    .expect("lab up");
    let r = lab.open().expect("lab open");
    (guard, r, inv)
}

/// An ssh-agent this test started, killed (by its pid) on drop.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A login user that is not root, authenticated by ssh-agent (the inventory names no key):
/// every command goes through `sudo -n`, uploads are staged as that user and installed by root.
#[test]
fn provision_as_a_sudo_user() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root (lab namespaces)");
    assert!(
        Path::new("/usr/bin/sudo").exists(),
        "sudo is missing on this machine: apt-get install sudo"
    );
    let id = format!("pvs{}", std::process::id());
    let text = std::fs::read_to_string(inventory()).expect("lab.toml");
    let text = text.replace("user = \"root\"", "user = \"deploy\"");
    assert!(text.contains("user = \"deploy\""));
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("key = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let (guard, r, inv) = bare_lab(&id, &text);
    let root = guard.root.clone();
    install_doubles(&r);
    let kh = root.join("known_hosts");
    std::fs::copy(r.lab.dir.known_hosts(), &kh).expect("known_hosts");
    let sock = root.join("agent.sock");
    let agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(r.lab.dir.ssh_key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .expect("ssh-add");
    assert!(added.status.success(), "{added:?}");
    let first = provision_with(&r, &inv, &kh, &["--hosts", "server4"], Some(&sock));
    assert_eq!(first.code, 0, "run as deploy failed");
    assert!(first.out.contains("connected as deploy"));
    assert!(recap(&first.out, "server4").1 > 0);
    let s4 = r.host("server4").expect("server4");
    assert_eq!(s4.read_file("/etc/hostname").as_deref(), Some("server4\n"));
    // Installed by root through sudo, not owned by the login user.
    let owner = s4
        .sh("stat -c %U /var/www/html/index.html /etc/hostname", &[])
        .expect("stat");
    assert_eq!(owner, "root\nroot\n");
    // Staged uploads went through a private directory that is gone afterwards.
    let left = s4.sh("ls -a /var/tmp", &[]).expect("ls");
    assert!(!left.contains("provision"), "{left}");
    let second = provision_with(&r, &inv, &kh, &["--hosts", "server4"], Some(&sock));
    assert_eq!(second.code, 0);
    assert_eq!(
        recap(&second.out, "server4").1,
        0,
        "not idempotent as deploy"
    );
    // Without the agent (and no key anywhere) the login is refused, with the reason.
    drop(agent);
    let noauth = provision_with(&r, &inv, &kh, &["--hosts", "server4"], Some(&sock));
    assert_ne!(noauth.code, 0);
    assert!(
        noauth
            .out
            .contains("authentication as deploy@172.16.249.202 failed (ssh-agent)"),
        "{}",
        noauth.out
    );
}

#[test]
fn provision_the_lab_over_ssh() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root (lab namespaces)");
    let bins = bin_dir();
    for b in ["proxy", "vrrp"] {
        assert!(
            bins.join(b).exists(),
            "{} missing: run `cargo build --bins` first",
            bins.join(b).display()
        );
    }
    let started = Instant::now();
    let id = format!("pv{}", std::process::id());
    // The repository's lab.toml plus a CentOS 7 vault repository (its own mirrors are gone).
    let text = std::fs::read_to_string(inventory()).expect("lab.toml");
    let text = format!("{text}\n[os]\nel7_repo_baseurl = \"https://vault.centos.org/7.9.2009\"\n");
    let (guard, r, inv) = bare_lab(&id, &text);
    let (lab, root) = (guard.lab.clone(), guard.root.clone());

    install_doubles(&r);
    // server2: the seed's CentOS 7, SELinux switched off in its config as the seed did.
    // /etc/os-release is a symlink into the machine's /usr on Debian: remove the link in the
    // overlay first so the write never follows it.
    let s2 = r.host("server2").expect("server2");
    s2.sh(
        "rm -f /etc/os-release && printf '%s' \"$1\" > /etc/os-release && mkdir -p /etc/selinux && printf 'SELINUX=disabled\\nSELINUXTYPE=targeted\\n' > /etc/selinux/config",
        &[provision::os::samples::CENTOS7],
    )
    .expect("centos personality");
    assert_eq!(
        s2.read_file("/etc/os-release").as_deref(),
        Some(provision::os::samples::CENTOS7)
    );

    // server1: Debian's installer left a DHCP stanza for ens33 in /etc/network/interfaces.
    let s1 = r.host("server1").expect("server1");
    s1.write_file(
        "/etc/network/interfaces",
        "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\nallow-hotplug ens33\niface ens33 inet dhcp\n",
        0o644,
    )
    .expect("interfaces");

    let kh = root.join("known_hosts");
    std::fs::copy(r.lab.dir.known_hosts(), &kh).expect("known_hosts");

    // Dry run: plans with diffs, nothing changes.
    let dry = provision(&r, &inv, &kh, &["--dry-run"]);
    assert_eq!(dry.code, 0, "dry run failed");
    assert!(dry.out.contains("would change"));
    assert!(dry.out.contains("+++ /etc/hostname"));
    assert!(dry.out.contains("CentOS Linux 7 (Core) (el7)"));
    assert!(dry.out.contains("end of life"));
    // vrrp.toml's diff is shown, its password is not.
    assert!(dry.out.contains("+++ /etc/vrrp/vrrp.toml"), "{}", dry.out);
    assert!(dry.out.contains("auth_pass = ********"), "{}", dry.out);
    assert!(!dry.out.contains("1111"), "{}", dry.out);
    assert!(r
        .host("server1")
        .unwrap()
        .read_file("/usr/local/bin/proxy")
        .is_none());

    // First run: everything changes, every host succeeds.
    let first = provision(&r, &inv, &kh, &[]);
    assert_eq!(first.code, 0, "first run failed");
    for h in ["server1", "server2", "server3", "server4"] {
        let (_, changed, failed, unreachable, _) = recap(&first.out, h);
        assert!(changed > 0, "{h} changed nothing on the first run");
        assert_eq!((failed, unreachable), (0, 0), "{h}");
    }
    // Backup first: server2's whole turn, VIP check included, before server1's first step.
    let pos = |needle: &str| {
        first
            .out
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the output:\n{}", first.out))
    };
    assert!(
        pos("[server2] vip check") < pos("[server1] proxy"),
        "backup first"
    );
    let log2 = double_log(&r, "server2");
    assert!(log2.contains("yum install -y chrony"), "{log2}");
    assert!(log2.contains("yum clean all"), "{log2}");
    assert!(s2
        .read_file("/etc/yum.repos.d/CentOS-Base.repo")
        .unwrap_or_default()
        .contains("baseurl=https://vault.centos.org/7.9.2009/os/$basearch/"));
    // The real firewalld (over D-Bus) holds the EL plan's rules.
    assert_eq!(
        systemctl(&r, "server2", &["is-active", "firewalld"]),
        "active"
    );
    let fw = s2
        .sh(
            "firewall-cmd --permanent --query-port=80/tcp; firewall-cmd --list-rich-rules",
            &[],
        )
        .expect("firewall-cmd");
    assert!(fw.starts_with("yes\n"), "{fw}");
    assert!(fw.contains("source address=\"172.16.249.101\""), "{fw}");
    assert!(fw.contains("protocol value=\"vrrp\""), "{fw}");
    assert!(log2.contains("setenforce 1"));
    assert!(log2.contains("network.service start"), "{log2}");
    assert!(s2
        .read_file("/etc/selinux/config")
        .unwrap()
        .contains("SELINUX=enforcing"));
    assert!(s2
        .read_file("/etc/sysconfig/network-scripts/ifcfg-ens33")
        .unwrap()
        .contains("IPADDR=172.16.249.102"));
    // Nothing but the configuration itself in the directories network scripts read whole.
    let scripts = s2
        .sh("ls -A /etc/sysconfig/network-scripts", &[])
        .expect("ls");
    assert_eq!(scripts, "ifcfg-ens33\n");
    let included = s1.sh("ls -A /etc/network/interfaces.d", &[]).expect("ls");
    assert_eq!(included, "ens33\n");
    let interfaces = s1.read_file("/etc/network/interfaces").unwrap();
    assert!(
        interfaces.contains("# provision (ens33 moved to interfaces.d): iface ens33 inet dhcp"),
        "{interfaces}"
    );
    assert!(
        interfaces.contains("\nauto lo\niface lo inet loopback\n"),
        "{interfaces}"
    );
    assert!(s1
        .read_file("/etc/network/interfaces.d/ens33")
        .unwrap()
        .contains("address 172.16.249.101/24"));
    // systemd runs the deployed units, enabled for the next boot, and chrony runs configured
    // but without setting the clock (the lab's hosts lack CAP_SYS_TIME).
    for h in ["server1", "server2"] {
        for unit in ["proxy", "vrrp", "chrony"] {
            assert_eq!(
                systemctl(&r, h, &["is-active", unit]),
                "active",
                "{h} {unit}"
            );
            assert_eq!(
                systemctl(&r, h, &["is-enabled", unit]),
                "enabled",
                "{h} {unit}"
            );
        }
    }
    let journal = s1
        .sh("journalctl -u proxy --no-pager", &[])
        .expect("journal");
    assert!(journal.contains("Started proxy.service"), "{journal}");
    // The lab sees the daemons (systemd's MainPID), and they run the deployed binaries with
    // the deployed configs.
    for svc in [Service::Proxy, Service::Vrrp] {
        let pid = s1
            .service_pid(svc)
            .unwrap_or_else(|| panic!("{svc} not running"));
        // service_pid is the machine's view of the pid.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            cmdline.starts_with(&format!("/usr/local/bin/{svc} --config /etc/")),
            "{cmdline}"
        );
    }
    // The VRRP password is root's alone.
    let vrrp_mode = s1
        .sh("stat -c '%a %U' /etc/vrrp/vrrp.toml", &[])
        .expect("stat");
    assert_eq!(vrrp_mode, "600 root\n");
    let nft = s1.sh("nft list table inet provision", &[]).expect("nft");
    assert!(nft.contains("policy drop"), "{nft}");

    // The lab's inventory is refused from the machine's own namespace (its addresses are not
    // routed here), pointing at `lab provision`, which runs it from the lab's client.
    let outside = Command::new(env!("CARGO_BIN_EXE_provision"))
        .arg(&inv)
        .arg("--dry-run")
        .output()
        .expect("provision outside the lab");
    let text = String::from_utf8_lossy(&outside.stderr);
    assert_eq!(outside.status.code(), Some(2), "{text}");
    assert!(text.contains("marked [lab]"), "{text}");
    assert!(text.contains("lab provision"), "{text}");
    let via_lab = Command::new(bins.join("lab"))
        .arg("--id")
        .arg(&id)
        .arg("--state-root")
        .arg(root.join("state"))
        .arg("--bin-dir")
        .arg(&bins)
        .args(["provision", "--dry-run", "--hosts", "server3"])
        .output()
        .expect("lab provision");
    let text = String::from_utf8_lossy(&via_lab.stdout);
    assert!(via_lab.status.success(), "{text}");
    assert!(text.contains("[server3] connected as root"), "{text}");

    // Second run: nothing to change.
    let second = provision(&r, &inv, &kh, &[]);
    assert_eq!(second.code, 0, "second run failed");
    for h in ["server1", "server2", "server3", "server4"] {
        let (ok, changed, failed, unreachable, _) = recap(&second.out, h);
        assert_eq!(
            (changed, failed, unreachable),
            (0, 0, 0),
            "{h} not idempotent"
        );
        assert!(ok > 0);
    }

    // The VIP alternates between the backends, through the firewalls. Each proxy worker has
    // its own round robin (as nginx's workers do), so alternation is checked per worker:
    // requests on one keep-alive connection are all served by one worker, and must alternate
    // strictly.
    let vip = format!("http://{}/", r.inventory.network.vips[0]);
    let urls: Vec<&str> = (0..8).map(|_| vip.as_str()).collect();
    let out = Command::new("ip")
        .args(["netns", "exec", &r.plan.client.ns, "curl", "-sS", "-m", "5"])
        .args(&urls)
        .output()
        .expect("curl");
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(answers.len(), 8, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| a == "HTTP WEB NODE 01" || a == "HTTP WEB NODE 02"),
        "{answers:?}"
    );
    assert!(
        answers.windows(2).all(|w| w[0] != w[1]),
        "no strict alternation on one connection: {answers:?}"
    );

    // The backup's proxy passes --check but does not serve (another process holds its admin
    // port and answers 404): the backup fails its turn, and the master is not touched.
    r.stop("server2", Some(Service::Proxy)).expect("stop proxy");
    let squatter = s2
        .sh(
            "setsid python3 -m http.server --bind 127.0.0.1 9900 --directory /etc/ssh >/dev/null 2>&1 & echo $!",
            &[],
        )
        .expect("squatter");
    let squatter = squatter.trim().to_string();
    // The master's units as systemd sees them: a stop, start or restart changes the main pid
    // and the time the unit last became active.
    let s1 = r.host("server1").expect("server1");
    let units = || {
        s1.sh(
            "systemctl show -p MainPID -p ActiveEnterTimestampMonotonic -p NRestarts proxy vrrp",
            &[],
        )
        .expect("systemctl show")
    };
    let s1_units = units();
    let stopped = provision(&r, &inv, &kh, &["--connect-timeout", "2"]);
    assert_ne!(stopped.code, 0);
    assert!(
        stopped.out.contains("FAILED host server2, step \"proxy\""),
        "{}",
        stopped.out
    );
    assert!(
        stopped.out.contains(
            "SKIPPED server1: balancer rollout stopped before its turn (server2 failed: step \"proxy\" failed)"
        ),
        "{}",
        stopped.out
    );
    assert_eq!(recap(&stopped.out, "server1").4, 1, "server1 not skipped");
    assert!(!stopped.out.contains("[server1] proxy"), "{}", stopped.out);
    assert_eq!(units(), s1_units, "the master's services were touched");
    // The backends are not part of the rollout: they finish.
    assert_eq!(recap(&stopped.out, "server3").2, 0);
    s2.sh("kill \"$1\"", &[&squatter]).expect("kill squatter");
    let healed = provision(&r, &inv, &kh, &[]);
    assert_eq!(healed.code, 0, "did not recover");

    // VRRP through server1's real nftables in the other direction: while server1 is master
    // only it advertises. When its proxy fails, server1 goes to FAULT (still listening) and
    // server2 takes over and advertises: server1 (policy drop) must let those adverts in, or
    // it could not tell that a master exists. (A host whose vrrp is stopped has left the VRRP
    // group: its kernel drops the adverts before the firewall sees them.)
    let vrrp_in = || {
        let t = s1.sh("nft list table inet provision", &[]).expect("nft");
        let line = t
            .lines()
            .find(|l| l.contains("ip protocol vrrp") || l.contains("ip protocol 112"))
            .unwrap_or_else(|| panic!("no VRRP rule:\n{t}"))
            .to_string();
        let n = line
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok());
        n.unwrap_or_else(|| panic!("no counter: {line}"))
    };
    let quiet = vrrp_in();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        vrrp_in(),
        quiet,
        "server2 advertises while server1 is master"
    );
    s1.sh("systemctl stop proxy", &[]).expect("stop proxy");
    wait_for("server2 takes the VIPs", 10, || {
        r.vip_holders()
            .iter()
            .all(|(_, h)| h.len() == 1 && h[0] == "server2")
    });
    let before = vrrp_in();
    std::thread::sleep(Duration::from_secs(3));
    let heard = vrrp_in() - before;
    assert!(
        heard >= 2,
        "server1 let {heard} of server2's adverts in over 3 s"
    );
    s1.sh("systemctl start proxy", &[]).expect("start proxy");
    wait_for("server1 holds the VIPs again", 15, || {
        r.vip_holders()
            .iter()
            .all(|(_, h)| h.len() == 1 && h[0] == "server1")
    });

    // The commit-confirmed address change, rolled back for real: once server4 has applied
    // its new file, the client's new SSH connections to it are dropped (nft in the client
    // namespace), so provision cannot confirm; the host's own deadline passes, it restores the
    // old file and applies it again, and provision, reaching it again, reports what it did.
    let s4 = r.host("server4").expect("server4");
    let conf = "/etc/network/interfaces.d/ens33";
    let edited = format!("{}# edited by hand\n", s4.read_file(conf).expect("ens33"));
    s4.write_file(conf, &edited, 0o644).expect("edit");
    // The host's own record of the change (provision's markers in its /run): the apply's
    // exit status, then the re-apply's after a rollback. Cleared first: the first run above
    // changed this address too.
    let markers = "/run/provision-applied_etc_network_interfaces.d_ens33 \
                   /run/provision-restored_etc_network_interfaces.d_ens33";
    s4.sh(&format!("rm -f {markers}"), &[])
        .expect("clear markers");
    let applies = |_: &Running| {
        ["applied", "restored"]
            .iter()
            .filter(|m| {
                s4.read_file(&format!(
                    "/run/provision-{m}_etc_network_interfaces.d_ens33"
                ))
                .is_some()
            })
            .count()
    };
    let applied_before = applies(&r);
    let child = provision_command(
        &r,
        &inv,
        &kh,
        &[
            "--hosts",
            "server4",
            "--confirm-secs",
            "20",
            "--connect-timeout",
            "2",
        ],
        None,
    )
    .spawn()
    .expect("spawn provision");
    let mut child = KillOnDrop(Some(child));
    wait_for("server4 applies its new address", 60, || {
        applies(&r) > applied_before
    });
    let block = ClientBlock::new(&r, "172.16.249.202");
    wait_for("server4 rolls back by itself", 40, || {
        applies(&r) >= applied_before + 2
    });
    drop(block);
    let out = child
        .0
        .take()
        .expect("child")
        .wait_with_output()
        .expect("provision");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("---- provision rollback ----\n{text}");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text.contains("FAILED host server4, step \"static address\""),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "the host restored the previous {conf} and re-applied it (exit 0)"
        )),
        "{text}"
    );
    assert_eq!(s4.read_file(conf).as_deref(), Some(edited.as_str()));

    // A failing remote command: its host, step, command, exit code and stderr.
    s2.sh(
        "echo 'No package chrony available.' > /var/lib/yum-double/fail && sed -i '/^chrony$/d' /var/lib/yum-double/installed",
        &[],
    )
    .expect("break yum");
    let bad = provision(&r, &inv, &kh, &["--hosts", "server2"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.out.contains("FAILED host server2, step \"time\""),
        "{}",
        bad.out
    );
    assert!(bad.out.contains("command: yum install -y 'chrony'"));
    assert!(bad.out.contains("exit code: 1"));
    assert!(bad.out.contains("No package chrony available."));
    assert_eq!(recap(&bad.out, "server2").2, 1);
    s2.sh("rm -f /var/lib/yum-double/fail", &[])
        .expect("fix yum");

    // A command that hangs is cut off by the per-command timeout and reported as such.
    s2.write_file(
        "/usr/local/bin/getenforce",
        "#!/bin/sh\n# TEST DOUBLE that hangs (per-command timeout test)\nsleep 30\n",
        0o755,
    )
    .expect("hanging getenforce");
    let hung = provision(
        &r,
        &inv,
        &kh,
        &["--hosts", "server2", "--command-timeout", "2"],
    );
    s2.write_file(
        "/usr/local/bin/getenforce",
        provision::doubles::ALL
            .iter()
            .find(|(n, _)| *n == "getenforce")
            .map(|(_, t)| *t)
            .unwrap_or_default(),
        0o755,
    )
    .expect("restore getenforce");
    assert_ne!(hung.code, 0);
    assert!(
        hung.out.contains("FAILED host server2, step \"selinux\""),
        "{}",
        hung.out
    );
    assert!(
        hung.out.contains("command timed out after 2s"),
        "{}",
        hung.out
    );
    assert!(hung.out.contains("getenforce"), "{}", hung.out);

    // A host whose sshd is stopped (connection refused) and one whose link is cut (connect
    // timeout) are unreachable; the others finish.
    r.stop("server4", Some(Service::Sshd)).expect("stop sshd");
    r.set_link("server3", false).expect("cut server3");
    let down = provision(&r, &inv, &kh, &["--connect-timeout", "2"]);
    r.set_link("server3", true).expect("heal server3");
    assert_ne!(down.code, 0);
    assert_eq!(
        recap(&down.out, "server4").3,
        1,
        "server4 should be unreachable"
    );
    assert_eq!(
        recap(&down.out, "server3").3,
        1,
        "server3 should be unreachable"
    );
    let s1 = recap(&down.out, "server1");
    assert_eq!((s1.1, s1.2, s1.3), (0, 0, 0));
    assert_eq!(recap(&down.out, "server2").2, 0);
    assert!(
        down.out.contains(
            "UNREACHABLE server4: cannot connect to 172.16.249.202:22: Connection refused"
        ),
        "{}",
        down.out
    );
    assert!(
        down.out
            .contains("UNREACHABLE server3: cannot connect to 172.16.249.201:22"),
        "{}",
        down.out
    );

    // A host whose key changed is refused, with the new fingerprint.
    let s3 = r.host("server3").unwrap();
    s3.sh(
        "rm -f /etc/ssh/ssh_host_*key* && ssh-keygen -A >/dev/null",
        &[],
    )
    .expect("new host keys");
    let changed = provision(&r, &inv, &kh, &["--hosts", "server3"]);
    assert_ne!(changed.code, 0);
    assert!(changed.out.contains("HOST KEY CHANGED"), "{}", changed.out);
    // The fingerprint printed is the one OpenSSH shows for the new key.
    let fp = s3
        .sh("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub", &[])
        .expect("ssh-keygen -lf");
    let fp = fp
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string();
    assert!(fp.starts_with("SHA256:"), "{fp}");
    assert!(changed.out.contains(&fp), "{fp} not in:\n{}", changed.out);
    assert_eq!(recap(&changed.out, "server3").3, 1);
    // --accept-new-host-keys does not accept a changed key.
    let still = provision(
        &r,
        &inv,
        &kh,
        &["--hosts", "server3", "--accept-new-host-keys"],
    );
    assert!(still.out.contains("HOST KEY CHANGED"));

    // Unknown hosts are refused unless --accept-new-host-keys, which records them.
    let empty = root.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let unknown = provision(&r, &inv, &empty, &["--hosts", "server1", "--dry-run"]);
    assert_ne!(unknown.code, 0);
    assert!(unknown.out.contains("is not in"), "{}", unknown.out);
    let accept = provision(
        &r,
        &inv,
        &empty,
        &["--hosts", "server1", "--accept-new-host-keys", "--dry-run"],
    );
    assert_eq!(accept.code, 0);
    assert!(std::fs::read_to_string(&empty)
        .unwrap()
        .starts_with("172.16.249.101 ssh-"));

    drop(guard);
    assert!(!lab.dir.exists(), "lab state left behind");
    let elapsed = started.elapsed();
    println!("e2e took {:.1}s", elapsed.as_secs_f64());
    // Measured 183.7 s on 2 cores shared with other builds (20 s of it the address rollback's
    // confirm time); bound with about 30 % margin.
    assert!(elapsed < Duration::from_secs(240), "took {elapsed:?}");
}

/// The router of anycast mode: BIRD 2 in the lab's client namespace, one eBGP session with
/// BFD per balancer, the routes into the client's kernel table (several nexthops: ECMP).
fn anycast_router_conf(router: &str, balancers: &[String]) -> String {
    let mut c = format!(
        "log stderr all;\nrouter id {router};\nprotocol device {{ scan time 10; }}\n\
         protocol bfd {{ interface \"*\" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }}; }}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n"
    );
    for (i, b) in balancers.iter().enumerate() {
        c.push_str(&format!(
            "protocol bgp b{i} {{ local {router} as 65000; neighbor {b} as 65001; bfd on;\n\
             connect delay time 1; connect retry time 1; error wait time 1, 5; ipv4 {{ import all; export none; }}; }}\n"
        ));
    }
    c
}

/// Anycast mode ([bgp] mode = "anycast") deployed to the lab's Debian hosts: BIRD on both
/// balancers peers with a BIRD router in the client namespace, the router's table has the VIP
/// through both balancers, and a second run changes nothing.
#[test]
fn provision_anycast_mode_in_the_lab_idempotently() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root (lab namespaces)");
    let id = format!("pa{}", std::process::id());
    let text = std::fs::read_to_string(inventory()).expect("lab.toml");
    let parsed = provision::inventory::Inventory::parse(&text, "lab.toml").expect("lab.toml");
    let router = lab::topology::client_address(&parsed).expect("client address");
    let text = format!("{text}\n[bgp]\nmode = \"anycast\"\nlocal_asn = 65001\nrouter = \"{router}\"\nrouter_asn = 65000\n");
    let (guard, r, inv) = bare_lab(&id, &text);
    let root = guard.root.clone();
    let client = r.plan.client.ns.clone();
    let balancers: Vec<String> = parsed.balancers().map(|b| b.address.to_string()).collect();
    let conf = root.join("router.conf");
    std::fs::write(&conf, anycast_router_conf(&router.to_string(), &balancers)).expect("router");
    let sock = root.join("router.sock");
    let log = std::fs::File::create(root.join("router.log")).expect("router log");
    let bird = Command::new("ip")
        .args(["netns", "exec", &client, "bird", "-f", "-c"])
        .arg(&conf)
        .arg("-s")
        .arg(&sock)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("bird (package bird2) as the router");
    let _router = KillOnDrop(Some(bird));
    let kh = root.join("known_hosts");
    std::fs::copy(r.lab.dir.known_hosts(), &kh).expect("known_hosts");

    let first = provision(&r, &inv, &kh, &[]);
    assert_eq!(first.code, 0, "first run failed:\n{}", first.out);
    for h in ["server1", "server2", "server3", "server4"] {
        let (_, changed, failed, unreachable, _) = recap(&first.out, h);
        assert!(changed > 0, "{h} changed nothing on the first run");
        assert_eq!((failed, unreachable), (0, 0), "{h}");
    }
    for h in ["server1", "server2"] {
        assert_eq!(systemctl(&r, h, &["is-active", "bird"]), "active", "{h}");
        assert_eq!(systemctl(&r, h, &["is-enabled", "bird"]), "enabled", "{h}");
    }
    // The router reaches the VIP through both balancers.
    let vip = format!("{}/32", parsed.network.vips[0]);
    wait_for("ECMP route through both balancers", 30, || {
        let out = Command::new("ip")
            .args(["-n", &client, "route", "show", &vip])
            .output()
            .expect("ip route");
        let text = String::from_utf8_lossy(&out.stdout);
        balancers
            .iter()
            .all(|b| text.contains(&format!("via {b} ")))
    });

    let second = provision(&r, &inv, &kh, &[]);
    assert_eq!(second.code, 0, "second run failed:\n{}", second.out);
    for h in ["server1", "server2", "server3", "server4"] {
        let (_, changed, failed, unreachable, _) = recap(&second.out, h);
        assert_eq!(
            (changed, failed, unreachable),
            (0, 0, 0),
            "{h} not idempotent:\n{}",
            second.out
        );
    }
    drop(guard);
}
