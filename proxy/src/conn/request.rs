//! The client's side of a request: its head (with `client_header_timeout`, and
//! `keepalive_timeout` before the first byte) and its body: read whole into the connection's
//! [`BodyBuffer`] before an upstream is picked (request buffering on, and every chunked body,
//! which goes upstream de-chunked with a Content-Length), or left to stream to the upstream.

use std::time::Instant;

use crate::config::Server;
use crate::http::{self, BodyKind, ChunkedDecoder, RequestHead};
use crate::policy::ExchangeError;

use super::body::BodyBuffer;
use super::io::READ_CHUNK;
use super::Conn;

/// What the exchange holds of the request body once the head is read.
pub(super) struct Body {
    /// Bytes of the client buffer the request occupies (head and held body bytes).
    pub consumed: usize,
    /// The body's length for the upstream (`Content-Length`, one normalised value), when known.
    pub content_length: Option<u64>,
    /// The whole body is in `Conn::body` (buffered or de-chunked).
    pub held: bool,
    /// Content-Length bytes still to stream from the client to the upstream (request
    /// buffering off).
    pub to_stream: u64,
}

/// Where a buffered body goes: how much in memory, and the directory for the rest.
pub(super) struct Buffering<'a> {
    /// `false`: stream a Content-Length body as it arrives (`proxy_request_buffering = false`).
    pub enabled: bool,
    /// `client_body_buffer_size`.
    pub memory: usize,
    pub temp_dir: &'a std::path::Path,
}

impl Conn {
    /// Read until a complete request head is buffered. `Ok(None)`: close quietly (EOF, idle
    /// timeout, a graceful stop); `Err`: answer with its status and close.
    pub(super) async fn read_head(
        &mut self,
        server: &Server,
        deadline: Option<Instant>,
    ) -> Result<Option<RequestHead>, ExchangeError> {
        let limits = http::Limits {
            max_head: server.max_header_size,
            ..http::Limits::default()
        };
        let mut deadline = deadline;
        loop {
            let c = &mut self.client;
            if !c.buf.is_empty() {
                match http::parse_request(&c.buf, &limits, &mut c.headers) {
                    Ok(Some(head)) => return Ok(Some(head)),
                    Ok(None) if c.buf.len() >= limits.max_head => {
                        return Err(ExchangeError::rejected(431))
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(client = %self.peer, error = %e, "bad request");
                        return Err(ExchangeError::rejected(e.status()));
                    }
                }
            }
            // A graceful stop finishes requests in flight; a connection still waiting for (the
            // rest of) a head has none, so it closes now rather than holding up the exit.
            if self.ctx.draining() {
                return Ok(None);
            }
            let idle = c.buf.is_empty() && self.served > 0;
            let until = *deadline.get_or_insert_with(|| {
                let wait = if idle {
                    server.keepalive_timeout
                } else {
                    server.client_header_timeout
                };
                c.io.timer.now() + wait
            });
            let max = limits.max_head.saturating_sub(c.buf.len()).max(1);
            let read = c.read_until(max.min(READ_CHUNK), until);
            let ctx = self.ctx.clone();
            let r = monoio::select! {
                r = read => r,
                _ = ctx.drain.wait() => return Ok(None),
            };
            if r.is_err() {
                return Ok(None);
            }
            if idle {
                // First byte of the next request: client_header_timeout starts now.
                deadline = Some(self.client.io.timer.now() + server.client_header_timeout);
            }
        }
    }

    /// Take stock of the request body: read it whole (buffering on, or chunked), or note how
    /// much is still to stream.
    pub(super) async fn request_body(
        &mut self,
        head: &RequestHead,
        server: &Server,
        buffering: &Buffering<'_>,
    ) -> Result<Body, ExchangeError> {
        let mut body = Body {
            consumed: head.head_len,
            content_length: None,
            held: false,
            to_stream: 0,
        };
        let over_limit =
            |n: u64| server.client_max_body_size != 0 && n > server.client_max_body_size;
        match head.body {
            BodyKind::Empty | BodyKind::CloseDelimited => {}
            BodyKind::Length(n) => {
                if over_limit(n) {
                    return Err(ExchangeError::rejected(413));
                }
                body.content_length = Some(n);
                let have = ((self.client.buf.len() - head.head_len) as u64).min(n);
                if have < n && head.expect_continue {
                    self.continue_100().await?;
                }
                if buffering.enabled {
                    self.read_length_body(head.head_len, n, buffering).await?;
                    body.held = true;
                } else {
                    body.consumed += have as usize;
                    body.to_stream = n - have;
                }
            }
            BodyKind::Chunked => {
                if head.expect_continue && self.client.buf.len() == head.head_len {
                    self.continue_100().await?;
                }
                self.read_chunked_body(head.head_len, server, buffering)
                    .await?;
                body.content_length = Some(self.body.len());
                body.held = true;
            }
        }
        Ok(body)
    }

    /// Read a Content-Length body of `n` bytes that starts at `buf[start..]` into `self.body`,
    /// cutting it out of the client buffer (what follows it stays: a pipelined request).
    async fn read_length_body(
        &mut self,
        start: usize,
        n: u64,
        buffering: &Buffering<'_>,
    ) -> Result<(), ExchangeError> {
        self.body.clear();
        let mut remaining = n;
        loop {
            let have = (self.client.buf.len() - start)
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            self.hold(start, have, buffering)?;
            remaining -= have as u64;
            if remaining == 0 {
                return Ok(());
            }
            let want = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(READ_CHUNK);
            self.client.read(want).await?;
        }
    }

    /// Move `len` body bytes at `buf[start..]` into `self.body`.
    fn hold(
        &mut self,
        start: usize,
        len: usize,
        buffering: &Buffering<'_>,
    ) -> Result<(), ExchangeError> {
        keep(
            &mut self.body,
            &self.client.buf[start..start + len],
            buffering,
        )?;
        self.client.buf.drain(start..start + len);
        Ok(())
    }

    /// Read and de-chunk a request body that starts at `buf[start..]` into `self.body`.
    ///
    /// The framing is consumed as it is parsed: decoded bytes are cut out of the client buffer
    /// at once, so the buffer holds the head plus at most one read and one partial size line,
    /// whatever the client puts into extensions and trailers. On return the bytes after the
    /// head are whatever followed the body (a pipelined request).
    async fn read_chunked_body(
        &mut self,
        start: usize,
        server: &Server,
        buffering: &Buffering<'_>,
    ) -> Result<(), ExchangeError> {
        self.body.clear();
        let mut decoder = ChunkedDecoder::new();
        let deadline = self.client.io.timer.now() + server.client_body_timeout;
        let mut data = Vec::new();
        loop {
            data.clear();
            let used = decoder
                .decode_into(&self.client.buf[start..], false, &mut data)
                .map_err(|_| ExchangeError::rejected(400))?;
            self.client.buf.drain(start..start + used);
            let limit = server.client_max_body_size;
            if limit != 0 && self.body.len() + data.len() as u64 > limit {
                return Err(ExchangeError::rejected(413));
            }
            keep(&mut self.body, &data, buffering)?;
            if decoder.is_done() {
                return Ok(());
            }
            let room = READ_CHUNK
                .saturating_sub(self.client.buf.len() - start)
                .max(1);
            self.client.read_until(room, deadline).await?;
        }
    }

    async fn continue_100(&mut self) -> Result<(), ExchangeError> {
        self.client.out.clear();
        self.client
            .out
            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        self.client.flush().await
    }
}

/// Append body bytes to `body`; a temporary file that cannot be written is our failure (500).
fn keep(
    body: &mut BodyBuffer,
    data: &[u8],
    buffering: &Buffering<'_>,
) -> Result<(), ExchangeError> {
    body.append(data, buffering.memory, buffering.temp_dir)
        .map_err(|e| {
            let dir = buffering.temp_dir.display();
            tracing::error!(%dir, error = %e, "cannot buffer a request body in client_body_temp_path");
            ExchangeError::rejected(500)
        })
}

/// Whether the body can be left unread behind an error page without confusing the next
/// request (nothing to read, or the connection closes anyway).
pub(super) fn body_unread(head: &RequestHead) -> bool {
    head.body != BodyKind::Empty
}
