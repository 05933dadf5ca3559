//! The upstream side of an attempt: connect, send the request (the held bytes, then any body
//! still streaming from the client), read the response head.

use std::rc::Rc;

use monoio::net::TcpStream;

use crate::config::Upstream;
use crate::http::{self, Method, ResponseHead};
use crate::metrics;
use crate::policy::{ExchangeError, Kind, Side};

use super::io::{forward_exact, Endpoint, Moved, UpstreamSide, BODY_CHUNK, READ_CHUNK, SPLICE_MIN};
use super::{Conn, Target};

/// Interim (1xx) responses accepted before the final one; real servers send one or two.
const MAX_INTERIM: usize = 8;

impl Conn {
    pub(super) async fn connect(&self, t: &Target<'_>) -> Result<TcpStream, ExchangeError> {
        let timer = &self.client.io.timer;
        metrics::add(&self.ctx.stats.upstream_connects, 1);
        let connect = TcpStream::connect_addr(t.addr);
        match timer.within(t.upstream.connect_timeout, connect).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => {
                tracing::debug!(addr = %t.addr, error = %e, "upstream connect failed");
                Err(ExchangeError::upstream(Kind::Connect))
            }
            Err(_elapsed) => Err(ExchangeError::upstream(Kind::Timeout)),
        }
    }

    /// An upstream connection with the connection's response buffers.
    pub(super) fn upstream_side(&mut self, tcp: TcpStream, upstream: &Upstream) -> UpstreamSide {
        let mut io = Endpoint::new(tcp, self.client.io.timer.clone(), Side::Upstream);
        io.read_timeout = upstream.read_timeout;
        io.write_timeout = upstream.send_timeout;
        UpstreamSide {
            io,
            buf: std::mem::take(&mut self.ubuf),
            headers: std::mem::take(&mut self.uheaders),
        }
    }

    /// Send the request head and the body bytes we hold, then stream the rest of a
    /// Content-Length body from the client.
    pub(super) async fn send_request(
        &mut self,
        up: &mut UpstreamSide,
        t: &Target<'_>,
        request: &Rc<Vec<u8>>,
    ) -> Result<(), ExchangeError> {
        up.io.write_shared(request).await?;
        if self.body.file_len() > 0 && t.body.held {
            return self.send_body_file(up).await;
        }
        if t.body.to_stream == 0 {
            return Ok(());
        }
        let mut chunk = std::mem::take(&mut self.client.out);
        let mut moved = Moved::default();
        let splice = t.body.to_stream >= SPLICE_MIN && self.ctx.config().splice;
        let pipe = splice.then_some(&mut self.pipe);
        let r = forward_exact(
            &mut self.client.io,
            &mut up.io,
            t.body.to_stream,
            &mut chunk,
            pipe,
            &mut moved,
        )
        .await;
        chunk.clear();
        self.client.out = chunk;
        metrics::add(&self.ctx.stats.bytes_from_clients, moved.bytes);
        metrics::add(&self.ctx.stats.spliced_bytes, moved.spliced);
        r
    }

    /// Send the part of a held body that went to its temporary file.
    async fn send_body_file(&mut self, up: &mut UpstreamSide) -> Result<(), ExchangeError> {
        let mut chunk = std::mem::take(&mut self.client.out);
        let mut offset = 0;
        let result = loop {
            if offset == self.body.file_len() {
                break Ok(());
            }
            match self.body.read_file_at(offset, &mut chunk, BODY_CHUNK) {
                Ok(n) if n > 0 => offset += n as u64,
                other => {
                    tracing::error!(result = ?other, "cannot read a buffered request body back");
                    break Err(ExchangeError::rejected(500));
                }
            }
            if let Err(e) = up.io.write_all(&mut chunk).await {
                break Err(e);
            }
        };
        chunk.clear();
        self.client.out = chunk;
        result
    }

    /// Read the response head, skipping interim 1xx responses.
    pub(super) async fn read_response_head(
        &mut self,
        up: &mut UpstreamSide,
        method: Method,
    ) -> Result<ResponseHead, ExchangeError> {
        up.buf.clear();
        let mut interim = 0;
        loop {
            if !up.buf.is_empty() {
                match http::parse_response(&up.buf, method, &mut up.headers) {
                    Ok(Some(resp)) if (100..200).contains(&resp.status) && resp.status != 101 => {
                        // Interim response (we answer Expect ourselves): skip it. A server
                        // that sends nothing else would restart read_timeout for ever.
                        interim += 1;
                        if interim > MAX_INTERIM {
                            tracing::warn!(interim, "upstream sends only interim responses");
                            return Err(ExchangeError::upstream(Kind::Invalid));
                        }
                        up.buf.drain(..resp.head_len);
                        continue;
                    }
                    Ok(Some(resp)) if resp.status == 101 => {
                        return Err(ExchangeError::upstream(Kind::Invalid))
                    }
                    Ok(Some(resp)) => return Ok(resp),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "upstream sent an invalid response head");
                        return Err(ExchangeError::upstream(Kind::Invalid));
                    }
                }
            }
            match up.read(READ_CHUNK).await {
                Ok(_) => {}
                // Closed mid-head is a broken response, not a stale connection.
                Err(e) if e.kind == Kind::Closed && !up.buf.is_empty() => {
                    return Err(ExchangeError::upstream(Kind::Invalid))
                }
                Err(e) => return Err(e),
            }
        }
    }
}
