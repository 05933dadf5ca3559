//! The things being measured: the backend itself ("direct"), our proxy, nginx and HAProxy. Each
//! runs as a child process with a generated config in its own temporary directory, is started by
//! pid and stopped by pid (the whole process tree) when its guard drops.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{procfs, BenchError, Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// wrk straight to the backend: the ceiling.
    Direct,
    Ours,
    Nginx,
    Haproxy,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Direct, Kind::Ours, Kind::Nginx, Kind::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Ours => "proxy",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s || (s == "ours" && *k == Kind::Ours))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("loadbench-{}-{tag}-{n}", std::process::id()));
        fs::create_dir_all(&p).ctx(format_args!("create {}", p.display()))?;
        Ok(TempDir(p))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process (and its descendants) stopped by pid on drop: SIGTERM to the tree, then
/// SIGKILL to whatever is left after a grace period.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Proc> {
        let child = cmd.spawn().ctx(format_args!("start {name}"))?;
        Ok(Proc {
            child,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::Other(format!(
                "{} exited early: {status}",
                self.name
            ))),
            Err(e) => Err(BenchError::Io {
                what: format!("wait for {}", self.name),
                source: e,
            }),
        }
    }

    pub fn child_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a pid of a process we started (or its descendant); no memory involved.
    unsafe {
        libc::kill(pid, sig);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pids = procfs::tree(self.pid());
        for &p in &pids {
            signal(p, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Descendants that outlive their parent (nginx workers of a killed master) by pid too.
        for &p in pids.iter().skip(1) {
            if Path::new(&format!("/proc/{p}")).exists() {
                signal(p, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound then released; the short race is acceptable on a bench host).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").ctx("bind a free port")?;
    Ok(l.local_addr().ctx("local addr")?.port())
}

/// Wait until `port` accepts connections, failing early if the process died.
pub fn wait_listening(p: &mut Proc, port: u16, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    loop {
        p.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Other(format!(
                "{} did not listen on {addr} within {timeout:?}",
                p.name
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running target: where to send load, and which process tree to account.
#[derive(Debug)]
pub struct Running {
    pub kind: Kind,
    pub port: u16,
    /// None for `Direct` (the backend is accounted separately).
    pub proc: Option<Proc>,
    /// Config and logs; kept until the process is gone (fields drop in order: proc first).
    pub dir: Option<TempDir>,
}

impl Running {
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

/// Start the backend: `exe backend --threads N` prints its port on the first stdout line.
pub fn start_backend(exe: &Path, threads: usize) -> Result<(Proc, u16)> {
    let mut p = Proc::spawn(
        "backend",
        Command::new(exe)
            .args(["backend", "--threads", &threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )?;
    let out = p
        .child_stdout()
        .ok_or_else(|| BenchError::Other("backend has no stdout".into()))?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .ctx("read backend port")?;
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BenchError::Other(format!("backend printed {line:?}, not its port")))?;
    wait_listening(&mut p, port, Duration::from_secs(10))?;
    Ok((p, port))
}

/// Settings shared by every proxy under test.
#[derive(Debug, Clone)]
pub struct ProxySetup {
    pub backend_port: u16,
    /// Worker processes / threads for each proxy.
    pub workers: usize,
    /// Client connections each proxy must accept (idle test + margin).
    pub max_conns: usize,
    /// RLIMIT_NOFILE the proxies inherit (HAProxy refuses to start if it needs more, and
    /// without CAP_SYS_RESOURCE nobody can raise the hard limit).
    pub nofile: u64,
    /// Our proxy's binary.
    pub proxy_bin: PathBuf,
    /// Extra command-line arguments for our proxy (e.g. `--engine epoll`).
    pub proxy_args: Vec<String>,
    /// Extra top-level proxy.toml lines (e.g. `pin_workers = true`), to compare settings.
    pub proxy_toml: Vec<String>,
    /// `keepalive` of the upstream, for ours and nginx alike.
    pub upstream_keepalive: UpstreamKeepalive,
}

/// The upstream `keepalive` under test. HAProxy keeps its default either way (see
/// [`UPSTREAM_KEEPALIVE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKeepalive {
    /// Our default (`keepalive = "auto"`, the pool sizes itself); nginx has no such mode and
    /// gets [`UPSTREAM_KEEPALIVE`].
    Auto,
    /// The same `keepalive N` for ours and nginx.
    Count(usize),
}

impl UpstreamKeepalive {
    /// "auto" or a number.
    pub fn parse(s: &str) -> std::result::Result<UpstreamKeepalive, String> {
        match s {
            "auto" => Ok(UpstreamKeepalive::Auto),
            n => n
                .parse()
                .map(UpstreamKeepalive::Count)
                .map_err(|_| format!("{n:?} is neither \"auto\" nor a number")),
        }
    }

    /// The line for our proxy.toml (none for auto: it is the default).
    fn ours_line(self) -> String {
        match self {
            UpstreamKeepalive::Auto => String::new(),
            UpstreamKeepalive::Count(n) => format!("keepalive = {n}"),
        }
    }

    /// nginx's `keepalive N`.
    pub fn nginx_count(self) -> usize {
        match self {
            UpstreamKeepalive::Auto => UPSTREAM_KEEPALIVE,
            UpstreamKeepalive::Count(n) => n,
        }
    }
}

impl fmt::Display for UpstreamKeepalive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamKeepalive::Auto => write!(f, "auto (ours), {UPSTREAM_KEEPALIVE} (nginx)"),
            UpstreamKeepalive::Count(n) => write!(f, "{n}"),
        }
    }
}

/// Idle upstream connections ours and nginx keep (`keepalive`) unless `--upstream-keepalive`
/// says otherwise. HAProxy keeps its default,
/// `pool-max-conn -1` (unlimited): setting it to 1024 explicitly made HAProxy 2.6 collapse at
/// 1000 clients (20k instead of 55k req/s), so the comparison uses HAProxy at its best. Enough for every client connection of the
/// largest case, so no proxy opens and closes a backend connection per request: with 32, as
/// in nginx's documentation, a thousand clients churned through backend connections and the
/// comparison measured TCP handshakes more than proxying.
pub const UPSTREAM_KEEPALIVE: usize = 1024;

pub fn ours_config(s: &ProxySetup, port: u16) -> String {
    // The proxy closes client connections beyond `worker_connections` (default 4096) at accept:
    // the idle test holds more. An explicit `--proxy-toml 'worker_connections = N'` wins.
    let limit = if s
        .proxy_toml
        .iter()
        .any(|l| l.trim_start().starts_with("worker_connections"))
    {
        String::new()
    } else {
        format!("worker_connections = {}", s.max_conns)
    };
    format!(
        r#"workers = {workers}
access_log = "off"
{limit}
{extra}

[upstream.backend]
servers = [{{ address = "127.0.0.1:{backend}" }}]
{keepalive}

[[server]]
listen = ["127.0.0.1:{port}"]

[[server.location]]
path = "/"
proxy_pass = "backend"
"#,
        workers = s.workers,
        backend = s.backend_port,
        keepalive = s.upstream_keepalive.ours_line(),
        extra = s.proxy_toml.join("\n"),
    )
}

pub fn nginx_config(s: &ProxySetup, port: u16, dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {nofile};
events {{
    worker_connections {conns};
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive {keepalive};
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#,
        workers = s.workers,
        backend = s.backend_port,
        // worker_connections counts client and upstream connections alike.
        conns = 2 * s.max_conns + 256,
        nofile = s.nofile,
        keepalive = s.upstream_keepalive.nginx_count(),
    )
}

pub fn haproxy_config(s: &ProxySetup, port: u16) -> String {
    format!(
        r#"global
    nbthread {workers}
    maxconn {conns}

defaults
    mode http
    maxconn {conns}
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 65s
    http-reuse always

frontend fe
    bind 127.0.0.1:{port}
    default_backend be

backend be
    server s1 127.0.0.1:{backend}
"#,
        workers = s.workers,
        backend = s.backend_port,
        conns = s.max_conns,
    )
}

/// Start `cmd` (stderr into the file `log`) and wait until it listens on `port`; an error
/// carries what it wrote to stderr.
pub fn spawn_listening(name: &str, cmd: &mut Command, port: u16, log: &Path) -> Result<Proc> {
    let stderr = File::create(log).ctx(format_args!("create {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
    let mut p = Proc::spawn(name, cmd)?;
    if let Err(e) = wait_listening(&mut p, port, Duration::from_secs(15)) {
        let tail = fs::read_to_string(log).unwrap_or_default();
        return Err(BenchError::Other(format!("{e}; its stderr:\n{tail}")));
    }
    Ok(p)
}

/// Start one target and wait until it listens.
pub fn start(kind: Kind, s: &ProxySetup) -> Result<Running> {
    let dir = TempDir::new(kind.name())?;
    let port = free_port()?;
    let log = dir.path().join("stderr.log");
    let mut cmd = match kind {
        Kind::Direct => {
            return Ok(Running {
                kind,
                port: s.backend_port,
                proc: None,
                dir: None,
            })
        }
        Kind::Ours => {
            let conf = dir.path().join("proxy.toml");
            fs::write(&conf, ours_config(s, port)).ctx("write proxy.toml")?;
            let mut c = Command::new(&s.proxy_bin);
            c.arg("--config")
                .arg(conf)
                .args(&s.proxy_args)
                .env("RUST_LOG", "warn");
            c
        }
        Kind::Nginx => {
            let conf = dir.path().join("nginx.conf");
            fs::write(&conf, nginx_config(s, port, dir.path())).ctx("write nginx.conf")?;
            let mut c = Command::new("nginx");
            c.arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(conf)
                .args(["-g", "daemon off;"]);
            c
        }
        Kind::Haproxy => {
            let conf = dir.path().join("haproxy.cfg");
            fs::write(&conf, haproxy_config(s, port)).ctx("write haproxy.cfg")?;
            let mut c = Command::new("haproxy");
            c.arg("-f").arg(conf);
            c
        }
    };
    let p = spawn_listening(kind.name(), &mut cmd, port, &log)?;
    Ok(Running {
        kind,
        port,
        proc: Some(p),
        dir: Some(dir),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> ProxySetup {
        ProxySetup {
            backend_port: 1234,
            workers: 2,
            max_conns: 9_256,
            nofile: 20_000,
            proxy_bin: PathBuf::from("proxy"),
            proxy_args: Vec::new(),
            proxy_toml: vec!["pin_workers = true".into()],
            upstream_keepalive: UpstreamKeepalive::Count(1024),
        }
    }

    #[test]
    fn configs_carry_ports_and_workers() {
        let s = setup();
        let o = ours_config(&s, 8080);
        assert!(o.contains("workers = 2") && o.contains("127.0.0.1:1234") && o.contains(":8080"));
        assert!(o.contains("access_log = \"off\"") && o.contains("keepalive = 1024"));
        assert!(o.contains("\npin_workers = true\n"), "{o}");
        assert!(o.contains("\nworker_connections = 9256\n"), "{o}");
        let mut own = setup();
        own.proxy_toml = vec!["worker_connections = 5".into()];
        assert_eq!(
            ours_config(&own, 1).matches("worker_connections").count(),
            1
        );
        let n = nginx_config(&s, 8081, Path::new("/tmp/x"));
        assert!(n.contains("worker_processes 2;") && n.contains("keepalive 1024;"));
        assert!(n.contains("proxy_set_header Connection \"\";") && n.contains("access_log off;"));
        assert!(n.contains("listen 127.0.0.1:8081") && n.contains("pid /tmp/x/nginx.pid;"));
        let h = haproxy_config(&s, 8082);
        assert!(
            h.contains("nbthread 2")
                && h.contains("http-reuse always")
                && !h.contains("pool-max-conn")
        );
        assert!(h.contains("bind 127.0.0.1:8082") && !h.contains("log "));
    }

    #[test]
    fn upstream_keepalive_auto_is_our_default_and_a_number_for_nginx() {
        let mut s = setup();
        s.upstream_keepalive = UpstreamKeepalive::parse("auto").unwrap();
        assert!(!ours_config(&s, 8080).contains("keepalive"));
        assert!(nginx_config(&s, 8081, Path::new("/x")).contains("keepalive 1024;"));
        s.upstream_keepalive = UpstreamKeepalive::parse("64").unwrap();
        assert!(ours_config(&s, 8080).contains("\nkeepalive = 64\n"));
        assert!(nginx_config(&s, 8081, Path::new("/x")).contains("keepalive 64;"));
        assert!(UpstreamKeepalive::parse("lots").is_err());
    }

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("ours"), Some(Kind::Ours));
        assert_eq!(Kind::parse("apache"), None);
    }

    #[test]
    fn nginx_and_haproxy_accept_the_generated_configs() {
        let dir = TempDir::new("cfgtest").unwrap();
        let s = setup();
        let n = dir.path().join("nginx.conf");
        fs::write(&n, nginx_config(&s, 8081, dir.path())).unwrap();
        let out = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-t")
            .arg("-c")
            .arg(&n)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let h = dir.path().join("haproxy.cfg");
        fs::write(&h, haproxy_config(&s, 8082)).unwrap();
        let out = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&h)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}
