//! A connection's two sockets. [`Endpoint`] is a socket whose every read and write is bounded
//! by the connection's [`Timer`] and whose failures are [`ExchangeError`]s of its side;
//! [`ClientSide`] and [`UpstreamSide`] own an endpoint with the buffers read into it (in the
//! manner of mini-redis's `Connection`). [`forward_exact`] moves a counted body between them.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::http::HeaderSpan;
use crate::metrics::{self, WorkerStats};
use crate::policy::{ExchangeError, Kind, Side};
use crate::rt::deadline::Timer;
use crate::rt::splice::{self, SpliceErr, SplicePipe, SpliceTimeouts};

/// The most one read asks for while reading heads.
pub const READ_CHUNK: usize = 16 * 1024;
/// The most one read asks for while copying bodies.
pub const BODY_CHUNK: usize = 64 * 1024;
/// Bodies at least this long (beyond what is already buffered) are spliced, not copied.
pub const SPLICE_MIN: u64 = 32 * 1024;
/// nginx's `send_timeout` default: the longest a write to the client may stall.
pub const CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// A socket of one side of the exchange with its timeouts.
pub struct Endpoint {
    pub tcp: TcpStream,
    pub timer: Timer,
    side: Side,
    /// Longest wait for one read (body reads; heads use an absolute deadline).
    pub read_timeout: Duration,
    /// Longest wait for one write.
    pub write_timeout: Duration,
}

impl Endpoint {
    pub fn new(tcp: TcpStream, timer: Timer, side: Side) -> Endpoint {
        Endpoint {
            tcp,
            timer,
            side,
            read_timeout: CLIENT_SEND_TIMEOUT,
            write_timeout: CLIENT_SEND_TIMEOUT,
        }
    }

    fn error(&self, kind: Kind) -> ExchangeError {
        match self.side {
            Side::Client => ExchangeError::client(kind),
            Side::Upstream => ExchangeError::upstream(kind),
        }
    }

    /// Append up to `max` bytes to `buf`, waiting until `deadline` at most. EOF is `Closed`.
    pub async fn read_until(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        deadline: Instant,
    ) -> Result<usize, ExchangeError> {
        match self.read_or_eof(buf, max, deadline).await? {
            0 => Err(self.error(Kind::Closed)),
            n => Ok(n),
        }
    }

    /// Like [`Endpoint::read_until`], but EOF is `Ok(0)` (for bodies that end with the
    /// connection); a reset is still `Closed`.
    pub async fn read_or_eof(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        deadline: Instant,
    ) -> Result<usize, ExchangeError> {
        let read = read_more(&mut self.tcp, buf, max);
        match self.timer.until(deadline, read).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(_)) => Err(self.error(Kind::Closed)),
            Err(_elapsed) => Err(self.error(Kind::Timeout)),
        }
    }

    /// Append up to `max` bytes to `buf` within the read timeout.
    pub async fn read(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<usize, ExchangeError> {
        let deadline = self.timer.now() + self.read_timeout;
        self.read_until(buf, max, deadline).await
    }

    /// Write all of `buf` (kept for reuse) within the write timeout.
    pub async fn write_all(&mut self, buf: &mut Vec<u8>) -> Result<(), ExchangeError> {
        let owned = std::mem::take(buf);
        match self
            .timer
            .within(self.write_timeout, self.tcp.write_all(owned))
            .await
        {
            Ok((r, back)) => {
                *buf = back;
                r.map(|_| ()).map_err(|_| self.error(Kind::Closed))
            }
            Err(_elapsed) => Err(self.error(Kind::Timeout)),
        }
    }

    /// Write all of `data`, a buffer the caller keeps: a write cut by its timeout leaves the
    /// caller's bytes whole, so a retry on another connection sends exactly them again.
    pub async fn write_shared(&mut self, data: &Rc<Vec<u8>>) -> Result<(), ExchangeError> {
        let write = self.tcp.write_all(data.clone());
        match self.timer.within(self.write_timeout, write).await {
            Ok((r, _)) => r.map(|_| ()).map_err(|_| self.error(Kind::Closed)),
            Err(_elapsed) => Err(self.error(Kind::Timeout)),
        }
    }
}

/// Append up to `max` bytes read from `stream` to `buf`.
pub async fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < max.min(READ_CHUNK) {
        buf.reserve(max.max(4096));
    }
    let len = buf.len();
    let end = buf.capacity().min(len + max.max(1));
    let slice = std::mem::take(buf).slice_mut(len..end);
    let (r, slice) = stream.read(slice).await;
    *buf = slice.into_inner();
    r
}

/// The client connection: its socket, the bytes read from it (the current request's head and
/// any body bytes or pipelined requests after it) and the scratch buffer for what we write.
pub struct ClientSide {
    pub io: Endpoint,
    pub buf: Vec<u8>,
    pub headers: Vec<HeaderSpan>,
    /// Scratch for what we write (rewritten heads, error pages).
    pub out: Vec<u8>,
    stats: Arc<WorkerStats>,
}

impl ClientSide {
    pub fn new(tcp: TcpStream, timer: Timer, stats: Arc<WorkerStats>) -> ClientSide {
        ClientSide {
            io: Endpoint::new(tcp, timer, Side::Client),
            buf: Vec::new(),
            headers: Vec::new(),
            out: Vec::new(),
            stats,
        }
    }

    /// Read more request bytes into `buf`, until `deadline` at most.
    pub async fn read_until(
        &mut self,
        max: usize,
        deadline: Instant,
    ) -> Result<usize, ExchangeError> {
        let n = self.io.read_until(&mut self.buf, max, deadline).await?;
        self.count_read(n);
        Ok(n)
    }

    /// Read more request bytes into `buf` within the read timeout (`client_body_timeout`).
    pub async fn read(&mut self, max: usize) -> Result<usize, ExchangeError> {
        let deadline = self.io.timer.now() + self.io.read_timeout;
        self.read_until(max, deadline).await
    }

    pub fn count_read(&self, n: usize) {
        metrics::add(&self.stats.bytes_from_clients, n as u64);
    }

    /// Write `out` to the client and clear it.
    pub async fn flush(&mut self) -> Result<(), ExchangeError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.io.write_all(&mut self.out).await;
        self.out.clear();
        r
    }

    /// Write `data` (kept for reuse) to the client.
    pub async fn send(&mut self, data: &mut Vec<u8>) -> Result<(), ExchangeError> {
        self.io.write_all(data).await
    }
}

/// One upstream connection of an attempt, with the response bytes read from it.
pub struct UpstreamSide {
    pub io: Endpoint,
    pub buf: Vec<u8>,
    pub headers: Vec<HeaderSpan>,
}

impl UpstreamSide {
    /// Append up to `max` response bytes to `buf`; EOF and timeout are upstream errors.
    pub async fn read(&mut self, max: usize) -> Result<usize, ExchangeError> {
        self.io.read(&mut self.buf, max).await
    }
}

/// Bytes moved by [`forward_exact`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    pub bytes: u64,
    /// Of which spliced (never copied through user space).
    pub spliced: u64,
}

/// Move exactly `n` bytes from `from` to `to`: with splice(2) through `pipe` when `n` is at
/// least [`SPLICE_MIN`] and `use_splice`, else copied through `chunk`. On error the failing
/// side's [`ExchangeError`] comes back; `moved` says how far it got.
pub async fn forward_exact(
    from: &mut Endpoint,
    to: &mut Endpoint,
    n: u64,
    chunk: &mut Vec<u8>,
    pipe: Option<&mut Option<SplicePipe>>,
    moved: &mut Moved,
) -> Result<(), ExchangeError> {
    if n >= SPLICE_MIN {
        if let Some(slot) = pipe {
            match splice_into(slot, from, to, n).await {
                Ok(true) => {
                    moved.bytes += n;
                    moved.spliced += n;
                    return Ok(());
                }
                Ok(false) => {} // no pipe: copy below
                Err(e) => return Err(e),
            }
        }
    }
    let mut remaining = n;
    while remaining > 0 {
        chunk.clear();
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(BODY_CHUNK);
        let got = from.read(chunk, want).await?;
        remaining -= got as u64;
        moved.bytes += got as u64;
        to.write_all(chunk).await?;
    }
    chunk.clear();
    Ok(())
}

/// Splice `n` bytes through the connection's pipe, creating it on first use. `Ok(false)`: no
/// pipe could be made (fd limit) and nothing moved.
async fn splice_into(
    slot: &mut Option<SplicePipe>,
    from: &Endpoint,
    to: &Endpoint,
    n: u64,
) -> Result<bool, ExchangeError> {
    if slot.is_none() {
        match SplicePipe::new() {
            Ok(p) => *slot = Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a splice pipe; copying instead");
                return Ok(false);
            }
        }
    }
    let Some(pipe) = slot.as_ref() else {
        return Ok(false);
    };
    let timeouts = SpliceTimeouts {
        timer: &from.timer,
        read: from.read_timeout,
        write: to.write_timeout,
    };
    match splice::splice_exact(pipe, &from.tcp, &to.tcp, n, timeouts).await {
        Ok(()) => Ok(true),
        Err(e) => {
            // The pipe may still hold bytes of this body: never reuse it.
            *slot = None;
            Err(match e {
                SpliceErr::Source => from.error(Kind::Closed),
                SpliceErr::Sink => to.error(Kind::Closed),
            })
        }
    }
}
