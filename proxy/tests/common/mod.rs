//! Test harness: real HTTP backends on loopback (std threads, real sockets), a real `proxy`
//! process started from the built binary, and a raw HTTP client. Everything stays on 127.0.0.1
//! and is stopped in Drop, by pid, even when a test fails.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A request as the backend received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the backend does with a request.
pub enum Reply {
    /// A response with Content-Length (or chunked), keep-alive unless `close`.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        chunked: bool,
        close: bool,
    },
    /// Body delimited by closing the connection (no CL, no TE).
    UntilClose(Vec<u8>),
    /// Never answer (until the backend is dropped).
    Hang,
    /// Close the connection without a response.
    Drop,
}

impl Reply {
    pub fn text(body: &str) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: body.as_bytes().to_vec(),
            chunked: false,
            close: false,
        }
    }
    pub fn bytes(body: Vec<u8>) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![],
            body,
            chunked: false,
            close: false,
        }
    }
    pub fn chunked(body: Vec<u8>) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![],
            body,
            chunked: true,
            close: false,
        }
    }
}

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

pub struct Backend {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// A backend answering every request with `page` (like the Apache httpd nodes behind the
    /// balancers).
    pub fn page(page: &'static str) -> Backend {
        Backend::start(move |_| Reply::text(page))
    }

    pub fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (received, connections, stop) =
                (received.clone(), connections.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let (handler, received, stop) =
                                (handler.clone(), received.clone(), stop.clone());
                            thread::spawn(move || {
                                let _ = serve_backend_conn(s, &*handler, &received, &stop);
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        Backend {
            addr,
            received,
            connections,
            stop,
        }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Received {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("backend received nothing")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_backend_conn(
    s: TcpStream,
    handler: &Handler,
    received: &Mutex<Vec<Received>>,
    stop: &AtomicBool,
) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut w = s;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(cl) = get("content-length") {
            body.resize(cl.parse().unwrap_or(0), 0);
            reader.read_exact(&mut body)?;
        } else if get("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
        {
            body = read_chunked(&mut reader)?;
        }
        let req = Received {
            method,
            target,
            headers,
            body,
        };
        received.lock().unwrap().push(req.clone());
        let head_only = req.method == "HEAD";
        match handler(&req) {
            Reply::Full {
                status,
                headers,
                body,
                chunked,
                close,
            } => {
                let mut out = format!("HTTP/1.1 {status} X\r\nServer: test-backend\r\n");
                for (n, v) in &headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                let no_body = head_only || status == 204 || status == 304;
                if chunked {
                    out.push_str("Transfer-Encoding: chunked\r\n");
                } else if status != 204 && status != 304 {
                    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                if close {
                    out.push_str("Connection: close\r\n");
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                if !no_body {
                    if chunked {
                        for piece in body.chunks(1000) {
                            bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                            bytes.extend_from_slice(piece);
                            bytes.extend_from_slice(b"\r\n");
                        }
                        bytes.extend_from_slice(b"0\r\n\r\n");
                    } else {
                        bytes.extend_from_slice(&body);
                    }
                }
                w.write_all(&bytes)?;
                if close {
                    return Ok(());
                }
            }
            Reply::UntilClose(body) => {
                w.write_all(b"HTTP/1.1 200 OK\r\nServer: test-backend\r\n\r\n")?;
                w.write_all(&body)?;
                return Ok(());
            }
            Reply::Hang => {
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(20));
                }
                return Ok(());
            }
            Reply::Drop => return Ok(()),
        }
    }
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            loop {
                let mut t = String::new();
                r.read_line(&mut t)?;
                if t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `proxy` process with its own config file and log directory.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    pub config_path: PathBuf,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "proxy-test-{}-{}-{tag}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `upstream` is the body of `[upstream.u]` without the header; `server_extra` goes into
/// `[[server]]`; `top` is put before everything.
pub fn config_text(
    port: u16,
    admin: u16,
    top: &str,
    upstream: &str,
    server_extra: &str,
    log: &str,
) -> String {
    // One worker unless `top` says how many.
    let workers = if top.lines().any(|l| l.trim_start().starts_with("workers ")) {
        ""
    } else {
        "workers = 1\n"
    };
    format!(
        "{workers}access_log = \"{log}\"\nadmin = \"127.0.0.1:{admin}\"\n{top}\n\n\
         [upstream.u]\n{upstream}\n\n\
         [[server]]\nlisten = [\"127.0.0.1:{port}\"]\n{server_extra}\n\n\
         [[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n"
    )
}

pub fn servers(backends: &[&Backend]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{}\" }}", b.addr))
        .collect();
    format!("servers = [{}]", list.join(", "))
}

impl Proxy {
    /// Start with an upstream made of `backends` (weight 1 each) and optional extra settings.
    pub fn with_backends(backends: &[&Backend], upstream_extra: &str, server_extra: &str) -> Proxy {
        let upstream = format!("{}\n{upstream_extra}", servers(backends));
        Proxy::start("", &upstream, server_extra)
    }

    pub fn start(top: &str, upstream: &str, server_extra: &str) -> Proxy {
        let dir = temp_dir("proxy");
        let temp = dir.join("client_body_temp");
        let top = if top.contains("client_body_temp_path") {
            top.to_string()
        } else {
            format!("client_body_temp_path = \"{}\"\n{top}", temp.display())
        };
        let top = top.as_str();
        let port = free_port();
        let admin = free_port();
        let log = dir.join("access.log");
        let text = config_text(
            port,
            admin,
            top,
            upstream,
            server_extra,
            &log.display().to_string(),
        );
        let config_path = dir.join("proxy.toml");
        std::fs::write(&config_path, text).unwrap();
        Proxy::spawn(config_path, dir, port, admin, &[])
    }

    pub fn spawn(
        config_path: PathBuf,
        dir: PathBuf,
        port: u16,
        admin: u16,
        extra_args: &[&str],
    ) -> Proxy {
        let child = Command::new(env!("CARGO_BIN_EXE_proxy"))
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("start proxy");
        let p = Proxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            dir,
            config_path,
        };
        p.wait_ready();
        p
    }

    /// Take over a proxy started by the test itself (e.g. under `prlimit`).
    pub fn adopt(child: Child, dir: PathBuf, port: u16, admin: u16, config_path: PathBuf) -> Proxy {
        let p = Proxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            dir,
            config_path,
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).is_ok() && TcpStream::connect(self.admin).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("proxy did not start; stderr:\n{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        let sig = nix::sys::signal::Signal::try_from(sig).expect("a known signal");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        let mut c = self.client();
        c.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        ));
        c.response()
    }

    pub fn admin_get(&self, path: &str) -> Response {
        let mut c = Client::connect(self.admin);
        c.send(&format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n"));
        c.response()
    }

    /// Wait for the process to exit by itself (true) within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Value of an unlabelled metric from /metrics.
    pub fn metric(&self, name: &str) -> u64 {
        let m = self.admin_get("/metrics").text();
        m.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing:\n{m}"))
    }

    /// Resident memory of the whole proxy process (all workers), from /proc/PID/status.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// CPU time (user + system) the proxy used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Paths the proxy holds open (targets of /proc/PID/fd/*).
    pub fn open_files(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .collect()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client on one connection.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    pub fn send(&mut self, data: &str) {
        self.send_bytes(data.as_bytes());
    }

    pub fn send_bytes(&mut self, data: &[u8]) {
        self.stream.write_all(data).expect("send");
    }

    /// Read one response (for a request that was not HEAD).
    pub fn response(&mut self) -> Response {
        self.try_response(false).expect("read response")
    }

    pub fn head_response(&mut self) -> Response {
        self.try_response(true).expect("read response")
    }

    pub fn try_response(&mut self, head_request: bool) -> io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {line:?}"),
                )
            })?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(resp);
        }
        if let Some(cl) = resp.header("content-length") {
            let n: usize = cl.parse().unwrap_or(0);
            resp.body.resize(n, 0);
            self.reader.read_exact(&mut resp.body)?;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            resp.body = read_chunked(&mut self.reader)?;
        } else {
            self.reader.read_to_end(&mut resp.body)?;
        }
        Ok(resp)
    }

    /// True when the server closed the connection (EOF) within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
            || matches!(self.reader.read(&mut b), Err(e) if e.kind() == io::ErrorKind::ConnectionReset)
    }
}
