//! [`Model`] -> proxy.toml text, with the importer's comments in place.

use std::fmt::Write as _;
use std::path::Path;

use conf::import::{toml_key, toml_str};

use super::location::timeout_key;
use super::{Model, Upstream};

/// The admin endpoint vrrp's health probe and Prometheus read; nginx has no equivalent, so
/// the imported file gets the address the deploy files use.
const ADMIN: &str = "127.0.0.1:9900";

pub(super) fn toml(m: &mut Model, source: &Path) -> String {
    sort_notes(m);
    let mut s = String::new();
    // `write!` into a String cannot fail; the results are ignored deliberately.
    let _ = writeln!(
        s,
        "# proxy.toml imported from {} by `proxy import`.",
        source.display()
    );
    s.push_str("# Lines starting with \"NOT IMPORTED\" mark what the proxy does not do.\n");
    s.push_str("# Check it with: proxy --check --config proxy.toml\n\n");
    for n in &m.notes {
        s.push_str(n);
    }
    if !m.notes.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "workers = {}",
        m.workers.as_deref().unwrap_or("\"auto\"")
    );
    if let Some(n) = m.worker_connections {
        let _ = writeln!(s, "worker_connections = {n}");
    }
    if let Some(log) = &m.access_log {
        let _ = writeln!(s, "access_log = {}", toml_str(log));
    }
    let admin_port_taken = m
        .servers
        .iter()
        .flat_map(|s| &s.listen)
        .any(|l| l.address == ADMIN || l.address == "0.0.0.0:9900" || l.address == "[::]:9900");
    if admin_port_taken {
        s.push_str("# admin: 127.0.0.1:9900 is a listen address here; set admin = \"ip:port\" for /healthz and /metrics\n");
    } else {
        let _ = writeln!(
            s,
            "admin = \"{ADMIN}\"   # no nginx equivalent: GET /healthz (vrrp's probe), GET /metrics"
        );
    }
    for up in &m.upstreams {
        upstream(&mut s, up);
    }
    for server in &m.servers {
        s.push_str("\n[[server]]\n");
        for n in &server.notes {
            s.push_str(n);
        }
        let listen: Vec<String> = server.listen.iter().map(|l| toml_str(&l.address)).collect();
        let _ = writeln!(s, "listen = [{}]", listen.join(", "));
        for (k, v) in &server.fields {
            let _ = writeln!(s, "{k} = {v}");
        }
        for loc in &server.locations {
            s.push_str("\n[[server.location]]\n");
            for n in &loc.notes {
                s.push_str(n);
            }
            let _ = writeln!(s, "path = {}", toml_str(&loc.path));
            let _ = writeln!(s, "proxy_pass = {}", toml_str(&loc.proxy_pass));
        }
    }
    s
}

fn upstream(s: &mut String, up: &Upstream) {
    let _ = writeln!(s, "\n[upstream.{}]", toml_key(&up.name));
    for n in &up.notes {
        s.push_str(n);
    }
    s.push_str("servers = [\n");
    for p in &up.peers {
        let _ = write!(s, "  {{ address = {}", toml_str(&p.address));
        for (k, v) in &p.fields {
            let _ = write!(s, ", {k} = {v}");
        }
        s.push_str(" },\n");
    }
    s.push_str("]\n");
    let _ = writeln!(s, "balance = \"{}\"", up.balance.unwrap_or("round_robin"));
    match up.keepalive {
        Some(n) => {
            let _ = writeln!(s, "keepalive = {n}");
        }
        None => s.push_str(
            "# no `keepalive`: nginx opened a new upstream connection per request; the proxy pools\n# idle connections (keepalive = \"auto\" by default: as many as were recently in use;\n# keepalive = 0 turns pooling off)\n",
        ),
    }
    if let Some(t) = &up.keepalive_timeout {
        let _ = writeln!(s, "keepalive_timeout = {}", toml_str(t));
    }
    if let Some((n, timeout)) = &up.queue {
        let _ = writeln!(s, "queue = {n}");
        if let Some(t) = timeout {
            let _ = writeln!(s, "queue_timeout = {}", toml_str(t));
        }
    }
    for (i, t) in up.timeouts.iter().enumerate() {
        if let Some((v, at)) = t {
            let _ = writeln!(s, "{} = {}   # {at}", timeout_key(i), toml_str(v));
        }
    }
}

/// Each section's comments in file order (the walk adds them in its own order).
fn sort_notes(m: &mut Model) {
    use conf::import::sort_comments;
    sort_comments(&mut m.notes);
    for up in &mut m.upstreams {
        sort_comments(&mut up.notes);
    }
    for s in &mut m.servers {
        sort_comments(&mut s.notes);
        for l in &mut s.locations {
            sort_comments(&mut l.notes);
        }
    }
}
