//! Running probes: a shell script (exit status 0 = OK, killed with its process group on
//! timeout) or the built-in HTTP GET (status 200 within the timeout = OK), each periodically
//! on its own thread so a slow check never delays adverts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::url::HttpUrl;

/// A probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Run with /bin/sh -c; exit status 0 = OK; killed (with its process group) on timeout.
    Script(String),
    /// HTTP/1.0 GET; status 200 within the timeout = OK.
    Http(HttpUrl),
}

/// Status code of an HTTP response's first line, if it is one.
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(head.get(..line_end)?).ok()?;
    let mut parts = line.trim_end_matches('\r').splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Runs one probe to completion or timeout; true = OK.
pub fn run_probe(probe: &Probe, timeout: Duration) -> bool {
    match probe {
        Probe::Script(cmd) => run_script(cmd, timeout),
        Probe::Http(url) => http_get_ok(url, timeout),
    }
}

fn run_script(cmd: &str, timeout: Duration) -> bool {
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group, so a timeout kills the script's children too.
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%cmd, error = %e, "cannot start track script");
            return false;
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() >= deadline => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    // The process group we created for this child: its own children too.
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill();
                let _ = child.wait();
                tracing::debug!(%cmd, "track script timed out");
                return false;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return false,
        }
    }
}

fn http_get_ok(url: &HttpUrl, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = match (url.host.as_str(), url.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(_) => return false,
    };
    let Some(addr) = addrs.first() else {
        return false;
    };
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let Ok(mut s) = TcpStream::connect_timeout(addr, remaining().max(Duration::from_millis(1)))
    else {
        return false;
    };
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {}:{}\r\nUser-Agent: vrrp-track\r\nConnection: close\r\n\r\n",
        url.path, host, url.port
    );
    if s.set_write_timeout(Some(remaining().max(Duration::from_millis(1))))
        .and_then(|_| s.write_all(req.as_bytes()))
        .is_err()
    {
        return false;
    }
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while head.len() < 4096 {
        let left = remaining();
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                head.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                if head.contains(&b'\n') {
                    break;
                }
            }
        }
    }
    parse_status_line(&head) == Some(200)
}

/// One script to run periodically.
#[derive(Debug, Clone)]
pub struct ScriptSpec {
    pub name: String,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
}

/// A running probe thread; dropping it stops the thread (promptly: it waits on a channel).
pub struct Runner {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Runner {
    /// Starts a thread that runs `spec` immediately and then every `interval` (measured from
    /// the start of the previous run, so a slow probe does not stretch the period), reporting
    /// each raw result with `report(success)`.
    pub fn spawn(
        spec: ScriptSpec,
        report: Arc<dyn Fn(bool) + Send + Sync>,
    ) -> std::io::Result<Runner> {
        let (tx, rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(format!("track-{}", spec.name))
            .spawn(move || loop {
                let started = Instant::now();
                let ok = run_probe(&spec.probe, spec.timeout);
                report(ok);
                let next = started + spec.interval.max(Duration::from_millis(10));
                match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })?;
        Ok(Runner {
            stop: Some(tx),
            handle: Some(handle),
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            // A probe in progress finishes first (bounded by its timeout).
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn status_line_parsing() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 x\r\n"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 200"), None);
        assert_eq!(parse_status_line(b"SSH-2.0\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20000 OK\n"), None);
        assert_eq!(parse_status_line(&[0xff, b'\n']), None);
    }

    #[test]
    fn script_exit_status_and_timeout() {
        assert!(run_probe(
            &Probe::Script("exit 0".into()),
            Duration::from_secs(2)
        ));
        assert!(!run_probe(
            &Probe::Script("exit 3".into()),
            Duration::from_secs(2)
        ));
        let t = Instant::now();
        assert!(!run_probe(
            &Probe::Script("sleep 5; exit 0".into()),
            Duration::from_millis(200)
        ));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "timeout not enforced: {:?}",
            t.elapsed()
        );
    }

    /// A tiny HTTP server on loopback answering each connection with `status`.
    fn serve(status: &'static str, delay: Duration) -> (SocketAddr, JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                std::thread::sleep(delay);
                let _ = c.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                );
            }
        });
        (addr, h)
    }

    fn http(addr: SocketAddr) -> Probe {
        Probe::Http(super::super::url::parse(&format!("http://{addr}/healthz")).unwrap())
    }

    #[test]
    fn http_probe_status_and_timeout() {
        let (a, h) = serve("200 OK", Duration::ZERO);
        assert!(run_probe(&http(a), Duration::from_secs(2)));
        h.join().unwrap();
        let (a, h) = serve("503 Unavailable", Duration::ZERO);
        assert!(!run_probe(&http(a), Duration::from_secs(2)));
        h.join().unwrap();
        let (a, h) = serve("200 OK", Duration::from_millis(600));
        let t = Instant::now();
        assert!(!run_probe(&http(a), Duration::from_millis(200)));
        assert!(t.elapsed() < Duration::from_millis(500));
        h.join().unwrap();
        // Nothing listening.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = l.local_addr().unwrap();
        drop(l);
        assert!(!run_probe(&http(closed), Duration::from_millis(500)));
    }

    #[test]
    fn runner_reports_periodically_and_stops_on_drop() {
        let results = Arc::new(Mutex::new(Vec::new()));
        let r2 = results.clone();
        let runner = Runner::spawn(
            ScriptSpec {
                name: "t".into(),
                probe: Probe::Script("exit 1".into()),
                interval: Duration::from_millis(50),
                timeout: Duration::from_secs(1),
            },
            Arc::new(move |ok| r2.lock().unwrap().push(ok)),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        drop(runner);
        let n = results.lock().unwrap().len();
        assert!((3..=10).contains(&n), "{n} runs in 400 ms at 50 ms");
        assert!(results.lock().unwrap().iter().all(|ok| !ok));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            results.lock().unwrap().len(),
            n,
            "runner kept going after drop"
        );
    }
}
