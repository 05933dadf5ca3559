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

/// nginx's `ngx_http_validate_host` rules, minus its normalisation: not empty, no `..`, no path
/// separators, whitespace or control bytes. The value is passed upstream and logged as is.
fn valid_host(h: &[u8]) -> bool {
    !h.is_empty()
        && !h.windows(2).any(|w| w == b"..")
        && !h
            .iter()
            .any(|&b| matches!(b, b'/' | b'\\' | b' ' | b'\t' | 0..=0x1f | 0x7f))
}

/// Where the request target says to go.
struct Target {
    /// Path and query sent upstream (empty for `http://host`, which means `/`).
    path: Range<usize>,
    /// Authority of an absolute-form target; it overrides Host (RFC 9112 3.2.2).
    authority: Option<Range<usize>>,
}

fn classify_target(buf: &[u8], span: Range<usize>, method: Method) -> Result<Target, RequestError> {
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
    let has_prefix = |p: &[u8]| t.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p));
    let scheme_len = if has_prefix(b"http://") {
        7
    } else if has_prefix(b"https://") {
        8
    } else {
        return Err(RequestError::Bad("invalid request target"));
    };
    let rest = t.get(scheme_len..).unwrap_or_default();
    let auth_len = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..auth_len).unwrap_or_default();
    // Userinfo is deprecated (RFC 9110 4.2.4) and a classic way to confuse host checks.
    if !valid_host(authority) || authority.contains(&b'@') {
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
            if !valid_host(h.value) {
                return Err(RequestError::Bad("invalid Host header"));
            }
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
            return Err(RequestError::Bad(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if cl.value.is_some() {
            return Err(RequestError::Bad(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if !te.final_chunked || te.chunked_not_last {
            return Err(RequestError::Bad("final transfer coding is not chunked"));
        }
        if te.other_coding {
            // We would have to decode it to forward the body (nginx answers 501 too).
            return Err(RequestError::Unsupported(
                "transfer coding other than chunked",
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<RequestHead>, RequestError> {
        let mut h = Vec::new();
        parse_request(buf, &Limits::default(), &mut h)
    }

    fn ok(buf: &[u8]) -> RequestHead {
        match parse(buf) {
            Ok(Some(h)) => h,
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    fn bad(buf: &[u8]) -> &'static str {
        match parse(buf) {
            Err(e @ RequestError::Bad(m)) => {
                assert_eq!(e.status(), 400);
                m
            }
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    fn too_large(buf: &[u8], limits: Limits) {
        let mut h = Vec::new();
        let r = parse_request(buf, &limits, &mut h);
        assert_eq!(r, Err(RequestError::HeadTooLarge));
        assert_eq!(RequestError::HeadTooLarge.status(), 431);
    }

    #[test]
    fn simple_get_spans() {
        let buf = b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\nNEXT";
        let mut headers = Vec::new();
        let h = parse_request(buf, &Limits::default(), &mut headers)
            .unwrap()
            .unwrap();
        assert_eq!(h.head_len, buf.len() - 4);
        assert_eq!(h.method, Method::Get);
        assert_eq!(&buf[h.method_span.clone()], b"GET");
        assert_eq!(&buf[h.target.clone()], b"/a?b=1");
        assert_eq!(&buf[h.request_line.clone()], b"GET /a?b=1 HTTP/1.1");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.body, BodyKind::Empty);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(&buf[h.host.clone().unwrap()], b"example.com");
        assert_eq!(headers.len(), 2);
        assert_eq!(&buf[headers[1].name.clone()], b"User-Agent");
        assert_eq!(&buf[headers[1].value.clone()], b"t");
        assert_eq!(
            super::super::header(buf, &headers, "user-agent"),
            Some(&b"t"[..])
        );
    }

    #[test]
    fn partial_heads_need_more() {
        let full = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        for i in 0..full.len() {
            assert_eq!(parse(&full[..i]), Ok(None), "prefix {i}");
        }
        assert_eq!(ok(full).body, BodyKind::Length(3));
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = ok(buf);
        assert_eq!(&buf[h.request_line.clone()], b"GET / HTTP/1.1");
        assert_eq!(h.head_len, buf.len());
    }

    #[test]
    fn bare_lf_lines_accepted_like_nginx() {
        let buf = b"GET / HTTP/1.1\nHost: h\n\n";
        let h = ok(buf);
        assert_eq!(&buf[h.request_line.clone()], b"GET / HTTP/1.1");
        assert_eq!(h.head_len, buf.len());
    }

    #[test]
    fn methods() {
        for (m, want) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("TRACE", Method::Trace),
            ("PATCH", Method::Patch),
            ("PROPFIND", Method::Other),
            ("get", Method::Other),
        ] {
            let buf = format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n");
            let h = ok(buf.as_bytes());
            assert_eq!(h.method, want);
            assert_eq!(&buf.as_bytes()[h.method_span], m.as_bytes());
        }
        assert!(Method::Put.is_idempotent());
        assert!(!Method::Post.is_idempotent());
        assert!(!Method::Patch.is_idempotent());
    }

    #[test]
    fn targets() {
        let buf = b"GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = ok(buf);
        assert_eq!(&buf[h.target.clone()], b"/p?q");
        assert_eq!(&buf[h.host.clone().unwrap()], b"Example.com:8080");
        assert_eq!(
            &buf[h.request_line.clone()],
            b"GET http://Example.com:8080/p?q HTTP/1.1"
        );

        let buf = b"GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = ok(buf);
        assert!(h.target.is_empty());
        assert_eq!(&buf[h.host.unwrap()], b"h");

        let buf = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(&buf[ok(buf).target], b"*");

        assert_eq!(
            bad(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            "asterisk-form target outside OPTIONS"
        );
        assert_eq!(
            bad(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
            "CONNECT is not supported"
        );
        assert_eq!(
            bad(b"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n"),
            "invalid request target"
        );
        assert_eq!(
            bad(b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            "invalid request target"
        );
        assert_eq!(
            bad(b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n"),
            "invalid authority in request target"
        );
        assert_eq!(
            bad(b"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            "invalid authority in request target"
        );
        assert_eq!(
            bad(b"GET http://a..b/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            "invalid authority in request target"
        );
    }

    #[test]
    fn syntax_errors_are_400() {
        assert_eq!(
            bad(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"),
            "unsupported HTTP version"
        );
        assert_eq!(
            bad(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
            "unsupported HTTP version"
        );
        assert_eq!(
            bad(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            "unsupported HTTP version"
        );
        bad(b"GET / FOO/1.1\r\nHost: h\r\n\r\n");
        bad(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n");
        bad(b"GET /\r\n\r\n");
        bad(b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n");
        bad(b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n");
        bad(b"GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHo(st: h\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n c\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHost: h\x00\r\n\r\n"),
            "invalid header value"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"),
            "invalid header value"
        );
        bad(b"GET / HTTP/1.1\r\nHost: h\r\r\n");
    }

    #[test]
    fn head_limits_are_431() {
        let limits = Limits {
            max_head: 64,
            max_headers: 3,
        };
        let mut h = Vec::new();
        let three = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(parse_request(three, &limits, &mut h).unwrap().is_some());
        too_large(
            b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            limits,
        );

        // Complete but longer than max_head.
        let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(40));
        assert!(long.len() > 64);
        too_large(long.as_bytes(), limits);
        // Incomplete: need more while under the limit, 431 once the limit is reached.
        assert_eq!(
            parse_request(&long.as_bytes()[..63], &limits, &mut h),
            Ok(None)
        );
        too_large(&long.as_bytes()[..64], limits);
        // Exactly max_head is fine.
        let exact = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(64 - 27));
        assert_eq!(exact.len(), 64);
        assert!(parse_request(exact.as_bytes(), &limits, &mut h)
            .unwrap()
            .is_some());
        // Default limits: 100 headers.
        let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 0..99 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        assert!(ok(format!("{many}\r\n").as_bytes()).head_len > 0);
        many.push_str("X-last: v\r\n\r\n");
        too_large(many.as_bytes(), Limits::default());
    }

    #[test]
    fn content_length_rules() {
        let req = |cl: &str| format!("POST / HTTP/1.1\r\nHost: h\r\n{cl}\r\n\r\n");
        assert_eq!(
            ok(req("Content-Length: 5").as_bytes()).body,
            BodyKind::Length(5)
        );
        assert_eq!(
            ok(req("Content-Length: 0").as_bytes()).body,
            BodyKind::Empty
        );
        assert_eq!(
            ok(req("Content-Length: 007").as_bytes()).body,
            BodyKind::Length(7)
        );
        assert_eq!(
            ok(req("Content-Length: 18446744073709551615").as_bytes()).body,
            BodyKind::Length(u64::MAX)
        );
        assert_eq!(
            ok(req("Content-Length: 5, 5").as_bytes()).body,
            BodyKind::Length(5)
        );
        assert_eq!(
            ok(req("Content-Length: 5\r\nContent-Length: 5").as_bytes()).body,
            BodyKind::Length(5)
        );
        assert_eq!(
            bad(req("Content-Length: 5, 6").as_bytes()),
            "conflicting Content-Length"
        );
        assert_eq!(
            bad(req("Content-Length: 5\r\ncontent-length: 6").as_bytes()),
            "conflicting Content-Length"
        );
        for v in [
            "+5",
            "-1",
            "5 5",
            "0x5",
            "",
            "5,",
            "5,,5",
            "five",
            "18446744073709551616",
            "1.0",
        ] {
            assert_eq!(
                bad(req(&format!("Content-Length: {v}")).as_bytes()),
                "invalid Content-Length",
                "{v:?}"
            );
        }
    }

    #[test]
    fn transfer_encoding_rules() {
        let req = |te: &str| format!("POST / HTTP/1.1\r\nHost: h\r\n{te}\r\n\r\n");
        for ok_te in [
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: CHUNKED",
            "Transfer-Encoding: ,chunked ,",
        ] {
            assert_eq!(ok(req(ok_te).as_bytes()).body, BodyKind::Chunked, "{ok_te}");
        }
        // Well framed, but the body would have to be decoded to be forwarded: 501 as nginx.
        for coded in [
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
        ] {
            let e = parse(req(coded).as_bytes()).unwrap_err();
            assert_eq!(e.status(), 501, "{coded}");
        }
        for bad_te in [
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: ",
            "Transfer-Encoding: chunked;q=1",
            "Transfer-Encoding: xchunked",
        ] {
            assert_eq!(
                bad(req(bad_te).as_bytes()),
                "final transfer coding is not chunked",
                "{bad_te}"
            );
        }
        assert_eq!(
            bad(req("Transfer-Encoding: chunked\r\nContent-Length: 5").as_bytes()),
            "both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            bad(req("Content-Length: 0\r\nTransfer-Encoding: chunked").as_bytes()),
            "both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            bad(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding in an HTTP/1.0 request"
        );
    }

    #[test]
    fn host_rules() {
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 request without Host"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            "more than one Host header"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
            "more than one Host header"
        );
        for v in ["", "a b", "a/b", "a\\b", "a..b", "a\tb"] {
            assert_eq!(
                bad(format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n").as_bytes()),
                "invalid Host header",
                "{v:?}"
            );
        }
        for v in [
            "example.com",
            "EXAMPLE.com.",
            "[::1]:8080",
            "10.0.0.1:80",
            "h\u{e9}",
        ] {
            let buf = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
            assert_eq!(
                &buf.as_bytes()[ok(buf.as_bytes()).host.unwrap()],
                v.as_bytes()
            );
        }
        let h = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.host, None);
        assert_eq!(h.version, Version::Http10);
    }

    #[test]
    fn keep_alive_and_expect() {
        let ka = |v: &str, extra: &str| {
            let host = if v == "1.1" { "Host: h\r\n" } else { "" };
            ok(format!("GET / HTTP/{v}\r\n{host}{extra}\r\n").as_bytes()).keep_alive
        };
        assert!(ka("1.1", ""));
        assert!(ka("1.1", "Connection: keep-alive\r\n"));
        assert!(!ka("1.1", "Connection: close\r\n"));
        assert!(!ka("1.1", "Connection: Upgrade, CLOSE\r\n"));
        assert!(!ka("1.1", "Connection: foo\r\nConnection: close\r\n"));
        assert!(!ka("1.0", ""));
        assert!(ka("1.0", "Connection: Keep-Alive\r\n"));
        assert!(!ka("1.0", "Connection: keep-alive, close\r\n"));
        assert!(!ka("1.0", "Connection: keep-alive-x\r\n"));

        let exp = |v: &str, e: &str| {
            ok(
                format!("POST / HTTP/{v}\r\nHost: h\r\nContent-Length: 1\r\nExpect: {e}\r\n\r\n")
                    .as_bytes(),
            )
            .expect_continue
        };
        assert!(exp("1.1", "100-continue"));
        assert!(exp("1.1", "100-Continue"));
        assert!(!exp("1.1", "100-continuex"));
        // RFC 9110 10.1.1: ignored for HTTP/1.0.
        assert!(!exp("1.0", "100-continue"));
    }

    #[test]
    fn header_vec_is_reused() {
        let mut headers = Vec::with_capacity(16);
        let cap = headers.capacity();
        let ptr = headers.as_ptr();
        for _ in 0..3 {
            parse_request(
                b"GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n",
                &Limits::default(),
                &mut headers,
            )
            .unwrap();
            assert_eq!(headers.len(), 2);
        }
        assert_eq!((headers.capacity(), headers.as_ptr()), (cap, ptr));
        let _ = parse_request(b"GET / HTTP/1.1\r\n\r\n", &Limits::default(), &mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn huge_max_headers_is_clamped() {
        let limits = Limits {
            max_head: 1 << 20,
            max_headers: usize::MAX,
        };
        let mut buf = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 0..MAX_HEADERS_CAP {
            buf.push_str(&format!("X-{i}: v\r\n"));
        }
        buf.push_str("\r\n");
        let mut h = Vec::new();
        assert_eq!(
            parse_request(buf.as_bytes(), &limits, &mut h),
            Err(RequestError::HeadTooLarge)
        );
    }
}
