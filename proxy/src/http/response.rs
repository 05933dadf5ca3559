//! Upstream response head parsing and body framing (RFC 9112 4, 6.3).

use std::mem::MaybeUninit;

use super::util::{
    connection_flags, name_is, span_of, ClError, ContentLength, TransferEncoding,
};
use super::{BodyKind, HeaderSpan, Method, ResponseError, ResponseHead, Version};

/// Most header fields accepted from an upstream.
pub const RESPONSE_MAX_HEADERS: usize = 100;
/// Largest upstream response head.
pub const RESPONSE_MAX_HEAD: usize = 64 * 1024;

fn syntax_error(e: httparse::Error) -> ResponseError {
    ResponseError(match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid status line",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    })
}

/// Parse an upstream response head at the start of `buf` (`Ok(None)`: need more bytes).
/// `method` is the request's: a response to HEAD never has a body.
pub fn parse_response(
    buf: &[u8],
    method: Method,
    headers: &mut Vec<HeaderSpan>,
) -> Result<Option<ResponseHead>, ResponseError> {
    headers.clear();
    let window = &buf[..buf.len().min(RESPONSE_MAX_HEAD)];
    let mut raw = [MaybeUninit::<httparse::Header<'_>>::uninit(); RESPONSE_MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, window, &mut raw)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if window.len() >= RESPONSE_MAX_HEAD {
                Err(ResponseError("response head too large"))
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError("too many headers")),
        Err(e) => return Err(syntax_error(e)),
    };
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(ResponseError("invalid status line"));
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(ResponseError("unsupported HTTP version")),
    };
    if status < 100 {
        return Err(ResponseError("invalid status code"));
    }
    let reason = span_of(buf, res.reason.unwrap_or("").as_bytes());

    let mut cl = ContentLength::default();
    let mut te = TransferEncoding::default();
    let mut conn = (false, false);
    let mut cl_error = None;
    for h in res.headers.iter() {
        let span = super::HeaderSpan {
            name: span_of(buf, h.name.as_bytes()),
            value: span_of(buf, h.value),
        };
        if name_is(buf, &span, b"content-length") {
            if let Err(e) = cl.add(h.value) {
                cl_error.get_or_insert(e);
            }
        } else if name_is(buf, &span, b"transfer-encoding") {
            te.add(h.value);
        } else if name_is(buf, &span, b"connection") {
            connection_flags(buf, &span, &mut conn);
        }
        headers.push(span);
    }

    let no_body = method == Method::Head || (100..200).contains(&status) || matches!(status, 204 | 304);
    let body = if no_body {
        // Framing headers describe the representation, not this message: nothing to read, so
        // nothing to validate.
        BodyKind::Empty
    } else if te.present {
        if version == Version::Http10 {
            // RFC 9112 6.1: faulty framing.
            return Err(ResponseError("Transfer-Encoding in an HTTP/1.0 response"));
        }
        if cl.value.is_some() || cl_error.is_some() {
            // nginx refuses this too ("upstream sent Content-Length and Transfer-Encoding").
            return Err(ResponseError("both Content-Length and Transfer-Encoding"));
        }
        if te.chunked_not_last {
            return Err(ResponseError("chunked applied before another coding"));
        }
        if te.final_chunked {
            BodyKind::Chunked
        } else {
            // RFC 9112 6.3 point 4: read until the connection closes.
            BodyKind::CloseDelimited
        }
    } else {
        match (cl_error, cl.value) {
            (Some(ClError::Conflict), _) => {
                return Err(ResponseError("conflicting Content-Length"))
            }
            (Some(ClError::Invalid), _) => return Err(ResponseError("invalid Content-Length")),
            (None, Some(0)) => BodyKind::Empty,
            (None, Some(n)) => BodyKind::Length(n),
            (None, None) => BodyKind::CloseDelimited,
        }
    };
    let (close, ka) = conn;
    let keep_alive = body != BodyKind::CloseDelimited
        && match version {
            Version::Http11 => !close,
            Version::Http10 => ka && !close,
        };
    Ok(Some(ResponseHead {
        head_len,
        version,
        status,
        reason,
        body,
        keep_alive,
    }))
}
