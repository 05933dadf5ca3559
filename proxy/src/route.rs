//! Where a request goes: its `listen` address picks the server, the longest location prefix
//! of its path picks the location (nginx's prefix `location` matching). Pure: no I/O.

use std::net::SocketAddr;

use crate::config::{Config, Location, Server};

/// The server that owns `listen` (`None` once a reload removed the address).
pub fn server_for(config: &Config, listen: SocketAddr) -> Option<&Server> {
    config.servers.iter().find(|s| s.listen.contains(&listen))
}

/// The location whose path is the longest prefix of the target's path.
pub fn location_for<'s>(server: &'s Server, target: &[u8]) -> Option<&'s Location> {
    let path = path_of(target);
    server
        .locations
        .iter()
        .filter(|l| path.starts_with(l.path.as_bytes()))
        .max_by_key(|l| l.path.len())
}

/// The path of an origin-form or absolute-form target, without the query.
pub fn path_of(target: &[u8]) -> &[u8] {
    let mut t = target;
    for scheme in [&b"http://"[..], b"https://"] {
        if t.len() >= scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &t[scheme.len()..];
            t = rest
                .iter()
                .position(|&c| c == b'/')
                .map_or(b"/", |i| &rest[i..]);
        }
    }
    let end = t
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(t.len());
    // An absolute-form target without a path (`GET http://h HTTP/1.1`) means `/` (RFC 9112
    // 3.2.2); the parser hands it over with the authority already split off.
    if end == 0 {
        return b"/";
    }
    &t[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn server(listen: &str, paths: &[&str]) -> Server {
        Server {
            listen: vec![listen.parse().unwrap()],
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            client_max_body_size: 1 << 20,
            max_header_size: 8192,
            keepalive_timeout: Duration::from_secs(65),
            client_body_buffer_size: 16 << 10,
            proxy_request_buffering: true,
            locations: paths
                .iter()
                .enumerate()
                .map(|(upstream, p)| Location {
                    path: p.to_string(),
                    upstream,
                    proxy_request_buffering: None,
                })
                .collect(),
        }
    }

    #[test]
    fn path_of_targets() {
        assert_eq!(path_of(b"/a/b?x=1"), b"/a/b");
        assert_eq!(path_of(b"http://example.com/x?y"), b"/x");
        assert_eq!(path_of(b"http://example.com"), b"/");
        assert_eq!(path_of(b"*"), b"*");
        assert_eq!(path_of(b""), b"/");
        assert_eq!(path_of(b"?q"), b"/");
    }

    #[test]
    fn the_longest_prefix_wins_and_no_prefix_is_no_location() {
        let s = server("127.0.0.1:80", &["/", "/api", "/api/v2"]);
        let at = |t: &[u8]| location_for(&s, t).map(|l| l.path.as_str());
        assert_eq!(at(b"/api/v2/x?q"), Some("/api/v2"));
        assert_eq!(at(b"/api/v1"), Some("/api"));
        assert_eq!(at(b"/other"), Some("/"));
        let narrow = server("127.0.0.1:80", &["/api"]);
        assert!(location_for(&narrow, b"/other").is_none());
    }
}
