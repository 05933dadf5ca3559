//! A whole client connection through a real worker: request bytes in (over loopback), the
//! upstream's requests out (to a small backend thread), and the heap the exchange needs stays
//! under a bound whatever the bytes are.
//!
//! One worker and one backend run for the whole fuzzing session. Each input is a small program
//! so that a few bytes can describe megabytes of hostile framing: byte 0 says how often the
//! middle part repeats (times 64), bytes 1 and 2 where the middle part starts and ends. A
//! counting global allocator records the peak of live heap bytes during the exchange.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use proxy::worker::{self, Engine, Shared};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts sizes on the way.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap an exchange may take beyond what was live before it: four 16 KiB I/O buffers, the
/// 16 KiB body buffer, a 64 KiB copy chunk, a 64 KiB response head, their growth, and slack.
const HEAP_BOUND: usize = 1 << 20;
/// Largest expanded input.
const MAX_INPUT: usize = 4 << 20;

/// A backend that answers every request (head, then a Content-Length body: the proxy always
/// sends one) with a two-byte page, keep-alive.
fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve_backend(s));
        }
    });
    addr
}

fn serve_backend(s: TcpStream) -> Option<()> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut w = s;
    loop {
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().ok()?;
            }
        }
        std::io::copy(&mut (&mut r).take(len as u64), &mut std::io::sink()).ok()?;
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .ok()?;
    }
}

/// The proxy's listen address, with one worker serving it in this process.
fn proxy() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let upstream = backend();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let temp = std::env::temp_dir().join(format!("proxy-fuzz-{}", std::process::id()));
        let text = format!(
            "workers = 1\naccess_log = \"off\"\nclient_body_temp_path = \"{}\"\n\
             [upstream.u]\nservers = [{{ address = \"{upstream}\" }}]\n\
             [[server]]\nlisten = [\"127.0.0.1:{port}\"]\nclient_header_timeout = \"1s\"\n\
             client_body_timeout = \"1s\"\nkeepalive_timeout = \"1s\"\nclient_max_body_size = \"4m\"\n\
             [[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n",
            temp.display()
        );
        let config = proxy::config::parse(&text, std::path::Path::new("fuzz.toml")).unwrap();
        let shared = Shared::new(Arc::new(config), 1, None, Engine::Epoll);
        let (tx, rx) = mpsc::channel();
        let _worker = worker::spawn(0, shared, tx).unwrap();
        rx.recv().unwrap().1.unwrap();
        SocketAddr::from(([127, 0, 0, 1], port))
    })
}

fn expand(data: &[u8]) -> Option<Vec<u8>> {
    let [reps, a, b, rest @ ..] = data else {
        return None;
    };
    let len = rest.len();
    let (a, b) = (usize::from(*a) * len / 256, usize::from(*b) * len / 256);
    let (start, end) = (a.min(b), a.max(b));
    let mut input = rest[..start].to_vec();
    for _ in 0..usize::from(*reps) * 64 + 1 {
        if input.len() + (end - start) > MAX_INPUT {
            break;
        }
        input.extend_from_slice(&rest[start..end]);
    }
    input.extend_from_slice(&rest[end..]);
    Some(input)
}

fuzz_target!(|data: &[u8]| {
    let addr = proxy();
    let Some(input) = expand(data) else { return };
    let mut sink = [0u8; 16 * 1024];
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(3)));
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let _ = socket2::SockRef::from(&s).send_with_flags(&[], libc::MSG_NOSIGNAL);
    let mut sent = 0;
    while sent < input.len() {
        match socket2::SockRef::from(&s).send_with_flags(&input[sent..], libc::MSG_NOSIGNAL) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(
        peak < HEAP_BOUND,
        "one connection took {peak} bytes of heap for {} input bytes",
        input.len()
    );
});
