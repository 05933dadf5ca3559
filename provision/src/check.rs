//! Read-only questions to a host, and the only way a dry run can reach one.
//!
//! A [`Check`] is a typed query (is this package installed, is this unit active, what does this
//! file hold), not a command line: [`Check::command`] is the one place that turns each kind into
//! shell, every value single-quoted, and each kind's command only reads. A [`Probe`] runs checks
//! and nothing else, and the dry run is handed a `Probe`, never the connection, so "a dry run
//! changes nothing" holds by construction rather than by each step's author remembering it.

use std::fmt::Write as _;

use crate::exec::Remote;
use crate::quote::shell_quote;
use crate::ssh::{Output, SshError};

/// A question whose answer is the command's exit status (0 = yes), or, for the state queries,
/// its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `rpm -q PKG` (Red Hat family).
    RpmInstalled(String),
    /// `dpkg-query` says PKG is "install ok installed" (Debian family).
    DpkgInstalled(String),
    /// `systemctl is-enabled --quiet UNIT`.
    UnitEnabled(String),
    /// `systemctl is-active --quiet UNIT`.
    UnitActive(String),
    /// The running hostname is this.
    Hostname(String),
    /// The symlink `link` points at `target` (or at `..target`, as some installers write it).
    SymlinkTo { link: String, target: String },
    /// `firewall-cmd --permanent --query-port=PORT`.
    FirewalldPort(String),
    /// `firewall-cmd --permanent --query-rich-rule=RULE`.
    FirewalldRichRule(String),
    /// `nft list table inet NAME` succeeds.
    NftTable(String),
    /// `path` has a line exactly equal to `line`.
    FileHasLine { path: String, line: String },
    /// `path` has a line matching the extended regex `regex`.
    FileMatches { path: String, regex: String },
    /// `getenforce` prints this.
    Getenforce(String),
    /// `restorecon -n -v` would relabel none of these paths.
    LabelsCorrect(Vec<String>),
    /// `ip -4 addr show dev IFNAME` lists `cidr`.
    AddressOn { ifname: String, cidr: String },
    /// A regular file exists.
    FileExists(String),
    /// `getent passwd NAME` finds the user.
    UserExists(String),
    /// A directory owned by `owner` with octal `mode` (as `stat -c '%U %a'` prints them).
    DirOwned {
        path: String,
        owner: String,
        mode: String,
    },
    /// `getcap` lists `cap` on the file.
    FileCapability { path: String, cap: String },
    /// Every check holds.
    All(Vec<Check>),
    /// The check does not hold.
    Not(Box<Check>),
    /// Output: `MODE UID` (octal mode, owner uid) and then the content of a regular file, or
    /// `absent`.
    FileState(String),
    /// Output: sha256 and octal mode of a regular file, nothing if absent.
    BinaryState(String),
}

impl Check {
    /// The command line: read-only for every kind, every value quoted.
    pub fn command(&self) -> String {
        let q = |s: &str| shell_quote(s);
        match self {
            Check::RpmInstalled(p) => format!("rpm -q {} >/dev/null 2>&1", q(p)),
            Check::DpkgInstalled(p) => format!(
                "dpkg-query -W -f='${{Status}}' {} 2>/dev/null | grep -q 'ok installed'",
                q(p)
            ),
            Check::UnitEnabled(u) => format!("systemctl is-enabled --quiet {}", q(u)),
            Check::UnitActive(u) => format!("systemctl is-active --quiet {}", q(u)),
            Check::Hostname(n) => format!("[ \"$(hostname)\" = {} ]", q(n)),
            Check::SymlinkTo { link, target } => format!(
                "l=$(readlink {}); [ \"$l\" = {t} ] || [ \"$l\" = ..{t} ]",
                q(link),
                t = q(target)
            ),
            Check::FirewalldPort(p) => format!("firewall-cmd --permanent --query-port={}", q(p)),
            Check::FirewalldRichRule(r) => {
                format!("firewall-cmd --permanent --query-rich-rule={}", q(r))
            }
            Check::NftTable(t) => format!("nft list table inet {} >/dev/null 2>&1", q(t)),
            Check::FileHasLine { path, line } => {
                format!("grep -qxF -e {} {}", q(line), q(path))
            }
            Check::FileMatches { path, regex } => format!("grep -Eq -e {} {}", q(regex), q(path)),
            Check::Getenforce(m) => format!("[ \"$(getenforce)\" = {} ]", q(m)),
            Check::LabelsCorrect(paths) => {
                let p: Vec<String> = paths.iter().map(|p| q(p)).collect();
                format!("test -z \"$(restorecon -n -v {})\"", p.join(" "))
            }
            Check::AddressOn { ifname, cidr } => format!(
                "ip -o -4 addr show dev {} | grep -qF -e {}",
                q(ifname),
                q(&format!(" inet {cidr} "))
            ),
            Check::FileExists(p) => format!("[ -f {} ]", q(p)),
            Check::UserExists(u) => format!("getent passwd {} >/dev/null", q(u)),
            Check::DirOwned { path, owner, mode } => format!(
                "[ -d {p} ] && [ \"$(stat -c '%U %a' {p})\" = {} ]",
                q(&format!("{owner} {mode}")),
                p = q(path)
            ),
            Check::FileCapability { path, cap } => {
                format!("getcap {} | grep -qF -e {}", q(path), q(cap))
            }
            Check::All(all) => {
                let mut s = String::new();
                for (i, c) in all.iter().enumerate() {
                    let _ = write!(
                        s,
                        "{}{{ {}; }}",
                        if i > 0 { " && " } else { "" },
                        c.command()
                    );
                }
                if s.is_empty() {
                    s.push_str("true");
                }
                s
            }
            Check::Not(c) => format!("! {{ {}; }}", c.command()),
            Check::FileState(p) => format!(
                "if [ -f {p} ]; then stat -c '%a %u' {p} && cat {p}; else echo absent; fi",
                p = q(p)
            ),
            Check::BinaryState(p) => format!(
                "if [ -f {p} ]; then sha256sum {p} | cut -d' ' -f1; stat -c %a {p}; fi",
                p = q(p)
            ),
        }
    }
}

/// Runs [`Check`]s on a host, and nothing else.
pub struct Probe<'a> {
    remote: &'a mut dyn Remote,
}

impl<'a> Probe<'a> {
    pub fn new(remote: &'a mut dyn Remote) -> Probe<'a> {
        Probe { remote }
    }

    /// The same probe for a shorter borrow.
    pub fn reborrow(&mut self) -> Probe<'_> {
        Probe {
            remote: &mut *self.remote,
        }
    }

    /// Runs the check; its exit status and output.
    pub fn ask(&mut self, check: &Check) -> Result<Output, SshError> {
        self.remote.run(&check.command())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind, with values a hostile inventory might carry.
    fn all_kinds(v: &str) -> Vec<Check> {
        let s = || v.to_string();
        vec![
            Check::RpmInstalled(s()),
            Check::DpkgInstalled(s()),
            Check::UnitEnabled(s()),
            Check::UnitActive(s()),
            Check::Hostname(s()),
            Check::SymlinkTo {
                link: s(),
                target: s(),
            },
            Check::FirewalldPort(s()),
            Check::FirewalldRichRule(s()),
            Check::NftTable(s()),
            Check::FileHasLine {
                path: s(),
                line: s(),
            },
            Check::FileMatches {
                path: s(),
                regex: s(),
            },
            Check::Getenforce(s()),
            Check::LabelsCorrect(vec![s(), s()]),
            Check::AddressOn {
                ifname: s(),
                cidr: s(),
            },
            Check::FileExists(s()),
            Check::UserExists(s()),
            Check::DirOwned {
                path: s(),
                owner: s(),
                mode: s(),
            },
            Check::FileCapability {
                path: s(),
                cap: s(),
            },
            Check::Not(Box::new(Check::FileExists(s()))),
            Check::All(vec![Check::UnitActive(s()), Check::FileExists(s())]),
            Check::FileState(s()),
            Check::BinaryState(s()),
        ]
    }

    /// Runs every kind in a real shell with stand-ins for the tools on PATH, each recording
    /// its arguments: a value full of shell syntax arrives as one argument and runs nothing.
    #[test]
    fn hostile_values_stay_arguments() {
        let dir = std::env::temp_dir().join(format!("provision-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pwned = dir.join("pwned");
        let hostile = format!(
            "x'; touch {p}; $(touch {p}) `touch {p}` \"",
            p = pwned.display()
        );
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in [
            "rpm",
            "dpkg-query",
            "systemctl",
            "hostname",
            "readlink",
            "firewall-cmd",
            "nft",
            "getenforce",
            "restorecon",
            "ip",
            "getent",
            "getcap",
        ] {
            let path = bin.join(tool);
            std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
            std::process::Command::new("chmod")
                .arg("+x")
                .arg(&path)
                .status()
                .unwrap();
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        for c in all_kinds(&hostile) {
            let cmd = c.command();
            std::process::Command::new("sh")
                .args(["-c", &cmd])
                .env("PATH", &path)
                .output()
                .unwrap();
            assert!(!pwned.exists(), "{c:?} ran the value: {cmd}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
