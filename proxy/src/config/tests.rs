use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// Joins lines with '\n' so that `lines[i]` is line `i + 1` of the file.
fn text(lines: &[&str]) -> String {
    lines.join("\n")
}

fn ok(src: &str) -> Config {
    match parse(src, Path::new("t.toml")) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// (line, message) of every error.
fn errs(src: &str) -> Vec<(usize, String)> {
    match parse(src, Path::new("t.toml")) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => {
            assert!(!e.0.is_empty());
            e.0.into_iter().map(|e| (e.line, e.message)).collect()
        }
    }
}

/// Asserts exactly one error, on `line`, whose message contains `needle`.
fn one_err(src: &str, line: usize, needle: &str) {
    let e = errs(src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, line, "{e:?}");
    assert!(
        e[0].1.contains(needle),
        "{:?} should contain {needle:?}",
        e[0].1
    );
}

/// A valid config; error tests replace or append lines. Line numbers are 1-based.
const BASE: [&str; 9] = [
    "[upstream.u]",                                 // 1
    "servers = [{ address = \"127.0.0.1:8080\" }]", // 2
    "",                                             // 3
    "[[server]]",                                   // 4
    "listen = [\"127.0.0.1:8000\"]",                // 5
    "",                                             // 6
    "[[server.location]]",                          // 7
    "path = \"/\"",                                 // 8
    "proxy_pass = \"u\"",                           // 9
];

fn base_with(line: usize, replacement: &str) -> String {
    let mut lines: Vec<&str> = BASE.to_vec();
    lines[line - 1] = replacement;
    text(&lines)
}

/// BASE with `extra` inserted after line `after`.
fn base_insert(after: usize, extra: &[&str]) -> String {
    let mut lines: Vec<&str> = BASE.to_vec();
    for (i, l) in extra.iter().enumerate() {
        lines.insert(after + i, l);
    }
    text(&lines)
}

const DESIGN_EXAMPLE: &str = r#"
workers = "auto"                           # or an integer: one thread per core, each its own io_uring
access_log = "/var/log/proxy/access.log"   # nginx "main" format; "off" disables
admin = "127.0.0.1:9900"                   # optional: GET /healthz, GET /metrics (Prometheus text)

[upstream.ProxyServer]
servers = [
  { address = "172.16.249.201:80", weight = 1 },
  { address = "172.16.249.202:80", weight = 1, max_fails = 1, fail_timeout = "10s" },
  # { address = "...", backup = true },  # also: down = true, max_conns = N
]
balance = "round_robin"      # smooth weighted round robin (nginx); "least_conn"; "ip_hash"
keepalive = 32               # idle pooled upstream connections per worker
connect_timeout = "2s"
read_timeout = "60s"
send_timeout = "60s"

[[server]]
listen = ["0.0.0.0:80", "[::]:80"]
client_header_timeout = "60s"
client_max_body_size = "1m"
keepalive_timeout = "65s"

[[server.location]]
path = "/"
proxy_pass = "ProxyServer"
"#;

fn seed_peer(address: &str) -> UpstreamServer {
    UpstreamServer {
        name: address.to_string(),
        address: addr(address),
        weight: 1,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        backup: false,
        down: false,
        max_conns: 0,
        slow_start: Duration::ZERO,
    }
}

#[test]
fn design_example_parses_to_the_expected_config() {
    let got = parse(DESIGN_EXAMPLE, Path::new("/etc/proxy/proxy.toml")).expect("valid");
    let want = Config {
        source: PathBuf::from("/etc/proxy/proxy.toml"),
        workers: Workers::Auto,
        pin_workers: false,
        splice: true,
        worker_connections: 4096,
        client_body_temp_path: "/var/cache/proxy/client_body_temp".into(),
        access_log: Some(PathBuf::from("/var/log/proxy/access.log")),
        admin: Some(addr("127.0.0.1:9900")),
        vrrp_status: Some(PathBuf::from("/run/vrrp/status.toml")),
        sha256: got.sha256.clone(),
        admin_token_file: None,
        state_file: None,
        upstreams: vec![Upstream {
            name: "ProxyServer".into(),
            servers: vec![
                seed_peer("172.16.249.201:80"),
                seed_peer("172.16.249.202:80"),
            ],
            balance: Balance::RoundRobin,
            keepalive: Keepalive::Max(32),
            keepalive_timeout: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            health_check: None,
            queue: 0,
            queue_timeout: std::time::Duration::from_secs(60),
        }],
        servers: vec![Server {
            listen: vec![addr("0.0.0.0:80"), addr("[::]:80")],
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            client_max_body_size: 1 << 20,
            max_header_size: 8192,
            keepalive_timeout: Duration::from_secs(65),
            client_body_buffer_size: 16 << 10,
            proxy_request_buffering: true,
            locations: vec![Location {
                path: "/".into(),
                upstream: 0,
                proxy_request_buffering: None,
            }],
        }],
    };
    assert_eq!(got, want);
}

#[test]
fn vrrp_status_path_and_config_digest() {
    let base = "[upstream.u]\nservers = [{ address = \"127.0.0.1:1\" }]\n[[server]]\nlisten = [\"127.0.0.1:8080\"]\n[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n";
    let c = ok(base);
    assert_eq!(c.vrrp_status, Some(PathBuf::from("/run/vrrp/status.toml")));
    // `printf %s "$base" | sha256sum` gives the same digest: the file's bytes, nothing else.
    assert_eq!(c.sha256.len(), 64);
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_ne!(ok(&format!("{base}\n")).sha256, c.sha256);
    let off = ok(&format!("vrrp_status = \"off\"\n{base}"));
    assert_eq!(off.vrrp_status, None);
    let other = ok(&format!("vrrp_status = \"/run/vrrp2/status.toml\"\n{base}"));
    assert_eq!(
        other.vrrp_status,
        Some(PathBuf::from("/run/vrrp2/status.toml"))
    );
    one_err(
        &format!("vrrp_status = \"status.toml\"\n{base}"),
        1,
        "vrrp_status must be an absolute file path",
    );
}

#[test]
fn deploy_file_reproduces_the_seed_nginx_conf() {
    let src = include_str!("../../../deploy/proxy.toml");
    let c = parse(src, Path::new("deploy/proxy.toml")).expect("deploy/proxy.toml is valid");
    assert_eq!(c.workers, Workers::Auto);
    assert_eq!(
        c.access_log.as_deref(),
        Some(Path::new("/var/log/proxy/access.log"))
    );
    assert_eq!(c.admin, Some(addr("127.0.0.1:9900")));
    assert_eq!(c.upstreams.len(), 1);
    let up = &c.upstreams[0];
    assert_eq!(up.name, "ProxyServer");
    assert_eq!(up.balance, Balance::RoundRobin);
    assert_eq!(
        up.servers,
        vec![
            seed_peer("172.16.249.201:80"),
            seed_peer("172.16.249.202:80")
        ]
    );
    assert_eq!(c.servers.len(), 1);
    let s = &c.servers[0];
    assert_eq!(s.listen, vec![addr("0.0.0.0:80"), addr("[::]:80")]);
    assert_eq!(s.keepalive_timeout, Duration::from_secs(65));
    assert_eq!(
        s.locations,
        vec![Location {
            path: "/".into(),
            upstream: 0,
            proxy_request_buffering: None,
        }]
    );
}

#[test]
fn every_default() {
    let c = ok(&text(&BASE));
    assert_eq!(c.source, PathBuf::from("t.toml"));
    assert_eq!(c.workers, Workers::Auto);
    assert!(!c.pin_workers);
    assert_eq!(c.access_log, None);
    assert_eq!(c.admin, None);
    let up = &c.upstreams[0];
    assert_eq!(up.name, "u");
    assert_eq!(up.balance, Balance::RoundRobin);
    assert_eq!(up.keepalive, Keepalive::Auto);
    assert_eq!(up.keepalive_timeout, Duration::from_secs(4));
    assert_eq!(up.connect_timeout, Duration::from_secs(60));
    assert_eq!(up.read_timeout, Duration::from_secs(60));
    assert_eq!(up.send_timeout, Duration::from_secs(60));
    assert_eq!(
        up.servers,
        vec![UpstreamServer {
            name: "127.0.0.1:8080".into(),
            address: addr("127.0.0.1:8080"),
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
            max_conns: 0,
            slow_start: Duration::ZERO,
        }]
    );
    let s = &c.servers[0];
    assert_eq!(s.listen, vec![addr("127.0.0.1:8000")]);
    assert_eq!(s.client_header_timeout, Duration::from_secs(60));
    assert_eq!(s.client_body_timeout, Duration::from_secs(60));
    assert_eq!(s.client_max_body_size, 1024 * 1024);
    assert_eq!(s.max_header_size, 8 * 1024);
    assert_eq!(s.keepalive_timeout, Duration::from_secs(65));
}

#[test]
fn every_key_set() {
    let src = text(&[
        "workers = 4",
        "pin_workers = true",
        "access_log = \"off\"",
        "admin = \"[::1]:9900\"",
        "[upstream.a]",
        "servers = [",
        "  { address = \"10.0.0.1:81\", weight = 5, max_fails = 3, fail_timeout = \"30s\", max_conns = 7 },",
        "  { address = \"[fd00::2]:82\", down = true },",
        "  { address = \"10.0.0.3\", backup = true, max_fails = 0 },",
        "]",
        "balance = \"least_conn\"",
        "keepalive = 0",
        "keepalive_timeout = 3",
        "connect_timeout = \"500ms\"",
        "read_timeout = \"1m 30s\"",
        "send_timeout = \"2s\"",
        "[upstream.b]",
        "servers = [{ address = \"localhost:9000\" }]",
        "balance = \"ip_hash\"",
        "[[server]]",
        "listen = [\"127.0.0.1:8000\", \"[::1]:8000\"]",
        "client_header_timeout = \"5s\"",
        "client_body_timeout = 7",
        "client_max_body_size = 0",
        "max_header_size = \"16k\"",
        "keepalive_timeout = 0",
        "[[server.location]]",
        "path = \"/\"",
        "proxy_pass = \"http://a\"",
        "[[server.location]]",
        "path = \"/api/\"",
        "proxy_pass = \"b\"",
    ]);
    let c = ok(&src);
    assert_eq!(c.workers, Workers::Count(4));
    assert!(c.pin_workers);
    assert_eq!(c.access_log, None);
    assert_eq!(c.admin, Some(addr("[::1]:9900")));
    let a = &c.upstreams[0];
    assert_eq!(a.balance, Balance::LeastConn);
    assert_eq!(a.keepalive, Keepalive::Max(0));
    assert_eq!(a.keepalive_timeout, Duration::from_secs(3));
    assert_eq!(a.connect_timeout, Duration::from_millis(500));
    assert_eq!(a.read_timeout, Duration::from_secs(90));
    assert_eq!(a.send_timeout, Duration::from_secs(2));
    assert_eq!(
        a.servers[0],
        UpstreamServer {
            name: "10.0.0.1:81".into(),
            address: addr("10.0.0.1:81"),
            weight: 5,
            max_fails: 3,
            fail_timeout: Duration::from_secs(30),
            backup: false,
            down: false,
            max_conns: 7,
            slow_start: Duration::ZERO,
        }
    );
    assert_eq!(a.servers[1].address, addr("[fd00::2]:82"));
    assert!(a.servers[1].down);
    // A bare IP gets nginx's default port 80.
    assert_eq!(a.servers[2].address, addr("10.0.0.3:80"));
    assert!(a.servers[2].backup);
    assert_eq!(a.servers[2].max_fails, 0);
    let b = &c.upstreams[1];
    assert_eq!(b.balance, Balance::IpHash);
    assert_eq!(b.servers[0].name, "localhost:9000");
    assert!(b.servers[0].address.ip().is_loopback());
    assert_eq!(b.servers[0].address.port(), 9000);
    let s = &c.servers[0];
    assert_eq!(s.client_header_timeout, Duration::from_secs(5));
    assert_eq!(s.client_body_timeout, Duration::from_secs(7));
    assert_eq!(s.client_max_body_size, 0);
    assert_eq!(s.max_header_size, 16384);
    assert_eq!(s.keepalive_timeout, Duration::ZERO);
    assert_eq!(
        s.locations,
        vec![
            Location {
                path: "/".into(),
                upstream: 0,
                proxy_request_buffering: None,
            },
            Location {
                path: "/api/".into(),
                upstream: 1,
                proxy_request_buffering: None,
            }
        ]
    );
}

#[test]
fn servers_as_array_of_tables_and_upstream_after_server() {
    let src = text(&[
        "[[server]]",
        "listen = [\"127.0.0.1:8000\"]",
        "[[server.location]]",
        "path = \"/\"",
        "proxy_pass = \"late\"",
        "[upstream.late]",
        "[[upstream.late.servers]]",
        "address = \"127.0.0.1:1\"",
        "[[upstream.late.servers]]",
        "address = \"127.0.0.1:2\"",
        "weight = 2",
    ]);
    let c = ok(&src);
    assert_eq!(c.upstreams[0].servers.len(), 2);
    assert_eq!(c.upstreams[0].servers[1].weight, 2);
    assert_eq!(c.servers[0].locations[0].upstream, 0);
}

#[test]
fn syntax_error_has_its_line() {
    let e = errs(&base_insert(3, &["keepalive = = 3"]));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 4);
    assert!(e[0].1.contains("TOML syntax error"), "{e:?}");
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    one_err(
        &base_insert(0, &["worker = 2"]),
        1,
        "unknown field `worker`",
    );
    one_err(
        &base_insert(2, &["keepalives = 3"]),
        3,
        "unknown field `keepalives`",
    );
    one_err(
        &base_with(
            2,
            "servers = [{ address = \"127.0.0.1:8080\", wieght = 2 }]",
        ),
        2,
        "unknown field `wieght`",
    );
    one_err(
        &base_insert(5, &["server_name = \"_\""]),
        6,
        "unknown field `server_name`",
    );
    one_err(
        &base_insert(9, &["index = \"index.html\""]),
        10,
        "unknown field `index`",
    );
}

#[test]
fn wrong_types_are_errors_with_their_line() {
    one_err(
        &base_with(
            2,
            "servers = [{ address = \"127.0.0.1:8080\", weight = \"2\" }]",
        ),
        2,
        "invalid type",
    );
    one_err(&base_insert(2, &["keepalive = true"]), 3, "invalid type");
    one_err(
        &base_with(5, "listen = \"127.0.0.1:8000\""),
        5,
        "invalid type",
    );
    one_err(&base_insert(0, &["pin_workers = 1"]), 1, "invalid type");
    one_err(&base_insert(2, &["read_timeout = true"]), 3, "invalid type");
}

#[test]
fn bad_values_are_errors_with_their_line() {
    one_err(
        &base_insert(2, &["read_timeout = \"10x\""]),
        3,
        "unknown unit",
    );
    one_err(
        &base_insert(2, &["connect_timeout = \"0s\""]),
        3,
        "greater than 0",
    );
    one_err(&base_insert(2, &["send_timeout = -1"]), 3, "negative");
    one_err(
        &base_insert(2, &["balance = \"random\""]),
        3,
        "unknown balance",
    );
    one_err(&base_insert(2, &["keepalive = -1"]), 3, "keepalive");
    one_err(
        &base_with(
            2,
            "servers = [{ address = \"127.0.0.1:8080\", weight = 0 }]",
        ),
        2,
        "weight must be an integer >= 1",
    );
    one_err(
        &base_with(
            2,
            "servers = [{ address = \"127.0.0.1:8080\", max_fails = -1 }]",
        ),
        2,
        "max_fails",
    );
    one_err(
        &base_with(
            2,
            "servers = [{ address = \"127.0.0.1:8080\", fail_timeout = \"1.5s\" }]",
        ),
        2,
        "fail_timeout",
    );
    one_err(
        &base_with(2, "servers = [{ address = \"127.0.0.1:99999\" }]"),
        2,
        "cannot resolve",
    );
    one_err(
        &base_with(2, "servers = [{ address = \"\" }]"),
        2,
        "address",
    );
    one_err(
        &base_with(2, "servers = [{ weight = 2 }]"),
        2,
        "missing field `address`",
    );
    one_err(
        &base_with(5, "listen = [\"127.0.0.1\"]"),
        5,
        "not an ip:port",
    );
    one_err(&base_with(5, "listen = []"), 5, "must not be empty");
    one_err(
        &base_insert(5, &["client_max_body_size = \"1x\""]),
        6,
        "client_max_body_size",
    );
    one_err(
        &base_insert(5, &["max_header_size = 0"]),
        6,
        "max_header_size",
    );
    one_err(
        &base_insert(5, &["client_header_timeout = \"0\""]),
        6,
        "greater than 0",
    );
    one_err(&base_insert(0, &["workers = 0"]), 1, "workers");
    one_err(&base_insert(0, &["workers = \"all\""]), 1, "workers");
    one_err(&base_insert(0, &["admin = \"localhost\""]), 1, "admin");
    one_err(&base_insert(0, &["access_log = \"\""]), 1, "access_log");
    one_err(&base_with(8, "path = \"api\""), 8, "must start with \"/\"");
    one_err(
        &base_with(9, "proxy_pass = \"nope\""),
        9,
        "no [upstream.nope]",
    );
    one_err(
        &base_with(9, "proxy_pass = \"https://u\""),
        9,
        "only http://",
    );
    one_err(&base_with(9, "proxy_pass = \"http://u/x\""), 9, "URI part");
}

#[test]
fn structural_errors() {
    // Upstream without servers: points at the upstream's name.
    one_err(&base_with(2, "keepalive = 1"), 1, "has no servers");
    one_err(&base_with(2, "servers = []"), 2, "non-empty array");
    one_err(
        &base_with(
            2,
            "servers = [{ address = \"127.0.0.1:8080\", backup = true }]",
        ),
        1,
        "only backup servers",
    );
    // No [[server]] at all.
    let e = errs(&text(&BASE[..3]));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].1.contains("no [[server]]"), "{e:?}");
    // A server without locations.
    one_err(&text(&BASE[..6]), 4, "no [[server.location]]");
    // A server without listen.
    one_err(&base_with(5, ""), 4, "no listen");
    // Location without proxy_pass.
    one_err(&base_with(9, ""), 7, "missing field `proxy_pass`");
    // `upstream` as a plain value: reported, and the proxy_pass to it too.
    let mut lines = BASE.to_vec();
    lines[0] = "upstream = 3";
    lines[1] = "";
    let e = errs(&text(&lines));
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, 1);
    assert!(e[0].1.contains("must be tables"), "{e:?}");
    assert_eq!(e[1].0, 9);
    // Extending it with a table header is a TOML error, also with its line, on one line.
    let e = errs(&base_insert(0, &["upstream = 3"]));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 2);
    assert!(!e[0].1.contains('\n'), "{e:?}");
}

#[test]
fn backup_with_ip_hash_is_refused_like_nginx() {
    let src = text(&[
        "[upstream.u]",
        "balance = \"ip_hash\"",
        "servers = [",
        "  { address = \"127.0.0.1:1\" },",
        "  { address = \"127.0.0.1:2\", backup = true },",
        "]",
        "[[server]]",
        "listen = [\"127.0.0.1:8000\"]",
        "[[server.location]]",
        "path = \"/\"",
        "proxy_pass = \"u\"",
    ]);
    one_err(
        &src,
        5,
        "backup servers cannot be used with balance = \"ip_hash\"",
    );
}

#[test]
fn duplicate_listen_and_location_and_admin() {
    let src = text(&[
        "admin = \"127.0.0.1:8000\"", // 1: clashes with line 4
        "[upstream.u]",
        "servers = [{ address = \"127.0.0.1:8080\" }]",
        "[[server]]",
        "listen = [\"127.0.0.1:8000\", \"[::1]:8000\"]", // 5
        "[[server.location]]",
        "path = \"/\"",
        "proxy_pass = \"u\"",
        "[[server.location]]",
        "path = \"/\"", // 10: duplicate location
        "proxy_pass = \"u\"",
        "[[server]]",
        "listen = [\"[::1]:8000\"]", // 13: duplicate of line 5
        "[[server.location]]",
        "path = \"/\"",
        "proxy_pass = \"u\"",
    ]);
    let e = errs(&src);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[0].0, 1);
    assert!(e[0].1.contains("also a listen address (line 5)"), "{e:?}");
    assert_eq!(e[1].0, 10);
    assert!(
        e[1].1
            .contains("duplicate location \"/\" (first at line 7)"),
        "{e:?}"
    );
    assert_eq!(e[2].0, 13);
    assert!(
        e[2].1
            .contains("duplicate listen address [::1]:8000 (first at line 5)"),
        "{e:?}"
    );
}

#[test]
fn all_errors_in_one_file_are_reported() {
    let src = text(&[
        "workers = -2",                                                     // 1
        "[upstream.a]",                                                     // 2
        "servers = [{ address = \"127.0.0.1:1\" }]",                        // 3
        "keepalive_timout = \"4s\"",                                        // 4: unknown key
        "[upstream.b]",                                                     // 5
        "servers = [",                                                      // 6
        "  { address = \"127.0.0.1:2\", fail_timeout = \"ten seconds\" },", // 7: bad duration
        "  { address = \"127.0.0.1:3\", weight = 0 },",                     // 8: bad weight
        "  { address = \"127.0.0.1:4\", colour = \"red\" },",               // 9: unknown key
        "]",                                                                // 10
        "read_timeout = \"5q\"",                                            // 11: bad duration
        "[[server]]",                                                       // 12
        "listen = [\"127.0.0.1:8000\", \"nonsense\"]",                      // 13: bad listen
        "client_max_body_size = \"big\"",                                   // 14: bad size
        "[[server.location]]",                                              // 15
        "path = \"/\"",                                                     // 16
        "proxy_pass = \"c\"",                                               // 17: undefined
        "[[server.location]]",                                              // 18
        "path = \"/a\"",                                                    // 19
        "proxy_pass = \"a\"", // 20: fine (a has an error, but exists)
    ]);
    let e = errs(&src);
    let lines: Vec<usize> = e.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![1, 4, 7, 8, 9, 11, 13, 14, 17], "{e:#?}");
    assert!(e[1].1.contains("unknown field `keepalive_timout`"), "{e:?}");
    assert!(e[2].1.contains("fail_timeout"), "{e:?}");
    assert!(e[4].1.contains("unknown field `colour`"), "{e:?}");
    assert!(e[8].1.contains("no [upstream.c]"), "{e:?}");
}

#[test]
fn errors_display_as_file_line_col() {
    let src = base_insert(2, &["  read_timeout = \"10x\""]);
    let err = parse(&src, Path::new("/etc/proxy/proxy.toml")).expect_err("invalid");
    assert_eq!(err.0.len(), 1);
    assert_eq!((err.0[0].line, err.0[0].col), (3, 18));
    let shown = err.to_string();
    assert_eq!(
        shown,
        "/etc/proxy/proxy.toml:3:18: upstream \"u\": read_timeout: invalid duration \"10x\": \
         unknown unit \"x\" (use ms, s, m, h, d, w, M, y)"
    );
    assert!(!shown.contains('\n'));

    let two = errs(&base_insert(
        2,
        &["read_timeout = \"10x\"", "send_timeout = \"10y5\""],
    ));
    assert_eq!(two.len(), 2);
    let err = parse(
        &base_insert(2, &["read_timeout = \"10x\"", "send_timeout = \"10y5\""]),
        Path::new("p.toml"),
    )
    .expect_err("invalid");
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("p.toml:3:16: "), "{shown}");
    assert!(lines[1].starts_with("p.toml:4:16: "), "{shown}");
}

#[test]
fn columns_count_characters_not_bytes() {
    // "é" is two bytes; the column of the bad value must still be 22.
    let src = base_insert(0, &["access_log = \"/é\"; workers = 0"]);
    let e = parse(&src, Path::new("t")).expect_err("syntax");
    assert_eq!(e.0[0].line, 1);
    let src = base_insert(0, &["# é", "workers = \"é\""]);
    let e = parse(&src, Path::new("t")).expect_err("bad workers");
    assert_eq!((e.0[0].line, e.0[0].col), (2, 11));
}

#[test]
fn load_reads_the_file_and_names_it_on_error() {
    let missing = Path::new("/nonexistent/dir/proxy.toml");
    let err = load(missing).expect_err("missing file");
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].file, missing);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/dir/proxy.toml: cannot read config file"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("proxy-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("proxy.toml");
    std::fs::write(&file, text(&BASE)).expect("write");
    let loaded = load(&file);
    let _ = std::fs::remove_dir_all(&dir);
    let c = loaded.expect("valid file");
    assert_eq!(c.source, file);
}

#[test]
fn garbage_input_never_panics() {
    let inputs = [
        "",
        "\u{0}",
        "[[server]]\n[[server.location]]",
        "[upstream]",
        "[upstream.x]\nservers = [1, 2]",
        "[upstream.x]\nservers = \"a\"",
        "[upstream.x]\nservers = [{}]",
        "server = 1",
        "server = []",
        "[server]\nlisten = 1",
        "[[server]]\nlocation = 5",
        "[[server]]\nlisten=[\"127.0.0.1:1\"]\nlocation = [1]",
        "workers = 99999999999999999999",
        "workers = 1.5",
        "admin = \"127.0.0.1:0\"\n[[server]]\nlisten=[\"127.0.0.1:0\"]",
    ];
    for input in inputs {
        assert!(parse(input, Path::new("g")).is_err(), "{input:?}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Damaged addresses must not turn into DNS queries: only "localhost" resolves here.
    fn parse(src: &str, path: &Path) -> Result<Config, ConfigErrors> {
        build::build(src, path, &|host: &str| {
            if host.starts_with("localhost") {
                build::system_resolver(host)
            } else {
                Err(format!("no DNS in tests: {host}"))
            }
        })
    }

    proptest! {
        /// Any text: an error list or a config, never a panic; every error has a position
        /// inside the file.
        #[test]
        fn arbitrary_text_never_panics(src in "\\PC{0,300}") {
            if let Err(e) = parse(&src, Path::new("p")) {
                let lines = src.split('\n').count();
                for err in e.0 {
                    prop_assert!(err.line >= 1 && err.line <= lines, "{err:?}");
                    prop_assert!(err.col >= 1);
                }
            }
        }

        /// The DESIGN example with one span of bytes replaced by arbitrary text.
        #[test]
        fn damaged_design_example_never_panics(
            at in 0usize..DESIGN_EXAMPLE.len(),
            len in 0usize..20,
            with in "[a-z0-9\"=\\[\\]{}:., \n#-]{0,12}",
        ) {
            let mut src = DESIGN_EXAMPLE.to_string();
            let start = (0..=at).rev().find(|&i| src.is_char_boundary(i)).unwrap_or(0);
            let end = (start + len).min(src.len());
            let end = (end..=src.len()).find(|&i| src.is_char_boundary(i)).unwrap_or(src.len());
            src.replace_range(start..end, &with);
            if let Err(e) = parse(&src, Path::new("p")) {
                let lines = src.split('\n').count();
                for err in e.0 {
                    prop_assert!(err.line >= 1 && err.line <= lines, "{err:?}");
                }
            }
        }
    }
}

#[test]
fn host_names_go_through_the_resolver_once() {
    let src = base_with(
        2,
        "servers = [{ address = \"backend.example:8080\" }, { address = \"gone.example\" }]",
    );
    let asked = std::cell::RefCell::new(Vec::new());
    let resolver = |host: &str| {
        asked.borrow_mut().push(host.to_string());
        match host {
            "backend.example:8080" => Ok(addr("192.0.2.7:8080")),
            _ => Err(format!("cannot resolve \"{host}\": not found")),
        }
    };
    let err = build::build(&src, Path::new("t.toml"), &resolver).expect_err("gone.example");
    assert_eq!(err.0.len(), 1);
    assert_eq!((err.0[0].line, err.0[0].col), (2, 62)); // the opening quote of "gone.example"
    assert!(err.0[0].message.contains("cannot resolve \"gone.example\""));
    assert_eq!(
        *asked.borrow(),
        vec!["backend.example:8080", "gone.example"]
    );

    let src = base_with(2, "servers = [{ address = \"backend.example:8080\" }]");
    let c = build::build(&src, Path::new("t.toml"), &resolver).expect("resolves");
    assert_eq!(c.upstreams[0].servers[0].address, addr("192.0.2.7:8080"));
    assert_eq!(c.upstreams[0].servers[0].name, "backend.example:8080");
}

#[test]
fn connection_and_body_buffering_keys() {
    let src = text(&[
        "worker_connections = 100",
        "client_body_temp_path = \"/srv/body\"",
        "[upstream.a]",
        "servers = [{ address = \"10.0.0.1:81\" }]",
        "[[server]]",
        "listen = [\"127.0.0.1:8000\"]",
        "client_body_buffer_size = \"32k\"",
        "proxy_request_buffering = false",
        "[[server.location]]",
        "path = \"/\"",
        "proxy_pass = \"a\"",
        "proxy_request_buffering = true",
    ]);
    let c = ok(&src);
    assert_eq!(c.worker_connections, 100);
    assert_eq!(c.client_body_temp_path, Path::new("/srv/body"));
    assert_eq!(c.servers[0].client_body_buffer_size, 32 << 10);
    assert!(!c.servers[0].proxy_request_buffering);
    assert_eq!(
        c.servers[0].locations[0].proxy_request_buffering,
        Some(true)
    );
    one_err(
        &base_insert(0, &["client_body_temp_path = \"body\""]),
        1,
        "client_body_temp_path must be an absolute",
    );
    one_err(
        &base_insert(0, &["worker_connections = 0"]),
        1,
        "worker_connections must be between 1",
    );
}

#[test]
fn keepalive_is_auto_or_a_count() {
    let c = ok(&base_insert(2, &["keepalive = \"auto\""]));
    assert_eq!(c.upstreams[0].keepalive, Keepalive::Auto);
    let c = ok(&base_insert(2, &["keepalive = 64"]));
    assert_eq!(c.upstreams[0].keepalive, Keepalive::Max(64));
    one_err(
        &base_insert(2, &["keepalive = \"lots\""]),
        3,
        "keepalive must be \"auto\" or a number of idle connections between 0 and 1000000, got \"lots\"",
    );
    one_err(&base_insert(2, &["keepalive = -1"]), 3, "got -1");
    let e = errs(&base_insert(
        2,
        &["keepalive = 2000000", "read_timeout = \"x\""],
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!((e[0].0, e[1].0), (3, 4), "{e:?}");
}

mod control_keys {
    use super::*;

    #[test]
    fn health_check_slow_start_and_files() {
        let c = ok(&text(&[
            "admin_token_file = \"/etc/proxy/admin.token\"",
            "state_file = \"/var/lib/proxy/server-state\"",
            "[upstream.u]",
            "servers = [{ address = \"127.0.0.1:8080\", slow_start = \"30s\" }]",
            "health_check = { uri = \"/health\", interval = \"500ms\", fall = 2, expect = \"200|301-302\" }",
            "[[server]]",
            "listen = [\"127.0.0.1:8000\"]",
            "[[server.location]]",
            "path = \"/\"",
            "proxy_pass = \"u\"",
        ]));
        assert_eq!(
            c.admin_token_file,
            Some(PathBuf::from("/etc/proxy/admin.token"))
        );
        assert_eq!(
            c.state_file,
            Some(PathBuf::from("/var/lib/proxy/server-state"))
        );
        let u = &c.upstreams[0];
        assert_eq!(u.servers[0].slow_start, Duration::from_secs(30));
        let h = u.health_check.as_ref().expect("health_check");
        assert_eq!(h.uri, "/health");
        assert_eq!(h.interval, Duration::from_millis(500));
        assert_eq!((h.timeout, h.fall, h.rise), (Duration::from_secs(1), 2, 2));
        assert!(h.expect.matches(301) && !h.expect.matches(300) && h.expect.matches(200));
        // Defaults: no checks, no slow start.
        let c = ok(&BASE.join("\n"));
        assert_eq!(c.upstreams[0].health_check, None);
        assert_eq!(c.upstreams[0].servers[0].slow_start, Duration::ZERO);
    }

    #[test]
    fn errors_name_their_line() {
        one_err(&base_insert(2, &["health_check = { fall = 0 }"]), 3, "fall");
        one_err(
            &base_insert(2, &["health_check = { expect = \"ok\" }"]),
            3,
            "expect",
        );
        one_err(
            &base_insert(2, &["health_check = { intervall = \"1s\" }"]),
            3,
            "intervall",
        );
        one_err(
            &base_insert(2, &["health_check = { uri = \"no-slash\" }"]),
            3,
            "uri",
        );
        one_err(
            &base_insert(2, &["health_check = { timeout = \"0s\" }"]),
            3,
            "timeout",
        );
        one_err(
            &base_with(
                2,
                "servers = [{ address = \"127.0.0.1:8080\", slow_start = \"soon\" }]",
            ),
            2,
            "slow_start",
        );
        let ip_hash = base_insert(
            1,
            &["servers = [{ address = \"127.0.0.1:8080\", slow_start = \"5s\" }, { address = \"127.0.0.1:8081\" }]", "balance = \"ip_hash\""],
        )
        .replacen("servers = [{ address = \"127.0.0.1:8080\" }]\n", "", 1);
        one_err(&ip_hash, 1, "ip_hash");
        let top = |l: &str| format!("{l}\n{}", BASE.join("\n"));
        one_err(&top("state_file = \"relative/state\""), 1, "absolute");
        one_err(&top("admin_token_file = \"token\""), 1, "absolute");
    }
}

#[test]
fn upstream_queue_needs_max_conns_and_takes_a_timeout() {
    let c = ok(
        &base_insert(2, &["queue = 100", "queue_timeout = \"70s\""]).replace(
            "{ address = \"127.0.0.1:8080\" }",
            "{ address = \"127.0.0.1:8080\", max_conns = 4 }",
        ),
    );
    assert_eq!(c.upstreams[0].queue, 100);
    assert_eq!(c.upstreams[0].queue_timeout, Duration::from_secs(70));
    let c = ok(&text(&BASE));
    assert_eq!(
        (c.upstreams[0].queue, c.upstreams[0].queue_timeout),
        (0, Duration::from_secs(60)),
        "off by default; nginx Plus's 60 s timeout"
    );
    one_err(
        &base_insert(2, &["queue = 10"]),
        3,
        "queue has no effect without max_conns",
    );
    one_err(
        &base_insert(2, &["queue = -1"]),
        3,
        "queue must be between 0",
    );
    one_err(
        &base_insert(2, &["queue_timeout = \"0s\""]),
        3,
        "queue_timeout",
    );
}
