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
    // Writing to a Vec cannot fail; the Display impls format on the stack.
    let _ = write!(out, "{}", canonical_ip(ip));
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
