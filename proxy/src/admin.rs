//! The admin listener: `GET /healthz` (200 while the proxy serves, 503 while draining or with a
//! dead worker) and `GET /metrics` (Prometheus text). A plain blocking thread: it is off the
//! request path and serves one small request at a time.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics;
use crate::state::Shared;

pub fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<std::thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("admin bind {addr}: {e}")))?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = handle(stream, &shared) {
                    tracing::debug!(error = %e, "admin request failed");
                }
            }
        })
}

fn handle(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Drain the rest of the head (bounded) so the client sees a clean close.
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path) {
        ("GET", "/healthz") if shared.serving() => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/healthz") => (
            "503 Service Unavailable",
            "text/plain",
            "unavailable\n".to_string(),
        ),
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            metrics::render(&shared.stats, shared.serving()),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
