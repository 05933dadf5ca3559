//! OS detection from /etc/os-release, and the facts each supported family differs in (package
//! manager, network configuration, firewall, SELinux, service and file names).

use std::collections::HashMap;
use std::fmt;

use crate::check::Check;
use crate::quote::shell_quote;

/// A supported operating system family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// CentOS 7 (the seed's OS): yum, ifcfg files, firewalld, SELinux. End of life since
    /// 2024-06-30: its mirrors moved to vault.centos.org.
    El7,
    /// Rocky / Alma / RHEL 8: dnf, NetworkManager keyfiles, firewalld, SELinux.
    El8,
    /// Rocky / Alma / RHEL 9.
    El9,
    /// Debian 12: apt, ifupdown, nftables, no SELinux.
    Debian12,
    /// Ubuntu 22.04 or newer: apt, netplan, nftables.
    Ubuntu,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a family configures a static address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetStyle {
    /// /etc/sysconfig/network-scripts/ifcfg-IF, `systemctl restart network`.
    Ifcfg,
    /// /etc/NetworkManager/system-connections/IF.nmconnection, `nmcli connection up`.
    NmKeyfile,
    /// /etc/network/interfaces.d/IF, `systemctl restart networking`.
    Ifupdown,
    /// /etc/netplan/60-provision-IF.yaml, `netplan apply`.
    Netplan,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::El7,
        Family::El8,
        Family::El9,
        Family::Debian12,
        Family::Ubuntu,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::El7 => "el7",
            Family::El8 => "el8",
            Family::El9 => "el9",
            Family::Debian12 => "debian12",
            Family::Ubuntu => "ubuntu",
        }
    }

    /// The family named `name` (as [`Family::name`] prints it).
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Red Hat family: yum/dnf, firewalld, SELinux.
    pub fn is_el(self) -> bool {
        matches!(self, Family::El7 | Family::El8 | Family::El9)
    }

    pub fn net_style(self) -> NetStyle {
        match self {
            Family::El7 => NetStyle::Ifcfg,
            Family::El8 | Family::El9 => NetStyle::NmKeyfile,
            Family::Debian12 => NetStyle::Ifupdown,
            Family::Ubuntu => NetStyle::Netplan,
        }
    }

    /// Command that installs `pkg` non-interactively. On Debian/Ubuntu a failed install is
    /// retried after `apt-get update`: fresh images often ship without package lists.
    pub fn install_command(self, pkg: &str) -> String {
        let pkg = shell_quote(pkg);
        match self {
            Family::El7 => format!("yum install -y {pkg}"),
            Family::El8 | Family::El9 => format!("dnf install -y {pkg}"),
            Family::Debian12 | Family::Ubuntu => format!(
                "export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q {pkg} || {{ apt-get update -q && apt-get install -y -q {pkg}; }}"
            ),
        }
    }

    /// The check that package `pkg` is installed.
    pub fn package_installed(self, pkg: &str) -> Check {
        if self.is_el() {
            Check::RpmInstalled(pkg.to_string())
        } else {
            Check::DpkgInstalled(pkg.to_string())
        }
    }

    /// The systemd version the family ships, for plans made without asking a host (its
    /// `systemctl --version` decides at run time).
    pub fn default_systemd(self) -> u32 {
        match self {
            Family::El7 => 219,
            Family::El8 => 239,
            Family::El9 | Family::Debian12 => 252,
            Family::Ubuntu => 249,
        }
    }

    /// Apache's package and service name.
    pub fn httpd(self) -> &'static str {
        if self.is_el() {
            "httpd"
        } else {
            "apache2"
        }
    }

    /// chrony's service name and configuration file.
    pub fn chrony(self) -> (&'static str, &'static str) {
        if self.is_el() {
            ("chronyd", "/etc/chrony.conf")
        } else {
            ("chrony", "/etc/chrony/chrony.conf")
        }
    }
}

/// What /etc/os-release says, and the family it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    pub family: Family,
}

impl OsInfo {
    /// A warning to show for this OS, if any (CentOS 7 is end of life).
    pub fn warning(&self) -> Option<&'static str> {
        (self.family == Family::El7).then_some(
            "CentOS 7 reached end of life on 2024-06-30: no security updates, and its mirrors \
             moved to vault.centos.org (set [os] el7_repo_baseurl in lab.toml to use a vault or \
             mirror repository)",
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsError {
    #[error(
        "unsupported OS: ID={id:?} VERSION_ID={version_id:?} ({pretty}); supported: CentOS 7, \
         Rocky/Alma/RHEL 8 and 9, Debian 12, Ubuntu 22.04 or newer"
    )]
    Unsupported {
        id: String,
        version_id: String,
        pretty: String,
    },
}

/// Parses os-release text (KEY=value lines, values optionally quoted).
pub fn parse_os_release(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.replace("\\\"", "\"")))
        })
        .collect()
}

/// Maps os-release text to a supported family, or an error naming what was found.
pub fn detect(text: &str) -> Result<OsInfo, OsError> {
    let kv = parse_os_release(text);
    let get = |k: &str| kv.get(k).cloned().unwrap_or_default();
    let id = get("ID");
    let version_id = get("VERSION_ID");
    let id_like = get("ID_LIKE");
    let major: u32 = version_id
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let el_like = matches!(id.as_str(), "centos" | "rocky" | "almalinux" | "rhel");
    let family = match (id.as_str(), major) {
        ("centos", 7) | ("rhel", 7) => Some(Family::El7),
        (_, 8) if el_like => Some(Family::El8),
        (_, 9) if el_like => Some(Family::El9),
        ("debian", 12) => Some(Family::Debian12),
        ("ubuntu", m) if m >= 22 => Some(Family::Ubuntu),
        _ => None,
    };
    // id_like is only informative: a derivative we never tested is reported, not guessed.
    let _ = id_like;
    match family {
        Some(family) => Ok(OsInfo {
            id,
            version_id,
            pretty_name: get("PRETTY_NAME"),
            family,
        }),
        None => Err(OsError::Unsupported {
            id,
            version_id,
            pretty: get("PRETTY_NAME"),
        }),
    }
}

/// os-release texts of the supported families, as shipped (used by tests and the lab's
/// CentOS 7 personality).
pub mod samples {
    pub const CENTOS7: &str = "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"7\"\nPRETTY_NAME=\"CentOS Linux 7 (Core)\"\nANSI_COLOR=\"0;31\"\nCPE_NAME=\"cpe:/o:centos:centos:7\"\nHOME_URL=\"https://www.centos.org/\"\n";
    pub const ROCKY8: &str = "NAME=\"Rocky Linux\"\nVERSION=\"8.9 (Green Obsidian)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"8.9\"\nPRETTY_NAME=\"Rocky Linux 8.9 (Green Obsidian)\"\n";
    pub const ALMA9: &str = "NAME=\"AlmaLinux\"\nVERSION=\"9.4 (Seafoam Ocelot)\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"AlmaLinux 9.4 (Seafoam Ocelot)\"\n";
    pub const DEBIAN12: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
    pub const UBUNTU2204: &str = "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nID=ubuntu\nID_LIKE=debian\n";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_families_are_detected() {
        let cases = [
            (samples::CENTOS7, Family::El7),
            (samples::ROCKY8, Family::El8),
            (samples::ALMA9, Family::El9),
            (samples::DEBIAN12, Family::Debian12),
            (samples::UBUNTU2204, Family::Ubuntu),
        ];
        for (text, fam) in cases {
            let os = detect(text).unwrap();
            assert_eq!(os.family, fam, "{text}");
        }
        let c7 = detect(samples::CENTOS7).unwrap();
        assert_eq!(c7.id, "centos");
        assert_eq!(c7.version_id, "7");
        assert!(c7.warning().unwrap().contains("end of life"));
        assert!(detect(samples::DEBIAN12).unwrap().warning().is_none());
        for f in Family::ALL {
            assert_eq!(Family::from_name(f.name()), Some(f));
        }
        assert_eq!(Family::from_name("centos"), None);
        let u24 = samples::UBUNTU2204.replace("22.04", "24.04");
        assert_eq!(detect(&u24).unwrap().family, Family::Ubuntu);
    }

    #[test]
    fn unsupported_os_names_what_was_found() {
        for text in [
            "ID=debian\nVERSION_ID=\"11\"\n",
            "ID=ubuntu\nVERSION_ID=\"20.04\"\n",
            "ID=centos\nVERSION_ID=\"6\"\n",
            "ID=arch\n",
            "",
            "garbage\n\u{0}=\n",
        ] {
            let err = detect(text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("unsupported OS: ID="), "{msg}");
        }
        let msg = detect("ID=\"fedora\"\nVERSION_ID=40\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("ID=\"fedora\" VERSION_ID=\"40\""), "{msg}");
    }

    #[test]
    fn os_release_quotes_and_comments() {
        let kv = parse_os_release("# c\nA=\"x y\"\nB='z'\nC=plain\n");
        assert_eq!(kv.get("A").map(String::as_str), Some("x y"));
        assert_eq!(kv.get("B").map(String::as_str), Some("z"));
        assert_eq!(kv.get("C").map(String::as_str), Some("plain"));
        assert!(!kv.contains_key("# c"));
    }
}
