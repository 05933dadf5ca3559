//! The `http = "http://host[:port][/path]"` of a `vrrp_script`: parsed once, when the config
//! is read, so a URL the probe cannot use is a config error with a position and never a probe
//! that fails silently at run time.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("http probe {url:?}: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: &'static str,
}

/// Parses `http://host[:port][/path]` (IPv6 literals in brackets). Only plain HTTP: a health
/// endpoint on loopback does not need TLS.
pub fn parse(url: &str) -> Result<HttpUrl, UrlError> {
    let err = |reason| UrlError {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| err("must start with http:// (no TLS)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(err("missing host"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| err("unclosed ["))?;
        let host = &v6[..end];
        let port = match &v6[end + 1..] {
            "" => 80,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| err("bad port"))?,
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| err("bad port"))?),
            None => (authority, 80),
        }
    };
    if host.is_empty() || path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(err("bad host or path"));
    }
    Ok(HttpUrl {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse("http://127.0.0.1:9900/healthz").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9900, "/healthz")
        );
        let u = parse("http://[::1]:81").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 81, "/"));
        assert_eq!(parse("http://localhost/x").unwrap().port, 80);
        for bad in [
            "https://a/",
            "http://",
            "http://a:b/",
            "http://[::1/",
            "http://a/ b",
            "ftp://x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
