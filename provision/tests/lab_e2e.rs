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
    let mut cmd = Command::new("timeout");
    cmd.args(["150", "ip", "netns", "exec", &r.plan.client.ns])
        .arg(env!("CARGO_BIN_EXE_provision"))
        .arg(inventory)
        .arg("--known-hosts")
        .arg(known_hosts)
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(extra)
        .env_remove("SSH_AUTH_SOCK");
    match agent {
        Some(sock) => cmd.env("SSH_AUTH_SOCK", sock),
        None => cmd.arg("--key").arg(r.lab.dir.ssh_key()),
    };
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

/// The recap row of `host`: (ok, changed, failed, unreachable).
fn recap(out: &str, host: &str) -> (usize, usize, usize, usize) {
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
    (n[0], n[1], n[2], n[3])
}

fn curl_from_client(r: &Running, url: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &r.plan.client.ns,
            "curl",
            "-sS",
            "-m",
            "2",
            url,
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
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
    let root = PathBuf::from(format!("/run/provision-e2e-{id}"));
    std::fs::create_dir_all(&root).expect("state root");
    let inv = root.join("lab.toml");
    let text = std::fs::read_to_string(inventory()).expect("lab.toml");
    let text = text.replace("user = \"root\"", "user = \"deploy\"");
    assert!(text.contains("user = \"deploy\""));
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("key = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&inv, text).expect("write inventory");
    let lab = Lab::new(&id, &root.join("state"), bin_dir()).expect("lab");
    let _guard = Guard {
        lab: lab.clone(),
        root: root.clone(),
    };
    lab.up(
        &inv,
        &UpOptions {
            without: vec![Service::Httpd, Service::Proxy, Service::Vrrp],
            progress: false,
            bare: true,
            // Real servers boot systemd: provision's systemctl steps run against it.
            init: Some(lab::state::Init::Systemd),
        },
    )
    .expect("lab up");
    let r = lab.open().expect("lab open");
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
    // Not under /tmp: lab hosts overlay /tmp, and the state must be outside every overlay.
    let root = PathBuf::from(format!("/run/provision-e2e-{id}"));
    // The seed's lab.toml plus a CentOS 7 vault repository (the seed's step 2 swapped in a
    // mirror by hand).
    std::fs::create_dir_all(&root).expect("state root");
    let inv = root.join("lab.toml");
    let text = std::fs::read_to_string(inventory()).expect("lab.toml");
    std::fs::write(
        &inv,
        format!("{text}\n[os]\nel7_repo_baseurl = \"https://vault.centos.org/7.9.2009\"\n"),
    )
    .expect("inventory");
    let lab = Lab::new(&id, &root.join("state"), bins.clone()).expect("lab");
    let guard = Guard {
        lab: lab.clone(),
        root: root.clone(),
    };
    // Only sshd: provision installs and starts the rest.
    lab.up(
        &inv,
        &UpOptions {
            without: vec![Service::Httpd, Service::Proxy, Service::Vrrp],
            progress: false,
            bare: true,
            // Real servers boot systemd: provision's systemctl steps run against it.
            init: Some(lab::state::Init::Systemd),
        },
    )
    .expect("lab up");
    let r = lab.open().expect("lab open");

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
    assert!(r
        .host("server1")
        .unwrap()
        .read_file("/usr/local/bin/proxy")
        .is_none());

    // First run: everything changes, every host succeeds.
    let first = provision(&r, &inv, &kh, &[]);
    assert_eq!(first.code, 0, "first run failed");
    for h in ["server1", "server2", "server3", "server4"] {
        let (_, changed, failed, unreachable) = recap(&first.out, h);
        assert!(changed > 0, "{h} changed nothing on the first run");
        assert_eq!((failed, unreachable), (0, 0), "{h}");
    }
    // Backup first: server2's restart comes before server1's.
    let pos = |needle: &str| first.out.find(needle).unwrap_or(usize::MAX);
    assert!(
        pos("[server2] proxy") < pos("[server1] proxy"),
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
    let nft = s1.sh("nft list table inet provision", &[]).expect("nft");
    assert!(nft.contains("policy drop"), "{nft}");

    // Second run: nothing to change.
    let second = provision(&r, &inv, &kh, &[]);
    assert_eq!(second.code, 0, "second run failed");
    for h in ["server1", "server2", "server3", "server4"] {
        let (ok, changed, failed, unreachable) = recap(&second.out, h);
        assert_eq!(
            (changed, failed, unreachable),
            (0, 0, 0),
            "{h} not idempotent"
        );
        assert!(ok > 0);
    }

    // The VIP alternates between the backends, through the firewalls.
    let vip = format!("http://{}/", r.inventory.network.vips[0]);
    // Each proxy worker (one per core) has its own smooth round robin, as nginx's workers
    // do: across connections a page may repeat once per worker, never more.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let answers: Vec<String> = (0..8).map(|_| curl_from_client(&r, &vip)).collect();
    assert!(
        answers
            .iter()
            .all(|a| a == "HTTP WEB NODE 01" || a == "HTTP WEB NODE 02"),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|a| a == "HTTP WEB NODE 01"),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|a| a == "HTTP WEB NODE 02"),
        "{answers:?}"
    );
    let longest_run = answers
        .chunk_by(|a, b| a == b)
        .map(<[String]>::len)
        .max()
        .unwrap_or(0);
    assert!(longest_run <= workers, "no alternation: {answers:?}");

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
    assert!(bad.out.contains("command: yum install -y chrony"));
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
    assert!(elapsed < Duration::from_secs(180), "took {elapsed:?}");
}
