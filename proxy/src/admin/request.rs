//! An admin request read whole (head and a small body) within the connection's deadline, and
//! the response written back. Bounded: a head over [`MAX_HEAD`] or a body over [`MAX_BODY`]
//! is refused, never buffered.

use std::io;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Largest admin request head read.
pub const MAX_HEAD: usize = 4096;
/// Largest admin request body (a control request is a few dozen bytes of JSON).
pub const MAX_BODY: usize = 64 << 10;

/// One admin request.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path, percent-decoded, without the query.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One admin response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "text/plain", body)
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: &str) -> Response {
        let body = serde_json::json!({ "error": message }).to_string() + "\n";
        Response::new(status, "application/json", body)
    }

    /// `value` as JSON with 200.
    pub fn json(value: &impl serde::Serialize) -> Response {
        match serde_json::to_string_pretty(value) {
            Ok(mut body) => {
                body.push('\n');
                Response::new(200, "application/json", body)
            }
            Err(e) => Response::error(500, &format!("cannot encode the answer: {e}")),
        }
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        }
    }

    pub async fn write(self, stream: &mut TcpStream) -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        let (r, _) = stream.write_all(bytes).await;
        r.map(|_| ())
    }
}

/// Read and parse one request; `Err(response)` for a request we refuse to read further.
pub async fn read(stream: &mut TcpStream) -> io::Result<Result<Request, Response>> {
    let mut buf = Vec::with_capacity(512);
    let head_len = loop {
        if let Some(n) = head_end(&buf) {
            break n;
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Err(Response::error(431, "request head too large")));
        }
        if !fill(stream, &mut buf, MAX_HEAD + MAX_BODY).await? {
            return Ok(Err(Response::error(400, "incomplete request")));
        }
    };
    let mut req = match parse_head(&buf[..head_len]) {
        Ok(r) => r,
        Err(msg) => return Ok(Err(Response::error(400, &msg))),
    };
    let length = match req
        .header("content-length")
        .map(|v| v.trim().parse::<usize>())
    {
        None => 0,
        Some(Ok(n)) if n <= MAX_BODY => n,
        Some(Ok(_)) => return Ok(Err(Response::error(413, "request body too large"))),
        Some(Err(_)) => return Ok(Err(Response::error(400, "bad Content-Length"))),
    };
    if req.header("transfer-encoding").is_some() {
        return Ok(Err(Response::error(
            400,
            "send the body with Content-Length",
        )));
    }
    while buf.len() < head_len + length {
        if !fill(stream, &mut buf, head_len + length).await? {
            return Ok(Err(Response::error(
                400,
                "request body shorter than Content-Length",
            )));
        }
    }
    req.body = buf[head_len..head_len + length].to_vec();
    Ok(Ok(req))
}

/// Read more into `buf` (at most up to `limit` bytes in all); false at EOF.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    let room = vec![0u8; limit.saturating_sub(buf.len()).clamp(1, 4096)];
    let (r, got) = stream.read(room).await;
    match r? {
        0 => Ok(false),
        n => {
            buf.extend_from_slice(&got[..n]);
            Ok(true)
        }
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Method, path (percent-decoded), query and headers of a complete head.
pub fn parse_head(head: &[u8]) -> Result<Request, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete request head".into()),
        Err(e) => return Err(format!("bad request head: {e}")),
    }
    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(path).ok_or("bad percent-encoding in the path")?;
    Ok(Request {
        method: parsed.method.unwrap_or("").to_string(),
        path,
        query: query.to_string(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    })
}

/// `%5B::1%5D:80` -> `[::1]:80`; None for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let r = parse_head(b"POST /api/upstreams/u/servers/%5B::1%5D:80?x=1 HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/upstreams/u/servers/[::1]:80");
        assert_eq!(r.query, "x=1");
        assert_eq!(r.header("authorization"), Some("Bearer t"));
        assert!(parse_head(b"GET /%zz HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(b"GET /%f HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(b"\x01\x02 HTTP/1.1\r\n\r\n").is_err());
    }
}
