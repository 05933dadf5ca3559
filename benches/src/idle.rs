//! Idle keep-alive client connections: each one completes one real request (so the proxy holds
//! it as a keep-alive connection waiting for the next request, not a half-open accept), then sits
//! idle while the proxy's memory is read.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{BenchError, Context, Result};

/// Connections opened per batch: below the listen backlog, so connects never wait on SYN retries.
const BATCH: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Raise RLIMIT_NOFILE (soft, and the hard limit too when allowed) to at least `want`; returns the
/// soft limit in force afterwards. Child processes (wrk, the proxies) inherit it.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; it lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let wanted = libc::rlimit {
        rlim_cur: want.max(lim.rlim_cur),
        rlim_max: want.max(lim.rlim_max),
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        return wanted.rlim_cur;
    }
    // Not allowed to raise the hard limit: take what it permits.
    let capped = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) } == 0 {
        capped.rlim_cur
    } else {
        lim.rlim_cur
    }
}

/// Bytes of a response whose head is complete in `buf`, if it is (Content-Length framing only:
/// the backend always sends it).
pub fn response_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(buf.get(..head_end)?).ok()?;
    let body: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    Some(head_end + body)
}

fn read_response(s: &mut TcpStream) -> Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(n) = response_len(&buf) {
            if buf.len() >= n {
                if !buf.starts_with(b"HTTP/1.1 200") {
                    return Err(BenchError::Other(format!(
                        "idle connection's request got {:?}",
                        String::from_utf8_lossy(buf.get(..buf.len().min(40)).unwrap_or_default())
                    )));
                }
                return Ok(());
            }
        }
        let n = s.read(&mut chunk).ctx("read idle connection's response")?;
        if n == 0 {
            return Err(BenchError::Other(
                "proxy closed an idle connection before answering".into(),
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Open `count` keep-alive connections to `addr`, each after one `GET path` answered 200; the
/// sockets are left nonblocking and idle.
pub fn open(addr: SocketAddr, count: usize, path: &str) -> Result<Vec<TcpStream>> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut all = Vec::with_capacity(count);
    while all.len() < count {
        let n = BATCH.min(count - all.len());
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).ctx(format_args!(
                "idle connection {} to {addr}",
                all.len() + batch.len()
            ))?;
            s.set_read_timeout(Some(TIMEOUT)).ctx("set read timeout")?;
            s.write_all(req.as_bytes()).ctx("send idle request")?;
            batch.push(s);
        }
        for s in &mut batch {
            read_response(s)?;
            s.set_nonblocking(true).ctx("set nonblocking")?;
        }
        all.append(&mut batch);
    }
    Ok(all)
}

/// How many of the connections the peer still holds open (a nonblocking read would block).
pub fn still_open(conns: &mut [TcpStream]) -> usize {
    let mut b = [0u8; 1];
    let mut open = 0;
    for s in conns.iter_mut() {
        if matches!(s.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock) {
            open += 1;
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_length_from_head() {
        assert_eq!(
            response_len(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            Some(43)
        );
        assert_eq!(response_len(b"HTTP/1.1 204 OK\r\n\r\n"), Some(19));
        assert_eq!(response_len(b"HTTP/1.1 200 OK\r\nContent-"), None);
    }

    #[test]
    fn idle_connections_against_the_backend_stay_open() {
        let (port, listeners) = crate::backend::bind(1).unwrap();
        std::thread::spawn(move || crate::backend::serve(listeners));
        raise_nofile(4096);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut conns = open(addr, 300, "/small").unwrap();
        assert_eq!(conns.len(), 300);
        assert_eq!(still_open(&mut conns), 300);
        assert!(open(addr, 1, "/missing").is_err(), "404 must not count");
    }
}
