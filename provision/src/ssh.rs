//! The SSH transport (libssh2 through the `ssh2` crate): one session per host, host keys
//! checked against a known_hosts file, key-file or ssh-agent authentication, commands with a
//! timeout returning exit status, stdout and stderr, and file upload over scp.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::quote::shell_quote;
use ssh2::{MethodType, Session};

use crate::hostkey::{check_host_key, hostkey_preference};

/// What a remote command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error(
        "host key of {host} is not in {known_hosts} (SHA256:{fingerprint}); refusing to connect \
         (pass --accept-new-host-keys to record it)"
    )]
    UnknownHostKey {
        host: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error(
        "HOST KEY CHANGED for {host}: it now presents SHA256:{fingerprint}, which does not match \
         {known_hosts}; refusing to connect (someone may be intercepting the connection; if the \
         host was reinstalled, remove its old line from {known_hosts})"
    )]
    HostKeyChanged {
        host: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error(
        "host key of {host} (SHA256:{fingerprint}) could not be checked against {known_hosts}; \
         refusing to connect (and not recording it: the host may be listed with another key)"
    )]
    HostKeyCheckFailed {
        host: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error("authentication as {user}@{host} failed ({method}): {reason}")]
    Auth {
        user: String,
        host: String,
        method: String,
        reason: String,
    },
    #[error("command timed out after {secs}s: {command}")]
    Timeout { command: String, secs: u64 },
    #[error("ssh {context}: {source}")]
    Ssh {
        context: String,
        source: ssh2::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl SshError {
    /// Errors that mean "the host could not be reached or trusted" (Ansible's UNREACHABLE),
    /// as opposed to a command that failed on a reachable host.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SshError::Unreachable { .. }
                | SshError::UnknownHostKey { .. }
                | SshError::HostKeyChanged { .. }
                | SshError::HostKeyCheckFailed { .. }
                | SshError::Auth { .. }
        )
    }
}

pub(crate) fn ssh_err(context: impl Into<String>) -> impl FnOnce(ssh2::Error) -> SshError {
    let context = context.into();
    move |source| SshError::Ssh { context, source }
}

/// How to reach and trust the hosts.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub user: String,
    pub port: u16,
    /// Private key file; `None` = ssh-agent.
    pub key: Option<PathBuf>,
    pub known_hosts: PathBuf,
    /// Record keys of hosts not yet in known_hosts (changed keys are always refused).
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Print every remote command with its exit status and duration.
    pub verbose: bool,
}

/// One SSH session to one host.
pub struct Ssh {
    session: Session,
    host: String,
    opts: SshOptions,
    /// Wrap commands in `sudo -n` (user is not root).
    sudo: bool,
    uploads: u32,
    /// Private staging directory (mode 0700, owned by the login user), made on first upload.
    staging: Option<String>,
}

/// The name a host has in known_hosts (`[host]:port` for non-standard ports, as OpenSSH).
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `~/x` -> `$HOME/x`.
pub fn expand_tilde(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| p.to_path_buf()),
        Err(_) => p.to_path_buf(),
    }
}

/// `command` as sent to the host: a non-root login runs it through `sudo -n` (never prompts:
/// a missing sudo rule fails with sudo's message instead of hanging).
pub fn wrap_command(sudo: bool, command: &str) -> String {
    if sudo {
        format!("sudo -n sh -c {}", shell_quote(command))
    } else {
        command.to_string()
    }
}

impl Ssh {
    /// Connects, checks the host key and authenticates.
    pub fn connect(host: &str, opts: &SshOptions) -> Result<Ssh, SshError> {
        let ip: std::net::IpAddr = host.parse().map_err(|_| SshError::Unreachable {
            addr: SocketAddr::from(([0, 0, 0, 0], opts.port)),
            reason: format!("{host:?} is not an IP address"),
        })?;
        let addr = SocketAddr::new(ip, opts.port);
        let tcp = TcpStream::connect_timeout(&addr, opts.connect_timeout).map_err(|e| {
            SshError::Unreachable {
                addr,
                reason: e.to_string(),
            }
        })?;
        // Each command is a few small request/reply packets: without TCP_NODELAY, Nagle and
        // delayed ACKs add tens of milliseconds to every one of them.
        let _ = tcp.set_nodelay(true);
        let mut session = Session::new().map_err(ssh_err("session"))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(duration_ms(opts.connect_timeout));
        let name = known_hosts_name(host, opts.port);
        session
            .method_pref(
                MethodType::HostKey,
                &hostkey_preference(&opts.known_hosts, &name),
            )
            .map_err(ssh_err("host key preference"))?;
        session.handshake().map_err(|e| SshError::Unreachable {
            addr,
            reason: format!("SSH handshake: {e}"),
        })?;
        check_host_key(&session, &name, opts)?;

        let user = opts.user.as_str();
        let auth = match &opts.key {
            Some(key) => {
                let key = expand_tilde(key);
                session
                    .userauth_pubkey_file(user, None, &key, None)
                    .map_err(|e| SshError::Auth {
                        user: user.into(),
                        host: host.into(),
                        method: format!("key {}", key.display()),
                        reason: e.to_string(),
                    })
            }
            None => session.userauth_agent(user).map_err(|e| SshError::Auth {
                user: user.into(),
                host: host.into(),
                method: "ssh-agent".into(),
                reason: e.to_string(),
            }),
        };
        auth?;
        Ok(Ssh {
            session,
            host: host.to_string(),
            opts: opts.clone(),
            sudo: user != "root",
            uploads: 0,
            staging: None,
        })
    }

    /// Drops this session and opens a new one (verifies a host is still reachable, e.g. after
    /// its address configuration changed).
    pub fn reconnect(&mut self) -> Result<(), SshError> {
        let _ = self.session.disconnect(None, "reconnecting", None);
        let mut fresh = Ssh::connect(&self.host, &self.opts)?;
        fresh.uploads = self.uploads;
        fresh.staging = self.staging.take();
        *self = fresh;
        Ok(())
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The command as sent: wrapped in `sudo -n sh -c` when not root.
    fn wrap(&self, command: &str) -> String {
        wrap_command(self.sudo, command)
    }

    /// Runs `command` (a POSIX shell command line) with the default timeout.
    pub fn run(&mut self, command: &str) -> Result<Output, SshError> {
        self.run_timeout(command, self.opts.command_timeout)
    }

    pub fn run_timeout(&mut self, command: &str, timeout: Duration) -> Result<Output, SshError> {
        self.run_stdin(command, None, timeout)
    }

    /// Runs `command`, feeding `stdin` if given. A command silent for longer than `timeout`
    /// fails with [`SshError::Timeout`].
    pub fn run_stdin(
        &mut self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        let started = std::time::Instant::now();
        let result = self.run_inner(command, stdin, timeout);
        if self.opts.verbose {
            let status = match &result {
                Ok(o) => format!("exit {}", o.status),
                Err(e) => e.to_string(),
            };
            crate::out::line(
                &self.host,
                &format!(
                    "$ {command}  [{status}, {} ms]",
                    started.elapsed().as_millis()
                ),
            );
        }
        result
    }

    fn run_inner(
        &mut self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        self.session.set_timeout(duration_ms(timeout));
        let timed_out = |e: &ssh2::Error| {
            matches!(e.code(), ssh2::ErrorCode::Session(-9))
                || e.message().contains("Timed out")
                || e.message().contains("timed out")
        };
        let map = |ctx: &str, e: ssh2::Error| {
            if timed_out(&e) {
                SshError::Timeout {
                    command: command.to_string(),
                    secs: timeout.as_secs(),
                }
            } else {
                SshError::Ssh {
                    context: format!("{ctx} ({command})"),
                    source: e,
                }
            }
        };
        let io = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.to_string().to_lowercase().contains("timed out")
            {
                SshError::Timeout {
                    command: command.to_string(),
                    secs: timeout.as_secs(),
                }
            } else {
                SshError::Io {
                    context: format!("ssh read ({command})"),
                    source: e,
                }
            }
        };
        let mut ch = self
            .session
            .channel_session()
            .map_err(|e| map("open channel", e))?;
        ch.exec(&self.wrap(command)).map_err(|e| map("exec", e))?;
        if let Some(data) = stdin {
            ch.write_all(data).map_err(io)?;
        }
        ch.send_eof().map_err(|e| map("eof", e))?;
        let mut out = Vec::new();
        ch.read_to_end(&mut out).map_err(io)?;
        let mut err = Vec::new();
        ch.stderr().read_to_end(&mut err).map_err(io)?;
        ch.wait_close().map_err(|e| map("close", e))?;
        let status = ch.exit_status().map_err(|e| map("exit status", e))?;
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }

    /// Uploads `data` over scp to a fresh staging path under /var/tmp (writable by any user,
    /// and on the same machine as the target) and returns that path; the caller installs it.
    pub fn upload_staging(&mut self, data: &[u8], mode: i32) -> Result<String, SshError> {
        let dir = match &self.staging {
            Some(d) => d.clone(),
            None => {
                // As the login user, not through sudo: scp writes into it as that user. A
                // fresh 0700 directory, so no other local user can swap or edit a staged file
                // before root installs it.
                let cmd = "mktemp -d /var/tmp/provision.XXXXXXXX";
                let out = self.run_unwrapped(cmd, self.opts.command_timeout)?;
                let dir = out.stdout.trim().to_string();
                if !out.success() || !dir.starts_with("/var/tmp/provision.") {
                    return Err(SshError::Io {
                        context: format!("{cmd}: exit {}", out.status),
                        source: std::io::Error::other(out.stderr.trim().to_string()),
                    });
                }
                self.staging = Some(dir.clone());
                dir
            }
        };
        self.uploads += 1;
        let path = format!("{dir}/{}", self.uploads);
        self.upload(&path, data, mode)?;
        Ok(path)
    }

    /// Removes the staging directory (best effort; it is empty unless a run was interrupted).
    pub fn cleanup(&mut self) {
        if let Some(dir) = self.staging.take() {
            let _ = self.run_unwrapped(
                &format!("rm -rf {}", shell_quote(&dir)),
                self.opts.command_timeout,
            );
        }
    }

    fn run_unwrapped(&mut self, command: &str, timeout: Duration) -> Result<Output, SshError> {
        let sudo = std::mem::replace(&mut self.sudo, false);
        let r = self.run_timeout(command, timeout);
        self.sudo = sudo;
        r
    }

    /// Uploads `data` to `path` with `mode` over scp (as the login user).
    pub fn upload(&mut self, path: &str, data: &[u8], mode: i32) -> Result<(), SshError> {
        self.session
            .set_timeout(duration_ms(self.opts.command_timeout));
        let ctx = format!("scp upload to {path}");
        let mut ch = self
            .session
            .scp_send(Path::new(path), mode, data.len() as u64, None)
            .map_err(ssh_err(ctx.clone()))?;
        ch.write_all(data).map_err(|source| SshError::Io {
            context: ctx.clone(),
            source,
        })?;
        ch.send_eof().map_err(ssh_err(ctx.clone()))?;
        ch.wait_eof().map_err(ssh_err(ctx.clone()))?;
        ch.close().map_err(ssh_err(ctx.clone()))?;
        ch.wait_close().map_err(ssh_err(ctx))?;
        Ok(())
    }
}

fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_names() {
        assert_eq!(known_hosts_name("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(known_hosts_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
    }

    #[test]
    fn non_root_commands_go_through_sudo() {
        assert_eq!(wrap_command(false, "echo 'a'"), "echo 'a'");
        assert_eq!(
            wrap_command(true, "echo 'a' > /etc/x"),
            "sudo -n sh -c 'echo '\\''a'\\'' > /etc/x'"
        );
        // Through a stand-in `sudo` that drops `-n` and runs the rest: the command arrives
        // intact, quotes and redirections included.
        let dir = std::env::temp_dir().join(format!("provision-sudo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sudo = dir.join("sudo");
        std::fs::write(
            &sudo,
            "#!/bin/sh\n[ \"$1\" = -n ] || exit 9\nshift\nexec \"$@\"\n",
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&sudo)
            .status()
            .unwrap();
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let cmd = "printf '%s|' \"it's\" a\\ b; echo done";
        let out = std::process::Command::new("sh")
            .args(["-c", &wrap_command(true, cmd)])
            .env("PATH", path)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's|a b|done\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
