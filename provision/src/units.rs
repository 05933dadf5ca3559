//! The systemd units of `proxy` and `vrrp`, rendered for the host's systemd version.
//!
//! deploy/proxy.service and deploy/vrrp.service are written for a current systemd. An older one
//! ignores directives it does not know ("Unknown lvalue" in the journal) and runs the service
//! without them: CentOS 7's systemd 219 would run the proxy as root (no DynamicUser) without its
//! log directory (no LogsDirectory). So each directive's first version is listed here; a
//! directive newer than the host's systemd is left out, and where it carried least privilege
//! the same is reached by the means that version has:
//!
//! - DynamicUser (232) -> a static system user `proxyd` (the unit's `User=`) that provision
//!   creates;
//! - LogsDirectory (235) -> /var/log/proxy created by provision, owned by that user, 0750;
//! - CacheDirectory (235) -> /var/cache/proxy, the same way (large request bodies are buffered
//!   there); StateDirectory (235) -> /var/lib/proxy, the same way (the admin API's state file);
//! - LoadCredential (247) -> where the proxy runs as the static user (below 232), the admin
//!   token file is that user's (0600); between 232 and 246 the dynamic user cannot read root's
//!   token, so run-time changes through the admin API are refused there (GETs still work);
//! - AmbientCapabilities (229) -> the file capability cap_net_bind_service on the binary (set by
//!   provision), bounded by CapabilityBoundingSet; NoNewPrivileges is left out with it, since
//!   no_new_privs voids file capabilities at exec;
//! - ProtectSystem=strict (232) -> ProtectSystem=full (/usr, /boot and /etc read-only);
//! - RuntimeDirectory + RuntimeDirectoryPreserve (235) -> neither: without Preserve, systemd
//!   would delete vrrp's state at every restart; vrrp creates its runtime directory itself in
//!   /run, which ProtectSystem=full leaves writable;
//! - StartLimitIntervalSec in [Unit] (229) -> StartLimitInterval in [Service], the older name
//!   and place: left out, systemd 219 would apply its default start limit and give up on a
//!   vrrp that keeps failing.

use std::fmt::Write as _;

/// deploy/'s units, for a current systemd.
pub const PROXY_UNIT: &str = include_str!("../../deploy/proxy.service");
pub const VRRP_UNIT: &str = include_str!("../../deploy/vrrp.service");

/// The systemd version every directive of deploy/'s units is known to.
pub const CURRENT: u32 = 252;
/// DynamicUser and ProtectSystem=strict.
const DYNAMIC_USER: u32 = 232;
/// AmbientCapabilities.
const AMBIENT_CAPS: u32 = 229;
/// LogsDirectory, CacheDirectory, RuntimeDirectoryPreserve.
const DIRECTORIES: u32 = 235;
/// StartLimitIntervalSec in [Unit] (before: StartLimitInterval in [Service]).
const START_LIMIT_IN_UNIT: u32 = 229;

/// The user deploy/proxy.service names (`User=`): a dynamic one on current systemd, a static
/// system user that provision creates where DynamicUser is missing. Not "proxy": Debian's
/// base-passwd already has a static "proxy" account (Squid's), which systemd would reuse.
pub const PROXY_USER: &str = "proxyd";

/// The first systemd version that knows each directive used in deploy/'s units.
pub const SINCE: &[(&str, u32)] = &[
    ("Description", 1),
    ("Documentation", 1),
    ("After", 1),
    ("Wants", 1),
    ("Conflicts", 1),
    ("WantedBy", 1),
    ("Type", 1),
    ("ExecStartPre", 1),
    ("ExecStart", 1),
    ("ExecReload", 1),
    ("KillSignal", 1),
    ("TimeoutStopSec", 1),
    ("Restart", 1),
    ("RestartSec", 1),
    ("User", 1),
    ("Group", 1),
    ("UMask", 1),
    ("PrivateTmp", 1),
    ("LimitMEMLOCK", 1),
    ("LimitNOFILE", 1),
    ("CapabilityBoundingSet", 1),
    ("NoNewPrivileges", 187),
    ("SystemCallFilter", 187),
    ("SystemCallErrorNumber", 187),
    ("PrivateDevices", 209),
    ("SystemCallArchitectures", 209),
    ("RuntimeDirectory", 211),
    ("RestrictAddressFamilies", 211),
    ("ProtectSystem", 214),
    ("ProtectHome", 214),
    ("AmbientCapabilities", AMBIENT_CAPS),
    ("StartLimitInterval", 1),
    ("StartLimitIntervalSec", START_LIMIT_IN_UNIT),
    ("RestrictRealtime", 231),
    ("MemoryDenyWriteExecute", 231),
    ("DynamicUser", DYNAMIC_USER),
    ("ProtectKernelTunables", 232),
    ("ProtectKernelModules", 232),
    ("ProtectControlGroups", 232),
    ("RestrictNamespaces", 233),
    ("LogsDirectory", DIRECTORIES),
    ("CacheDirectory", DIRECTORIES),
    ("StateDirectory", DIRECTORIES),
    ("RuntimeDirectoryPreserve", DIRECTORIES),
    ("LockPersonality", DIRECTORIES),
    ("RestrictSUIDSGID", 242),
    ("ProtectHostname", 242),
    ("ProtectKernelLogs", 244),
    ("ProtectClock", 245),
    ("ProtectProc", 247),
    ("ProcSubset", 247),
    ("LoadCredential", 247),
];

/// The version `systemctl --version` prints on its first line ("systemd 219").
pub fn parse_version(out: &str) -> Option<u32> {
    let mut words = out.lines().next()?.split_whitespace();
    (words.next()? == "systemd").then_some(())?;
    words.next()?.parse().ok()
}

/// Whether the proxy needs provision's static user, log directory and file capability.
pub fn proxy_needs_setup(systemd: u32) -> bool {
    systemd < DIRECTORIES || systemd < DYNAMIC_USER || systemd < AMBIENT_CAPS
}

/// Whether the proxy runs as provision's static user (no DynamicUser).
pub fn proxy_static_user(systemd: u32) -> bool {
    systemd < DYNAMIC_USER
}

pub fn proxy_unit(systemd: u32) -> String {
    render(PROXY_UNIT, systemd)
}

pub fn vrrp_unit(systemd: u32) -> String {
    render(VRRP_UNIT, systemd)
}

/// `unit` with what `systemd` does not know left out or replaced (see the module comment).
fn render(unit: &str, systemd: u32) -> String {
    if systemd >= CURRENT {
        return unit.to_string();
    }
    let mut out = String::new();
    let mut left_out = Vec::new();
    let start_limit = unit
        .lines()
        .filter_map(directive)
        .find(|(k, _)| *k == "StartLimitIntervalSec")
        .map(|(_, v)| v)
        .filter(|_| systemd < START_LIMIT_IN_UNIT);
    for line in unit.lines() {
        let Some((key, value)) = directive(line) else {
            out.push_str(line);
            out.push('\n');
            if let (Some(v), "[Service]") = (start_limit, line.trim()) {
                let _ = writeln!(out, "StartLimitInterval={v}");
            }
            continue;
        };
        if key == "StartLimitIntervalSec" && start_limit.is_some() {
            // Written under its old name right after the [Service] header instead.
            continue;
        }
        let since = SINCE
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(u32::MAX, |(_, v)| *v);
        let replaced = match (key, value) {
            // The unit's own `User=` line names the static user provision creates.
            ("DynamicUser", _) if systemd < DYNAMIC_USER => Some(format!("Group={PROXY_USER}\n")),
            ("ProtectSystem", "strict") if systemd < DYNAMIC_USER => {
                Some("ProtectSystem=full\n".to_string())
            }
            // Only where a non-root service gets its capability from the file (the proxy).
            ("NoNewPrivileges", _) if systemd < AMBIENT_CAPS && unit.contains("\nDynamicUser=") => {
                Some(String::new())
            }
            ("RuntimeDirectory", _) if systemd < DIRECTORIES => Some(String::new()),
            _ => None,
        };
        match replaced {
            Some(r) => {
                if r.is_empty() {
                    left_out.push(key);
                }
                out.push_str(&r);
            }
            None if since > systemd => left_out.push(key),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let mut head = format!("# Rendered by provision for systemd {systemd}");
    if !left_out.is_empty() {
        let _ = write!(head, "; left out (unknown to it): {}", left_out.join(", "));
    }
    head.push('\n');
    head + &out
}

/// `(key, value)` of a `Key=value` line; `None` for comments, sections and blank lines.
fn directive(line: &str) -> Option<(&str, &str)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with(';') || t.starts_with('[') {
        return None;
    }
    let (k, v) = t.split_once('=')?;
    Some((k.trim(), v.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every directive of a rendered unit, with the version it needs.
    fn needs(unit: &str) -> Vec<(String, u32)> {
        unit.lines()
            .filter_map(directive)
            .map(|(k, v)| {
                let since = SINCE
                    .iter()
                    .find(|(s, _)| *s == k)
                    .map_or(u32::MAX, |(_, n)| *n);
                let since = if k == "ProtectSystem" && v == "strict" {
                    DYNAMIC_USER
                } else {
                    since
                };
                (format!("{k}={v}"), since)
            })
            .collect()
    }

    #[test]
    fn every_directive_of_deploy_units_has_a_version() {
        for unit in [PROXY_UNIT, VRRP_UNIT] {
            for (d, since) in needs(unit) {
                assert!(since <= CURRENT, "{d}: add it to SINCE");
            }
        }
    }

    #[test]
    fn units_for_each_supported_systemd_use_only_what_it_knows() {
        for v in [219, 239, 249, 252, 255] {
            for unit in [proxy_unit(v), vrrp_unit(v)] {
                for (d, since) in needs(&unit) {
                    assert!(since <= v, "systemd {v} does not know {d}:\n{unit}");
                }
            }
        }
    }

    #[test]
    fn centos7_proxy_keeps_least_privilege_by_its_means() {
        let u = proxy_unit(219);
        assert!(u.contains("\nGroup=proxyd\nUser=proxyd\n"), "{u}");
        assert_eq!(u.matches("\nUser=").count(), 1, "one user: {u}");
        assert!(
            PROXY_UNIT.contains(&format!("\nUser={PROXY_USER}\n")),
            "the unit's own user"
        );
        assert!(u.contains("\nProtectSystem=full\n"), "{u}");
        assert!(u.contains("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"));
        assert!(!u.contains("DynamicUser") || u.starts_with("# Rendered"));
        assert!(
            !u.contains("\nNoNewPrivileges="),
            "voids the file capability"
        );
        assert!(u.starts_with("# Rendered by provision for systemd 219; left out (unknown to it): LogsDirectory, CacheDirectory, StateDirectory, LoadCredential, AmbientCapabilities, NoNewPrivileges,"), "{u}");
        assert!(proxy_needs_setup(219));
        assert!(!proxy_needs_setup(239));
        let v = vrrp_unit(219);
        assert!(!v.contains("\nRuntimeDirectory"), "{v}");
        // vrrp runs as root with a bounded set: no_new_privs costs it nothing.
        assert!(v.contains("\nNoNewPrivileges=yes\n"), "{v}");
        assert!(v.contains(
            "\nCapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_NICE CAP_IPC_LOCK\n"
        ));
        // Never give up restarting vrrp: systemd 219 spells the start limit StartLimitInterval
        // and reads it in [Service] only (229 renamed it and moved it to [Unit]).
        assert!(!v.contains("StartLimitIntervalSec"), "{v}");
        let service = v.split("[Service]\n").nth(1).expect("a [Service] section");
        assert!(service.starts_with("StartLimitInterval=0\n"), "{v}");
        assert!(vrrp_unit(229).contains("\nStartLimitIntervalSec=0\n"));
        // Current systemd: deploy/'s units as they are.
        assert_eq!(proxy_unit(252), PROXY_UNIT);
        assert_eq!(vrrp_unit(255), VRRP_UNIT);
    }

    #[test]
    fn systemctl_version_lines() {
        assert_eq!(parse_version("systemd 219\n+PAM +AUDIT\n"), Some(219));
        assert_eq!(
            parse_version("systemd 249 (249.11-0ubuntu3.12)\n+PAM\n"),
            Some(249)
        );
        assert_eq!(parse_version("TEST DOUBLE\n"), None);
        assert_eq!(parse_version(""), None);
    }

    /// `systemd-analyze verify` on the rendered units, where this machine has it: no
    /// "Unknown key" and no other complaint. (It knows every directive of older versions, so
    /// the per-version test above is what keeps 219's units free of newer ones.)
    #[test]
    fn systemd_analyze_verify_accepts_the_units() {
        if std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("systemd-analyze not installed: skipped");
            return;
        }
        let dir = std::env::temp_dir().join(format!("provision-units-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for v in [219, 239, 252] {
            for (name, unit) in [("proxy", proxy_unit(v)), ("vrrp", vrrp_unit(v))] {
                // verify checks that ExecStart's program exists: point it at one that does.
                let unit = unit
                    .replace("/usr/local/bin/proxy", "/bin/true")
                    .replace("/usr/local/bin/vrrp", "/bin/true");
                let path = dir.join(format!("{name}.service"));
                std::fs::write(&path, unit).unwrap();
                let out = std::process::Command::new("systemd-analyze")
                    .arg("verify")
                    .arg(&path)
                    .output()
                    .unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success() && err.trim().is_empty(),
                    "{name} for {v}: {err}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
