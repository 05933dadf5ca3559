//! The static address (what was done by hand as BOOTPROTO=static in ifcfg-ens33), in each
//! family's own network configuration. It changes last: it may move the connection provision
//! itself uses.

use std::fmt::Write as _;

use crate::check::Check;
use crate::inventory::{Host, Inventory};
use crate::os::{Family, NetStyle};
use crate::plan::{Action, AddressChange, Prepare, Step};
use crate::quote::{ere_literal, ifcfg_value, keyfile_value, shell_quote, yaml_scalar};

/// Debian's main interfaces file: a stanza for the interface there (the installer's DHCP one)
/// would fight the one in interfaces.d, so it is commented out, and the interfaces.d include
/// is made sure of.
const DEBIAN_INTERFACES: &str = "/etc/network/interfaces";

/// Comments out `auto`/`allow-*` mentions and the `iface` stanza of interface `IF` (awk -v).
const AWK_MOVE_STANZA: &str = r##"$1 ~ /^(iface|mapping|auto|source|source-directory|allow-[a-z-]+)$/ {
  inside = ($1 == "iface" && $2 == IF)
  if ($1 == "auto" || $1 ~ /^allow-/) {
    out = $1; kept = 0
    for (i = 2; i <= NF; i++) if ($i != IF) { out = out " " $i; kept++ }
    if (kept < NF - 1) {
      print "# provision (" IF " moved to interfaces.d): " $0
      if (kept > 0) print out
      next
    }
  }
}
{ if (inside) print "# provision (" IF " moved to interfaces.d): " $0; else print }"##;

fn debian_prepare(ifname: &str) -> Prepare {
    let f = DEBIAN_INTERFACES;
    let i = shell_quote(ifname);
    let name = ere_literal(ifname);
    // A line that brings IF up (auto/allow-*) or defines it (iface).
    let stanza = format!(
        "^[[:space:]]*((auto|allow-[a-z-]+)([[:space:]]+[^[:space:]]+)*[[:space:]]+{name}|iface[[:space:]]+{name})([[:space:]]|$)"
    );
    let include = Check::FileMatches {
        path: f.into(),
        regex: "^(source /etc/network/interfaces\\.d/\\*|source-directory /etc/network/interfaces\\.d)$".into(),
    };
    let include_cmd = include.command();
    Prepare {
        file: f.to_string(),
        check: Check::All(vec![
            Check::FileExists(f.into()),
            Check::Not(Box::new(Check::FileMatches {
                path: f.into(),
                regex: stanza,
            })),
            include,
        ]),
        command: format!(
            "touch {f} && awk -v IF={i} {awk} {f} > {f}.provision-tmp && cat {f}.provision-tmp > {f} && rm -f {f}.provision-tmp && {{ {include_cmd} || echo 'source /etc/network/interfaces.d/*' >> {f}; }}",
            awk = shell_quote(AWK_MOVE_STANZA)
        ),
    }
}

/// Seconds the host waits for the tool to reconnect before it restores the old configuration.
pub const CONFIRM_SECS: u32 = 60;

pub(super) fn static_address(inv: &Inventory, host: &Host, family: Family) -> Step {
    let net = &inv.network;
    let ifname = &host.interface;
    let cidr = format!("{}/{}", host.address, net.prefix);
    let prepare = (family.net_style() == NetStyle::Ifupdown).then(|| debian_prepare(ifname));
    let (path, content, apply) = match family.net_style() {
        NetStyle::Ifcfg => {
            let v = ifcfg_value(ifname);
            let mut c = format!(
                "# Managed by provision (lab.toml).\nTYPE=Ethernet\nNAME={v}\nDEVICE={v}\nONBOOT=yes\nBOOTPROTO=static\nIPADDR={}\nNETMASK={}\nGATEWAY={}\n",
                host.address,
                net.netmask(),
                net.gateway
            );
            for (i, d) in net.dns.iter().enumerate() {
                let _ = writeln!(c, "DNS{}={d}", i + 1);
            }
            (
                format!("/etc/sysconfig/network-scripts/ifcfg-{ifname}"),
                c,
                "systemctl restart network".to_string(),
            )
        }
        NetStyle::NmKeyfile => {
            let dns: String = net.dns.iter().map(|d| format!("{d};")).collect();
            let v = keyfile_value(ifname);
            let c = format!(
                "# Managed by provision (lab.toml).\n[connection]\nid={v}\ntype=ethernet\ninterface-name={v}\nautoconnect=true\n\n[ipv4]\nmethod=manual\naddress1={cidr},{}\ndns={dns}\n\n[ipv6]\nmethod=ignore\n",
                net.gateway
            );
            (
                format!("/etc/NetworkManager/system-connections/{ifname}.nmconnection"),
                c,
                format!(
                    "nmcli connection reload && nmcli connection up id {}",
                    shell_quote(ifname)
                ),
            )
        }
        NetStyle::Ifupdown => {
            let dns: Vec<String> = net.dns.iter().map(ToString::to_string).collect();
            let c = format!(
                "# Managed by provision (lab.toml).\nauto {ifname}\niface {ifname} inet static\n    address {cidr}\n    gateway {}\n    dns-nameservers {}\n",
                net.gateway,
                dns.join(" ")
            );
            (
                format!("/etc/network/interfaces.d/{ifname}"),
                c,
                "systemctl restart networking".to_string(),
            )
        }
        NetStyle::Netplan => {
            let dns: Vec<String> = net.dns.iter().map(ToString::to_string).collect();
            let c = format!(
                "# Managed by provision (lab.toml).\nnetwork:\n  version: 2\n  ethernets:\n    {}:\n      dhcp4: false\n      addresses: [{cidr}]\n      routes:\n        - to: default\n          via: {}\n      nameservers:\n        addresses: [{}]\n",
                yaml_scalar(ifname),
                net.gateway,
                dns.join(", ")
            );
            (
                format!("/etc/netplan/60-provision-{ifname}.yaml"),
                c,
                "netplan apply".to_string(),
            )
        }
    };
    let mode =
        if family.net_style() == NetStyle::NmKeyfile || family.net_style() == NetStyle::Netplan {
            // NetworkManager ignores keyfiles readable by others; netplan warns about them.
            0o600
        } else {
            0o644
        };
    Step::new("static address").push(Action::Address(AddressChange {
        path,
        content,
        mode,
        apply,
        live_check: Check::AddressOn {
            ifname: ifname.clone(),
            cidr,
        },
        confirm_secs: CONFIRM_SECS,
        prepare,
    }))
}
