//! Which server stands behind the proxies: the benchmark's own monoio responder (fast, never
//! closes a keep-alive connection) or a real server with its real habits: Debian's nginx serving
//! static files (closes an upstream connection after `keepalive_requests 1000`) or Apache with
//! the event MPM (closes after `MaxKeepAliveRequests 100` and 5 s idle). Each serves the same
//! paths with the same body sizes ([`crate::backend::PATHS`]).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
#[cfg(test)]
use std::time::Duration;

use crate::backend::PATHS;
use crate::targets::{free_port, spawn_listening, start_backend, Proc, TempDir};
use crate::{BenchError, Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Monoio,
    Nginx,
    Apache,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] =
        [BackendKind::Monoio, BackendKind::Nginx, BackendKind::Apache];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Monoio => "monoio",
            BackendKind::Nginx => "nginx",
            BackendKind::Apache => "apache",
        }
    }

    pub fn parse(s: &str) -> Result<BackendKind> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                BenchError::Other(format!("unknown backend {s:?} (monoio, nginx or apache)"))
            })
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A running backend. Fields drop in order: the process first, then its directory.
#[derive(Debug)]
pub struct Backend {
    pub kind: BackendKind,
    pub proc: Proc,
    pub port: u16,
    pub dir: Option<TempDir>,
}

impl Backend {
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// Start a backend with `threads` workers (monoio threads, nginx worker processes, Apache
/// child processes). `exe` is loadbench itself, which runs the monoio backend.
pub fn start(kind: BackendKind, exe: &Path, threads: usize) -> Result<Backend> {
    if kind == BackendKind::Monoio {
        let (proc, port) = start_backend(exe, threads)?;
        return Ok(Backend {
            kind,
            proc,
            port,
            dir: None,
        });
    }
    let dir = TempDir::new(&format!("backend-{kind}"))?;
    let root = dir.path().join("www");
    write_docroot(&root)?;
    let port = free_port()?;
    let log = dir.path().join("stderr.log");
    let mut cmd = match kind {
        BackendKind::Nginx => {
            let conf = dir.path().join("nginx.conf");
            let text = nginx_backend_config(port, threads, dir.path(), &root);
            fs::write(&conf, text).ctx("write backend nginx.conf")?;
            let mut c = Command::new("nginx");
            c.arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"));
            c.arg("-c").arg(conf).args(["-g", "daemon off;"]);
            c
        }
        _ => {
            let conf = dir.path().join("apache2.conf");
            let text = apache_config(port, threads, dir.path(), &root);
            fs::write(&conf, text).ctx("write apache2.conf")?;
            let mut c = Command::new("apache2");
            c.arg("-f").arg(conf).arg("-DFOREGROUND");
            c
        }
    };
    let proc = spawn_listening(&format!("backend {kind}"), &mut cmd, port, &log)?;
    Ok(Backend {
        kind,
        proc,
        port,
        dir: Some(dir),
    })
}

/// One file per benchmark path, of the same size as the monoio backend's bodies.
fn write_docroot(root: &Path) -> Result<()> {
    fs::create_dir_all(root).ctx(format_args!("create {}", root.display()))?;
    for (path, len) in PATHS {
        let file: PathBuf = root.join(path.trim_start_matches('/'));
        fs::write(&file, vec![b'x'; len]).ctx(format_args!("write {}", file.display()))?;
    }
    Ok(())
}

/// nginx as a static file server with its defaults for keep-alive (75 s, 1000 requests per
/// connection), logs off.
pub fn nginx_backend_config(port: u16, workers: usize, dir: &Path, root: &Path) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
}}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
    }}
}}
"#,
        root = root.display(),
    )
}

/// Apache 2.4 with the event MPM and Debian's keep-alive defaults (`KeepAliveTimeout 5`,
/// `MaxKeepAliveRequests 100`): the backend most likely to close pooled connections under us.
/// All child processes start at once: growing from one by Apache's spawn rate (one more per
/// second, doubling) during a short run made it close keep-alive connections while busy.
pub fn apache_config(port: u16, processes: usize, dir: &Path, root: &Path) -> String {
    let d = dir.display();
    let m = "/usr/lib/apache2/modules";
    format!(
        r#"ServerRoot "{d}"
DefaultRuntimeDir "{d}"
PidFile "{d}/apache2.pid"
ErrorLog "{d}/error.log"
LogLevel warn
Mutex file:{d} default
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
User www-data
Group www-data
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
ListenBacklog 4096
KeepAlive On
KeepAliveTimeout 5
MaxKeepAliveRequests 100
StartServers {servers}
ServerLimit {servers}
ThreadsPerChild 64
MaxRequestWorkers {workers}
DocumentRoot "{root}"
<Directory "{root}">
    Require all granted
</Directory>
"#,
        servers = processes.max(1) * 32,
        workers = processes.max(1) * 32 * 64,
        root = root.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in BackendKind::ALL {
            assert_eq!(BackendKind::parse(k.name()).unwrap(), k);
        }
        assert!(BackendKind::parse("lighttpd").is_err());
    }

    /// Each real backend starts and serves every path with the monoio backend's body size.
    #[test]
    fn real_backends_serve_every_path() {
        use std::io::{Read, Write};
        let exe = PathBuf::from("/nonexistent");
        for kind in [BackendKind::Nginx, BackendKind::Apache] {
            let b = start(kind, &exe, 1).unwrap();
            for (path, len) in PATHS {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", b.port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut out = Vec::new();
                s.read_to_end(&mut out).unwrap();
                let text = String::from_utf8_lossy(&out);
                assert!(text.starts_with("HTTP/1.1 200"), "{kind} {path}: {text}");
                let body = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                assert_eq!(out.len() - body, len, "{kind} {path}");
            }
        }
    }
}
