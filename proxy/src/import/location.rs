//! `location` blocks, the settings servers and locations inherit, and the proxy_* directives.

use conf::block::Directive;
use conf::import::{dropped, Loss};

use super::http::Walk;
use super::values::{self, Target};
use super::{Location, Model, Peer, Upstream};

/// proxy.toml's per-upstream timeouts, in [`Upstream::timeouts`] order.
const TIMEOUT_KEYS: [&str; 3] = ["connect_timeout", "read_timeout", "send_timeout"];

/// connect, read, send timeouts: value and the `file:line` that set it.
pub(super) type Timeouts = [Option<(String, String)>; 3];

/// Settings inherited from http to server to location (nginx's merge), with where each was set.
#[derive(Debug, Clone, Default)]
pub(super) struct Scope {
    /// proxy.toml `[[server]]` key, TOML value, `file:line`.
    server: Vec<(&'static str, String, String)>,
    timeouts: Timeouts,
}

impl Scope {
    /// Takes `d` if it is one of the inherited settings; `None` if it is not one.
    pub fn set(&mut self, w: &mut Walk<'_>, d: &Directive) -> Option<Vec<String>> {
        let arg = d.args.first().map(String::as_str).unwrap_or("");
        let mut notes = Vec::new();
        let (key, value) = match d.name.as_str() {
            "keepalive_timeout" => {
                if d.args.len() > 1 {
                    notes.push(w.lose(d, "no \"Keep-Alive: timeout=\" header is sent"));
                }
                ("keepalive_timeout", values::duration(arg))
            }
            "client_header_timeout" | "client_body_timeout" => {
                (server_key(&d.name), values::timeout(arg))
            }
            "client_max_body_size" => ("client_max_body_size", values::size(arg)),
            "large_client_header_buffers" => {
                let size = d.args.get(1).map(String::as_str).unwrap_or("");
                ("max_header_size", values::size(size))
            }
            "proxy_connect_timeout" | "proxy_read_timeout" | "proxy_send_timeout" => {
                let i = match d.name.as_str() {
                    "proxy_connect_timeout" => 0,
                    "proxy_read_timeout" => 1,
                    _ => 2,
                };
                match values::timeout(arg) {
                    Ok(v) => self.timeouts[i] = Some((v, d.at())),
                    Err(e) => notes.push(w.lose(d, e)),
                }
                return Some(notes);
            }
            _ => return None,
        };
        match value {
            Ok(v) => {
                let v = conf::import::toml_str(&v);
                self.server.retain(|(k, _, _)| *k != key);
                self.server.push((key, v, d.at()));
            }
            Err(e) => notes.push(w.lose(d, e)),
        }
        Some(notes)
    }

    /// The `[[server]]` keys this scope sets.
    pub fn server_fields(&self) -> Vec<(&'static str, String)> {
        self.server
            .iter()
            .map(|(k, v, _)| (*k, v.clone()))
            .collect()
    }
}

fn server_key(name: &str) -> &'static str {
    match name {
        "client_header_timeout" => "client_header_timeout",
        _ => "client_body_timeout",
    }
}

/// The proxy_* directives and error_page, valid at every level; anything else goes to
/// [`Walk::other`]. Gives the comment to leave in the section.
pub(super) fn common(w: &mut Walk<'_>, d: &Directive) -> String {
    let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
    match (d.name.as_str(), args.as_slice()) {
        ("proxy_http_version", ["1.1"]) => {
            Walk::harmless(d, "the proxy speaks HTTP/1.1 to upstream servers")
        }
        ("proxy_http_version", _) => w.lose(d, "the proxy speaks HTTP/1.1 to upstream servers"),
        ("proxy_next_upstream", list) if list.iter().all(|a| matches!(*a, "error" | "timeout")) => {
            Walk::harmless(d, "the proxy tries the next server on error and timeout")
        }
        ("proxy_next_upstream", _) => w.lose(
            d,
            "only errors and timeouts move a request to the next server (nginx's default)",
        ),
        ("proxy_set_header", [name, value]) => set_header(w, d, name, value),
        ("error_page", [codes @ .., uri]) => {
            w.error_pages.push(uri.trim_start_matches('=').to_string());
            let all_5xx = codes
                .iter()
                .all(|c| c.parse::<u16>().is_ok_and(|c| (500..600).contains(&c)));
            if all_5xx && !codes.is_empty() {
                Walk::harmless(
                    d,
                    "the proxy sends its built-in error page for 5xx it generates",
                )
            } else {
                w.lose(
                    d,
                    "the proxy's built-in page is sent for errors it generates; upstream responses pass through unchanged",
                )
            }
        }
        _ => w.other(d),
    }
}

/// proxy_set_header: what the proxy sends anyway is harmless, anything else is reported.
fn set_header(w: &mut Walk<'_>, d: &Directive, name: &str, value: &str) -> String {
    let same = match name.to_ascii_lowercase().as_str() {
        "host" => matches!(value, "$host" | "$http_host" | "$host:$server_port"),
        "x-real-ip" => value == "$remote_addr",
        "x-forwarded-for" => value == "$proxy_add_x_forwarded_for",
        // Hop-by-hop: the proxy manages upstream keep-alive itself.
        "connection" => value.is_empty() || value == "close",
        _ => false,
    };
    if same {
        return Walk::harmless(d, "the proxy sends this header itself");
    }
    let instead = match name.to_ascii_lowercase().as_str() {
        "host" => "the client's Host header is passed unchanged".to_string(),
        "x-forwarded-for" => "the client address is appended to X-Forwarded-For".to_string(),
        "upgrade" | "connection" => {
            "Upgrade/Connection are hop-by-hop: WebSocket upgrades are not tunnelled".to_string()
        }
        _ => format!("header {name} is not added to upstream requests"),
    };
    w.lose(d, instead)
}

/// The server's `location` blocks that proxy, in order.
pub(super) fn locations(
    w: &mut Walk<'_>,
    ds: &[&Directive],
    server_scope: &Scope,
    m: &Model,
    notes: &mut Vec<String>,
) -> Vec<Location> {
    let mut out: Vec<Location> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut statics: Vec<(&Directive, String)> = Vec::new();
    for d in ds {
        let (modifier, path) = match d.args.as_slice() {
            [p] => ("", p.as_str()),
            [m, p] => (m.as_str(), p.as_str()),
            _ => ("?", ""),
        };
        if !matches!(modifier, "" | "=" | "^~") || !path.starts_with('/') {
            notes.push(w.lose(
                d,
                format!(
                    "only prefix locations are supported (\"{}\" is a regular expression or named location); requests it matched go to the longest matching prefix location",
                    d.args.join(" ")
                ),
            ));
            continue;
        }
        match location(w, d, path, modifier, server_scope, m) {
            Some(mut loc) => {
                loc.path = path.to_string();
                if let Some(i) = out.iter().position(|l| l.path == loc.path) {
                    notes.push(w.lose(
                        d,
                        format!(
                            "same path as the location at {}; the first one is used",
                            lines[i]
                        ),
                    ));
                    continue;
                }
                lines.push(d.at());
                out.push(loc);
            }
            None => statics.push((d, path.to_string())),
        }
    }
    for (d, path) in statics {
        if w.error_pages.contains(&path) {
            notes.push(Walk::harmless(
                d,
                "serves an error_page page: the built-in page is sent",
            ));
            continue;
        }
        let instead = match out
            .iter()
            .filter(|l| path.starts_with(&l.path))
            .max_by_key(|l| l.path.len())
        {
            Some(l) => format!(
                "static content is not served; requests for {path} are proxied by location \"{}\"",
                l.path
            ),
            None => format!("static content is not served; requests for {path} get 404"),
        };
        notes.push(w.lose(d, instead));
    }
    out
}

/// One location: `Some` when it proxies (comments for what it drops inside), `None` when it
/// has no usable proxy_pass.
fn location(
    w: &mut Walk<'_>,
    d: &Directive,
    path: &str,
    modifier: &str,
    server_scope: &Scope,
    m: &Model,
) -> Option<Location> {
    let mut scope = server_scope.clone();
    let mut loc = Location::default();
    let mut target = None;
    for c in d.children() {
        match c.name.as_str() {
            "proxy_pass" => target = Some(c),
            "location" => {
                let n = w.lose(
                    c,
                    "nested locations are not supported; the outer location takes its requests",
                );
                loc.notes.push(n);
            }
            _ => match scope.set(w, c) {
                Some(mut n) => loc.notes.append(&mut n),
                None => loc.notes.push(common(w, c)),
            },
        }
    }
    let target = target?;
    let name = match values::proxy_pass(target.args.first().map(String::as_str).unwrap_or("")) {
        Target::Unsupported(why) => {
            let n = w.lose(target, why);
            loc.notes.push(n);
            return None;
        }
        Target::Http { authority, uri } => {
            if uri.as_deref().is_some_and(|u| u != path) {
                let n = w.lose(
                    target,
                    format!("the request URI is passed unchanged (nginx replaced the prefix {path} with {})", uri.unwrap_or_default()),
                );
                loc.notes.push(n);
            }
            upstream_for(w, target, &authority, m)?
        }
    };
    if modifier == "=" {
        let n = w.lose(d, format!("exact match: {path} is matched as a prefix, so longer paths under it are proxied here too"));
        loc.notes.push(n);
    }
    // Per-location values the proxy can only set per server.
    for (key, value, at) in &scope.server {
        let server_value = server_scope.server.iter().find(|(k, _, _)| k == key);
        if server_value.map(|(_, v, _)| v) != Some(value) {
            let loss = Loss {
                at: at.clone(),
                directive: key.to_string(),
                instead: format!(
                    "set per server only: the server's value applies to location {path}"
                ),
            };
            loc.notes.push(dropped(&loss));
            if !w.losses.contains(&loss) {
                w.losses.push(loss);
            }
        }
    }
    w.routes.push((name.clone(), scope.timeouts.clone()));
    loc.proxy_pass = name;
    Some(loc)
}

/// The upstream a proxy_pass authority names: an upstream block, or an implicit one-server
/// upstream named after the address (nginx does the same).
fn upstream_for(w: &mut Walk<'_>, d: &Directive, authority: &str, m: &Model) -> Option<String> {
    if m.upstreams
        .iter()
        .chain(&w.implicit)
        .any(|u| u.name == authority)
    {
        return Some(authority.to_string());
    }
    if w.dropped_upstreams.iter().any(|u| u == authority) {
        w.lose(
            d,
            format!("upstream {authority} was left out; so is this location"),
        );
        return None;
    }
    w.implicit.push(Upstream {
        name: authority.to_string(),
        peers: vec![Peer {
            address: authority.to_string(),
            fields: Vec::new(),
        }],
        notes: vec![conf::import::comment(
            "",
            &format!("{} proxy_pass to an address: a one-server upstream", d.at()),
        )],
        ..Upstream::default()
    });
    Some(authority.to_string())
}

/// Gives each upstream the proxy_*_timeout of the locations that use it; one value per upstream.
pub(super) fn assign_timeouts(w: &mut Walk<'_>, m: &mut Model) {
    for (name, timeouts) in std::mem::take(&mut w.routes) {
        let Some(up) = m.upstreams.iter_mut().find(|u| u.name == name) else {
            continue;
        };
        for (i, t) in timeouts.into_iter().enumerate() {
            let Some((value, at)) = t else { continue };
            match &up.timeouts[i] {
                None => up.timeouts[i] = Some((value, at)),
                Some((v, _)) if *v == value => {}
                Some((v, first)) => {
                    let loss = Loss {
                        at,
                        directive: format!("proxy_{}", TIMEOUT_KEYS[i]),
                        instead: format!("set per upstream: upstream {name} uses {v} (from {first}) for every location"),
                    };
                    up.notes.push(dropped(&loss));
                    if !w.losses.contains(&loss) {
                        w.losses.push(loss);
                    }
                }
            }
        }
    }
}

pub(super) fn timeout_key(i: usize) -> &'static str {
    TIMEOUT_KEYS[i]
}
