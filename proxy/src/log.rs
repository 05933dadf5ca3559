//! Access log in nginx's "main" format, written without blocking the workers.
//!
//! Each worker formats lines into its own buffer and hands full buffers (or, on its periodic
//! tick, partial ones) to one writer thread over a channel; only the writer thread touches the
//! file. USR1 asks the writer to reopen the file (log rotation), as nginx does.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

/// A worker hands its buffer over once it holds this much.
const BATCH: usize = 32 * 1024;

enum Msg {
    Lines(Vec<u8>),
    Reopen,
}

/// The writer thread's handle; clone one sender per worker.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Msg>,
}

impl LogSink {
    /// Open `path` (append, create) and start the writer thread.
    pub fn start(path: &Path) -> std::io::Result<LogSink> {
        let file = open(path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let path = path.to_path_buf();
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(path, file, rx))?;
        Ok(LogSink { tx })
    }

    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn writer(path: PathBuf, mut file: File, rx: mpsc::Receiver<Msg>) {
    // Ends when every worker's sender is gone (process exit).
    for msg in rx {
        match msg {
            Msg::Lines(buf) => {
                if let Err(e) = file.write_all(&buf) {
                    tracing::error!(path = %path.display(), error = %e, "access log write failed");
                }
            }
            Msg::Reopen => match open(&path) {
                Ok(f) => file = f,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "access log reopen failed")
                }
            },
        }
    }
}

/// What one request contributes to its log line. Byte fields are raw request bytes.
pub struct Entry<'a> {
    pub remote_addr: IpAddr,
    pub request_line: &'a [u8],
    pub status: u16,
    pub body_bytes_sent: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub forwarded_for: Option<&'a [u8]>,
}

/// A worker's side of the access log.
pub struct AccessLog {
    sink: Option<LogSink>,
    buf: Vec<u8>,
    time_sec: u64,
    time_text: String,
}

impl AccessLog {
    pub fn new(sink: Option<LogSink>) -> AccessLog {
        AccessLog {
            sink,
            buf: Vec::with_capacity(BATCH + 1024),
            time_sec: u64::MAX,
            time_text: String::new(),
        }
    }

    pub fn set_sink(&mut self, sink: Option<LogSink>) {
        self.flush();
        self.sink = sink;
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    /// "$http_referer" "$http_user_agent" "$http_x_forwarded_for"`
    pub fn log(&mut self, e: &Entry<'_>) {
        if self.sink.is_none() {
            return;
        }
        self.refresh_time();
        let b = &mut self.buf;
        let _ = write!(b, "{} - - [{}] \"", e.remote_addr, self.time_text);
        escape_into(b, e.request_line);
        let _ = write!(b, "\" {} {} \"", e.status, e.body_bytes_sent);
        escape_into(b, e.referer.unwrap_or(b"-"));
        b.extend_from_slice(b"\" \"");
        escape_into(b, e.user_agent.unwrap_or(b"-"));
        b.extend_from_slice(b"\" \"");
        escape_into(b, e.forwarded_for.unwrap_or(b"-"));
        b.extend_from_slice(b"\"\n");
        if self.buf.len() >= BATCH {
            self.flush();
        }
    }

    /// Hand what is buffered to the writer thread.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Some(sink) = &self.sink {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH + 1024));
            let _ = sink.tx.send(Msg::Lines(full));
        } else {
            self.buf.clear();
        }
    }

    fn refresh_time(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now != self.time_sec {
            self.time_sec = now;
            self.time_text = time_local(now);
        }
    }
}

/// nginx's `$time_local`: `25/Nov/2026:12:07:36 +0800`, in the machine's local time zone.
pub fn time_local(unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = libc::time_t::try_from(unix_secs).unwrap_or(0);
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is thread-safe.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return "01/Jan/1970:00:00:00 +0000".to_string();
    }
    let off = tm.tm_gmtoff / 60;
    let (sign, off) = if off < 0 { ('-', -off) } else { ('+', off) };
    let month = usize::try_from(tm.tm_mon)
        .ok()
        .and_then(|m| MONTHS.get(m))
        .unwrap_or(&"Jan");
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} {}{:02}{:02}",
        tm.tm_mday,
        month,
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        sign,
        off / 60,
        off % 60
    )
}

/// nginx's default log escaping: `"`, `\` and bytes outside printable ASCII become `\xHH`.
fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            let _ = write!(out, "\\x{c:02X}");
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_format_line() {
        let (tx, rx) = mpsc::channel();
        let mut log = AccessLog::new(Some(LogSink { tx }));
        log.log(&Entry {
            remote_addr: "172.16.249.1".parse().unwrap(),
            request_line: b"GET / HTTP/1.1",
            status: 200,
            body_bytes_sent: 17,
            referer: None,
            user_agent: Some(b"curl/7.88.1"),
            forwarded_for: Some(b"10.0.0.1"),
        });
        log.flush();
        let Msg::Lines(buf) = rx.recv().unwrap() else {
            panic!("expected lines")
        };
        let line = String::from_utf8(buf).unwrap();
        let (head, tail) = line.split_once(" [").unwrap();
        assert_eq!(head, "172.16.249.1 - -");
        let (time, rest) = tail.split_once("] ").unwrap();
        assert_eq!(time.len(), "25/Nov/2026:12:07:36 +0000".len(), "{time}");
        assert_eq!(
            rest,
            "\"GET / HTTP/1.1\" 200 17 \"-\" \"curl/7.88.1\" \"10.0.0.1\"\n"
        );
    }

    #[test]
    fn escapes_quotes_and_control_bytes() {
        let mut out = Vec::new();
        escape_into(&mut out, b"a\"b\\c\x01\xff");
        assert_eq!(out, b"a\\x22b\\x5Cc\\x01\\xFF");
    }

    #[test]
    fn time_local_shape() {
        let t = time_local(0);
        assert!(t.contains("/1970:") || t.contains("/1969:"), "{t}");
        assert_eq!(t.len(), 26, "{t}");
    }
}
