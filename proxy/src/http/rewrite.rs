//! Head rewriting between the two sides of the proxy.
//!
//! Kept fields are copied as `name: value\r\n` from the parsed buffer (three memcpys; the
//! original whitespace and bare-LF line endings are normalised on the way), everything is
//! appended to `out`, and nothing else is allocated.

use std::io::Write as _;
use std::net::IpAddr;

use super::error_page::reason_phrase;
use super::util::{
    at, canonical_ip, has_connection_options, is_hop_by_hop, listed_in_connection, push_u64,
    trim_ows,
};
use super::{ClientMode, HeaderSpan, RequestHead, ResponseHead};

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match canonical_ip(ip) {
        // The common case by hand: `Display` goes through the formatting machinery, which was
        // ~1% of a small request's CPU for the two fields that carry the address.
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        // Writing to a Vec cannot fail; the Display impl formats on the stack.
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Rewrite a client request head for the upstream. See the module docs.
///
/// - request line kept, version sent as HTTP/1.1; an absolute-form target is sent in origin
///   form (`http://h/p` -> `/p`, `http://h` -> `/`);
/// - hop-by-hop headers dropped (Connection and the tokens it lists, Keep-Alive,
///   Proxy-Connection, TE, Trailer, Upgrade), and `Expect` (the proxy answers 100-continue itself);
///   Host, Content-Length and Transfer-Encoding are never dropped because Connection lists them;
/// - `X-Forwarded-For`: client address appended to the existing value(s) (all XFF fields joined
///   into one), or added; `X-Real-IP: client` replaces any sent;
/// - Host passed through (first, as nginx does; the authority of an absolute-form target wins
///   over the Host field, RFC 9112 3.2.2); added as `default_host` when missing;
/// - `content_length`: `Some(n)` replaces the body framing with `Content-Length: n` (used when
///   a chunked request body was buffered and de-chunked), `None` keeps CL/TE as sent;
/// - `Connection: keep-alive` added (pooled upstream connections).
pub fn write_upstream_head(
    buf: &[u8],
    head: &RequestHead,
    headers: &[HeaderSpan],
    client: IpAddr,
    default_host: &str,
    content_length: Option<u64>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(at(buf, &head.method_span));
    out.push(b' ');
    let target = at(buf, &head.target);
    if target.first() != Some(&b'/') && target != b"*" {
        out.push(b'/');
    }
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");

    out.extend_from_slice(b"Host: ");
    match &head.host {
        Some(h) => out.extend_from_slice(at(buf, h)),
        None => out.extend_from_slice(default_host.as_bytes()),
    }
    out.extend_from_slice(b"\r\n");

    let check_listed = has_connection_options(buf, headers);
    let mut xff_seen = false;
    for h in headers {
        let name = at(buf, &h.name);
        if name.eq_ignore_ascii_case(b"host")
            || is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"x-real-ip")
            || (content_length.is_some()
                && (name.eq_ignore_ascii_case(b"content-length")
                    || name.eq_ignore_ascii_case(b"transfer-encoding")))
            || (check_listed && listed_in_connection(buf, headers, name))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            // Joined below into one field, in order, with the client appended.
            xff_seen = true;
            continue;
        }
        push_header(out, name, at(buf, &h.value));
    }

    out.extend_from_slice(b"X-Forwarded-For: ");
    if xff_seen {
        for h in headers {
            let name = at(buf, &h.name);
            if !name.eq_ignore_ascii_case(b"x-forwarded-for")
                || (check_listed && listed_in_connection(buf, headers, name))
            {
                continue;
            }
            let v = trim_ows(at(buf, &h.value));
            if !v.is_empty() {
                out.extend_from_slice(v);
                out.extend_from_slice(b", ");
            }
        }
    }
    push_ip(out, client);
    out.extend_from_slice(b"\r\nX-Real-IP: ");
    push_ip(out, client);
    out.extend_from_slice(b"\r\n");
    if let Some(n) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        push_u64(out, n);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
}

/// Rewrite an upstream response head for the client: status line always `HTTP/1.1 <status>
/// <reason>` (as nginx does, also to HTTP/1.0 clients; an empty upstream reason is replaced by
/// the standard phrase), hop-by-hop headers dropped, `Connection: keep-alive` or
/// `Connection: close` per `client.keep_alive`, Transfer-Encoding dropped when de-chunking.
///
/// De-chunking makes the body close-delimited for the client, so `dechunk` always writes
/// `Connection: close` (the caller must close after the body).
pub fn write_client_head(
    buf: &[u8],
    head: &ResponseHead,
    headers: &[HeaderSpan],
    client: ClientMode,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(head.status));
    out.push(b' ');
    let reason = at(buf, &head.reason);
    if reason.is_empty() {
        out.extend_from_slice(reason_phrase(head.status).as_bytes());
    } else {
        out.extend_from_slice(reason);
    }
    out.extend_from_slice(b"\r\n");

    let check_listed = has_connection_options(buf, headers);
    for h in headers {
        let name = at(buf, &h.name);
        if is_hop_by_hop(name)
            || (client.dechunk && name.eq_ignore_ascii_case(b"transfer-encoding"))
            || (check_listed && listed_in_connection(buf, headers, name))
        {
            continue;
        }
        push_header(out, name, at(buf, &h.value));
    }
    if client.keep_alive && !client.dechunk {
        out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
    } else {
        out.extend_from_slice(b"Connection: close\r\n\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_request, parse_response, BodyKind, Limits, Method, Version};
    use super::*;

    fn upstream(req: &[u8], client: &str, cl: Option<u64>) -> String {
        let mut headers = Vec::new();
        let head = parse_request(req, &Limits::default(), &mut headers)
            .unwrap()
            .unwrap();
        let mut out = b"KEEP".to_vec();
        write_upstream_head(
            req,
            &head,
            &headers,
            client.parse().unwrap(),
            "backend",
            cl,
            &mut out,
        );
        let out = String::from_utf8(out).unwrap();
        out.strip_prefix("KEEP").unwrap().to_string()
    }

    fn client(resp: &[u8], method: Method, mode: ClientMode) -> String {
        let mut headers = Vec::new();
        let head = parse_response(resp, method, &mut headers).unwrap().unwrap();
        let mut out = Vec::new();
        write_client_head(resp, &head, &headers, mode, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_get() {
        assert_eq!(
            upstream(
                b"GET /p?q HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
                "10.0.0.9",
                None
            ),
            "GET /p?q HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\
             X-Forwarded-For: 10.0.0.9\r\nX-Real-IP: 10.0.0.9\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn hop_by_hop_and_connection_listed_are_removed() {
        let req = b"GET / HTTP/1.1\r\nConnection: keep-alive, X-Secret, Upgrade\r\nHost: h\r\n\
                    Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
                    Trailer: X-Sum\r\nUpgrade: websocket\r\nx-secret: 1\r\nX-Kept:  a  b \r\n\
                    Expect: 100-continue\r\nX-Real-IP: 6.6.6.6\r\n\r\n";
        assert_eq!(
            upstream(req, "192.0.2.1", None),
            "GET / HTTP/1.1\r\nHost: h\r\nX-Kept: a  b\r\n\
             X-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn connection_cannot_strip_framing_or_host() {
        let req = b"POST / HTTP/1.1\r\nHost: h\r\nConnection: content-length, host, transfer-encoding\r\n\
                    Content-Length: 3\r\n\r\nabc";
        assert_eq!(
            upstream(req, "192.0.2.1", None),
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\
             X-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn xff_appended_and_joined() {
        let req = b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nHost: h\r\n\
                    x-forwarded-for: 3.3.3.3\r\nX-Forwarded-For: \r\n\r\n";
        assert_eq!(
            upstream(req, "2001:db8::1", None),
            "GET / HTTP/1.1\r\nHost: h\r\n\
             X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 2001:db8::1\r\n\
             X-Real-IP: 2001:db8::1\r\nConnection: keep-alive\r\n\r\n"
        );
        // IPv4-mapped IPv6 (dual-stack listener) is shown as IPv4, like nginx's $remote_addr.
        assert!(upstream(
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            "::ffff:10.1.2.3",
            None
        )
        .contains("X-Forwarded-For: 10.1.2.3\r\nX-Real-IP: 10.1.2.3\r\n"));
    }

    #[test]
    fn host_added_for_http10_and_version_upgraded() {
        assert_eq!(
            upstream(
                b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                "127.0.0.1",
                None
            ),
            "GET /x HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: 127.0.0.1\r\n\
             X-Real-IP: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_sent_as_origin_form() {
        assert_eq!(
            upstream(
                b"GET http://a.example HTTP/1.1\r\nHost: b.example\r\n\r\n",
                "127.0.0.1",
                None
            ),
            "GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 127.0.0.1\r\n\
             X-Real-IP: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
        );
        assert!(upstream(
            b"GET http://a?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            "127.0.0.1",
            None
        )
        .starts_with("GET /?x=1 HTTP/1.1\r\nHost: a\r\n"));
        assert!(
            upstream(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "127.0.0.1", None)
                .starts_with("OPTIONS * HTTP/1.1\r\n")
        );
    }

    #[test]
    fn content_length_override_drops_te() {
        let req = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
                    Content-Type: text/plain\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            upstream(req, "127.0.0.1", Some(5)),
            "POST /up HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n\
             X-Forwarded-For: 127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\nContent-Length: 5\r\n\
             Connection: keep-alive\r\n\r\n"
        );
        // Without the override the framing is passed through as sent.
        assert!(upstream(req, "127.0.0.1", None).contains("\r\nTransfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn client_head_keep_alive() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\n\
                     Keep-Alive: timeout=60\r\nX-Hop: 1\r\nServer: apache\r\n\r\nhi";
        let mode = ClientMode {
            version: Version::Http11,
            keep_alive: true,
            dechunk: false,
        };
        assert_eq!(
            client(resp, Method::Get, mode),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: apache\r\nConnection: keep-alive\r\n\r\n"
        );
        let mode = ClientMode {
            keep_alive: false,
            ..mode
        };
        assert_eq!(
            client(resp, Method::Get, mode),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: apache\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn client_head_http10_dechunked() {
        let resp = b"HTTP/1.1 201 \r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\
                     Upgrade: h2c\r\nX-A: b\r\n\r\n";
        let mode = ClientMode {
            version: Version::Http10,
            keep_alive: true,
            dechunk: true,
        };
        assert_eq!(
            client(resp, Method::Get, mode),
            "HTTP/1.1 201 Created\r\nX-A: b\r\nConnection: close\r\n\r\n"
        );
        // HTTP/1.0 upstream, HTTP/1.0 client that asked for keep-alive, CL body.
        let resp = b"HTTP/1.0 404 Nope\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
        let mode = ClientMode {
            version: Version::Http10,
            keep_alive: true,
            dechunk: false,
        };
        assert_eq!(
            client(resp, Method::Get, mode),
            "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
        let mut headers = Vec::new();
        assert_eq!(
            parse_response(resp, Method::Get, &mut headers)
                .unwrap()
                .unwrap()
                .body,
            BodyKind::Empty
        );
    }

    #[test]
    fn rewriting_does_not_allocate_beyond_out() {
        // `out` with enough room keeps its buffer: everything is appended in place.
        let req = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\nA: b\r\n\r\n";
        let mut headers = Vec::new();
        let head = parse_request(req, &Limits::default(), &mut headers)
            .unwrap()
            .unwrap();
        let mut out = Vec::with_capacity(4096);
        let ptr = out.as_ptr();
        for _ in 0..10 {
            out.clear();
            write_upstream_head(
                req,
                &head,
                &headers,
                "::1".parse().unwrap(),
                "d",
                Some(1),
                &mut out,
            );
        }
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn push_ip_matches_display() {
        let mut samples: Vec<IpAddr> = Vec::new();
        for a in [0u8, 1, 9, 10, 99, 100, 127, 172, 199, 200, 249, 255] {
            for b in [0u8, 5, 16, 80, 255] {
                samples.push(IpAddr::from([a, b, 249, a.wrapping_mul(7)]));
            }
        }
        samples.push("::1".parse().unwrap());
        samples.push("::ffff:172.16.249.80".parse().unwrap());
        samples.push("2001:db8::8a2e:370:7334".parse().unwrap());
        for ip in samples {
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                canonical_ip(ip).to_string()
            );
        }
    }
}
