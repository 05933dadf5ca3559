//! Request head parsing and framing validation (RFC 9112 3, 6).

use std::mem::MaybeUninit;
use std::ops::Range;

use super::util::{
    at, connection_flags, name_is, span_of, ClError, ContentLength, TransferEncoding,
};
use super::{BodyKind, HeaderSpan, Limits, Method, RequestError, RequestHead, Version};

/// Upper bound on `Limits::max_headers`: httparse needs a header array, which lives on the
/// stack (uninitialised, so its size costs nothing per request). Larger limits are clamped.
pub const MAX_HEADERS_CAP: usize = 512;

fn method_of(m: &[u8]) -> Method {
    match m {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"POST" => Method::Post,
        b"PUT" => Method::Put,
        b"DELETE" => Method::Delete,
        b"OPTIONS" => Method::Options,
        b"TRACE" => Method::Trace,
        b"PATCH" => Method::Patch,
        b"CONNECT" => Method::Connect,
        _ => Method::Other,
    }
}

fn bad_syntax(e: httparse::Error) -> RequestError {
    RequestError::Bad(match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Token => "invalid request line",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::Status => "invalid request line",
        httparse::Error::TooManyHeaders => "too many headers",
    })
}

/// Where the request target says to go.
struct Target {
    /// Path and query sent upstream (empty for `http://host`, which means `/`).
    path: Range<usize>,
    /// Authority of an absolute-form target; it overrides Host (RFC 9112 3.2.2).
    authority: Option<Range<usize>>,
}

fn classify_target(
    buf: &[u8],
    span: Range<usize>,
    method: Method,
) -> Result<Target, RequestError> {
    let t = at(buf, &span);
    match t.first() {
        Some(b'/') => {
            return Ok(Target {
                path: span,
                authority: None,
            })
        }
        Some(b'*') if t.len() == 1 => {
            return if method == Method::Options {
                Ok(Target {
                    path: span,
                    authority: None,
                })
            } else {
                Err(RequestError::Bad("asterisk-form target outside OPTIONS"))
            };
        }
        _ => {}
    }
    let scheme_len = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return Err(RequestError::Bad("invalid request target"));
    };
    let rest = &t[scheme_len..];
    let auth_len = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..auth_len];
    // Userinfo is deprecated (RFC 9110 4.2.4) and a classic way to confuse host checks.
    if authority.is_empty() || authority.contains(&b'@') {
        return Err(RequestError::Bad("invalid authority in request target"));
    }
    let auth_start = span.start + scheme_len;
    Ok(Target {
        path: auth_start + auth_len..span.end,
        authority: Some(auth_start..auth_start + auth_len),
    })
}

/// Parse a request head at the start of `buf`. `Ok(None)` means more bytes are needed.
///
/// Only the first `limits.max_head` bytes are looked at, so the answer for a growing buffer is
/// the same whichever way it was split: a head that is not complete within the limit is
/// [`RequestError::HeadTooLarge`] (431), like one with more than `limits.max_headers` fields.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    headers: &mut Vec<HeaderSpan>,
) -> Result<Option<RequestHead>, RequestError> {
    headers.clear();
    let window = &buf[..buf.len().min(limits.max_head)];
    let max_headers = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut raw = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS_CAP];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(window, &mut raw[..max_headers]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if window.len() >= limits.max_head {
                Err(RequestError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(e) => return Err(bad_syntax(e)),
    };
    let (Some(m), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Bad("invalid request line"));
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(RequestError::Bad("unsupported HTTP version")),
    };
    let method_span = span_of(buf, m.as_bytes());
    let method = method_of(m.as_bytes());
    if method == Method::Connect {
        return Err(RequestError::Bad("CONNECT is not supported"));
    }
    let target_span = span_of(buf, path.as_bytes());
    // httparse allows exactly one SP before "HTTP/1.x" (8 bytes).
    let request_line = method_span.start..(target_span.end + 9).min(head_len);
    let target = classify_target(buf, target_span, method)?;

    let mut cl = ContentLength::default();
    let mut te = TransferEncoding::default();
    let mut conn = (false, false);
    let mut hosts = 0usize;
    let mut host = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let span = HeaderSpan {
            name: span_of(buf, h.name.as_bytes()),
            value: span_of(buf, h.value),
        };
        if name_is(buf, &span, b"host") {
            hosts += 1;
            host = Some(span.value.clone());
        } else if name_is(buf, &span, b"content-length") {
            cl.add(h.value).map_err(|e| match e {
                ClError::Invalid => RequestError::Bad("invalid Content-Length"),
                ClError::Conflict => RequestError::Bad("conflicting Content-Length"),
            })?;
        } else if name_is(buf, &span, b"transfer-encoding") {
            te.add(h.value);
        } else if name_is(buf, &span, b"connection") {
            connection_flags(buf, &span, &mut conn);
        } else if name_is(buf, &span, b"expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        }
        headers.push(span);
    }

    if hosts > 1 {
        return Err(RequestError::Bad("more than one Host header"));
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(RequestError::Bad("HTTP/1.1 request without Host"));
    }
    let body = if te.present {
        if version == Version::Http10 {
            // RFC 9112 6.1: an HTTP/1.0 message with TE has faulty framing.
            return Err(RequestError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if cl.value.is_some() {
            return Err(RequestError::Bad(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if !te.final_chunked || te.chunked_not_last {
            return Err(RequestError::Bad("final transfer coding is not chunked"));
        }
        BodyKind::Chunked
    } else {
        match cl.value {
            None | Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
        }
    };
    let (close, ka) = conn;
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => ka && !close,
    };

    Ok(Some(RequestHead {
        head_len,
        method,
        method_span,
        target: target.path,
        version,
        request_line,
        body,
        keep_alive,
        // RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored
        // (nginx too only answers it for HTTP/1.1).
        expect_continue: expect_continue && version == Version::Http11,
        host: target.authority.or(host),
    }))
}
