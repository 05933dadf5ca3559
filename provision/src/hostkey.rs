//! Host keys: the known_hosts check (a changed key is always refused; only a key that is truly
//! not found may be recorded, with --accept-new-host-keys), the SHA256 fingerprints OpenSSH
//! prints, and which host key algorithms to offer.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use ssh2::{CheckResult, HashType, HostKeyType, KnownHostFileKind, Session};

use crate::ssh::{ssh_err, SshError, SshOptions};

/// Serialises appends to known_hosts from the per-host threads.
static KNOWN_HOSTS_LOCK: Mutex<()> = Mutex::new(());

fn key_type_name(t: HostKeyType) -> Option<&'static str> {
    match t {
        HostKeyType::Rsa => Some("ssh-rsa"),
        HostKeyType::Dss => Some("ssh-dss"),
        HostKeyType::Ecdsa256 => Some("ecdsa-sha2-nistp256"),
        HostKeyType::Ecdsa384 => Some("ecdsa-sha2-nistp384"),
        HostKeyType::Ecdsa521 => Some("ecdsa-sha2-nistp521"),
        HostKeyType::Ed25519 => Some("ssh-ed25519"),
        HostKeyType::Unknown => None,
    }
}

/// Host key algorithms to offer, those known_hosts already has for `name` first: otherwise the
/// server may pick a key type we have no record of and a known host looks unknown.
pub(crate) fn hostkey_preference(known_hosts: &Path, name: &str) -> String {
    const ALL: [&str; 6] = [
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-512",
        "rsa-sha2-256",
    ];
    let text = std::fs::read_to_string(known_hosts).unwrap_or_default();
    let mut known: Vec<&str> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(hosts), Some(kt)) = (f.next(), f.next()) else {
            continue;
        };
        if hosts.split(',').any(|h| h == name) {
            let kt = if kt == "ssh-rsa" { "rsa-sha2-512" } else { kt };
            if let Some(k) = ALL.iter().find(|a| **a == kt) {
                if !known.contains(k) {
                    known.push(k);
                }
            }
        }
    }
    let mut order = known.clone();
    order.extend(ALL.iter().filter(|a| !known.contains(a)));
    order.join(",")
}

/// SHA256 fingerprint as OpenSSH prints it (base64 without padding).
fn fingerprint(session: &Session) -> String {
    session
        .host_key_hash(HashType::Sha256)
        .map(|h| base64::engine::general_purpose::STANDARD_NO_PAD.encode(h))
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn check_host_key(
    session: &Session,
    name: &str,
    opts: &SshOptions,
) -> Result<(), SshError> {
    let (key, ktype) = session.host_key().ok_or_else(|| SshError::Unreachable {
        addr: SocketAddr::from(([0, 0, 0, 0], opts.port)),
        reason: "server sent no host key".into(),
    })?;
    let key = key.to_vec();
    let mut kh = session.known_hosts().map_err(ssh_err("known_hosts"))?;
    let path = &opts.known_hosts;
    if path.exists() {
        kh.read_file(path, KnownHostFileKind::OpenSSH)
            .map_err(ssh_err(format!("read {}", path.display())))?;
    }
    let kh_name = path.display().to_string();
    let refuse_unknown = || SshError::UnknownHostKey {
        host: name.into(),
        fingerprint: fingerprint(session),
        known_hosts: kh_name.clone(),
    };
    match host_key_verdict(kh.check(name, &key), opts.accept_new_host_keys) {
        HostKeyVerdict::Trusted => Ok(()),
        HostKeyVerdict::Changed => Err(SshError::HostKeyChanged {
            host: name.into(),
            fingerprint: fingerprint(session),
            known_hosts: kh_name,
        }),
        HostKeyVerdict::Unknown => Err(refuse_unknown()),
        HostKeyVerdict::CheckFailed => Err(SshError::HostKeyCheckFailed {
            host: name.into(),
            fingerprint: fingerprint(session),
            known_hosts: kh_name,
        }),
        HostKeyVerdict::Record => {
            let tname = key_type_name(ktype).ok_or_else(refuse_unknown)?;
            record_host_key(path, name, tname, &key)?;
            eprintln!(
                "[{name}] recorded new host key SHA256:{} in {kh_name}",
                fingerprint(session)
            );
            Ok(())
        }
    }
}

/// What to do with a host key, from libssh2's known_hosts check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKeyVerdict {
    Trusted,
    Changed,
    /// Not in known_hosts, and new keys are not accepted.
    Unknown,
    /// Not in known_hosts: record it (--accept-new-host-keys).
    Record,
    /// libssh2 could not check (a known_hosts it could not use, a key it could not compare):
    /// the host may well be listed with another key, so this is never "not found".
    CheckFailed,
}

fn host_key_verdict(check: CheckResult, accept_new: bool) -> HostKeyVerdict {
    match check {
        CheckResult::Match => HostKeyVerdict::Trusted,
        CheckResult::Mismatch => HostKeyVerdict::Changed,
        CheckResult::NotFound if accept_new => HostKeyVerdict::Record,
        CheckResult::NotFound => HostKeyVerdict::Unknown,
        CheckResult::Failure => HostKeyVerdict::CheckFailed,
    }
}

/// Appends `name type key` to known_hosts (serialised across the host threads).
fn record_host_key(path: &Path, name: &str, tname: &str, key: &[u8]) -> Result<(), SshError> {
    let line = format!(
        "{name} {tname} {}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let _guard = KNOWN_HOSTS_LOCK.lock();
    let io = |source| SshError::Io {
        context: format!("record host key in {}", path.display()),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    f.write_all(line.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_true_not_found_is_recorded() {
        use HostKeyVerdict::*;
        assert_eq!(host_key_verdict(CheckResult::NotFound, true), Record);
        assert_eq!(host_key_verdict(CheckResult::NotFound, false), Unknown);
        assert_eq!(host_key_verdict(CheckResult::Failure, true), CheckFailed);
        assert_eq!(host_key_verdict(CheckResult::Failure, false), CheckFailed);
        assert_eq!(host_key_verdict(CheckResult::Mismatch, true), Changed);
        assert_eq!(host_key_verdict(CheckResult::Match, false), Trusted);
    }

    #[test]
    fn known_key_types_are_preferred() {
        let dir = std::env::temp_dir().join(format!("provision-kh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kh = dir.join("known_hosts");
        std::fs::write(
            &kh,
            "10.0.0.1 ecdsa-sha2-nistp256 AAAA\n10.0.0.2 ssh-rsa AAAA\n",
        )
        .unwrap();
        let p = hostkey_preference(&kh, "10.0.0.1");
        assert!(p.starts_with("ecdsa-sha2-nistp256,ssh-ed25519"), "{p}");
        let p = hostkey_preference(&kh, "10.0.0.2");
        assert!(p.starts_with("rsa-sha2-512,ssh-ed25519"), "{p}");
        let p = hostkey_preference(&kh, "10.0.0.3");
        assert!(p.starts_with("ssh-ed25519,"), "{p}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
