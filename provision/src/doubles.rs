//! TEST DOUBLES for lab hosts, which have no systemd, yum/dnf, rpm, firewalld or SELinux: the
//! lab installs these into a host's own /usr/local/bin (an overlay) so that `provision` can run
//! its real plans there (`lab demo`, provision's end-to-end tests). Each is a shell script whose
//! header says "TEST DOUBLE" and which records every invocation in the host's
//! /var/log/test-doubles.log. Not for real servers.

/// (name, script) pairs to install as /usr/local/bin/NAME with mode 0755.
pub const ALL: &[(&str, &str)] = &[
    ("systemctl", include_str!("../doubles/systemctl")),
    ("yum", include_str!("../doubles/yum")),
    ("dnf", include_str!("../doubles/yum")),
    ("rpm", include_str!("../doubles/rpm")),
    ("firewall-cmd", include_str!("../doubles/firewall-cmd")),
    ("getenforce", include_str!("../doubles/getenforce")),
    ("setenforce", include_str!("../doubles/setenforce")),
    ("restorecon", include_str!("../doubles/restorecon")),
    ("apt-get", include_str!("../doubles/apt-get")),
    ("dpkg-query", include_str!("../doubles/dpkg-query")),
];

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
    }
}
