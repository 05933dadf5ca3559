//! The client's side of a request: its head (with `client_header_timeout`, and
//! `keepalive_timeout` before the first byte) and its body (held when it came with the head or
//! was chunked, else left to stream to the upstream).

use std::time::Instant;

use crate::config::Server;
use crate::http::{self, BodyKind, ChunkedDecoder, RequestHead};
use crate::policy::ExchangeError;

use super::io::READ_CHUNK;
use super::Conn;

/// What the exchange holds of the request body once the head is read.
pub(super) struct Body {
    /// Bytes of the client buffer the request occupies (head and held body bytes).
    pub consumed: usize,
    /// `Some(len)`: the body was de-chunked into `Conn::body` and goes upstream with this
    /// Content-Length.
    pub dechunked: Option<u64>,
    /// Content-Length bytes still to stream from the client to the upstream.
    pub to_stream: u64,
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

    /// Take stock of the request body: how much we hold and how much is still to stream.
    /// A chunked body is read and de-chunked whole here.
    pub(super) async fn request_body(
        &mut self,
        head: &RequestHead,
        server: &Server,
    ) -> Result<Body, ExchangeError> {
        let mut body = Body {
            consumed: head.head_len,
            dechunked: None,
            to_stream: 0,
        };
        match head.body {
            BodyKind::Empty | BodyKind::CloseDelimited => {}
            BodyKind::Length(n) => {
                if n > server.client_max_body_size {
                    return Err(ExchangeError::rejected(413));
                }
                let have = ((self.client.buf.len() - head.head_len) as u64).min(n);
                body.consumed += have as usize;
                body.to_stream = n - have;
                if body.to_stream > 0 && head.expect_continue {
                    self.continue_100().await?;
                }
            }
            BodyKind::Chunked => {
                if head.expect_continue && self.client.buf.len() == head.head_len {
                    self.continue_100().await?;
                }
                self.read_chunked_body(head.head_len, server).await?;
                body.dechunked = Some(self.body.len() as u64);
            }
        }
        Ok(body)
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
    ) -> Result<(), ExchangeError> {
        self.body.clear();
        let mut decoder = ChunkedDecoder::new();
        let deadline = self.client.io.timer.now() + server.client_body_timeout;
        loop {
            let used = decoder
                .decode_into(&self.client.buf[start..], false, &mut self.body)
                .map_err(|_| ExchangeError::rejected(400))?;
            self.client.buf.drain(start..start + used);
            if self.body.len() as u64 > server.client_max_body_size {
                return Err(ExchangeError::rejected(413));
            }
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

/// Whether the body can be left unread behind an error page without confusing the next
/// request (nothing to read, or the connection closes anyway).
pub(super) fn body_unread(head: &RequestHead) -> bool {
    head.body != BodyKind::Empty
}
