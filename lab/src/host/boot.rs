//! What a systemd host's /etc says before its systemd starts: its own name and machine id, the
//! target it boots (`lab.target`: the basic system, sshd and whatever is enabled for
//! multi-user), and none of the machine's own enabled units.
//!
//! The hosts' /etc is an overlay over the machine's, so without this every host would boot
//! what the machine has enabled: gettys on the machine's terminals, timesyncd setting the
//! machine's clock, nginx/keepalived/PostgreSQL, apt timers. Each machine-enabled unit is
//! disabled in the overlay (its wants link whited out) and masked, except the units the lab
//! or `provision` start themselves, which stay installed but disabled, as on a fresh server.

use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};

/// The target a systemd host boots instead of the machine's default.
pub const TARGET: &str = "lab.target";

/// Units a host must never run whether or not the machine enables them: logins on terminals
/// the host does not own, the clock setter (the host shares the machine's clock), and the
/// password-prompt watchers for consoles the host does not have. Those two `.path` units each
/// hold an inotify instance, and every host's systemd counts against the machine's per-user
/// limit (fs.inotify.max_user_instances, 128 by default): with several labs booting at once
/// (parallel e2e tests) they were the units that failed first, and a host that boots degraded
/// fails `lab up`.
pub const ALWAYS_MASKED: &[&str] = &[
    "getty@.service",
    "serial-getty@.service",
    "console-getty.service",
    "container-getty@.service",
    "getty.target",
    "systemd-timesyncd.service",
    "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path",
];

/// Units that the lab (sshd) or `provision` (Apache on backends, chrony, firewalld, BIRD on
/// anycast balancers) start on purpose: disabled like the rest, but not masked, so `systemctl
/// enable` works on them.
pub const LEFT_FOR_PROVISION: &[&str] = &[
    "ssh.service",
    "sshd.service",
    "apache2.service",
    "httpd.service",
    "chrony.service",
    "chronyd.service",
    "firewalld.service",
    "networking.service",
    "nftables.service",
    "bird.service",
];

/// chrony's unit is skipped where CAP_SYS_TIME is missing (ConditionCapability). Lab hosts
/// share the machine's clock and never have it, so chronyd runs with -x instead: it
/// synchronises its view of time and serves it, but never adjusts the clock.
pub const CHRONY_DROPIN: &str = "/etc/systemd/system/chrony.service.d/lab.conf";

pub fn chrony_dropin() -> &'static str {
    "# lab: hosts share the machine's clock and have no CAP_SYS_TIME: chronyd runs without\n\
     # clock control (-x) instead of being skipped.\n\
     [Unit]\n\
     ConditionCapability=\n\
     [Service]\n\
     ExecStart=\n\
     ExecStart=!/usr/sbin/chronyd $DAEMON_OPTS -x\n"
}

/// The boot target: basic system, sshd, and multi-user.target (which pulls in whatever is
/// enabled there: after `provision`, proxy and vrrp).
pub fn target_unit() -> String {
    format!(
        "# lab: what a lab host boots (systemd --unit={TARGET})\n\
         [Unit]\n\
         Description=lab host\n\
         Requires=basic.target\n\
         Wants=multi-user.target ssh.service\n\
         After=basic.target multi-user.target ssh.service\n\
         AllowIsolate=yes\n"
    )
}

/// What to do to the machine's enablement links (paths relative to /etc/systemd/system, as
/// "multi-user.target.wants/nginx.service"): links to remove, and unit names to mask.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitPlan {
    pub unlink: Vec<String>,
    pub mask: Vec<String>,
}

/// Pure: from the machine's `*.wants`/`*.requires` links to the plan.
pub fn unit_plan(links: &[String]) -> UnitPlan {
    let mut plan = UnitPlan {
        unlink: links.to_vec(),
        mask: ALWAYS_MASKED.iter().map(|s| s.to_string()).collect(),
    };
    for link in links {
        let Some(unit) = link.rsplit('/').next() else {
            continue;
        };
        // getty@tty1.service is an instance: mask its template.
        let unit = match unit.split_once('@') {
            Some((base, rest)) => format!("{base}@.{}", rest.rsplit('.').next().unwrap_or("")),
            None => unit.to_string(),
        };
        if !LEFT_FOR_PROVISION.contains(&unit.as_str()) && !plan.mask.contains(&unit) {
            plan.mask.push(unit);
        }
    }
    plan
}

/// The machine's enablement links under `etc_systemd` (normally /etc/systemd/system).
pub fn machine_links(etc_systemd: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(etc_systemd) else {
        return Vec::new();
    };
    let mut links = Vec::new();
    for e in dir.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".wants") || name.ends_with(".requires")) {
            continue;
        }
        if let Ok(sub) = std::fs::read_dir(e.path()) {
            links.extend(
                sub.filter_map(|u| u.ok())
                    .map(|u| format!("{name}/{}", u.file_name().to_string_lossy())),
            );
        }
    }
    links.sort();
    links
}

/// Applies `plan` under `etc_systemd` of the host (as seen from outside: the keeper's root).
/// Removing a link there whites it out in the host's overlay; the machine's /etc is untouched.
pub fn apply(etc_systemd: &Path, plan: &UnitPlan) -> Result<()> {
    for link in &plan.unlink {
        let p = etc_systemd.join(link);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io(format!("disable {}", p.display()), e)),
        }
    }
    for unit in &plan.mask {
        let p = etc_systemd.join(unit);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink("/dev/null", &p)
            .map_err(|e| LabError::io(format!("mask {}", p.display()), e))?;
    }
    std::fs::write(etc_systemd.join(TARGET), target_unit())
        .map_err(|e| LabError::io(format!("write {TARGET}"), e))
}

/// State directories of the units we deploy, and systemd's private ones for DynamicUser
/// services. The host's /var is an overlay over the machine's, so anything the machine has
/// there (a proxy run by hand or a test writing its default client_body_temp_path) would show
/// through; systemd then refuses to start the unit ("Found pre-existing public CacheDirectory=
/// ... migrating": a rename across overlay layers fails with EXDEV). A host starts as a fresh
/// server: these are whited out in its overlay, the machine's files are left alone.
pub const FRESH_STATE: &[&str] = &[
    "/var/cache/proxy",
    "/var/log/proxy",
    "/var/lib/proxy",
    "/var/cache/private",
    "/var/log/private",
    "/var/lib/private",
    "/var/lib/vrrp",
];

/// Removes [`FRESH_STATE`] under `root` (the host's root as seen from outside).
pub fn fresh_state(root: &Path) -> Result<()> {
    for dir in FRESH_STATE {
        let p = root.join(dir.trim_start_matches('/'));
        match std::fs::remove_dir_all(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io(format!("clear {}", p.display()), e)),
        }
    }
    Ok(())
}

/// The host's /etc/network/interfaces: what Debian's installer leaves on a server with a
/// static address. The host's own ifupdown (networking.service) configures the address at boot
/// and so knows it as its own: `systemctl restart networking` behaves as on a real server.
pub const INTERFACES: &str = "/etc/network/interfaces";

/// `gateway`: the default route (the ECMP topology's router; none on the flat one).
pub fn interfaces(
    iface: &str,
    address: std::net::Ipv4Addr,
    prefix: u8,
    gateway: Option<std::net::Ipv4Addr>,
) -> String {
    let gateway = gateway
        .map(|g| format!("    gateway {g}\n"))
        .unwrap_or_default();
    format!(
        "# lab: this host's address, as the installer leaves a static one\n\
         source /etc/network/interfaces.d/*\n\n\
         auto lo\niface lo inet loopback\n\n\
         auto {iface}\niface {iface} inet static\n    address {address}/{prefix}\n{gateway}"
    )
}

/// networking.service enabled in the host (the machine's link to it was disabled with the
/// rest): it brings the address up at every boot.
pub fn enable_networking(etc_systemd: &Path) -> Result<()> {
    let wants = etc_systemd.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants)
        .map_err(|e| LabError::io(format!("create {}", wants.display()), e))?;
    let link = wants.join("networking.service");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/lib/systemd/system/networking.service", &link)
        .map_err(|e| LabError::io(format!("enable {}", link.display()), e))
}

/// /etc/hosts with the host's own name on 127.0.1.1, as Debian's installer writes it: `sudo`
/// and others look their host's name up, and the lab has no DNS server to ask (lookups would
/// wait out their timeouts once a default route exists).
pub fn etc_hosts(current: &str, name: &str) -> String {
    let known = current
        .lines()
        .any(|l| l.split_whitespace().skip(1).any(|n| n == name));
    if known {
        return current.to_string();
    }
    let mut s = current.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&format!("127.0.1.1\t{name}\n"));
    s
}

/// A fresh machine id (32 hex digits): journald and D-Bus key on it, so hosts must not share
/// the machine's.
pub fn new_machine_id() -> Result<String> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| LabError::io("read /proc/sys/kernel/random/uuid", e))?;
    Ok(uuid.trim().replace('-', ""))
}

/// sshd's listen address and port, as a drop-in (Debian's sshd_config includes
/// sshd_config.d/*.conf), so the unit's plain `sshd -D` listens where the inventory says.
pub fn sshd_dropin(address: std::net::Ipv4Addr, port: u16) -> String {
    format!("# lab: this host's address only\nListenAddress {address}\nPort {port}\n")
}

/// Where the drop-in goes.
pub const SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/lab.conf";

/// `/etc/systemd/system` under a root path.
pub fn etc_systemd(root: &Path) -> PathBuf {
    root.join("etc/systemd/system")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_with_and_without_gateway() {
        let a = "172.16.249.101".parse().unwrap();
        let flat = interfaces("ens33", a, 24, None);
        assert!(flat.ends_with("    address 172.16.249.101/24\n"), "{flat}");
        assert!(!flat.contains("gateway"));
        let ecmp = interfaces("ens33", a, 24, Some("172.16.249.2".parse().unwrap()));
        assert!(ecmp.ends_with("/24\n    gateway 172.16.249.2\n"), "{ecmp}");
    }

    fn links(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn machine_units_are_disabled_and_masked_but_provisioned_ones_only_disabled() {
        let l = links(&[
            "getty.target.wants/getty@tty1.service",
            "multi-user.target.wants/apache2.service",
            "multi-user.target.wants/nginx.service",
            "multi-user.target.wants/ssh.service",
            "sysinit.target.wants/systemd-timesyncd.service",
            "timers.target.wants/apt-daily.timer",
        ]);
        let plan = unit_plan(&l);
        assert_eq!(plan.unlink, l);
        for m in [
            "nginx.service",
            "apt-daily.timer",
            "getty@.service",
            "systemd-ask-password-wall.path",
        ] {
            assert!(plan.mask.contains(&m.to_string()), "{m} masked");
        }
        for keep in ["apache2.service", "ssh.service"] {
            assert!(!plan.mask.contains(&keep.to_string()), "{keep} not masked");
        }
        // Masked once each, and the clock setter even when the machine does not enable it.
        let empty = unit_plan(&[]);
        assert!(empty
            .mask
            .contains(&"systemd-timesyncd.service".to_string()));
        let mut sorted = plan.mask.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), plan.mask.len());
    }

    #[test]
    fn own_name_in_etc_hosts_once() {
        let h = etc_hosts("127.0.0.1 localhost\n127.0.0.1 vm", "server4");
        assert_eq!(h, "127.0.0.1 localhost\n127.0.0.1 vm\n127.0.1.1\tserver4\n");
        assert_eq!(etc_hosts(&h, "server4"), h);
        assert_eq!(etc_hosts("", "s"), "127.0.1.1\ts\n");
    }

    #[test]
    fn fresh_state_removes_what_the_machine_left_in_var() {
        let root = std::env::temp_dir().join(format!("lab-fresh-{}", std::process::id()));
        let temp = root.join("var/cache/proxy/client_body_temp");
        std::fs::create_dir_all(&temp).unwrap();
        std::fs::create_dir_all(root.join("var/cache/apt")).unwrap();
        fresh_state(&root).unwrap();
        assert!(!root.join("var/cache/proxy").exists());
        assert!(root.join("var/cache/apt").exists(), "other state stays");
        fresh_state(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn apply_masks_unlinks_and_writes_the_target() {
        let root = std::env::temp_dir().join(format!("lab-boot-test-{}", std::process::id()));
        let sys = etc_systemd(&root);
        std::fs::create_dir_all(sys.join("multi-user.target.wants")).unwrap();
        std::fs::write(sys.join("multi-user.target.wants/nginx.service"), "").unwrap();
        let plan = unit_plan(&machine_links(&sys));
        assert_eq!(plan.unlink, ["multi-user.target.wants/nginx.service"]);
        apply(&sys, &plan).unwrap();
        assert!(!sys.join("multi-user.target.wants/nginx.service").exists());
        assert_eq!(
            std::fs::read_link(sys.join("nginx.service")).unwrap(),
            PathBuf::from("/dev/null")
        );
        assert!(std::fs::read_to_string(sys.join(TARGET))
            .unwrap()
            .contains("Wants=multi-user.target ssh.service"));
        // Idempotent (a host that boots again).
        apply(&sys, &plan).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(new_machine_id().unwrap().len(), 32);
    }
}
