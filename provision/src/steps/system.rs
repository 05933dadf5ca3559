//! Hostname, package repositories, time, firewall and SELinux.

use std::fmt::Write as _;

use crate::check::Check;
use crate::inventory::{Host, Inventory, Role};
use crate::os::Family;
use crate::plan::Step;
use crate::quote::shell_quote;

/// `install PKG` unless installed.
pub(super) fn package(step: Step, family: Family, pkg: &str) -> Step {
    step.ensure(
        &format!("package {pkg} installed"),
        family.package_installed(pkg),
        &family.install_command(pkg),
    )
}

/// Enabled at boot and running (`enable --now` is missing from CentOS 7's systemd 219).
pub(super) fn service_running(step: Step, unit: &str) -> Step {
    step.ensure(
        &format!("service {unit} enabled"),
        Check::UnitEnabled(unit.to_string()),
        &format!("systemctl enable {}", shell_quote(unit)),
    )
    .ensure(
        &format!("service {unit} running"),
        Check::UnitActive(unit.to_string()),
        &format!("systemctl start {}", shell_quote(unit)),
    )
}

pub(super) fn hostname(host: &Host) -> Step {
    let name = &host.name;
    Step::new("hostname")
        .file("/etc/hostname", format!("{name}\n"), 0o644)
        .ensure(
            &format!("running hostname is {name}"),
            Check::Hostname(name.clone()),
            &format!("hostname {}", shell_quote(name)),
        )
}

/// CentOS 7's mirrors are gone since its end of life: point base/updates/extras at a vault or
/// mirror, or `yum` fails on every host.
pub(super) fn el7_repos(baseurl: &str) -> Step {
    let base = baseurl.trim_end_matches('/');
    let mut repo = String::from(
        "# Managed by provision: CentOS 7 is end of life; packages come from this vault/mirror.\n",
    );
    for (id, dir) in [("base", "os"), ("updates", "updates"), ("extras", "extras")] {
        let _ = write!(
            repo,
            "[{id}]\nname=CentOS-7 - {id}\nbaseurl={base}/{dir}/$basearch/\ngpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7\nenabled=1\n\n"
        );
    }
    Step::new("el7 repositories")
        .file("/etc/yum.repos.d/CentOS-Base.repo", repo, 0o644)
        .on_change("yum clean all")
}

/// chrony with `[time]` servers (a one-shot ntpdate drifts again; chrony keeps the clock) and the time zone.
pub(super) fn time(inv: &Inventory, family: Family) -> Step {
    let (unit, conf) = family.chrony();
    let drift = if family.is_el() {
        "/var/lib/chrony/drift"
    } else {
        "/var/lib/chrony/chrony.drift"
    };
    let mut c = String::from("# Managed by provision (lab.toml [time]).\n");
    for s in &inv.time.servers {
        let _ = writeln!(c, "server {s} iburst");
    }
    let _ = writeln!(c, "driftfile {drift}");
    let _ = writeln!(c, "makestep 1.0 3");
    let _ = writeln!(c, "rtcsync");
    let tz = &inv.time.timezone;
    let zone = format!("/usr/share/zoneinfo/{tz}");
    let mut step = package(Step::new("time"), family, "chrony")
        .file(conf, c, 0o644)
        .on_change(&format!("systemctl restart {unit}"));
    step = service_running(step, unit);
    step = step.ensure(
        &format!("time zone {tz}"),
        Check::SymlinkTo {
            link: "/etc/localtime".into(),
            target: zone.clone(),
        },
        &format!(
            "test -e {z} && ln -sfn {z} /etc/localtime",
            z = shell_quote(&zone)
        ),
    );
    if !family.is_el() {
        step = step.file("/etc/timezone", format!("{tz}\n"), 0o644);
    }
    step
}

/// The peers a balancer accepts VRRP from.
fn vrrp_peers<'a>(inv: &'a Inventory, host: &'a Host) -> impl Iterator<Item = &'a Host> {
    inv.balancers().filter(move |b| b.name != host.name)
}

/// Firewall kept on: SSH, 80/tcp, and VRRP (IP protocol 112) from the other balancers.
pub(super) fn firewall(inv: &Inventory, host: &Host, family: Family) -> Step {
    let balancer = host.role == Role::Balancer;
    if family.is_el() {
        let mut step = package(Step::new("firewall"), family, "firewalld");
        step = service_running(step, "firewalld");
        step = step.ensure(
            "80/tcp open",
            Check::FirewalldPort("80/tcp".into()),
            "firewall-cmd --permanent --add-port=80/tcp",
        );
        if let (true, Some(bgp)) = (balancer, inv.anycast()) {
            step = super::anycast::firewalld_rules(step, bgp);
        } else if balancer {
            for p in vrrp_peers(inv, host) {
                let rule = format!(
                    "rule family=\"ipv4\" source address=\"{}\" protocol value=\"vrrp\" accept",
                    p.address
                );
                let q = shell_quote(&rule);
                step = step.ensure(
                    &format!("VRRP from {} allowed", p.name),
                    Check::FirewalldRichRule(rule.clone()),
                    &format!("firewall-cmd --permanent --add-rich-rule={q}"),
                );
            }
        }
        step.on_change("firewall-cmd --reload")
    } else {
        let mut c = String::from(
            "#!/usr/sbin/nft -f\n# Managed by provision: SSH, HTTP and VRRP between the balancers; everything else\n# inbound is dropped. Only the table \"provision\" is replaced, other tables are kept.\ntable inet provision\ndelete table inet provision\n\ntable inet provision {\n  chain input {\n    type filter hook input priority filter; policy drop;\n    ct state established,related accept\n    ct state invalid drop\n    iif \"lo\" accept\n    meta l4proto { icmp, ipv6-icmp } accept\n",
        );
        let _ = writeln!(c, "    tcp dport {} accept", inv.ssh.port);
        let _ = writeln!(c, "    tcp dport 80 accept");
        if let (true, Some(bgp)) = (balancer, inv.anycast()) {
            c.push_str(&super::anycast::nft_rules(bgp));
        } else if balancer {
            let peers: Vec<String> = vrrp_peers(inv, host)
                .map(|p| p.address.to_string())
                .collect();
            if !peers.is_empty() {
                // The counter shows that the peers' adverts come through (`nft list table
                // inet provision`): a backup that cannot hear its master takes the VIPs too.
                let _ = writeln!(
                    c,
                    "    ip protocol 112 ip saddr {{ {} }} counter accept",
                    peers.join(", ")
                );
            }
        }
        c.push_str("  }\n}\n");
        let step = package(Step::new("firewall"), family, "nftables")
            .validated_file("/etc/nftables.conf", c, 0o755, "nft -c -f {}")
            .on_change("nft -f /etc/nftables.conf")
            .ensure(
                "nftables rules loaded",
                Check::NftTable("provision".into()),
                "nft -f /etc/nftables.conf",
            );
        step.ensure(
            "service nftables enabled",
            Check::UnitEnabled("nftables".into()),
            "systemctl enable nftables",
        )
    }
}

/// SELinux stays enforcing: switching it off (the usual shortcut) removes the confinement of
/// every service on the host.
pub(super) fn selinux() -> Step {
    Step::new("selinux")
        .ensure(
            "SELinux enforcing at boot",
            Check::FileHasLine {
                path: "/etc/selinux/config".into(),
                line: "SELINUX=enforcing".into(),
            },
            "sed -i 's/^SELINUX=.*/SELINUX=enforcing/' /etc/selinux/config",
        )
        .ensure(
            "SELinux enforcing now",
            Check::Getenforce("Enforcing".into()),
            "setenforce 1 || { echo 'SELinux is disabled in the running kernel: reboot to enforce' >&2; exit 1; }",
        )
}
