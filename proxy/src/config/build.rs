//! From TOML text to a validated [`Config`], collecting every error with its position.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml_edit::{Item, TableLike, Value};

use super::raw::{RawLocation, RawPeer, RawServer, RawTop, RawUpstream, Scalar};
use super::units::{parse_duration, parse_size};
use super::{
    defaults, Balance, Config, ConfigErrors, Keepalive, Location, Server, Upstream, UpstreamServer,
    Workers,
};

type Span = Option<Range<usize>>;

/// Resolves a "host:port" (or bare "host", port 80) that is not an IP literal.
pub(super) type Resolver<'r> = &'r dyn Fn(&str) -> Result<SocketAddr, String>;

/// Validation context: the error collector (byte spans -> line:col, keeps going) and the
/// resolver for upstream host names.
pub(super) struct Ctx<'a> {
    errors: conf::Collector<'a>,
    resolver: Resolver<'a>,
}

impl Ctx<'_> {
    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.errors.source.line(offset)
    }

    /// Records an error; one without a span (a missing section) points at the top of the file.
    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.errors.error(span.unwrap_or(0..0), message);
    }

    pub(super) fn error_at<T>(&mut self, v: &Spanned<T>, message: impl Into<String>) {
        self.error(Some(v.span()), message);
    }

    /// Deserializes one section into its raw struct; a serde error (unknown key, wrong type,
    /// missing key) is recorded with its span, or `fallback` (the section header) if it has none.
    fn section<T: DeserializeOwned>(
        &mut self,
        item: &Item,
        fallback: Span,
        what: &str,
    ) -> Option<T> {
        let value = match item.clone().into_value() {
            Ok(v) => v,
            Err(_) => {
                self.error(fallback, format!("{what}: expected a table"));
                return None;
            }
        };
        match T::deserialize(value.into_deserializer()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(e.span().or(fallback), format!("{what}: {}", e.message()));
                None
            }
        }
    }

    pub(super) fn int(
        &mut self,
        v: &Option<Spanned<i64>>,
        default: i64,
        min: i64,
        max: i64,
        what: &str,
    ) -> i64 {
        match v {
            None => default,
            Some(s) if (min..=max).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                let msg = if max == i64::from(u32::MAX) {
                    format!("{what} must be an integer >= {min}, got {}", s.get_ref())
                } else {
                    format!(
                        "{what} must be between {min} and {max}, got {}",
                        s.get_ref()
                    )
                };
                self.error_at(s, msg);
                default
            }
        }
    }

    /// An upstream's `keepalive`: "auto" or a count of idle connections (nginx's meaning).
    fn keepalive(&mut self, v: &Option<Spanned<Scalar>>, what: &str) -> Keepalive {
        const MAX: i64 = 1_000_000;
        match v.as_ref().map(|s| (s, s.get_ref())) {
            None => defaults::KEEPALIVE,
            Some((_, Scalar::Str(a))) if a == "auto" => Keepalive::Auto,
            Some((_, Scalar::Int(n))) if (0..=MAX).contains(n) => {
                Keepalive::Max(usize::try_from(*n).unwrap_or(0))
            }
            Some((s, bad)) => {
                let got = match bad {
                    Scalar::Str(t) => format!("\"{t}\""),
                    Scalar::Int(n) => n.to_string(),
                };
                self.error_at(
                    s,
                    format!("{what} must be \"auto\" or a number of idle connections between 0 and {MAX}, got {got}"),
                );
                defaults::KEEPALIVE
            }
        }
    }

    /// A duration written as "10s"-style string or integer seconds. `nonzero` rejects 0 for
    /// timeouts where 0 would fail every request.
    pub(super) fn duration(
        &mut self,
        v: &Option<Spanned<Scalar>>,
        default: Duration,
        what: &str,
        nonzero: bool,
    ) -> Duration {
        let Some(s) = v else { return default };
        let parsed = match s.get_ref() {
            Scalar::Str(text) => parse_duration(text),
            Scalar::Int(n) => u64::try_from(*n)
                .map(Duration::from_secs)
                .map_err(|_| format!("negative duration {n}")),
        };
        match parsed {
            Ok(d) if nonzero && d.is_zero() => {
                self.error_at(s, format!("{what} must be greater than 0"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.error_at(s, format!("{what}: {e}"));
                default
            }
        }
    }

    /// A size written as "64k"-style string or integer bytes.
    fn size(&mut self, v: &Option<Spanned<Scalar>>, default: u64, what: &str) -> u64 {
        let Some(s) = v else { return default };
        let parsed = match s.get_ref() {
            Scalar::Str(text) => parse_size(text),
            Scalar::Int(n) => u64::try_from(*n).map_err(|_| format!("negative size {n}")),
        };
        match parsed {
            Ok(n) => n,
            Err(e) => {
                self.error_at(s, format!("{what}: {e}"));
                default
            }
        }
    }
}

/// The span used for a whole section: its key (e.g. `ProxyServer` in `[upstream.ProxyServer]`)
/// when known, else the item itself.
fn key_span(table: &dyn TableLike, key: &str) -> Span {
    let (k, item) = table.get_key_value(key)?;
    k.span().or_else(|| item.span())
}

/// The entries of an array of tables, written either as `[[x]]` sections or as an inline array
/// of inline tables (`x = [{...}, {...}]`). `None` if `item` is neither.
fn table_array(item: &Item) -> Option<Vec<Item>> {
    match item {
        Item::ArrayOfTables(a) => Some(a.iter().map(|t| Item::Table(t.clone())).collect()),
        Item::Value(Value::Array(a)) => Some(a.iter().map(|v| Item::Value(v.clone())).collect()),
        _ => None,
    }
}

pub(super) fn build(
    text: &str,
    path: &Path,
    resolver: Resolver<'_>,
) -> Result<Config, ConfigErrors> {
    let mut cx = Ctx {
        errors: conf::Collector::new(path, text),
        resolver,
    };
    let doc = match toml_edit::ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            // toml_edit's message can span lines; keep one error per output line.
            let message = e.message().trim_end().replace('\n', "; ");
            cx.error(e.span(), format!("TOML syntax error: {message}"));
            return Err(cx.errors.into_errors());
        }
    };
    let root = doc.as_table();

    let top: Option<RawTop> = cx.section(doc.as_item(), Some(0..0), "top level");
    let (workers, pin_workers, access_log, admin) = match &top {
        Some(top) => top_level(&mut cx, top),
        None => (Workers::Auto, false, None, None),
    };
    let admin_token_file = top
        .as_ref()
        .and_then(|t| absolute_file(&mut cx, t.admin_token_file.as_ref(), "admin_token_file"));
    let state_file = top
        .as_ref()
        .and_then(|t| absolute_file(&mut cx, t.state_file.as_ref(), "state_file"));

    let client_body_temp_path = client_body_temp_path(&mut cx, top.as_ref());
    let vrrp_status = vrrp_status(&mut cx, top.as_ref());
    let worker_connections = match &top {
        Some(top) => worker_connections(&mut cx, top),
        None => defaults::WORKER_CONNECTIONS,
    };
    // Upstreams first, so locations can refer to them by name (in any order in the file).
    let mut names: Vec<String> = Vec::new();
    let mut upstreams: Vec<Option<Upstream>> = Vec::new();
    if let Some(item) = root.get("upstream") {
        match item.as_table_like() {
            Some(table) => {
                for (name, up) in table.iter() {
                    let span = key_span(table, name);
                    names.push(name.to_owned());
                    upstreams.push(upstream(&mut cx, name, up, span));
                }
            }
            None => cx.error(
                key_span(root, "upstream"),
                "`upstream` must be tables like [upstream.NAME]",
            ),
        }
    }

    let mut seen_listen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut servers: Vec<Option<Server>> = Vec::new();
    match root.get("server") {
        None => cx.error(
            None,
            "no [[server]] section: at least one is required (with listen and a [[server.location]])",
        ),
        Some(item) => match table_array(item) {
            Some(entries) if !entries.is_empty() => {
                for entry in &entries {
                    servers.push(server(&mut cx, entry, &names, &mut seen_listen));
                }
            }
            _ => cx.error(
                key_span(root, "server"),
                "`server` must be one or more [[server]] sections",
            ),
        },
    }

    if let Some(Some(admin_addr)) = top.as_ref().map(|t| &t.admin) {
        if let Some(addr) = admin {
            if let Some(line) = seen_listen.get(&addr) {
                cx.error_at(
                    admin_addr,
                    format!("admin address {addr} is also a listen address (line {line})"),
                );
            }
        }
    }

    cx.errors.finish(Config {
        source: PathBuf::from(path),
        workers,
        pin_workers,
        splice: top.as_ref().and_then(|t| t.splice).unwrap_or(true),
        worker_connections,
        client_body_temp_path,
        access_log,
        admin,
        vrrp_status,
        sha256: String::new(),
        admin_token_file,
        state_file,
        upstreams: upstreams.into_iter().flatten().collect(),
        servers: servers.into_iter().flatten().collect(),
    })
}

fn top_level(
    cx: &mut Ctx<'_>,
    top: &RawTop,
) -> (Workers, bool, Option<PathBuf>, Option<SocketAddr>) {
    let workers = match &top.workers {
        None => Workers::Auto,
        Some(w) => match w.get_ref() {
            Scalar::Str(s) if s == "auto" => Workers::Auto,
            Scalar::Int(n) if (1..=1024).contains(n) => Workers::Count(*n as usize),
            _ => {
                cx.error_at(
                    w,
                    "workers must be \"auto\" or an integer between 1 and 1024",
                );
                Workers::Auto
            }
        },
    };
    let access_log = match &top.access_log {
        None => None,
        Some(s) if s.get_ref() == "off" => None,
        Some(s) if s.get_ref().is_empty() => {
            cx.error_at(s, "access_log must be a file path or \"off\"");
            None
        }
        Some(s) => Some(PathBuf::from(s.get_ref())),
    };
    let admin = top
        .admin
        .as_ref()
        .and_then(|a| match a.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                cx.error_at(
                    a,
                    format!(
                        "admin: \"{}\" is not an ip:port address like \"127.0.0.1:9900\"",
                        a.get_ref()
                    ),
                );
                None
            }
        });
    (workers, top.pin_workers.unwrap_or(false), access_log, admin)
}

/// A file path the service reads or writes whatever its working directory is.
fn absolute_file(cx: &mut Ctx<'_>, v: Option<&Spanned<String>>, what: &str) -> Option<PathBuf> {
    let v = v?;
    if !Path::new(v.get_ref()).is_absolute() || v.get_ref().ends_with('/') {
        cx.error_at(v, format!("{what} must be an absolute file path"));
        return None;
    }
    Some(PathBuf::from(v.get_ref()))
}

fn worker_connections(cx: &mut Ctx<'_>, top: &RawTop) -> usize {
    let default = defaults::WORKER_CONNECTIONS as i64;
    let n = cx.int(
        &top.worker_connections,
        default,
        1,
        1 << 20,
        "worker_connections",
    );
    usize::try_from(n).unwrap_or(defaults::WORKER_CONNECTIONS)
}

/// The body temp directory: absolute, since the service's working directory is not part of
/// its configuration.
fn client_body_temp_path(cx: &mut Ctx<'_>, top: Option<&RawTop>) -> PathBuf {
    let default = PathBuf::from(defaults::CLIENT_BODY_TEMP_PATH);
    let Some(p) = top.and_then(|t| t.client_body_temp_path.as_ref()) else {
        return default;
    };
    if !Path::new(p.get_ref()).is_absolute() {
        cx.error_at(
            p,
            "client_body_temp_path must be an absolute directory path",
        );
        return default;
    }
    PathBuf::from(p.get_ref())
}

/// The local vrrp daemon's status file, for the status page: absolute, or "off".
fn vrrp_status(cx: &mut Ctx<'_>, top: Option<&RawTop>) -> Option<PathBuf> {
    let default = Some(PathBuf::from(defaults::VRRP_STATUS));
    let Some(p) = top.and_then(|t| t.vrrp_status.as_ref()) else {
        return default;
    };
    match p.get_ref().as_str() {
        "off" => None,
        s if Path::new(s).is_absolute() => Some(PathBuf::from(s)),
        _ => {
            cx.error_at(p, "vrrp_status must be an absolute file path or \"off\"");
            default
        }
    }
}

fn upstream(cx: &mut Ctx<'_>, name: &str, item: &Item, span: Span) -> Option<Upstream> {
    let what = format!("upstream \"{name}\"");
    let Some(table) = item.as_table_like() else {
        cx.error(span, format!("{what} must be a table"));
        return None;
    };
    let raw: Option<RawUpstream> = cx.section(item, span.clone(), &what);

    // Each servers entry on its own, even if the upstream's own keys had an error.
    let mut peers: Vec<(Option<UpstreamServer>, Option<Spanned<bool>>)> = Vec::new();
    match table.get("servers") {
        None => cx.error(
            span.clone(),
            format!("{what} has no servers (add servers = [{{ address = \"ip:port\" }}])"),
        ),
        Some(servers) => match table_array(servers) {
            Some(entries) if !entries.is_empty() => {
                for entry in &entries {
                    peers.push(peer(cx, entry, &what));
                }
            }
            _ => cx.error(
                key_span(table, "servers").or(span.clone()),
                format!(
                    "{what}: servers must be a non-empty array like [{{ address = \"ip:port\" }}]"
                ),
            ),
        },
    }
    let raw = raw?;

    let balance = match &raw.balance {
        None => Balance::RoundRobin,
        Some(b) => match b.get_ref().as_str() {
            "round_robin" => Balance::RoundRobin,
            "least_conn" => Balance::LeastConn,
            "ip_hash" => Balance::IpHash,
            other => {
                cx.error_at(
                    b,
                    format!("{what}: unknown balance \"{other}\" (use \"round_robin\", \"least_conn\" or \"ip_hash\")"),
                );
                Balance::RoundRobin
            }
        },
    };
    if balance == Balance::IpHash {
        for slow in peers.iter().filter_map(|(p, _)| p.as_ref()) {
            if !slow.slow_start.is_zero() {
                cx.error(
                    span.clone(),
                    format!("{what}: server {}: slow_start cannot be used with balance = \"ip_hash\" (nginx Plus refuses this too)", slow.name),
                );
            }
        }
        for backup in peers.iter().filter_map(|(_, b)| b.as_ref()) {
            if *backup.get_ref() {
                cx.error_at(
                    backup,
                    format!("{what}: backup servers cannot be used with balance = \"ip_hash\" (nginx refuses this too)"),
                );
            }
        }
    }
    let keepalive = cx.keepalive(&raw.keepalive, &format!("{what}: keepalive"));
    let keepalive_timeout = cx.duration(
        &raw.keepalive_timeout,
        defaults::UPSTREAM_KEEPALIVE_TIMEOUT,
        &format!("{what}: keepalive_timeout"),
        false,
    );
    let connect_timeout = cx.duration(
        &raw.connect_timeout,
        defaults::CONNECT_TIMEOUT,
        &format!("{what}: connect_timeout"),
        true,
    );
    let read_timeout = cx.duration(
        &raw.read_timeout,
        defaults::READ_TIMEOUT,
        &format!("{what}: read_timeout"),
        true,
    );
    let send_timeout = cx.duration(
        &raw.send_timeout,
        defaults::SEND_TIMEOUT,
        &format!("{what}: send_timeout"),
        true,
    );

    let health_check = raw
        .health_check
        .as_ref()
        .map(|h| super::check::health_check(cx, h, &what));

    let queue = cx.int(&raw.queue, 0, 0, 1_000_000, &format!("{what}: queue"));
    let queue_timeout = cx.duration(
        &raw.queue_timeout,
        defaults::QUEUE_TIMEOUT,
        &format!("{what}: queue_timeout"),
        true,
    );

    let all_parsed = peers.iter().all(|(p, _)| p.is_some());
    let servers: Vec<UpstreamServer> = peers.into_iter().filter_map(|(p, _)| p).collect();
    if let Some(q) = raw.queue.as_ref().filter(|_| queue > 0) {
        if all_parsed && servers.iter().all(|s| s.max_conns == 0) {
            cx.error_at(
                q,
                format!("{what}: queue has no effect without max_conns on a server (requests wait for a server below its max_conns)"),
            );
        }
    }
    if all_parsed && !servers.is_empty() && servers.iter().all(|s| s.backup) {
        cx.error(
            span,
            format!("{what} has only backup servers; at least one must not be a backup"),
        );
        return None;
    }
    if !all_parsed || servers.is_empty() {
        return None;
    }
    Some(Upstream {
        name: name.to_owned(),
        servers,
        balance,
        keepalive,
        keepalive_timeout,
        connect_timeout,
        read_timeout,
        send_timeout,
        health_check,
        queue: u32::try_from(queue).unwrap_or(0),
        queue_timeout,
    })
}

/// One `servers` entry; also returns its `backup` flag so the caller can point at it.
fn peer(
    cx: &mut Ctx<'_>,
    item: &Item,
    what: &str,
) -> (Option<UpstreamServer>, Option<Spanned<bool>>) {
    let Some(raw) = cx.section::<RawPeer>(item, item.span(), &format!("{what} server")) else {
        return (None, None);
    };
    let address = resolve(raw.address.get_ref(), cx.resolver);
    if let Err(e) = &address {
        cx.error_at(&raw.address, format!("{what}: {e}"));
    }
    let max = i64::from(u32::MAX);
    let weight = cx.int(
        &raw.weight,
        i64::from(defaults::WEIGHT),
        1,
        max,
        &format!("{what}: weight"),
    );
    let max_fails = cx.int(
        &raw.max_fails,
        i64::from(defaults::MAX_FAILS),
        0,
        max,
        &format!("{what}: max_fails"),
    );
    let max_conns = cx.int(&raw.max_conns, 0, 0, max, &format!("{what}: max_conns"));
    let fail_timeout = cx.duration(
        &raw.fail_timeout,
        defaults::FAIL_TIMEOUT,
        &format!("{what}: fail_timeout"),
        false,
    );
    let slow_start = cx.duration(
        &raw.slow_start,
        Duration::ZERO,
        &format!("{what}: slow_start"),
        false,
    );
    let server = address.ok().map(|address| UpstreamServer {
        name: raw.address.get_ref().clone(),
        address,
        weight: u32::try_from(weight).unwrap_or(defaults::WEIGHT),
        max_fails: u32::try_from(max_fails).unwrap_or(defaults::MAX_FAILS),
        fail_timeout,
        backup: raw.backup.as_ref().is_some_and(|b| *b.get_ref()),
        down: raw.down.unwrap_or(false),
        max_conns: u32::try_from(max_conns).unwrap_or(0),
        slow_start,
    });
    (server, raw.backup)
}

/// An upstream server address: "ip:port", "[v6]:port", a bare IP (port 80, as nginx), or
/// a host name handed to `resolver`.
fn resolve(address: &str, resolver: Resolver<'_>) -> Result<SocketAddr, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 80));
    }
    if address.is_empty() || address.contains('/') || address.chars().any(char::is_whitespace) {
        return Err(format!(
            "address \"{address}\" is not ip:port, [v6]:port or host:port"
        ));
    }
    resolver(address)
}

/// The system resolver, once at load (like nginx at startup). nginx would add every address a
/// name resolves to as its own peer; we take the first, so a name should resolve to one address.
pub(super) fn system_resolver(address: &str) -> Result<SocketAddr, String> {
    let resolved = if address.contains(':') {
        address.to_socket_addrs()
    } else {
        (address, 80).to_socket_addrs()
    };
    match resolved {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("host in \"{address}\" resolves to no address")),
        Err(e) => Err(format!("cannot resolve \"{address}\": {e}")),
    }
}

fn server(
    cx: &mut Ctx<'_>,
    item: &Item,
    upstream_names: &[String],
    seen_listen: &mut HashMap<SocketAddr, usize>,
) -> Option<Server> {
    let span = item.span();
    let raw: Option<RawServer> = cx.section(item, span.clone(), "server");

    // Locations on their own, even if the server's own keys had an error.
    let mut locations: Vec<Option<Location>> = Vec::new();
    let mut seen_paths: HashMap<String, usize> = HashMap::new();
    match item.as_table_like().and_then(|t| t.get("location")) {
        None => cx.error(
            span.clone(),
            "server has no [[server.location]] (add one with path = \"/\" and proxy_pass)",
        ),
        Some(loc_item) => match table_array(loc_item) {
            Some(entries) if !entries.is_empty() => {
                for entry in &entries {
                    locations.push(location(cx, entry, upstream_names, &mut seen_paths));
                }
            }
            _ => cx.error(
                loc_item.span().or(span.clone()),
                "`location` must be one or more [[server.location]] sections",
            ),
        },
    }
    let raw = raw?;

    let mut listen = Vec::new();
    match &raw.listen {
        None => cx.error(
            span,
            "server has no listen (e.g. listen = [\"0.0.0.0:80\", \"[::]:80\"])",
        ),
        Some(list) if list.get_ref().is_empty() => cx.error_at(list, "listen must not be empty"),
        Some(list) => {
            for entry in list.get_ref() {
                match entry.get_ref().parse::<SocketAddr>() {
                    Ok(addr) => {
                        let line = cx.line(entry.span().start);
                        if let Some(first) = seen_listen.get(&addr) {
                            cx.error_at(
                                entry,
                                format!("duplicate listen address {addr} (first at line {first})"),
                            );
                        } else {
                            seen_listen.insert(addr, line);
                            listen.push(addr);
                        }
                    }
                    Err(_) => cx.error_at(
                        entry,
                        format!(
                            "listen \"{}\" is not an ip:port address like \"0.0.0.0:80\" or \"[::]:80\"",
                            entry.get_ref()
                        ),
                    ),
                }
            }
        }
    }
    let client_header_timeout = cx.duration(
        &raw.client_header_timeout,
        defaults::CLIENT_HEADER_TIMEOUT,
        "client_header_timeout",
        true,
    );
    let client_body_timeout = cx.duration(
        &raw.client_body_timeout,
        defaults::CLIENT_BODY_TIMEOUT,
        "client_body_timeout",
        true,
    );
    let client_max_body_size = cx.size(
        &raw.client_max_body_size,
        defaults::CLIENT_MAX_BODY_SIZE,
        "client_max_body_size",
    );
    let max_header_size = cx.size(
        &raw.max_header_size,
        defaults::MAX_HEADER_SIZE as u64,
        "max_header_size",
    );
    let max_header_size = match (usize::try_from(max_header_size), &raw.max_header_size) {
        (Ok(n), _) if n > 0 => n,
        (_, Some(v)) => {
            cx.error_at(v, "max_header_size must be greater than 0");
            defaults::MAX_HEADER_SIZE
        }
        (_, None) => defaults::MAX_HEADER_SIZE,
    };
    let keepalive_timeout = cx.duration(
        &raw.keepalive_timeout,
        defaults::KEEPALIVE_TIMEOUT,
        "keepalive_timeout",
        false,
    );
    let client_body_buffer_size = cx.size(
        &raw.client_body_buffer_size,
        defaults::CLIENT_BODY_BUFFER_SIZE as u64,
        "client_body_buffer_size",
    );
    if locations.is_empty() || locations.iter().any(Option::is_none) || listen.is_empty() {
        return None;
    }
    Some(Server {
        listen,
        client_header_timeout,
        client_body_timeout,
        client_max_body_size,
        max_header_size,
        keepalive_timeout,
        client_body_buffer_size: usize::try_from(client_body_buffer_size)
            .unwrap_or(defaults::CLIENT_BODY_BUFFER_SIZE),
        proxy_request_buffering: raw.proxy_request_buffering.unwrap_or(true),
        locations: locations.into_iter().flatten().collect(),
    })
}

fn location(
    cx: &mut Ctx<'_>,
    item: &Item,
    upstream_names: &[String],
    seen_paths: &mut HashMap<String, usize>,
) -> Option<Location> {
    let raw: RawLocation = cx.section(item, item.span(), "location")?;
    let path = raw.path.get_ref();
    let mut ok = true;
    if !path.starts_with('/') {
        cx.error_at(
            &raw.path,
            format!("location path \"{path}\" must start with \"/\""),
        );
        ok = false;
    } else {
        let line = cx.line(raw.path.span().start);
        if let Some(first) = seen_paths.get(path) {
            cx.error_at(
                &raw.path,
                format!("duplicate location \"{path}\" (first at line {first})"),
            );
            ok = false;
        } else {
            seen_paths.insert(path.clone(), line);
        }
    }
    let target = raw.proxy_pass.get_ref();
    let name = target.strip_prefix("http://").unwrap_or(target);
    let upstream = if target.contains("://") && !target.starts_with("http://") {
        cx.error_at(
            &raw.proxy_pass,
            format!("proxy_pass \"{target}\": only http:// upstreams are supported"),
        );
        None
    } else if name.contains('/') {
        cx.error_at(
            &raw.proxy_pass,
            format!("proxy_pass \"{target}\": a URI part is not supported, name the upstream only"),
        );
        None
    } else {
        let found = upstream_names.iter().position(|n| n == name);
        if found.is_none() {
            cx.error_at(
                &raw.proxy_pass,
                format!("proxy_pass \"{target}\": no [upstream.{name}] is defined"),
            );
        }
        found
    };
    match (ok, upstream) {
        (true, Some(upstream)) => Some(Location {
            path: path.clone(),
            upstream,
            proxy_request_buffering: raw.proxy_request_buffering,
        }),
        _ => None,
    }
}
