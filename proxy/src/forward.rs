//! One client connection's loop: read a request head, pick an upstream, forward the request,
//! stream the response back, repeat while keep-alive allows.
//!
//! Retry rules (nginx's `proxy_next_upstream error timeout`):
//! - a connect error or timeout moves to the next server for any request: nothing was sent;
//! - after the request was sent, only idempotent requests whose body we still hold are passed
//!   to the next server, and only while nothing has been sent to the client;
//! - a pooled connection that fails before any response byte is the stale keep-alive race:
//!   retried once on a fresh connection to the same server (idempotent requests only).
//!
//! Timeouts drop the pending read/write; that loses the bytes in flight, which is fine because
//! every timeout here closes the socket it happened on.

use std::cell::RefCell;
use std::future::Future as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;

use crate::balance::{Balancer, Outcome, Tried};
use crate::config::{Config, Server, Upstream};
use crate::http::{
    self, BodyKind, ChunkedDecoder, ClientMode, HeaderSpan, Method, RequestHead, Version,
};
use crate::log::Entry;
use crate::metrics;
use crate::worker::{Deadlines, WorkerCtx};
use crate::zerocopy::{self, SplicePipe};

const READ_CHUNK: usize = 16 * 1024;
const BODY_CHUNK: usize = 64 * 1024;
/// How long a keep-alive connection keeps its buffers while waiting for the next request.
const HOT_IDLE: Duration = Duration::from_millis(100);
/// Bodies at least this long (beyond what arrived with the head) are spliced, not copied.
const SPLICE_MIN: u64 = 32 * 1024;
/// nginx's `send_timeout` default: the longest a write to the client may stall.
const CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Serve one accepted client connection until it closes.
pub async fn serve(client: TcpStream, peer: SocketAddr, listen: SocketAddr, ctx: Rc<WorkerCtx>) {
    metrics::add(&ctx.stats.active_connections, 1);
    let dl = ctx.deadlines.acquire();
    let _active = ActiveGuard(ctx.clone(), dl);
    let mut conn = Conn {
        dl,
        canceller: None,
        client,
        peer,
        listen,
        ctx,
        buf: Vec::new(),
        headers: Vec::new(),
        out: Vec::new(),
        ubuf: Vec::new(),
        uheaders: Vec::new(),
        body: Vec::new(),
        req: Vec::new(),
        pipe: None,
        served: 0,
    };
    conn.run().await;
    conn.release_buffers();
}

/// Counts the connection as active and owns its deadline slot.
struct ActiveGuard(Rc<WorkerCtx>, usize);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.deadlines.release(self.1);
        metrics::sub(&self.0.stats.active_connections, 1);
    }
}

struct Conn {
    /// This connection's slot in the worker's `Deadlines` (request-path timeouts).
    dl: usize,
    /// Cancels the hot idle read; reused across requests (a fresh one after each cancel).
    canceller: Option<Canceller>,
    client: TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
    ctx: Rc<WorkerCtx>,
    /// Client bytes: the current request's head (and body bytes read with it), then any
    /// pipelined requests.
    buf: Vec<u8>,
    headers: Vec<HeaderSpan>,
    /// Scratch for what we write (rewritten heads, error pages).
    out: Vec<u8>,
    /// Upstream bytes of the current response.
    ubuf: Vec<u8>,
    uheaders: Vec<HeaderSpan>,
    /// A de-chunked request body, held so it can be sent with Content-Length (and replayed).
    body: Vec<u8>,
    /// The rewritten request for the upstream (reused across requests).
    req: Vec<u8>,
    /// This connection's splice pipe, created on first use and dropped after any splice error
    /// (it may hold stray bytes then).
    pipe: Option<SplicePipe>,
    served: u64,
}

/// How a request's exchange ended, for the connection loop.
enum Next {
    KeepAlive,
    Close,
}

/// Why an upstream attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpErr {
    /// No server could be picked (all down, failed, busy or tried).
    NoLive,
    Error,
    Timeout,
}

impl UpErr {
    fn status(self) -> u16 {
        match self {
            UpErr::Timeout => 504,
            UpErr::NoLive | UpErr::Error => 502,
        }
    }
}

/// What a finished request contributes to the access log.
struct Done {
    status: u16,
    body_bytes: u64,
    next: Next,
    /// Bytes of `buf` the request occupied (head and held body); 0 when the connection closes.
    consumed: usize,
}

impl Conn {
    /// The connection's life: requests one after another, with an idle wait in between that
    /// holds no buffers.
    ///
    /// Memory per idle keep-alive connection is what matters for many idle clients, so the
    /// request handling future (a few KiB of state) is boxed and only exists while a request is
    /// in flight, and the I/O buffers go back to the worker's pool while the connection idles.
    async fn run(&mut self) {
        loop {
            if self.served > 0 && self.buf.is_empty() && !self.idle_wait().await {
                return;
            }
            if !Box::pin(self.one_request()).await {
                return;
            }
        }
    }

    /// Returns false when the connection should close.
    async fn one_request(&mut self) -> bool {
        self.acquire_buffers();
        let config = self.ctx.config();
        let Some(server) = config
            .servers
            .iter()
            .find(|s| s.listen.contains(&self.listen))
        else {
            return false; // listen address removed by a reload
        };
        let head = match self.read_head(server).await {
            Ok(Some(h)) => h,
            Ok(None) => return false,
            Err(status) => {
                let _ = self.send_error(status, false, server).await;
                self.log_raw(status);
                return false;
            }
        };
        let done = self.exchange(&head, &config, server).await;
        self.served += 1;
        self.ctx.stats.count_status(done.status);
        self.log(&head, done.status, done.body_bytes);
        if matches!(done.next, Next::Close) {
            return false;
        }
        // Whatever follows the request (pipelined requests) moves to the front.
        let consumed = done.consumed.max(head.head_len).min(self.buf.len());
        self.buf.drain(..consumed);
        true
    }

    /// Wait for the next request on a keep-alive connection. First a read into the buffer we
    /// hold (the next request usually follows within a round trip); after [`HOT_IDLE`] that
    /// read is cancelled (keeping any bytes it got), the buffers go back to the pool, and the
    /// wait goes on as a readiness poll without a buffer until `keepalive_timeout`.
    /// Returns false to close (timeout, EOF, error, drain).
    async fn idle_wait(&mut self) -> bool {
        let Some(keepalive) = self.server_keepalive_timeout() else {
            return false;
        };
        if self.ctx.draining() {
            return false;
        }
        // The coarse clock (the worker's last tick): both deadlines fire on a tick anyway.
        let now = self.ctx.deadlines.now();
        let deadline = now + keepalive;
        let hot_until = now + HOT_IDLE.min(keepalive);
        // Boxed (768 bytes, a tcache-sized allocation): inline, its state would size every
        // connection's task, idle ones included (measured 3.2 instead of 1.5 KiB per idle
        // keep-alive connection).
        if let Some(decided) = Box::pin(self.hot_wait(hot_until)).await {
            return decided;
        }
        if self.ctx.draining() {
            return false;
        }
        self.release_buffers();
        let ctx = self.ctx.clone();
        let ready = ctx
            .deadlines
            .timed_at(self.dl, deadline, self.client.readable(false));
        monoio::select! {
            r = ready => matches!(r, Ok(Ok(()))),
            _ = ctx.drain.wait() => false,
        }
    }

    /// The first part of an idle wait: a read into our buffer until `until`. `Some(go_on)` when
    /// it decided (bytes arrived: true; EOF or error: false), `None` when nothing came.
    ///
    /// Runs once per request, so it is kept cheap: the connection's deadline slot instead of a
    /// timer, a canceller reused across requests, no drain wake-up (a drain is noticed when the
    /// hot wait ends, at most `HOT_IDLE` later).
    async fn hot_wait(&mut self, until: Instant) -> Option<bool> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            buf = self.ctx.buffers.take();
        }
        let len = buf.len();
        let end = buf.capacity();
        let handle = self.canceller.get_or_insert_with(Canceller::new).handle();
        let deadlines = &self.ctx.deadlines;
        let dl = self.dl;
        let canceller = &mut self.canceller;
        let read = self.client.cancelable_read(buf.slice_mut(len..end), handle);
        let mut read = std::pin::pin!(read);
        deadlines.arm_at(dl, until);
        let mut cancelled = false;
        let (r, slice) = std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = read.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            if !cancelled && deadlines.expired(dl, cx) {
                // A cancelled read still completes: with the bytes, if any arrived meanwhile.
                cancelled = true;
                if let Some(c) = canceller.take() {
                    *canceller = Some(c.cancel());
                }
            }
            Poll::Pending
        })
        .await;
        deadlines.disarm(dl);
        self.buf = slice.into_inner();
        match r {
            Ok(0) => Some(false),
            Ok(n) => {
                metrics::add(&self.ctx.stats.bytes_from_clients, n as u64);
                Some(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => None,
            Err(_) => Some(false),
        }
    }

    fn server_keepalive_timeout(&self) -> Option<Duration> {
        let config = self.ctx.config();
        config
            .servers
            .iter()
            .find(|s| s.listen.contains(&self.listen))
            .map(|s| s.keepalive_timeout)
    }

    /// Take I/O buffers from the worker's pool for a request.
    fn acquire_buffers(&mut self) {
        let pool = &self.ctx.buffers;
        for b in [&mut self.buf, &mut self.out, &mut self.ubuf, &mut self.req] {
            if b.capacity() == 0 {
                *b = pool.take();
            }
        }
    }

    /// Give the (empty) I/O buffers back to the worker's pool.
    fn release_buffers(&mut self) {
        let pool = &self.ctx.buffers;
        for b in [&mut self.buf, &mut self.out, &mut self.ubuf, &mut self.req] {
            pool.give(std::mem::take(b));
        }
        self.body = Vec::new();
        self.headers = Vec::new();
        self.uheaders = Vec::new();
        self.canceller = None;
    }

    /// Read until a complete request head is buffered. `Ok(None)`: close quietly (EOF, idle
    /// timeout, drain); `Err(status)`: answer with that status and close.
    async fn read_head(&mut self, server: &Server) -> Result<Option<RequestHead>, u16> {
        let limits = http::Limits {
            max_head: server.max_header_size,
            ..http::Limits::default()
        };
        let mut deadline = None;
        loop {
            if !self.buf.is_empty() {
                match http::parse_request(&self.buf, &limits, &mut self.headers) {
                    Ok(Some(head)) => return Ok(Some(head)),
                    Ok(None) if self.buf.len() >= limits.max_head => return Err(431),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(client = %self.peer, error = %e, "bad request");
                        return Err(e.status());
                    }
                }
            }
            let idle = self.buf.is_empty() && self.served > 0;
            if idle && self.ctx.draining() {
                return Ok(None);
            }
            let until = *deadline.get_or_insert_with(|| {
                let wait = if idle {
                    server.keepalive_timeout
                } else {
                    server.client_header_timeout
                };
                self.ctx.deadlines.now() + wait
            });
            let max = limits.max_head.saturating_sub(self.buf.len()).max(1);
            let read = read_more(&mut self.client, &mut self.buf, max.min(READ_CHUNK));
            let r = if idle {
                let drain = self.ctx.clone();
                monoio::select! {
                    r = self.ctx.deadlines.timed_at(self.dl, until, read) => r,
                    _ = drain.drain.wait() => return Ok(None),
                }
            } else {
                self.ctx.deadlines.timed_at(self.dl, until, read).await
            };
            match r {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(n)) => {
                    metrics::add(&self.ctx.stats.bytes_from_clients, n as u64);
                    if idle {
                        // First byte of the next request: client_header_timeout starts now.
                        deadline = Some(self.ctx.deadlines.now() + server.client_header_timeout);
                    }
                }
                Err(_elapsed) => return Ok(None),
            }
        }
    }

    /// Handle one request whose head is at the start of `buf`.
    async fn exchange(&mut self, head: &RequestHead, config: &Config, server: &Server) -> Done {
        let path = path_of(&self.buf[head.target.clone()]);
        let Some(loc) = server
            .locations
            .iter()
            .filter(|l| path.starts_with(l.path.as_bytes()))
            .max_by_key(|l| l.path.len())
        else {
            // An unread body would be taken for the next request: close instead.
            let next = if head.body == BodyKind::Empty {
                Next::KeepAlive
            } else {
                Next::Close
            };
            return self.fail(404, head, server, next).await;
        };
        // `config` is this worker's current one, so its upstream index is also the index of
        // the balancer built for it.
        let (Some(upstream), Some(balancer)) = (
            config.upstreams.get(loc.upstream),
            self.ctx.balancer(loc.upstream),
        ) else {
            return self.fail(500, head, server, Next::Close).await;
        };

        // Request body: how much we hold, how much is still to stream from the client.
        let mut consumed = head.head_len;
        let mut body_override = None;
        let mut to_stream = 0u64;
        match head.body {
            BodyKind::Empty | BodyKind::CloseDelimited => {}
            BodyKind::Length(n) => {
                if n > server.client_max_body_size {
                    // The body stays unread, so the connection cannot continue.
                    return self.fail(413, head, server, Next::Close).await;
                }
                let have = ((self.buf.len() - head.head_len) as u64).min(n);
                consumed += have as usize;
                to_stream = n - have;
                if to_stream > 0 && head.expect_continue && self.continue_100().await.is_err() {
                    return closed(0);
                }
            }
            BodyKind::Chunked => {
                if head.expect_continue
                    && self.buf.len() == head.head_len
                    && self.continue_100().await.is_err()
                {
                    return closed(0);
                }
                match self.read_chunked_body(head.head_len, server).await {
                    Ok(used) => {
                        consumed = head.head_len + used;
                        body_override = Some(self.body.len() as u64);
                    }
                    Err(0) => return closed(0),
                    Err(status) => return self.fail(status, head, server, Next::Close).await,
                }
            }
        }

        let mut done = self
            .proxy(
                head,
                upstream,
                &balancer,
                consumed,
                body_override,
                to_stream,
                server,
            )
            .await;
        done.consumed = consumed;
        done
    }

    /// Pick servers and try them until one answers or no retry is allowed.
    #[allow(clippy::too_many_arguments)]
    async fn proxy(
        &mut self,
        head: &RequestHead,
        upstream: &Upstream,
        balancer: &RefCell<Balancer>,
        consumed: usize,
        body_override: Option<u64>,
        to_stream: u64,
        server: &Server,
    ) -> Done {
        // Everything we must send: the rewritten head plus the body bytes we hold (kept until
        // the exchange ends, for retries).
        let mut request = std::mem::take(&mut self.req);
        request.clear();
        http::write_upstream_head(
            &self.buf,
            head,
            &self.headers,
            self.peer.ip(),
            &upstream.name,
            body_override,
            &mut request,
        );
        if body_override.is_some() {
            request.extend_from_slice(&self.body);
        } else {
            request.extend_from_slice(&self.buf[head.head_len..consumed]);
        }
        let done = self
            .try_servers(head, upstream, balancer, &mut request, to_stream, server)
            .await;
        self.req = request;
        done
    }

    async fn try_servers(
        &mut self,
        head: &RequestHead,
        upstream: &Upstream,
        balancer: &RefCell<Balancer>,
        request: &mut Vec<u8>,
        to_stream: u64,
        server: &Server,
    ) -> Done {
        let replayable = to_stream == 0 && head.method.is_idempotent();
        let mut tried = Tried::default();
        let mut last = UpErr::NoLive;
        let client_ip = self.peer.ip();
        loop {
            let now = Instant::now();
            let Some(peer) = balancer.borrow_mut().pick(now, client_ip, &mut tried) else {
                break;
            };
            let addr = balancer.borrow().address(peer);
            let attempt = self
                .attempt(head, upstream, addr, request, to_stream, replayable, server)
                .await;
            match attempt {
                Attempt::Done(done, outcome) => {
                    balancer.borrow_mut().release(peer, Instant::now(), outcome);
                    return done;
                }
                Attempt::Failed { err, retry } => {
                    balancer
                        .borrow_mut()
                        .release(peer, Instant::now(), Outcome::Failure);
                    metrics::add(&self.ctx.stats.upstream_failures, 1);
                    tracing::warn!(upstream = %upstream.name, server = %addr, error = ?err, "upstream attempt failed");
                    last = err;
                    if !retry {
                        break;
                    }
                    metrics::add(&self.ctx.stats.upstream_retries, 1);
                }
                Attempt::ClientGone(done) => {
                    balancer
                        .borrow_mut()
                        .release(peer, Instant::now(), Outcome::Success);
                    return done;
                }
            }
        }
        if last == UpErr::NoLive {
            tracing::error!(upstream = %upstream.name, "no live upstreams");
        }
        // If part of the request body is still unread, the connection cannot continue.
        let next = if to_stream > 0 {
            Next::Close
        } else {
            Next::KeepAlive
        };
        self.fail(last.status(), head, server, next).await
    }

    /// One try against one server.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &mut self,
        head: &RequestHead,
        upstream: &Upstream,
        addr: SocketAddr,
        request: &mut Vec<u8>,
        to_stream: u64,
        replayable: bool,
        server: &Server,
    ) -> Attempt {
        let pooled = self
            .ctx
            .pool
            .borrow_mut()
            .take(&upstream.name, addr, Instant::now());
        let mut reused = pooled.is_some();
        let mut up = match pooled {
            Some(s) => s,
            None => match connect(addr, upstream.connect_timeout).await {
                Ok(s) => s,
                // Nothing was sent: any request may go to the next server.
                Err(err) => return Attempt::Failed { err, retry: true },
            },
        };
        loop {
            // Send the request head and the body bytes we hold.
            let sent = write_all_timeout(
                &self.ctx.deadlines,
                self.dl,
                &mut up,
                request,
                upstream.send_timeout,
            )
            .await;
            let sent = match sent {
                Ok(()) if to_stream > 0 => {
                    self.stream_body(&mut up, to_stream, upstream, server).await
                }
                other => other.map_err(|_| StreamErr::Upstream),
            };
            match sent {
                Ok(()) => {}
                Err(StreamErr::Client) => return Attempt::ClientGone(closed(0)),
                Err(StreamErr::Upstream) if reused && replayable => {
                    // Stale pooled connection: once more on a fresh one.
                    reused = false;
                    match connect(addr, upstream.connect_timeout).await {
                        Ok(s) => up = s,
                        Err(err) => return Attempt::Failed { err, retry: true },
                    }
                    continue;
                }
                Err(StreamErr::Upstream) => {
                    return Attempt::Failed {
                        err: UpErr::Error,
                        retry: replayable,
                    }
                }
            }
            // Read the response head (skipping interim 1xx responses).
            match self
                .read_response_head(&mut up, head.method, upstream)
                .await
            {
                Ok(resp) => return self.relay(head, upstream, addr, up, resp, server).await,
                Err(HeadErr::Closed) if reused && replayable => {
                    reused = false;
                    match connect(addr, upstream.connect_timeout).await {
                        Ok(s) => up = s,
                        Err(err) => return Attempt::Failed { err, retry: true },
                    }
                }
                Err(HeadErr::Closed) => {
                    return Attempt::Failed {
                        err: UpErr::Error,
                        retry: replayable,
                    }
                }
                Err(HeadErr::Timeout) => {
                    return Attempt::Failed {
                        err: UpErr::Timeout,
                        retry: replayable,
                    }
                }
                Err(HeadErr::Invalid) => {
                    return Attempt::Failed {
                        err: UpErr::Error,
                        retry: false,
                    }
                }
            }
        }
    }

    /// Copy the rest of a Content-Length request body from the client to the upstream.
    async fn stream_body(
        &mut self,
        up: &mut TcpStream,
        mut remaining: u64,
        upstream: &Upstream,
        server: &Server,
    ) -> Result<(), StreamErr> {
        if remaining >= SPLICE_MIN && self.ctx.config().splice {
            let r = splice_exact(
                &mut self.pipe,
                &self.client,
                up,
                remaining,
                server.client_body_timeout,
                upstream.send_timeout,
            )
            .await;
            match r {
                Ok(()) => {
                    metrics::add(&self.ctx.stats.bytes_from_clients, remaining);
                    metrics::add(&self.ctx.stats.spliced_bytes, remaining);
                    return Ok(());
                }
                Err(SpliceErr::Source) => return Err(StreamErr::Client),
                Err(SpliceErr::Sink) => return Err(StreamErr::Upstream),
                Err(SpliceErr::NoPipe) => {} // copy below
            }
        }
        let mut chunk = std::mem::take(&mut self.out);
        chunk.clear();
        chunk.reserve(BODY_CHUNK);
        let result = async {
            while remaining > 0 {
                chunk.clear();
                let want = (remaining as usize).min(BODY_CHUNK);
                let r = self
                    .ctx
                    .deadlines
                    .timed(
                        self.dl,
                        server.client_body_timeout,
                        read_more(&mut self.client, &mut chunk, want),
                    )
                    .await;
                let n = match r {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return Err(StreamErr::Client),
                };
                metrics::add(&self.ctx.stats.bytes_from_clients, n as u64);
                remaining -= n as u64;
                write_all_timeout(
                    &self.ctx.deadlines,
                    self.dl,
                    up,
                    &mut chunk,
                    upstream.send_timeout,
                )
                .await
                .map_err(|_| StreamErr::Upstream)?;
            }
            Ok(())
        }
        .await;
        chunk.clear();
        self.out = chunk;
        result
    }

    async fn read_response_head(
        &mut self,
        up: &mut TcpStream,
        method: Method,
        upstream: &Upstream,
    ) -> Result<http::ResponseHead, HeadErr> {
        self.ubuf.clear();
        loop {
            if !self.ubuf.is_empty() {
                match http::parse_response(&self.ubuf, method, &mut self.uheaders) {
                    Ok(Some(resp)) if (100..200).contains(&resp.status) && resp.status != 101 => {
                        // Interim response (we answer Expect ourselves): skip it.
                        self.ubuf.drain(..resp.head_len);
                        continue;
                    }
                    Ok(Some(resp)) if resp.status == 101 => return Err(HeadErr::Invalid),
                    Ok(Some(resp)) => return Ok(resp),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "upstream sent an invalid response head");
                        return Err(HeadErr::Invalid);
                    }
                }
            }
            let r = self
                .ctx
                .deadlines
                .timed(
                    self.dl,
                    upstream.read_timeout,
                    read_more(up, &mut self.ubuf, READ_CHUNK),
                )
                .await;
            match r {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Err(if self.ubuf.is_empty() {
                        HeadErr::Closed
                    } else {
                        HeadErr::Invalid
                    })
                }
                Ok(Ok(_)) => {}
                Err(_) => return Err(HeadErr::Timeout),
            }
        }
    }

    /// Send the response head and body to the client; return the upstream connection to the
    /// pool when the exchange ended cleanly.
    async fn relay(
        &mut self,
        head: &RequestHead,
        upstream: &Upstream,
        addr: SocketAddr,
        mut up: TcpStream,
        resp: http::ResponseHead,
        _server: &Server,
    ) -> Attempt {
        let dechunk = resp.body == BodyKind::Chunked && head.version == Version::Http10;
        let client_keep = head.keep_alive
            && !self.ctx.draining()
            && resp.body != BodyKind::CloseDelimited
            && !dechunk;
        self.out.clear();
        http::write_client_head(
            &self.ubuf,
            &resp,
            &self.uheaders,
            ClientMode {
                version: head.version,
                keep_alive: client_keep,
                dechunk,
            },
            &mut self.out,
        );
        let head_bytes = self.out.len() as u64;
        let status = resp.status;
        let mut body_bytes = 0u64;
        let rest_start = resp.head_len;
        let outcome = match resp.body {
            BodyKind::Empty => self
                .flush_out()
                .await
                .map(|()| self.ubuf.len() == rest_start),
            BodyKind::Length(n) => {
                self.relay_length(&mut up, rest_start, n, upstream, &mut body_bytes)
                    .await
            }
            BodyKind::Chunked => {
                self.relay_chunked(&mut up, rest_start, dechunk, upstream, &mut body_bytes)
                    .await
            }
            BodyKind::CloseDelimited => {
                self.relay_until_close(&mut up, rest_start, upstream, &mut body_bytes)
                    .await
            }
        };
        metrics::add(&self.ctx.stats.bytes_to_clients, head_bytes + body_bytes);
        match outcome {
            Ok(clean) => {
                if clean && resp.keep_alive {
                    self.ctx.pool.borrow_mut().put(
                        &upstream.name,
                        upstream.keepalive,
                        upstream.keepalive_timeout,
                        addr,
                        up,
                        Instant::now(),
                    );
                }
                let next = if client_keep {
                    Next::KeepAlive
                } else {
                    Next::Close
                };
                Attempt::Done(
                    Done {
                        status,
                        body_bytes,
                        next,
                        consumed: 0,
                    },
                    Outcome::Success,
                )
            }
            // The head is out: the only honest thing left is to cut the client connection.
            Err(StreamErr::Upstream) => Attempt::Done(
                Done {
                    status,
                    body_bytes,
                    next: Next::Close,
                    consumed: 0,
                },
                Outcome::Failure,
            ),
            Err(StreamErr::Client) => Attempt::ClientGone(Done {
                status,
                body_bytes,
                next: Next::Close,
                consumed: 0,
            }),
        }
    }

    /// Returns Ok(true) when exactly the body was read (connection reusable).
    async fn relay_length(
        &mut self,
        up: &mut TcpStream,
        start: usize,
        n: u64,
        upstream: &Upstream,
        sent: &mut u64,
    ) -> Result<bool, StreamErr> {
        // A short rest of the body (below the splice size) is read before anything is written,
        // so the client gets head and body in one write (a 16 KiB response would otherwise
        // take two reads and two writes: the first read fills the 16 KiB buffer).
        while ((self.ubuf.len() - start) as u64) < n {
            let missing = n - (self.ubuf.len() - start) as u64;
            if missing >= SPLICE_MIN {
                break;
            }
            self.read_upstream(up, missing as usize, upstream).await?;
        }
        let have = self.ubuf.len() - start;
        let first = (have as u64).min(n) as usize;
        let extra = have > first;
        self.out.extend_from_slice(&self.ubuf[start..start + first]);
        *sent += first as u64;
        self.flush_out().await?;
        let mut remaining = n - first as u64;
        if remaining >= SPLICE_MIN && self.ctx.config().splice {
            let r = splice_exact(
                &mut self.pipe,
                up,
                &self.client,
                remaining,
                upstream.read_timeout,
                CLIENT_SEND_TIMEOUT,
            )
            .await;
            match r {
                Ok(()) => {
                    *sent += remaining;
                    metrics::add(&self.ctx.stats.spliced_bytes, remaining);
                    return Ok(!extra);
                }
                Err(SpliceErr::Source) => return Err(StreamErr::Upstream),
                Err(SpliceErr::Sink) => return Err(StreamErr::Client),
                Err(SpliceErr::NoPipe) => {} // copy below
            }
        }
        while remaining > 0 {
            self.ubuf.clear();
            let want = (remaining as usize).min(BODY_CHUNK);
            let got = self.read_upstream(up, want, upstream).await?;
            remaining -= got as u64;
            *sent += got as u64;
            write_all_timeout(
                &self.ctx.deadlines,
                self.dl,
                &mut self.client,
                &mut self.ubuf,
                CLIENT_SEND_TIMEOUT,
            )
            .await
            .map_err(|_| StreamErr::Client)?;
        }
        Ok(!extra)
    }

    async fn relay_chunked(
        &mut self,
        up: &mut TcpStream,
        start: usize,
        dechunk: bool,
        upstream: &Upstream,
        sent: &mut u64,
    ) -> Result<bool, StreamErr> {
        let mut decoder = ChunkedDecoder::new();
        let mut pos = start;
        loop {
            while pos < self.ubuf.len() && !decoder.is_done() {
                let step = decoder
                    .decode(&self.ubuf[pos..])
                    .map_err(|_| StreamErr::Upstream)?;
                if step.consumed == 0 {
                    break;
                }
                let input = &self.ubuf[pos..pos + step.consumed];
                if dechunk {
                    self.out.extend_from_slice(&input[step.data.clone()]);
                    *sent += step.data.len() as u64;
                } else {
                    self.out.extend_from_slice(input);
                    *sent += step.consumed as u64;
                }
                pos += step.consumed;
            }
            if decoder.is_done() {
                self.flush_out().await?;
                return Ok(pos == self.ubuf.len());
            }
            if self.out.len() >= BODY_CHUNK || !self.out.is_empty() {
                self.flush_out().await?;
            }
            // Keep the unconsumed tail (a partial size line) and read more after it.
            self.ubuf.drain(..pos);
            pos = 0;
            self.read_upstream(up, READ_CHUNK, upstream).await?;
        }
    }

    async fn relay_until_close(
        &mut self,
        up: &mut TcpStream,
        start: usize,
        upstream: &Upstream,
        sent: &mut u64,
    ) -> Result<bool, StreamErr> {
        self.out.extend_from_slice(&self.ubuf[start..]);
        *sent += (self.ubuf.len() - start) as u64;
        self.flush_out().await?;
        loop {
            self.ubuf.clear();
            match self
                .ctx
                .deadlines
                .timed(
                    self.dl,
                    upstream.read_timeout,
                    read_more(up, &mut self.ubuf, BODY_CHUNK),
                )
                .await
            {
                Ok(Ok(0)) => return Ok(false),
                Ok(Ok(n)) => {
                    *sent += n as u64;
                    write_all_timeout(
                        &self.ctx.deadlines,
                        self.dl,
                        &mut self.client,
                        &mut self.ubuf,
                        CLIENT_SEND_TIMEOUT,
                    )
                    .await
                    .map_err(|_| StreamErr::Client)?;
                }
                _ => return Err(StreamErr::Upstream),
            }
        }
    }

    /// Append up to `want` upstream bytes to `ubuf`; EOF or timeout is an upstream error.
    async fn read_upstream(
        &mut self,
        up: &mut TcpStream,
        want: usize,
        upstream: &Upstream,
    ) -> Result<usize, StreamErr> {
        match self
            .ctx
            .deadlines
            .timed(
                self.dl,
                upstream.read_timeout,
                read_more(up, &mut self.ubuf, want),
            )
            .await
        {
            Ok(Ok(n)) if n > 0 => Ok(n),
            _ => Err(StreamErr::Upstream),
        }
    }

    async fn flush_out(&mut self) -> Result<(), StreamErr> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = write_all_timeout(
            &self.ctx.deadlines,
            self.dl,
            &mut self.client,
            &mut self.out,
            CLIENT_SEND_TIMEOUT,
        )
        .await;
        self.out.clear();
        r.map_err(|_| StreamErr::Client)
    }

    /// Read and de-chunk a request body that starts at `buf[start..]` into `self.body`.
    /// Returns the bytes of chunked framing consumed; `Err(0)` = client gone, else a status.
    async fn read_chunked_body(&mut self, start: usize, server: &Server) -> Result<usize, u16> {
        self.body.clear();
        let mut decoder = ChunkedDecoder::new();
        let mut pos = start;
        let deadline = self.ctx.deadlines.now() + server.client_body_timeout;
        loop {
            while pos < self.buf.len() && !decoder.is_done() {
                let step = decoder.decode(&self.buf[pos..]).map_err(|_| 400u16)?;
                if step.consumed == 0 {
                    break;
                }
                let data = pos + step.data.start..pos + step.data.end;
                if (self.body.len() + data.len()) as u64 > server.client_max_body_size {
                    return Err(413);
                }
                self.body.extend_from_slice(&self.buf[data]);
                pos += step.consumed;
            }
            if decoder.is_done() {
                return Ok(pos - start);
            }
            let r = self
                .ctx
                .deadlines
                .timed_at(
                    self.dl,
                    deadline,
                    read_more(&mut self.client, &mut self.buf, READ_CHUNK),
                )
                .await;
            match r {
                Ok(Ok(n)) if n > 0 => {
                    metrics::add(&self.ctx.stats.bytes_from_clients, n as u64);
                }
                _ => return Err(0),
            }
        }
    }

    async fn continue_100(&mut self) -> Result<(), StreamErr> {
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        self.flush_out().await
    }

    /// Answer with an error page; `next` says whether the connection can go on.
    async fn fail(&mut self, status: u16, head: &RequestHead, server: &Server, next: Next) -> Done {
        let keep = matches!(next, Next::KeepAlive) && head.keep_alive && !self.ctx.draining();
        let body_bytes = match self.send_error(status, keep, server).await {
            Ok(n) => n,
            Err(_) => return closed(0),
        };
        let next = if keep { Next::KeepAlive } else { Next::Close };
        Done {
            status,
            body_bytes,
            next,
            consumed: 0,
        }
    }

    async fn send_error(
        &mut self,
        status: u16,
        keep_alive: bool,
        _server: &Server,
    ) -> Result<u64, StreamErr> {
        self.out.clear();
        http::error_response(status, keep_alive, &mut self.out);
        let total = self.out.len() as u64;
        let body = body_len_of(&self.out);
        self.flush_out().await?;
        metrics::add(&self.ctx.stats.bytes_to_clients, total);
        Ok(body)
    }

    fn log(&self, head: &RequestHead, status: u16, body_bytes: u64) {
        let mut log = self.ctx.log.borrow_mut();
        if !log.enabled() {
            return;
        }
        let buf = &self.buf;
        let h = &self.headers;
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
        let line_end = self
            .buf
            .iter()
            .position(|&c| c == b'\r' || c == b'\n')
            .unwrap_or(self.buf.len())
            .min(1024);
        log.log(&Entry {
            remote_addr: self.peer.ip(),
            request_line: &self.buf[..line_end],
            status,
            body_bytes_sent: 0,
            referer: None,
            user_agent: None,
            forwarded_for: None,
        });
    }
}

enum Attempt {
    /// A response was relayed (fully or cut short); the outcome goes to the balancer.
    Done(Done, Outcome),
    /// The attempt failed before anything reached the client.
    Failed { err: UpErr, retry: bool },
    /// The client went away; not the server's fault.
    ClientGone(Done),
}

enum StreamErr {
    Client,
    Upstream,
}

enum HeadErr {
    /// Closed or reset before any response byte.
    Closed,
    Timeout,
    Invalid,
}

fn closed(body_bytes: u64) -> Done {
    Done {
        status: 499,
        body_bytes,
        next: Next::Close,
        consumed: 0,
    }
}

/// The path of an origin-form or absolute-form target, without the query.
fn path_of(target: &[u8]) -> &[u8] {
    let mut t = target;
    for scheme in [&b"http://"[..], b"https://"] {
        if t.len() >= scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &t[scheme.len()..];
            t = rest
                .iter()
                .position(|&c| c == b'/')
                .map_or(b"/", |i| &rest[i..]);
        }
    }
    let end = t
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(t.len());
    &t[..end]
}

fn body_len_of(response: &[u8]) -> u64 {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| (response.len() - i - 4) as u64)
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, UpErr> {
    match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "upstream connect failed");
            Err(UpErr::Error)
        }
        Err(_) => Err(UpErr::Timeout),
    }
}

enum SpliceErr {
    /// Reading from the source failed, timed out or hit EOF early.
    Source,
    /// Writing to the sink failed or timed out.
    Sink,
    /// No pipe could be made (fd limit): nothing was moved, copy instead.
    NoPipe,
}

/// Move exactly `n` bytes from `from` to `to` through the connection's pipe with splice(2)
/// (see `zerocopy`): the bytes never pass through user space.
async fn splice_exact(
    slot: &mut Option<SplicePipe>,
    from: &TcpStream,
    to: &TcpStream,
    n: u64,
    read_timeout: Duration,
    write_timeout: Duration,
) -> Result<(), SpliceErr> {
    if slot.is_none() {
        match SplicePipe::new() {
            Ok(p) => *slot = Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a splice pipe; copying instead");
                return Err(SpliceErr::NoPipe);
            }
        }
    }
    let Some(pipe) = slot.as_ref() else {
        return Err(SpliceErr::NoPipe);
    };
    let result = zerocopy::splice_exact(pipe, from, to, n, read_timeout, write_timeout).await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            // The pipe may still hold bytes of this body: never reuse it.
            *slot = None;
            Err(match e {
                zerocopy::SpliceErr::Source => SpliceErr::Source,
                zerocopy::SpliceErr::Sink => SpliceErr::Sink,
            })
        }
    }
}

/// Append up to `max` bytes read from `stream` to `buf`.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
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

/// Write all of `buf` (which is kept for reuse) within `timeout`.
async fn write_all_timeout(
    deadlines: &Deadlines,
    slot: usize,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> io::Result<()> {
    let owned = std::mem::take(buf);
    match deadlines
        .timed(slot, timeout, stream.write_all(owned))
        .await
    {
        Ok((r, back)) => {
            *buf = back;
            r.map(|_| ())
        }
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    }
}

#[allow(dead_code)]
fn _assert_ip(_: IpAddr) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_targets() {
        assert_eq!(path_of(b"/a/b?x=1"), b"/a/b");
        assert_eq!(path_of(b"http://example.com/x?y"), b"/x");
        assert_eq!(path_of(b"http://example.com"), b"/");
        assert_eq!(path_of(b"*"), b"*");
    }

    #[test]
    fn body_len_of_error_page() {
        assert_eq!(body_len_of(b"HTTP/1.1 502 X\r\nA: b\r\n\r\nhello"), 5);
        assert_eq!(body_len_of(b"garbage"), 0);
    }
}
