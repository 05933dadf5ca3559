//! The response: its head rewritten for the client, then its body relayed as the upstream
//! frames it (Content-Length, chunked, or until close).

use crate::balance::Outcome;
use crate::http::{self, BodyKind, ChunkedDecoder, ClientMode, ResponseHead, Version};
use crate::metrics;
use crate::policy::{self, ExchangeError, Kind, Next};

use super::io::{forward_exact, Moved, UpstreamSide, BODY_CHUNK, READ_CHUNK, SPLICE_MIN};
use super::{Conn, Done, Finished, Target};

impl Conn {
    /// Send the response head and body to the client. Past the head, a failure can only cut
    /// the client connection: the client already has part of this response.
    pub(super) async fn relay(
        &mut self,
        up: &mut UpstreamSide,
        t: &Target<'_>,
        resp: ResponseHead,
    ) -> Finished {
        let head = t.head;
        let dechunk = resp.body == BodyKind::Chunked && head.version == Version::Http10;
        let keep =
            policy::client_keep_alive(head.keep_alive, self.ctx.draining(), resp.body, dechunk);
        let mode = ClientMode {
            version: head.version,
            keep_alive: keep,
            dechunk,
        };
        self.client.out.clear();
        http::write_client_head(&up.buf, &resp, &up.headers, mode, &mut self.client.out);
        let head_bytes = self.client.out.len() as u64;
        let mut body_bytes = 0u64;
        let start = resp.head_len;
        let clean = match resp.body {
            BodyKind::Empty => self.client.flush().await.map(|()| up.buf.len() == start),
            BodyKind::Length(n) => self.relay_length(up, start, n, &mut body_bytes).await,
            BodyKind::Chunked => {
                self.relay_chunked(up, start, dechunk, &mut body_bytes)
                    .await
            }
            BodyKind::CloseDelimited => self.relay_until_close(up, start, &mut body_bytes).await,
        };
        metrics::add(&self.ctx.stats.bytes_to_clients, head_bytes + body_bytes);
        let (next, outcome, reusable) = match clean {
            Ok(clean) => (
                Next::from_keep(keep),
                Outcome::Success,
                clean && resp.keep_alive,
            ),
            Err(e) => (Next::Close, e.outcome(), false),
        };
        Finished {
            done: Done {
                status: resp.status,
                body_bytes,
                next,
                consumed: 0,
            },
            outcome,
            reusable,
        }
    }

    /// Returns Ok(true) when exactly the body was read (connection reusable).
    async fn relay_length(
        &mut self,
        up: &mut UpstreamSide,
        start: usize,
        n: u64,
        sent: &mut u64,
    ) -> Result<bool, ExchangeError> {
        // A short rest of the body (below the splice size) is read before anything is written,
        // so the client gets head and body in one write (a 16 KiB response would otherwise
        // take two reads and two writes: the first read fills the 16 KiB buffer).
        while ((up.buf.len() - start) as u64) < n {
            let missing = n - (up.buf.len() - start) as u64;
            if missing >= SPLICE_MIN {
                break;
            }
            up.read(missing as usize).await?;
        }
        let have = up.buf.len() - start;
        let first = (have as u64).min(n) as usize;
        let extra = have > first;
        self.client
            .out
            .extend_from_slice(&up.buf[start..start + first]);
        *sent += first as u64;
        self.client.flush().await?;
        let mut moved = Moved::default();
        let rest = n - first as u64;
        let pipe = (rest >= SPLICE_MIN && self.ctx.config().splice).then_some(&mut self.pipe);
        let r = forward_exact(
            &mut up.io,
            &mut self.client.io,
            rest,
            &mut up.buf,
            pipe,
            &mut moved,
        )
        .await;
        *sent += moved.bytes;
        metrics::add(&self.ctx.stats.spliced_bytes, moved.spliced);
        r.map(|()| !extra)
    }

    /// Relay a chunked body: verbatim, or de-chunked for an HTTP/1.0 client.
    async fn relay_chunked(
        &mut self,
        up: &mut UpstreamSide,
        start: usize,
        dechunk: bool,
        sent: &mut u64,
    ) -> Result<bool, ExchangeError> {
        let mut decoder = ChunkedDecoder::new();
        let mut pos = start;
        loop {
            let before = self.client.out.len();
            let used = decoder
                .decode_into(&up.buf[pos..], !dechunk, &mut self.client.out)
                .map_err(|_| ExchangeError::upstream(Kind::Invalid))?;
            *sent += (self.client.out.len() - before) as u64;
            pos += used;
            self.client.flush().await?;
            if decoder.is_done() {
                return Ok(pos == up.buf.len());
            }
            // Keep the unconsumed tail (a partial size line) and read more after it.
            up.buf.drain(..pos);
            pos = 0;
            up.read(READ_CHUNK).await?;
        }
    }

    /// Relay a body that ends when the upstream closes; the connection is never reusable.
    async fn relay_until_close(
        &mut self,
        up: &mut UpstreamSide,
        start: usize,
        sent: &mut u64,
    ) -> Result<bool, ExchangeError> {
        self.client.out.extend_from_slice(&up.buf[start..]);
        *sent += (up.buf.len() - start) as u64;
        self.client.flush().await?;
        loop {
            up.buf.clear();
            let deadline = up.io.timer.now() + up.io.read_timeout;
            match up.io.read_or_eof(&mut up.buf, BODY_CHUNK, deadline).await? {
                0 => return Ok(false),
                n => {
                    *sent += n as u64;
                    self.client.send(&mut up.buf).await?;
                }
            }
        }
    }
}
