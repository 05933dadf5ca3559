//! nginx values -> proxy.toml values: listen addresses, times, sizes, proxy_pass targets.

use std::net::{IpAddr, SocketAddr};

use crate::config::{parse_duration, parse_size};

/// An nginx time as proxy.toml writes it: a bare number means seconds there too, but the unit
/// is written out so the file reads the same in both.
pub(super) fn duration(v: &str) -> Result<String, String> {
    parse_duration(v).map_err(|e| format!("{e}; the proxy's default is used"))?;
    Ok(with_unit(v))
}

/// A duration the proxy requires to be greater than zero (timeouts of reads and connects).
pub(super) fn timeout(v: &str) -> Result<String, String> {
    if parse_duration(v).is_ok_and(|d| d.is_zero()) {
        return Err("0 is not accepted for this timeout; the proxy's default is used".into());
    }
    duration(v)
}

fn with_unit(v: &str) -> String {
    if v.bytes().all(|b| b.is_ascii_digit()) {
        format!("{v}s")
    } else {
        v.to_string()
    }
}

/// An nginx size ("1m", "64k", "1024").
pub(super) fn size(v: &str) -> Result<String, String> {
    parse_size(v).map_err(|e| format!("{e}; the proxy's default is used"))?;
    Ok(v.to_string())
}

/// `listen` address -> "ip:port" (nginx: a bare port is every IPv4 address, `*` too, a bare
/// address is port 80). `Err` for what the proxy cannot bind (unix sockets, host names).
pub(super) fn listen_address(v: &str) -> Result<String, String> {
    if v.starts_with("unix:") {
        return Err(format!(
            "{v} is a unix socket; the proxy listens on TCP only"
        ));
    }
    if let Ok(port) = v.parse::<u16>() {
        return Ok(format!("0.0.0.0:{port}"));
    }
    if let Some(port) = v.strip_prefix("*:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(format!("0.0.0.0:{port}"));
        }
    }
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok(addr.to_string());
    }
    let bare = v.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 80).to_string());
    }
    Err(format!(
        "listen address {v} is not an IP address and port; write the address the name stands for"
    ))
}

/// Where a `proxy_pass` sends requests.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// `http://NAME[URI]`: an upstream block or a host[:port], and the URI part if any.
    Http {
        authority: String,
        uri: Option<String>,
    },
    Unsupported(String),
}

pub(super) fn proxy_pass(v: &str) -> Target {
    if v.contains('$') {
        return Target::Unsupported(
            "the target is computed from variables at request time; the location is not imported"
                .into(),
        );
    }
    let Some(rest) = v.strip_prefix("http://") else {
        let why = if v.starts_with("https://") {
            "TLS to upstream servers is not supported; the location is not imported"
        } else {
            "only http:// targets are supported; the location is not imported"
        };
        return Target::Unsupported(why.into());
    };
    if rest.starts_with("unix:") {
        return Target::Unsupported(
            "unix socket upstreams are not supported; the location is not imported".into(),
        );
    }
    let (authority, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    if authority.is_empty() {
        return Target::Unsupported("proxy_pass has no host; the location is not imported".into());
    }
    Target::Http {
        authority: authority.to_string(),
        uri,
    }
}

/// An upstream `server` address as proxy.toml takes it: "ip:port", "[v6]:port", a bare IP
/// (port 80) or "host[:port]" (resolved when the proxy loads the file, as nginx does).
pub(super) fn upstream_address(v: &str) -> Result<String, String> {
    if v.starts_with("unix:") {
        return Err("unix socket servers are not supported; the server is left out".into());
    }
    if v.contains('/') || v.contains('$') {
        return Err(format!("{v} is not host:port; the server is left out"));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(listen_address("80").unwrap(), "0.0.0.0:80");
        assert_eq!(listen_address("*:8080").unwrap(), "0.0.0.0:8080");
        assert_eq!(listen_address("[::]:80").unwrap(), "[::]:80");
        assert_eq!(listen_address("127.0.0.1").unwrap(), "127.0.0.1:80");
        assert_eq!(listen_address("[::1]").unwrap(), "[::1]:80");
        assert!(listen_address("unix:/run/x.sock").is_err());
        assert!(listen_address("localhost:80").is_err());
    }

    #[test]
    fn times_and_sizes() {
        assert_eq!(duration("65").unwrap(), "65s");
        assert_eq!(duration("1m 30s").unwrap(), "1m 30s");
        assert!(duration("soon").is_err());
        assert_eq!(duration("0").unwrap(), "0s");
        assert!(timeout("0").is_err());
        assert_eq!(timeout("90").unwrap(), "90s");
        assert_eq!(size("10m").unwrap(), "10m");
        assert!(size("ten").is_err());
    }

    #[test]
    fn proxy_pass_forms() {
        assert_eq!(
            proxy_pass("http://ProxyServer"),
            Target::Http {
                authority: "ProxyServer".into(),
                uri: None
            }
        );
        assert_eq!(
            proxy_pass("http://127.0.0.1:8080/api/"),
            Target::Http {
                authority: "127.0.0.1:8080".into(),
                uri: Some("/api/".into())
            }
        );
        assert!(matches!(proxy_pass("https://x"), Target::Unsupported(_)));
        assert!(matches!(proxy_pass("http://$b"), Target::Unsupported(_)));
        assert!(matches!(
            proxy_pass("http://unix:/s:"),
            Target::Unsupported(_)
        ));
    }
}
