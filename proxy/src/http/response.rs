//! Upstream response head parsing and body framing (RFC 9112 4, 6.3).

use std::mem::MaybeUninit;

use super::util::{connection_flags, name_is, span_of, ClError, ContentLength, TransferEncoding};
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

    let no_body =
        method == Method::Head || (100..200).contains(&status) || matches!(status, 204 | 304);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8], m: Method) -> Result<Option<ResponseHead>, ResponseError> {
        let mut h = Vec::new();
        parse_response(buf, m, &mut h)
    }

    fn ok(buf: &[u8], m: Method) -> ResponseHead {
        match parse(buf, m) {
            Ok(Some(h)) => h,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn err(buf: &[u8]) -> &'static str {
        match parse(buf, Method::Get) {
            Err(ResponseError(m)) => m,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn resp(status: &str, extra: &str) -> String {
        format!("HTTP/1.1 {status}\r\n{extra}\r\n")
    }

    #[test]
    fn status_line_and_headers() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
        let mut headers = Vec::new();
        let h = parse_response(buf, Method::Get, &mut headers)
            .unwrap()
            .unwrap();
        assert_eq!(h.head_len, buf.len() - 5);
        assert_eq!(h.status, 200);
        assert_eq!(&buf[h.reason.clone()], b"OK");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.body, BodyKind::Length(5));
        assert!(h.keep_alive);
        assert_eq!(headers.len(), 2);
        for i in 0..buf.len() - 5 {
            assert_eq!(parse(&buf[..i], Method::Get), Ok(None), "prefix {i}");
        }
        // Empty reason phrase, with and without the SP.
        let h = ok(b"HTTP/1.1 204\r\n\r\n", Method::Get);
        assert!(h.reason.is_empty());
        let h = ok(b"HTTP/1.1 299 \r\n\r\n", Method::Get);
        assert!(h.reason.is_empty());
        assert_eq!(h.body, BodyKind::CloseDelimited);
    }

    #[test]
    fn bodies_by_method_and_status() {
        let cl = "Content-Length: 10\r\n";
        let te = "Transfer-Encoding: chunked\r\n";
        for status in [
            "100 Continue",
            "101 Switching",
            "103 Early",
            "204 No Content",
            "304 Not Modified",
        ] {
            assert_eq!(
                ok(resp(status, cl).as_bytes(), Method::Get).body,
                BodyKind::Empty
            );
            assert_eq!(
                ok(resp(status, te).as_bytes(), Method::Get).body,
                BodyKind::Empty
            );
        }
        assert_eq!(
            ok(resp("200 OK", cl).as_bytes(), Method::Head).body,
            BodyKind::Empty
        );
        assert_eq!(
            ok(resp("200 OK", te).as_bytes(), Method::Head).body,
            BodyKind::Empty
        );
        assert_eq!(
            ok(resp("200 OK", "").as_bytes(), Method::Head).body,
            BodyKind::Empty
        );
        assert_eq!(
            ok(resp("200 OK", cl).as_bytes(), Method::Get).body,
            BodyKind::Length(10)
        );
        assert_eq!(
            ok(
                resp("200 OK", "Content-Length: 0\r\n").as_bytes(),
                Method::Get
            )
            .body,
            BodyKind::Empty
        );
        assert_eq!(
            ok(resp("200 OK", te).as_bytes(), Method::Post).body,
            BodyKind::Chunked
        );
        assert_eq!(
            ok(
                resp("200 OK", "Transfer-Encoding: gzip, Chunked\r\n").as_bytes(),
                Method::Get
            )
            .body,
            BodyKind::Chunked
        );
        let h = ok(
            resp("200 OK", "Transfer-Encoding: gzip\r\n").as_bytes(),
            Method::Get,
        );
        assert_eq!(h.body, BodyKind::CloseDelimited);
        assert!(!h.keep_alive);
        let h = ok(resp("200 OK", "").as_bytes(), Method::Get);
        assert_eq!(h.body, BodyKind::CloseDelimited);
        assert!(!h.keep_alive);
        assert_eq!(
            ok(
                resp("404 Not Found", "Content-Length: 3, 3\r\n").as_bytes(),
                Method::Get
            )
            .body,
            BodyKind::Length(3)
        );
    }

    #[test]
    fn framing_errors() {
        assert_eq!(
            err(resp("200 OK", "Content-Length: 1\r\nContent-Length: 2\r\n").as_bytes()),
            "conflicting Content-Length"
        );
        assert_eq!(
            err(resp("200 OK", "Content-Length: 1, 2\r\n").as_bytes()),
            "conflicting Content-Length"
        );
        assert_eq!(
            err(resp("200 OK", "Content-Length: -1\r\n").as_bytes()),
            "invalid Content-Length"
        );
        assert_eq!(
            err(resp(
                "200 OK",
                "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n"
            )
            .as_bytes()),
            "both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            err(resp("200 OK", "Transfer-Encoding: chunked, gzip, chunked\r\n").as_bytes()),
            "chunked applied before another coding"
        );
        assert_eq!(
            err(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding in an HTTP/1.0 response"
        );
        assert_eq!(err(b"HTTP/1.1 099 X\r\n\r\n"), "invalid status code");
        assert_eq!(err(b"HTTP/2.0 200 OK\r\n\r\n"), "unsupported HTTP version");
        assert_eq!(err(b"HTTP/1.1 20 OK\r\n\r\n"), "invalid status line");
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nA b: c\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nA: c\r\n d\r\n\r\n"),
            "invalid header name"
        );
    }

    #[test]
    fn limits() {
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..RESPONSE_MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        assert!(ok(format!("{many}\r\n").as_bytes(), Method::Get).head_len > 0);
        many.push_str("X-last: v\r\n\r\n");
        assert_eq!(err(many.as_bytes()), "too many headers");

        let big = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(RESPONSE_MAX_HEAD)
        );
        assert_eq!(err(big.as_bytes()), "response head too large");
        assert_eq!(
            err(&big.as_bytes()[..RESPONSE_MAX_HEAD]),
            "response head too large"
        );
        assert_eq!(
            parse(&big.as_bytes()[..RESPONSE_MAX_HEAD - 1], Method::Get),
            Ok(None)
        );
    }

    #[test]
    fn keep_alive() {
        let ka = |v: &str, extra: &str| {
            ok(
                format!("HTTP/{v} 200 OK\r\nContent-Length: 1\r\n{extra}\r\n").as_bytes(),
                Method::Get,
            )
            .keep_alive
        };
        assert!(ka("1.1", ""));
        assert!(!ka("1.1", "Connection: close\r\n"));
        assert!(!ka("1.0", ""));
        assert!(ka("1.0", "Connection: keep-alive\r\n"));
        assert!(!ka(
            "1.0",
            "Connection: keep-alive\r\nConnection: close\r\n"
        ));
        // No body to delimit: the connection stays usable.
        assert!(ok(b"HTTP/1.1 304 Not Modified\r\n\r\n", Method::Get).keep_alive);
    }
}
