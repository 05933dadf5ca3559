//! HTTP/1.x heads and body framing over httparse. Pure and fuzzable: no I/O, no clock.
//!
//! Heads are parsed in place: [`RequestHead`] / [`ResponseHead`] hold offsets into the caller's
//! buffer, and header spans go into a caller-owned `Vec<HeaderSpan>` that is reused across
//! requests, so the hot path does not allocate.
//!
//! What the connection code (`conn`) relies on:
//! - [`parse_request`] / [`parse_response`]: `Ok(None)` = need more bytes.
//! - [`write_upstream_head`] / [`write_client_head`]: rewrite a head for the other side, appending
//!   to `out` (never clearing it).
//! - [`ChunkedDecoder`]: incremental chunked-body scanner that works for pass-through (forward
//!   `input[..consumed]` verbatim) and for de-chunking (forward only `input[data]`).
//! - [`error_response`]: a complete small HTML error response (nginx's 50x page style).
//!
//! Behaviour worth knowing when driving these (details on each item):
//! - `parse_request` only looks at the first `max_head` bytes, so its answer on a growing buffer
//!   never depends on how the bytes arrived (tested by splitting inputs at every byte).
//! - An absolute-form target (`GET http://h/p`) yields `target = /p` and `host = h` (the URI's
//!   authority overrides the Host field, RFC 9112 3.2.2); the upstream gets origin form.
//! - `ChunkedDecoder` errors are sticky; data produced before an error is returned first.
//! - `write_client_head` with `dechunk` always says `Connection: close` (the de-chunked body is
//!   close-delimited for the client).

use std::ops::Range;

mod chunked;
mod error_page;
mod request;
mod response;
mod rewrite;
mod util;

#[cfg(test)]
mod tests;

pub use chunked::{ChunkedDecoder, MAX_SIZE_LINE, MAX_TRAILERS};
pub use error_page::{error_response, reason_phrase};
pub use request::{parse_request, MAX_HEADERS_CAP};
pub use response::{parse_response, RESPONSE_MAX_HEAD, RESPONSE_MAX_HEADERS};
pub use rewrite::{write_client_head, write_upstream_head};

/// Request method; `Other` keeps the bytes in the buffer (see [`RequestHead::method_span`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Patch,
    Connect,
    Other,
}

impl Method {
    /// RFC 9110 9.2.2 idempotent methods (safe to replay on another upstream).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (requests without CL/TE; HEAD, 1xx, 204, 304 responses; CL: 0).
    Empty,
    Length(u64),
    Chunked,
    /// Response only: body ends when the upstream closes.
    CloseDelimited,
}

/// A header's name and value as byte offsets into the parsed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// Limits applied while parsing a request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest head (request line + headers + CRLFCRLF) in bytes; more is 431.
    pub max_head: usize,
    /// Most header fields; more is 431. Values above [`MAX_HEADERS_CAP`] act as that cap.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 8 * 1024,
            max_headers: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head including the final CRLFCRLF; the body (or the next pipelined request)
    /// starts here.
    pub head_len: usize,
    pub method: Method,
    pub method_span: Range<usize>,
    /// Request target (path and query) as sent.
    pub target: Range<usize>,
    pub version: Version,
    /// The request line without CRLF (nginx `$request`).
    pub request_line: Range<usize>,
    pub body: BodyKind,
    /// Whether the client wants the connection kept open after this exchange (HTTP/1.1 default
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// The Host header value, if any.
    pub host: Option<Range<usize>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub head_len: usize,
    pub version: Version,
    pub status: u16,
    /// Reason phrase as sent (may be empty).
    pub reason: Range<usize>,
    /// Already accounts for the request method (HEAD) and status (1xx/204/304).
    pub body: BodyKind,
    /// Whether the upstream connection may be reused after this response.
    pub keep_alive: bool,
}

/// Why a request head was refused; [`RequestError::status`] is what the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("bad request: {0}")]
    Bad(&'static str),
    #[error("request header block too large")]
    HeadTooLarge,
    #[error("not implemented: {0}")]
    Unsupported(&'static str),
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Bad(_) => 400,
            RequestError::HeadTooLarge => 431,
            RequestError::Unsupported(_) => 501,
        }
    }
}

/// Why an upstream response head was refused (the proxy answers 502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid upstream response: {0}")]
pub struct ResponseError(pub &'static str);

/// Invalid chunked framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body: {0}")]
pub struct ChunkError(pub &'static str);

/// One step of [`ChunkedDecoder::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkStep {
    /// Input bytes consumed by this step (framing and data).
    pub consumed: usize,
    /// Body data inside `input[..consumed]` (may be empty).
    pub data: Range<usize>,
    /// The terminating zero chunk and trailers have been consumed.
    pub done: bool,
}

/// What the client side of an exchange needs from a rewritten response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMode {
    pub version: Version,
    pub keep_alive: bool,
    /// The body will be de-chunked (HTTP/1.0 client, chunked upstream response): drop
    /// Transfer-Encoding.
    pub dechunk: bool,
}

/// Value of the first header named `name` (ASCII case-insensitive).
pub fn header<'a>(buf: &'a [u8], headers: &[HeaderSpan], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| util::at(buf, &h.name).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| util::at(buf, &h.value))
}
