//! One client connection: requests one after another, with an idle wait in between that holds
//! no buffers. Each request is read ([`request`]), routed and tried against upstream servers
//! ([`exchange`], [`upstream`]) and its response relayed back ([`relay`]); [`io`] owns the two
//! sockets and their deadlines, and every failure is a [`crate::policy::ExchangeError`].
//!
//! Timeouts drop the pending read or write, losing the bytes in flight; every timeout here
//! closes the socket it happened on, so nothing is lost that would still be needed.

use std::future::Future as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;

use crate::balance::Outcome;
use crate::config::Upstream;
use crate::http::{self, HeaderSpan, RequestHead};
use crate::log::Entry;
use crate::metrics;
use crate::policy::{self, ExchangeError, Next};
use crate::rt::deadline::Timer;
use crate::rt::splice::SplicePipe;
use crate::state::WorkerCtx;

mod body;
mod exchange;
mod io;
mod relay;
mod request;
mod upstream;

use io::ClientSide;
use request::Body;

/// How long a keep-alive connection keeps its buffers while waiting for the next request.
const HOT_IDLE: Duration = Duration::from_millis(100);

/// Serve one accepted client connection until it closes. The acceptor has already counted it
/// in `active_connections` (so that a burst of accepts sees the count at once); this task
/// uncounts it when it ends.
pub async fn serve(client: TcpStream, peer: SocketAddr, listen: SocketAddr, ctx: Rc<WorkerCtx>) {
    let timer = Timer::acquire(&ctx.deadlines);
    let _active = ActiveGuard(ctx.clone(), timer.clone());
    let mut conn = Conn {
        canceller: None,
        client: ClientSide::new(client, timer, ctx.stats.clone()),
        peer,
        listen,
        ctx,
        ubuf: Vec::new(),
        uheaders: Vec::new(),
        body: body::BodyBuffer::default(),
        req: Vec::new(),
        pipe: None,
        served: 0,
    };
    conn.run().await;
    conn.release_buffers();
}

/// Counts the connection as active and owns its deadline slot.
struct ActiveGuard(Rc<WorkerCtx>, Timer);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.1.release();
        metrics::sub(&self.0.stats.active_connections, 1);
    }
}

struct Conn {
    /// Cancels the hot idle read; reused across requests (a fresh one after each cancel).
    canceller: Option<Canceller>,
    client: ClientSide,
    peer: SocketAddr,
    listen: SocketAddr,
    ctx: Rc<WorkerCtx>,
    /// Upstream response bytes and header spans, kept between attempts and requests.
    ubuf: Vec<u8>,
    uheaders: Vec<HeaderSpan>,
    /// A request body held whole (buffered, or de-chunked), so it can be sent with
    /// Content-Length and sent again on a retry.
    body: body::BodyBuffer,
    /// The rewritten request for the upstream (reused across requests).
    req: Vec<u8>,
    /// This connection's splice pipe, created on first use and dropped after any splice error
    /// (it may hold stray bytes then).
    pipe: Option<SplicePipe>,
    served: u64,
}

/// What a finished request contributes to the access log and the connection loop.
struct Done {
    status: u16,
    body_bytes: u64,
    next: Next,
    /// Bytes of the client buffer the request occupied (head and held body).
    consumed: usize,
}

/// One try's fixed facts: the request, and the server it goes to.
struct Target<'a> {
    pub head: &'a RequestHead,
    pub upstream: &'a Upstream,
    pub addr: SocketAddr,
    pub body: &'a Body,
    pub replayable: bool,
}

/// How an attempt that reached the client ended.
struct Finished {
    pub done: Done,
    /// What the balancer is told about the server.
    pub outcome: Outcome,
    /// The upstream connection ended cleanly and may go back to the keep-alive pool.
    pub reusable: bool,
}

impl Done {
    /// The client went away (or must be cut): nginx logs 499 with what was sent.
    fn closed(status: u16, body_bytes: u64) -> Done {
        Done {
            status,
            body_bytes,
            next: Next::Close,
            consumed: 0,
        }
    }
}

impl Conn {
    /// The connection's life.
    ///
    /// Memory per idle keep-alive connection is what matters for many idle clients, so the
    /// request handling future (a few KiB of state) is boxed and only exists while the
    /// connection is busy, and the I/O buffers go back to the worker's pool while it idles.
    /// One box serves a whole busy period (requests that follow each other within
    /// [`HOT_IDLE`]), not one request: a 3 KiB allocation and free per request was a
    /// measurable share of a small request's CPU.
    async fn run(&mut self) {
        let Some(first) = self.first_wait().await else {
            return;
        };
        let mut head_deadline = Some(first);
        loop {
            let Some(idle_deadline) = Box::pin(self.busy(head_deadline.take())).await else {
                return;
            };
            if !self.cold_wait(idle_deadline).await {
                return;
            }
        }
    }

    /// Requests one after another while each next one arrives within [`HOT_IDLE`]. Returns
    /// the end of the keep-alive wait that has begun (`keepalive_timeout` after the last
    /// response), or `None` to close.
    async fn busy(&mut self, mut head_deadline: Option<Instant>) -> Option<Instant> {
        loop {
            if !self.one_request(head_deadline.take()).await {
                return None;
            }
            if !self.client.buf.is_empty() {
                continue; // pipelined
            }
            let keepalive = self.keepalive_timeout()?;
            if self.ctx.draining() {
                return None;
            }
            // The coarse clock (the worker's last tick): both deadlines fire on a tick anyway.
            let now = self.client.io.timer.now();
            match self.hot_wait(now + HOT_IDLE.min(keepalive)).await {
                Some(true) => {}
                Some(false) => return None,
                None => return Some(now + keepalive),
            }
        }
    }

    /// A new connection takes no buffers until its first bytes are readable: one that sends
    /// nothing costs its task and nothing more. Returns the deadline for the first head
    /// (`client_header_timeout` from accept), or `None` to close (timeout, EOF, drain).
    async fn first_wait(&mut self) -> Option<Instant> {
        let timeout = self.header_timeout()?;
        let deadline = self.client.io.timer.now() + timeout;
        let ctx = self.ctx.clone();
        let io = &self.client.io;
        let ready = io.timer.until(deadline, io.tcp.readable(false));
        let ready = monoio::select! {
            r = ready => matches!(r, Ok(Ok(()))),
            _ = ctx.drain.wait() => false,
        };
        ready.then_some(deadline)
    }

    /// Returns false when the connection should close.
    async fn one_request(&mut self, head_deadline: Option<Instant>) -> bool {
        self.acquire_buffers();
        let config = self.ctx.config();
        let Some(server) = crate::route::server_for(&config, self.listen) else {
            return false; // listen address removed by a reload
        };
        let mut head = match self.read_head(server, head_deadline).await {
            Ok(Some(h)) => h,
            Ok(None) => return false,
            Err(e) => {
                let _ = self.send_error(e.status(), false).await;
                self.log_raw(e.status());
                return false;
            }
        };
        if let Some(t) = &self.ctx.panic_target {
            assert!(
                self.client.buf[head.target.clone()] != **t,
                "PROXY_TEST_PANIC_TARGET requested"
            );
        }
        // nginx's `keepalive_timeout 0`: no keep-alive, and the response says so.
        head.keep_alive &= !server.keepalive_timeout.is_zero();
        let done = self.exchange(&head, &config, server).await;
        self.served += 1;
        self.ctx.stats.count_status(done.status);
        self.log(&head, done.status, done.body_bytes);
        if done.next == Next::Close {
            return false;
        }
        // Whatever follows the request (pipelined requests) moves to the front.
        let consumed = done.consumed.max(head.head_len).min(self.client.buf.len());
        self.client.buf.drain(..consumed);
        true
    }

    /// The rest of a keep-alive wait after the hot part ([`Conn::hot_wait`]) saw nothing: the
    /// buffers go back to the pool, and the wait goes on as a readiness poll without a buffer
    /// until `deadline`. Returns false to close (timeout, EOF, error, drain).
    async fn cold_wait(&mut self, deadline: Instant) -> bool {
        if self.ctx.draining() {
            return false;
        }
        self.release_buffers();
        let ctx = self.ctx.clone();
        let io = &self.client.io;
        let ready = io.timer.until(deadline, io.tcp.readable(false));
        monoio::select! {
            r = ready => matches!(r, Ok(Ok(()))),
            _ = ctx.drain.wait() => false,
        }
    }

    /// The first part of a keep-alive wait: a read into our buffer until `until` (the next
    /// request usually follows within a round trip; a cancelled read keeps any bytes it got). `Some(go_on)` when
    /// it decided (bytes arrived: true; EOF or error: false), `None` when nothing came.
    ///
    /// Runs once per request, so it is kept cheap: the connection's deadline slot instead of a
    /// timer, a canceller reused across requests, no drain wake-up (a drain is noticed when the
    /// hot wait ends, at most `HOT_IDLE` later).
    async fn hot_wait(&mut self, until: Instant) -> Option<bool> {
        let mut buf = std::mem::take(&mut self.client.buf);
        if buf.capacity() == 0 {
            buf = self.ctx.buffers.take();
        }
        let len = buf.len();
        let end = buf.capacity();
        let handle = self.canceller.get_or_insert_with(Canceller::new).handle();
        let timer = &self.client.io.timer;
        let canceller = &mut self.canceller;
        let (r, slice) = {
            let read = self
                .client
                .io
                .tcp
                .cancelable_read(buf.slice_mut(len..end), handle);
            let mut read = std::pin::pin!(read);
            timer.arm_at(until);
            let mut cancelled = false;
            std::future::poll_fn(|cx| {
                if let Poll::Ready(done) = read.as_mut().poll(cx) {
                    return Poll::Ready(done);
                }
                if !cancelled && timer.expired(cx) {
                    // A cancelled read still completes: with the bytes, if any arrived meanwhile.
                    cancelled = true;
                    if let Some(c) = canceller.take() {
                        *canceller = Some(c.cancel());
                    }
                }
                Poll::Pending
            })
            .await
        };
        timer.disarm();
        self.client.buf = slice.into_inner();
        match r {
            Ok(0) => Some(false),
            Ok(n) => {
                self.client.count_read(n);
                Some(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => None,
            Err(_) => Some(false),
        }
    }

    /// The server's `keepalive_timeout`; a plain function so that the idle wait, which every
    /// idle connection's task holds, keeps no config reference across its awaits.
    fn keepalive_timeout(&self) -> Option<Duration> {
        let config = self.ctx.config();
        crate::route::server_for(&config, self.listen).map(|s| s.keepalive_timeout)
    }

    fn header_timeout(&self) -> Option<Duration> {
        let config = self.ctx.config();
        crate::route::server_for(&config, self.listen).map(|s| s.client_header_timeout)
    }

    /// Take I/O buffers from the worker's pool for a request.
    fn acquire_buffers(&mut self) {
        let pool = &self.ctx.buffers;
        let c = &mut self.client;
        for b in [&mut c.buf, &mut c.out, &mut self.ubuf, &mut self.req] {
            if b.capacity() == 0 {
                *b = pool.take();
            }
        }
    }

    /// Give the (empty) I/O buffers back to the worker's pool.
    fn release_buffers(&mut self) {
        let pool = &self.ctx.buffers;
        let c = &mut self.client;
        for b in [&mut c.buf, &mut c.out, &mut self.ubuf, &mut self.req] {
            pool.give(std::mem::take(b));
        }
        self.body = body::BodyBuffer::default();
        c.headers = Vec::new();
        self.uheaders = Vec::new();
        self.canceller = None;
    }

    /// Answer `err` with an error page when the client can still get one.
    async fn fail(&mut self, err: ExchangeError, head: &RequestHead, body_unread: bool) -> Done {
        if !err.answers_client() {
            return Done::closed(err.status(), 0);
        }
        let next =
            policy::after_error_page(head.keep_alive, self.ctx.draining(), body_unread, &err);
        match self.send_error(err.status(), next == Next::KeepAlive).await {
            Ok(body_bytes) => Done {
                status: err.status(),
                body_bytes,
                next,
                consumed: 0,
            },
            Err(_) => Done::closed(499, 0),
        }
    }

    async fn send_error(&mut self, status: u16, keep_alive: bool) -> Result<u64, ExchangeError> {
        let out = &mut self.client.out;
        out.clear();
        http::error_response(status, keep_alive, out);
        let total = out.len() as u64;
        let body = body_len_of(out);
        self.client.flush().await?;
        metrics::add(&self.ctx.stats.bytes_to_clients, total);
        Ok(body)
    }

    fn log(&self, head: &RequestHead, status: u16, body_bytes: u64) {
        let mut log = self.ctx.log.borrow_mut();
        if !log.enabled() {
            return;
        }
        let buf = &self.client.buf;
        let h = &self.client.headers;
        log.log(&Entry {
            remote_addr: self.peer.ip(),
            request_line: buf.get(head.request_line.clone()).unwrap_or(b"-"),
            status,
            body_bytes_sent: body_bytes,
            referer: http::header(buf, h, "referer"),
            user_agent: http::header(buf, h, "user-agent"),
            forwarded_for: http::header(buf, h, "x-forwarded-for"),
        });
    }

    /// Log a request that never parsed (400/431): nginx logs these with `$request` as sent.
    fn log_raw(&self, status: u16) {
        self.ctx.stats.count_status(status);
        let mut log = self.ctx.log.borrow_mut();
        if !log.enabled() {
            return;
        }
        let buf = &self.client.buf;
        let line_end = buf
            .iter()
            .position(|&c| c == b'\r' || c == b'\n')
            .unwrap_or(buf.len())
            .min(1024);
        log.log(&Entry {
            remote_addr: self.peer.ip(),
            request_line: &buf[..line_end],
            status,
            body_bytes_sent: 0,
            referer: None,
            user_agent: None,
            forwarded_for: None,
        });
    }
}

/// The body length of a complete small response (an error page we wrote).
fn body_len_of(response: &[u8]) -> u64 {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| (response.len() - i - 4) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_len_of_error_page() {
        assert_eq!(body_len_of(b"HTTP/1.1 502 X\r\nA: b\r\n\r\nhello"), 5);
        assert_eq!(body_len_of(b"garbage"), 0);
    }
}
