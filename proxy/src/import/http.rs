//! Walks nginx's main and http contexts and each `server { }` into the [`Model`].

use conf::block::Directive;
use conf::import::{comment, dropped, Loss};

use super::known::{self, Fate};
use super::location::{self, Scope};
use super::upstream;
use super::{Listen, Model, Server, Upstream};

/// nginx's "main" log format: the one format the proxy writes.
const MAIN_FORMAT: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \"$http_x_forwarded_for\"";

/// The walk's state: the report and the top-level comments.
pub(super) struct Walk<'a> {
    pub losses: &'a mut Vec<Loss>,
    pub top_notes: Vec<String>,
    /// URIs named by `error_page` (their `location = URI { }` serves nginx's error pages).
    pub error_pages: Vec<String>,
    /// One-server upstreams for `proxy_pass http://ADDRESS`.
    pub implicit: Vec<Upstream>,
    /// Upstream blocks left out (nothing in them could be imported).
    pub dropped_upstreams: Vec<String>,
    /// Each proxying location's upstream and its proxy_*_timeout values.
    pub routes: Vec<(String, super::location::Timeouts)>,
}

impl Walk<'_> {
    /// Reports `d` and gives the comment marking the place it was dropped.
    pub fn lose(&mut self, d: &Directive, instead: impl Into<String>) -> String {
        let loss = Loss::new(d, instead);
        let c = dropped(&loss);
        if !self.losses.contains(&loss) {
            self.losses.push(loss);
        }
        c
    }

    /// Reports `d` with the comment at the top of the file.
    pub fn lose_at_top(&mut self, d: &Directive, instead: impl Into<String>) {
        let c = self.lose(d, instead);
        self.top_notes.push(c);
    }

    /// The comment for a directive that changes nothing for a reverse proxy.
    pub fn harmless(d: &Directive, why: &str) -> String {
        comment("", &format!("{} {}: {why}", d.at(), d.source_text()))
    }

    /// A directive without a mapping of its own: harmless or reported.
    pub fn other(&mut self, d: &Directive) -> String {
        match known::fate(&d.name) {
            Fate::Harmless(why) => Self::harmless(d, why),
            Fate::Lost(instead) => self.lose(d, instead),
        }
    }
}

pub(super) fn walk_main(ds: &[Directive], m: &mut Model, losses: &mut Vec<Loss>) {
    let mut w = Walk {
        losses,
        top_notes: Vec::new(),
        error_pages: Vec::new(),
        implicit: Vec::new(),
        dropped_upstreams: Vec::new(),
        routes: Vec::new(),
    };
    for d in ds {
        match d.name.as_str() {
            "worker_processes" => match d.args.first().map(String::as_str) {
                Some("auto") => m.workers = Some("\"auto\"".into()),
                Some(n) if n.parse::<u16>().is_ok_and(|n| (1..=1024).contains(&n)) => {
                    m.workers = Some(n.to_string())
                }
                _ => w.lose_at_top(d, "not understood; workers = \"auto\" (one per core)"),
            },
            "http" => http(&mut w, d, m),
            "events" => events(&mut w, d, m),
            _ => {
                let n = w.other(d);
                w.top_notes.push(n);
            }
        }
    }
    m.notes.append(&mut w.top_notes);
}

/// `events { worker_connections N; ... }`: the proxy has the same per-worker cap; the rest of
/// the block (use, multi_accept, accept_mutex) is about nginx's event loop and left as comments.
fn events(w: &mut Walk<'_>, d: &Directive, m: &mut Model) {
    for c in d.children() {
        let n = c.args.first().and_then(|a| a.parse::<usize>().ok());
        match (c.name.as_str(), n) {
            ("worker_connections", Some(n)) if (1..=1 << 20).contains(&n) => {
                m.worker_connections = Some(n)
            }
            ("worker_connections", _) => w.lose_at_top(
                c,
                "not understood; worker_connections = 1024 (the default) applies",
            ),
            _ => {
                let n = w.other(c);
                w.top_notes.push(n);
            }
        }
    }
}

fn http(w: &mut Walk<'_>, d: &Directive, m: &mut Model) {
    let mut scope = Scope::default();
    let mut servers = Vec::new();
    // Upstreams and settings first: servers inherit settings written after them too.
    for c in d.children() {
        match c.name.as_str() {
            "upstream" => {
                let name = c.args.first().map(String::as_str).unwrap_or("");
                if m.upstreams.iter().any(|u| u.name == name) {
                    let why =
                        "a second upstream of this name (nginx refuses it); the first is used";
                    w.lose_at_top(c, why);
                } else if let Some(up) = upstream::upstream(w, c) {
                    m.upstreams.push(up);
                }
            }
            "server" => servers.push(c),
            "access_log" => access_log(w, c, m, true),
            "log_format" => log_format(w, c),
            _ => match scope.set(w, c) {
                Some(mut n) => w.top_notes.append(&mut n),
                None => {
                    let n = location::common(w, c);
                    w.top_notes.push(n);
                }
            },
        }
    }
    for s in servers {
        if let Some(server) = server(w, s, &scope, m) {
            m.servers.push(server);
        }
    }
    m.upstreams.append(&mut w.implicit);
    location::assign_timeouts(w, m);
    one_server_per_address(w, m);
}

fn access_log(w: &mut Walk<'_>, d: &Directive, m: &mut Model, top: bool) {
    let path = d.args.first().cloned().unwrap_or_default();
    let format = d.args.get(1).map(String::as_str).unwrap_or("combined");
    if !top {
        if m.access_log.as_deref() != Some(path.as_str()) {
            let n = w.lose(
                d,
                "one access log for the whole proxy: requests are logged where the http-level access_log says",
            );
            w.top_notes.push(n);
        }
        return;
    }
    if path.starts_with("syslog:") || path.contains('$') {
        let why = "the access log is a file (syslog and per-request paths are not supported); none is written";
        w.lose_at_top(d, why);
        return;
    }
    m.access_log = Some(path.clone());
    if path != "off" && format != "main" {
        w.lose_at_top(
            d,
            format!("format \"{format}\": the access log is written in nginx's \"main\" format"),
        );
    }
    if d.args.len() > 2 {
        w.lose_at_top(
            d,
            "buffer/flush/if options: every request is written as it completes",
        );
    }
}

fn log_format(w: &mut Walk<'_>, d: &Directive) {
    let name = d.args.first().map(String::as_str).unwrap_or("");
    let format: String = d.args.get(1..).unwrap_or(&[]).concat();
    let format = format.split_whitespace().collect::<Vec<_>>().join(" ");
    if name == "main" && format == MAIN_FORMAT {
        w.top_notes
            .push(Walk::harmless(d, "the proxy's access log format"));
    } else {
        w.lose_at_top(
            d,
            format!("log format \"{name}\": the access log is written in nginx's \"main\" format"),
        );
    }
}

fn listens(w: &mut Walk<'_>, s: &Directive, notes: &mut Vec<String>) -> Vec<Listen> {
    let mut out = Vec::new();
    for d in s.children().iter().filter(|d| d.name == "listen") {
        let Some(addr) = d.args.first() else { continue };
        let address = match super::values::listen_address(addr) {
            Ok(a) => a,
            Err(e) => {
                notes.push(w.lose(d, format!("{e}; this listen is left out")));
                continue;
            }
        };
        let mut default = false;
        let mut tls = false;
        for p in &d.args[1..] {
            match p.as_str() {
                "default_server" | "default" => default = true,
                "ssl" => tls = true,
                "ipv6only=on" | "reuseport" | "deferred" | "bind" => {}
                other => notes.push(w.lose(
                    d,
                    format!("listen parameter \"{other}\" is not supported; the address is listened on without it"),
                )),
            }
        }
        if tls {
            notes.push(w.lose(
                d,
                "TLS is not terminated: this listen is left out; put a TLS terminator in front of the proxy",
            ));
            continue;
        }
        out.push(Listen {
            address,
            default,
            at: d.at(),
        });
    }
    out
}

fn server(w: &mut Walk<'_>, s: &Directive, inherited: &Scope, m: &mut Model) -> Option<Server> {
    let mut server = Server::default();
    let mut scope = inherited.clone();
    let mut locations = Vec::new();
    let listen = listens(w, s, &mut server.notes);
    let had_listen = s.children().iter().any(|d| d.name == "listen");
    for c in s.children() {
        match c.name.as_str() {
            "listen" => {}
            "location" => locations.push(c),
            "server_name" => server.notes.push(Walk::harmless(
                c,
                "every request on this server's addresses is proxied, whatever its Host",
            )),
            // With no http-level access_log, the first server's becomes the proxy's.
            "access_log" => access_log(w, c, m, m.access_log.is_none()),
            _ => match scope.set(w, c) {
                Some(mut n) => server.notes.append(&mut n),
                None => {
                    let n = location::common(w, c);
                    server.notes.push(n);
                }
            },
        }
    }
    server.fields = scope.server_fields();
    server.locations = location::locations(w, &locations, &scope, m, &mut server.notes);
    server.listen = listen;
    if !had_listen {
        server.listen.push(Listen {
            address: "0.0.0.0:80".into(),
            default: false,
            at: s.at(),
        });
        let n = format!("{} server without listen: nginx listens on *:80", s.at());
        server.notes.push(comment("", &n));
    }
    if server.locations.is_empty() {
        w.lose_at_top(
            s,
            "no location of this server proxies requests; the server is left out",
        );
        return None;
    }
    if server.listen.is_empty() {
        w.lose_at_top(
            s,
            "none of its listen addresses can be used; the server is left out",
        );
        return None;
    }
    Some(server)
}

/// proxy.toml has one server per address: where nginx shares an address between servers (by
/// server_name), the default_server (else the first) keeps it and the others lose it.
fn one_server_per_address(w: &mut Walk<'_>, m: &mut Model) {
    let mut owner: Vec<(String, usize)> = Vec::new();
    for (i, s) in m.servers.iter().enumerate() {
        for l in &s.listen {
            match owner.iter_mut().find(|(a, _)| *a == l.address) {
                None => owner.push((l.address.clone(), i)),
                Some((_, o)) => {
                    let first_default = m.servers[*o]
                        .listen
                        .iter()
                        .any(|x| x.address == l.address && x.default);
                    if l.default && !first_default {
                        *o = i;
                    }
                }
            }
        }
    }
    for (i, s) in m.servers.iter_mut().enumerate() {
        let mut kept = Vec::new();
        for l in std::mem::take(&mut s.listen) {
            if kept.iter().any(|k: &Listen| k.address == l.address) {
                continue;
            }
            let o = owner
                .iter()
                .find(|(a, _)| *a == l.address)
                .map_or(i, |(_, o)| *o);
            if o == i {
                kept.push(l);
                continue;
            }
            let loss = Loss {
                at: l.at.clone(),
                directive: "listen".into(),
                instead: format!("{} is shared with another server (name-based virtual hosts are not supported); its requests go to that server", l.address),
            };
            s.notes.push(dropped(&loss));
            if !w.losses.contains(&loss) {
                w.losses.push(loss);
            }
        }
        s.listen = kept;
    }
    m.servers.retain(|s| !s.listen.is_empty());
}
