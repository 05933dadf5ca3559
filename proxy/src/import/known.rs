//! nginx directives the importer does not map, sorted into those that change nothing for a
//! reverse proxy (left as a comment) and those whose effect is lost (reported), each with what
//! happens instead.

/// What becomes of a directive the importer has no mapping for.
pub(super) enum Fate {
    /// No effect on proxying: a comment says why, no report line.
    Harmless(&'static str),
    /// Reported: what happens instead.
    Lost(&'static str),
}

const HARMLESS: &[(&str, &str)] = &[
    ("user", "the systemd unit chooses the account (DynamicUser)"),
    ("pid", "systemd tracks the process"),
    ("daemon", "systemd runs the proxy in the foreground"),
    ("master_process", "one process with one thread per worker"),
    (
        "worker_rlimit_nofile",
        "the systemd unit's LimitNOFILE sets the limit",
    ),
    (
        "worker_cpu_affinity",
        "workers = N with pin_workers = true pins worker N to core N",
    ),
    ("events", "each worker runs its own io_uring event loop"),
    ("use", "io_uring, falling back to epoll"),
    (
        "multi_accept",
        "each worker accepts on its own SO_REUSEPORT socket",
    ),
    (
        "accept_mutex",
        "each worker accepts on its own SO_REUSEPORT socket",
    ),
    (
        "error_log",
        "errors go to stderr (the journal under systemd)",
    ),
    (
        "sendfile",
        "static files only; bodies are forwarded with splice(2)",
    ),
    ("tcp_nopush", "static files only"),
    ("tcp_nodelay", "the proxy always sets TCP_NODELAY"),
    ("types_hash_max_size", "MIME types are for static files"),
    ("types_hash_bucket_size", "MIME types are for static files"),
    (
        "server_names_hash_bucket_size",
        "server names are not matched",
    ),
    ("server_names_hash_max_size", "server names are not matched"),
    ("types", "MIME types are for static files"),
    (
        "default_type",
        "MIME types are for static files; proxied responses keep theirs",
    ),
    (
        "index",
        "index files are for static files; proxied requests go upstream",
    ),
    (
        "charset",
        "static files only; proxied responses keep their charset",
    ),
    (
        "proxy_buffering",
        "responses are streamed to the client as they arrive",
    ),
    (
        "proxy_buffers",
        "responses are streamed to the client as they arrive",
    ),
    (
        "proxy_buffer_size",
        "responses are streamed to the client as they arrive",
    ),
    (
        "proxy_busy_buffers_size",
        "responses are streamed to the client as they arrive",
    ),
    (
        "client_body_buffer_size",
        "request bodies are streamed to the upstream",
    ),
    (
        "zone",
        "workers need no shared memory zone for upstream state",
    ),
    (
        "reset_timedout_connection",
        "timed-out connections are closed",
    ),
    (
        "server_tokens",
        "the proxy passes the upstream's Server header and adds none",
    ),
    ("log_not_found", "static files only"),
    (
        "ssl_protocols",
        "no TLS is configured, so there is nothing to restrict",
    ),
    (
        "ssl_prefer_server_ciphers",
        "no TLS is configured, so there is nothing to restrict",
    ),
    (
        "ssl_ciphers",
        "no TLS is configured, so there is nothing to restrict",
    ),
];

const LOST: &[(&str, &str)] = &[
    (
        "ssl_certificate",
        "TLS is not terminated; put a TLS terminator in front of the proxy",
    ),
    (
        "ssl_certificate_key",
        "TLS is not terminated; put a TLS terminator in front of the proxy",
    ),
    (
        "ssl",
        "TLS is not terminated; put a TLS terminator in front of the proxy",
    ),
    ("http2", "clients speak HTTP/1.1 to the proxy"),
    (
        "gzip",
        "responses are passed through uncompressed, as the upstream sends them",
    ),
    (
        "rewrite",
        "request URIs are passed to the upstream unchanged",
    ),
    (
        "return",
        "requests are proxied instead of answered by the proxy",
    ),
    (
        "if",
        "the block's directives are not applied; requests are proxied unchanged",
    ),
    ("set", "the variable is not set; nothing uses variables"),
    ("map", "the variable is not defined; nothing uses variables"),
    ("geo", "the variable is not defined; nothing uses variables"),
    ("root", "static files are not served"),
    ("alias", "static files are not served"),
    (
        "try_files",
        "static files are not served; requests are proxied",
    ),
    ("autoindex", "static files are not served"),
    ("expires", "no Expires/Cache-Control headers are added"),
    ("add_header", "the header is not added to responses"),
    (
        "proxy_hide_header",
        "the upstream's header is passed to the client",
    ),
    (
        "proxy_redirect",
        "Location headers from the upstream are passed unchanged",
    ),
    (
        "proxy_cache",
        "responses are not cached; every request goes upstream",
    ),
    (
        "proxy_cache_path",
        "responses are not cached; every request goes upstream",
    ),
    ("limit_req", "requests are not rate-limited"),
    ("limit_req_zone", "requests are not rate-limited"),
    ("limit_conn", "connections are not limited per key"),
    ("limit_conn_zone", "connections are not limited per key"),
    ("allow", "no access control: every client is proxied"),
    ("deny", "no access control: every client is proxied"),
    ("auth_basic", "no authentication: every client is proxied"),
    (
        "auth_basic_user_file",
        "no authentication: every client is proxied",
    ),
    ("auth_request", "no authentication: every client is proxied"),
    (
        "stream",
        "TCP/UDP proxying is not supported; only HTTP is proxied",
    ),
    ("mail", "mail proxying is not supported"),
    (
        "load_module",
        "modules are not loaded; their directives are reported where used",
    ),
    ("proxy_cookie_domain", "cookies are passed unchanged"),
    ("proxy_cookie_path", "cookies are passed unchanged"),
    ("sub_filter", "response bodies are passed unchanged"),
    (
        "keepalive_requests",
        "a keep-alive connection serves any number of requests",
    ),
    (
        "send_timeout",
        "no timeout applies to sending responses to clients",
    ),
    (
        "resolver",
        "upstream host names are resolved once, when the configuration loads",
    ),
    (
        "real_ip_header",
        "the peer address of the connection is the client address",
    ),
    (
        "set_real_ip_from",
        "the peer address of the connection is the client address",
    ),
    ("access_by_lua_block", "Lua code is not run"),
    ("content_by_lua_block", "Lua code is not run"),
    (
        "proxy_ssl_verify",
        "TLS to upstream servers is not supported",
    ),
    (
        "proxy_intercept_errors",
        "upstream error responses are passed to the client unchanged",
    ),
    (
        "status_zone",
        "per-zone statistics are at the admin /metrics endpoint per upstream",
    ),
    (
        "stub_status",
        "status is at the admin endpoint (GET /metrics) instead",
    ),
];

pub(super) fn fate(name: &str) -> Fate {
    if let Some((_, why)) = HARMLESS.iter().find(|(n, _)| *n == name) {
        return Fate::Harmless(why);
    }
    if let Some((_, why)) = LOST.iter().find(|(n, _)| *n == name) {
        return Fate::Lost(why);
    }
    let prefixed = [
        (
            "ssl_",
            "TLS is not terminated; put a TLS terminator in front of the proxy",
        ),
        (
            "gzip_",
            "responses are passed through uncompressed, as the upstream sends them",
        ),
        (
            "proxy_cache_",
            "responses are not cached; every request goes upstream",
        ),
        ("proxy_ssl_", "TLS to upstream servers is not supported"),
        ("fastcgi_", "FastCGI is not supported; only HTTP upstreams"),
        ("uwsgi_", "uwsgi is not supported; only HTTP upstreams"),
        ("scgi_", "SCGI is not supported; only HTTP upstreams"),
        (
            "grpc_",
            "gRPC proxying is not supported; only HTTP/1.1 upstreams",
        ),
        ("open_file_cache", "static files only"),
    ];
    for (prefix, why) in prefixed {
        if name.starts_with(prefix) {
            return Fate::Lost(why);
        }
    }
    if name.contains("_by_lua") || name.starts_with("lua_") || name.starts_with("js_") {
        return Fate::Lost("scripts are not run");
    }
    Fate::Lost("ignored; the proxy has no equivalent")
}
