//! nginx-style error responses: the small HTML page nginx sends for 4xx/5xx, so clients and
//! monitoring see the same bodies as behind the nginx this proxy replaces.

use super::util::push_u64;

/// Standard reason phrase for `status` (RFC 9110 15), or "" when there is none.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

const PAGE_START: &[u8] = b"<html>\r\n<head><title>";
const PAGE_MID: &[u8] = b"</title></head>\r\n<body>\r\n<center><h1>";
const PAGE_END: &[u8] = b"</h1></center>\r\n<hr><center>proxy</center>\r\n</body>\r\n</html>\r\n";

/// Append a complete error response (status line, Content-Type text/html, Content-Length,
/// Connection header per `keep_alive`, small HTML body naming the status like nginx's pages).
/// A status outside 100..=999 is sent as 500.
pub fn error_response(status: u16, keep_alive: bool, out: &mut Vec<u8>) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let reason = match reason_phrase(status) {
        "" => "Error",
        r => r,
    };
    // "<code> <reason>" appears twice in the page; the code is always 3 digits here.
    let title_len = 4 + reason.len();
    let body_len = PAGE_START.len() + PAGE_MID.len() + PAGE_END.len() + 2 * title_len;

    out.extend_from_slice(b"HTTP/1.1 ");
    push_title(out, status, reason);
    out.extend_from_slice(b"\r\nContent-Type: text/html\r\nContent-Length: ");
    push_u64(out, body_len as u64);
    out.extend_from_slice(if keep_alive {
        &b"\r\nConnection: keep-alive\r\n\r\n"[..]
    } else {
        &b"\r\nConnection: close\r\n\r\n"[..]
    });
    out.extend_from_slice(PAGE_START);
    push_title(out, status, reason);
    out.extend_from_slice(PAGE_MID);
    push_title(out, status, reason);
    out.extend_from_slice(PAGE_END);
}

fn push_title(out: &mut Vec<u8>, status: u16, reason: &str) {
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_gateway_page_is_exact() {
        let mut out = b"prefix".to_vec();
        error_response(502, false, &mut out);
        let body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                    <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>proxy</center>\r\n\
                    </body>\r\n</html>\r\n";
        let want = format!(
            "prefixHTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn content_length_matches_body_for_every_status() {
        for status in [
            400u16, 408, 413, 414, 431, 500, 501, 502, 503, 504, 505, 599, 0, 1000,
        ] {
            for ka in [true, false] {
                let mut out = Vec::new();
                error_response(status, ka, &mut out);
                let text = String::from_utf8(out).unwrap();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                let cl: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(cl, body.len(), "{status}");
                let shown = if (100..=999).contains(&status) {
                    status
                } else {
                    500
                };
                assert!(head.starts_with(&format!("HTTP/1.1 {shown} ")), "{head}");
                assert!(body.contains(&format!("<h1>{shown} ")), "{body}");
                let conn = if ka {
                    "Connection: keep-alive"
                } else {
                    "Connection: close"
                };
                assert!(head.contains(conn));
                if (400..=505).contains(&status) && status != 599 {
                    assert!(!reason_phrase(shown).is_empty(), "{status}");
                }
            }
        }
        let mut out = Vec::new();
        error_response(504, true, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 504 Gateway Time-out\r\n"));
    }
}
