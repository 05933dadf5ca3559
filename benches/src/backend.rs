//! The benchmark's backend: a static HTTP/1.1 keep-alive responder, one monoio runtime per
//! thread, each thread with its own SO_REUSEPORT listener on the same port (so the kernel spreads
//! connections without a shared accept lock).
//!
//! It must never be the bottleneck, so it does the least possible work per request: find the end
//! of the head, look at the path, and write one pre-built response (head and body in a single
//! contiguous buffer, so one write per response). Pipelined requests are answered in order.

use std::io;
use std::net::{SocketAddr, TcpListener};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Response body sizes by path.
pub const PATHS: [(&str, usize); 3] = [("/small", 64), ("/16k", 16 * 1024), ("/1m", 1024 * 1024)];

/// A request head larger than this closes the connection (the bench never sends one).
const MAX_HEAD: usize = 16 * 1024;

/// Pre-built responses, leaked once at start: the backend lives for the whole process.
struct Responses {
    by_path: Vec<(&'static [u8], &'static [u8])>,
    not_found: &'static [u8],
}

fn response(body_len: usize) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nServer: loadbench\r\nContent-Type: application/octet-stream\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    r.resize(r.len() + body_len, b'x');
    r
}

impl Responses {
    fn leak() -> &'static Responses {
        let by_path = PATHS
            .iter()
            .map(|(p, n)| {
                let r: &'static [u8] = Box::leak(response(*n).into_boxed_slice());
                (p.as_bytes(), r)
            })
            .collect();
        let not_found: &'static [u8] =
            b"HTTP/1.1 404 Not Found\r\nServer: loadbench\r\nContent-Length: 0\r\n\r\n";
        Box::leak(Box::new(Responses { by_path, not_found }))
    }

    fn for_path(&self, path: &[u8]) -> &'static [u8] {
        // Ignore a query string.
        let path = path.split(|&b| b == b'?').next().unwrap_or(path);
        self.by_path
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(self.not_found, |(_, r)| r)
    }
}

/// What the backend needs to know about one request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// Bytes of the head including the final CRLFCRLF.
    pub len: usize,
    pub path: &'a [u8],
    /// Request body bytes that follow the head (Content-Length; chunked is never sent here).
    pub body_len: usize,
    /// `Connection: close` was sent, or the request is HTTP/1.0 without keep-alive.
    pub close: bool,
}

/// Scan a request head at the start of `buf`; `None` until the whole head is there.
pub fn scan_head(buf: &[u8]) -> Option<Head<'_>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = buf.get(..end)?;
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let _method = parts.next();
    let path = parts.next().unwrap_or_default();
    let http10 = parts.next().is_some_and(|v| v.starts_with(b"HTTP/1.0"));
    let mut body_len = 0usize;
    let mut close = http10;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            body_len = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    Some(Head {
        len: end,
        path,
        body_len,
        close,
    })
}

/// Bind `threads` SO_REUSEPORT listeners on one free loopback port; returns the port.
pub fn bind(threads: usize) -> io::Result<(u16, Vec<TcpListener>)> {
    let first = reuseport_listener(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..threads.max(1) {
        all.push(reuseport_listener(addr)?);
    }
    Ok((addr.port(), all))
}

fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Serve on the listeners, one thread and runtime each; returns when every thread has ended
/// (only on a runtime error: the process is killed to stop it).
pub fn serve(listeners: Vec<TcpListener>) -> io::Result<()> {
    let responses = Responses::leak();
    let handles: Vec<_> = listeners
        .into_iter()
        .map(|l| std::thread::spawn(move || run_thread(l, responses)))
        .collect();
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::other("backend thread panicked")),
        }
    }
    Ok(())
}

fn run_thread(listener: TcpListener, responses: &'static Responses) -> io::Result<()> {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(1024)
        .build()?;
    rt.block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener)?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(connection(stream, responses));
                }
                // Out of descriptors or similar: keep serving the connections we have.
                Err(_) => monoio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    })
}

async fn connection(mut stream: TcpStream, responses: &'static Responses) {
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_HEAD);
    // Request body bytes still to be skipped.
    let mut skip = 0usize;
    loop {
        let mut consumed = 0usize;
        let mut close = false;
        loop {
            let rest = buf.get(consumed..).unwrap_or_default();
            if skip > 0 {
                let n = skip.min(rest.len());
                skip -= n;
                consumed += n;
                if skip > 0 {
                    break;
                }
                continue;
            }
            let Some(head) = scan_head(rest) else {
                break;
            };
            let resp = responses.for_path(head.path);
            consumed += head.len;
            skip = head.body_len;
            close = head.close;
            let (res, _) = stream.write_all(resp).await;
            if res.is_err() || close {
                return;
            }
        }
        if consumed >= buf.len() {
            buf.clear();
        } else if consumed > 0 {
            buf.drain(..consumed);
        }
        if close || buf.len() >= MAX_HEAD {
            return;
        }
        if buf.capacity() == buf.len() {
            buf.reserve(MAX_HEAD);
        }
        let len = buf.len();
        let cap = buf.capacity();
        let (res, slice) = stream
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..cap))
            .await;
        buf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_a_keep_alive_get() {
        let h = scan_head(b"GET /16k HTTP/1.1\r\nHost: a\r\n\r\nGET /").unwrap();
        assert_eq!(h.len, 30);
        assert_eq!(h.path, b"/16k");
        assert_eq!(h.body_len, 0);
        assert!(!h.close);
    }

    #[test]
    fn scans_body_length_and_close() {
        let h = scan_head(b"POST /x HTTP/1.1\r\ncontent-length: 12\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(h.body_len, 12);
        assert!(h.close);
        let h = scan_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(h.close);
        let h = scan_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(!h.close);
    }

    #[test]
    fn incomplete_head_needs_more() {
        assert_eq!(scan_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    #[test]
    fn serves_each_path_with_its_length() {
        use std::io::{Read, Write};
        let (port, listeners) = bind(1).unwrap();
        std::thread::spawn(move || serve(listeners));
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        for (path, len) in PATHS {
            write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            let expect = response(len);
            let mut got = vec![0; expect.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, expect, "{path}");
        }
        write!(s, "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut rest = String::new();
        s.read_to_string(&mut rest).unwrap();
        assert!(rest.starts_with("HTTP/1.1 404"), "{rest}");
    }
}
