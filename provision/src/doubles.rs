//! TEST DOUBLES for what lab hosts cannot run: EL's package manager (yum/dnf, rpm) against EL
//! repositories, Debian's apt-get (a host shares the machine's /usr), SELinux tools, and EL's
//! network-scripts service. Lab hosts boot a real systemd, so systemctl, firewalld, chrony and
//! the units are the real ones. The lab installs the commands into a host's own /usr/local/bin
//! (an overlay) and the units into its /etc/systemd/system, so that `provision` can run its real
//! plans there (`lab demo`, provision's end-to-end tests). Each says "TEST DOUBLE" in its header
//! and records every invocation in the host's /var/log/test-doubles.log. Not for real servers.

/// (name, script) pairs to install as /usr/local/bin/NAME with mode 0755.
pub const ALL: &[(&str, &str)] = &[
    ("yum", include_str!("../doubles/yum")),
    ("dnf", include_str!("../doubles/yum")),
    ("rpm", include_str!("../doubles/rpm")),
    ("getenforce", include_str!("../doubles/getenforce")),
    ("setenforce", include_str!("../doubles/setenforce")),
    ("restorecon", include_str!("../doubles/restorecon")),
    ("apt-get", include_str!("../doubles/apt-get")),
    ("dpkg-query", include_str!("../doubles/dpkg-query")),
];

/// (name, unit file) pairs to install as /etc/systemd/system/NAME (then `systemctl
/// daemon-reload`).
pub const UNITS: &[(&str, &str)] = &[(
    "network.service",
    include_str!("../doubles/network.service"),
)];

/// Where the doubles record their invocations, inside the host.
pub const LOG: &str = "/var/log/test-doubles.log";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_double_says_so_and_records_its_calls() {
        for (name, script) in ALL {
            assert!(script.starts_with("#!/bin/sh\n"), "{name}");
            assert!(script.contains("TEST DOUBLE"), "{name}");
            assert!(script.contains(LOG), "{name}");
            let check = std::process::Command::new("sh")
                .args(["-n", "-c", script])
                .status()
                .unwrap();
            assert!(check.success(), "{name} has a syntax error");
        }
        for (name, unit) in UNITS {
            assert!(unit.starts_with("# TEST DOUBLE"), "{name}");
            assert!(unit.contains(LOG), "{name}");
            assert!(unit.contains("[Service]"), "{name}");
        }
    }
}
