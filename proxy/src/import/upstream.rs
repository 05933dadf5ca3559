//! `upstream NAME { server ...; least_conn; keepalive N; }` -> `[upstream.NAME]`.

use conf::block::Directive;

use super::http::Walk;
use super::values;
use super::{Peer, Upstream};

pub(super) fn upstream(w: &mut Walk<'_>, d: &Directive) -> Option<Upstream> {
    let Some(name) = d.args.first() else {
        w.lose_at_top(d, "upstream without a name; left out");
        return None;
    };
    let mut up = Upstream {
        name: name.clone(),
        ..Upstream::default()
    };
    let mut backups = Vec::new();
    let (mut queue, mut zone) = (None, None);
    for c in d.children() {
        match c.name.as_str() {
            "queue" => queue = Some(c),
            "zone" => zone = Some(c),
            _ => directive(w, c, &mut up, &mut backups),
        }
    }
    // After the servers: both depend on whether any server has max_conns.
    match zone {
        Some(c) => {
            let n = w.other(c);
            up.notes.push(n);
        }
        None if capped(&up) => max_conns_per_worker(w, d, &mut up),
        None => {}
    }
    if let Some(c) = queue {
        // proxy.toml refuses a queue no server's max_conns can fill.
        up.queue = queue_directive(w, c, &mut up);
    }
    if up.balance == Some("ip_hash") {
        // nginx refuses backup servers with ip_hash; so does proxy.toml.
        for (i, c) in backups.iter().rev() {
            let n = w.lose(
                c,
                "backup cannot be used with ip_hash; the server is left out",
            );
            up.notes.push(n);
            up.peers.remove(*i);
        }
        backups.clear();
    }
    let why = if up.peers.is_empty() {
        "no server of this upstream could be imported; it is left out"
    } else if backups.len() == up.peers.len() {
        "only backup servers are left; the upstream is left out"
    } else {
        return Some(up);
    };
    w.dropped_upstreams.push(up.name);
    w.lose_at_top(d, why);
    None
}

/// One directive of the upstream block; backups are noted with their index for ip_hash.
fn directive<'d>(
    w: &mut Walk<'_>,
    c: &'d Directive,
    up: &mut Upstream,
    backups: &mut Vec<(usize, &'d Directive)>,
) {
    match c.name.as_str() {
        "server" => {
            if let Some((peer, backup)) = server(w, c, &mut up.notes) {
                if backup {
                    backups.push((up.peers.len(), c));
                }
                up.peers.push(peer);
            }
        }
        "least_conn" => up.balance = Some("least_conn"),
        "ip_hash" => up.balance = Some("ip_hash"),
        "hash" => {
            let n = w.lose(
                c,
                "balancing by a hash key is not supported; smooth weighted round robin is used",
            );
            up.notes.push(n);
        }
        "random" => {
            let n = w.lose(c, "smooth weighted round robin is used instead");
            up.notes.push(n);
        }
        "keepalive" => match c
            .args
            .first()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n <= 1_000_000)
        {
            Some(n) => up.keepalive = Some(n),
            None => {
                let n = w.lose(
                    c,
                    "not a number up to 1000000; the proxy's default (32) is used",
                );
                up.notes.push(n);
            }
        },
        "keepalive_timeout" => match c.args.first().map(|v| values::duration(v)) {
            Some(Ok(v)) => up.keepalive_timeout = Some(v),
            Some(Err(e)) => {
                let n = w.lose(c, e);
                up.notes.push(n);
            }
            None => {}
        },
        _ => {
            let n = w.other(c);
            up.notes.push(n);
        }
    }
}

fn capped(up: &Upstream) -> bool {
    up.peers
        .iter()
        .any(|p| p.fields.iter().any(|(k, _)| *k == "max_conns"))
}

/// An upstream without `zone` whose servers have `max_conns`: nginx counts those per worker
/// process, this proxy across its workers (as nginx does with a zone). Reported on the
/// upstream's line, so the operator can raise the numbers if the per-worker total was meant.
fn max_conns_per_worker(w: &mut Walk<'_>, d: &Directive, up: &mut Upstream) {
    let n = w.lose(
        d,
        "max_conns is counted across all workers here (nginx without a zone counts it per \
         worker process): multiply it by nginx's worker_processes to allow the same total",
    );
    up.notes.push(n);
}

/// nginx Plus `queue N [timeout=T];` -> `queue = N` and `queue_timeout = "T"`.
fn queue_directive(
    w: &mut Walk<'_>,
    c: &Directive,
    up: &mut Upstream,
) -> Option<(u64, Option<String>)> {
    let count = c
        .args
        .first()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| (1..=1_000_000).contains(n));
    let timeout = match c.args.get(1).map(|a| a.strip_prefix("timeout=")) {
        None => Ok(None),
        Some(Some(t)) => values::duration(t).map(Some),
        Some(None) => Err(format!(
            "unknown parameter {:?}; the queue is left out",
            c.args[1]
        )),
    };
    let capped = capped(up);
    let why = match (count, timeout) {
        (None, _) => "not a number from 1 to 1000000; the queue is left out".to_string(),
        (_, Err(e)) => e,
        (Some(_), Ok(_)) if !capped => {
            "no server has max_conns, so nothing would ever wait; left out".to_string()
        }
        (Some(n), Ok(t)) => return Some((n, t)),
    };
    let n = w.lose(c, why);
    up.notes.push(n);
    None
}

/// One `server ADDRESS [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down]
/// [max_conns=N] [slow_start=T]`; also says whether it is a backup.
fn server(w: &mut Walk<'_>, d: &Directive, notes: &mut Vec<String>) -> Option<(Peer, bool)> {
    let Some(addr) = d.args.first() else {
        notes.push(w.lose(d, "server without an address; left out"));
        return None;
    };
    let address = match values::upstream_address(addr) {
        Ok(a) => a,
        Err(e) => {
            notes.push(w.lose(d, e));
            return None;
        }
    };
    let mut peer = Peer {
        address,
        fields: Vec::new(),
    };
    let mut backup = false;
    for p in &d.args[1..] {
        let (key, value) = p.split_once('=').unwrap_or((p.as_str(), ""));
        let mapped = match key {
            "weight" => value
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| (n.to_string(), "weight")),
            "max_fails" => value
                .parse::<u64>()
                .ok()
                .map(|n| (n.to_string(), "max_fails")),
            "max_conns" => value
                .parse::<u64>()
                .ok()
                .map(|n| (n.to_string(), "max_conns")),
            "fail_timeout" => values::duration(value)
                .ok()
                .map(|v| (conf::import::toml_str(&v), "fail_timeout")),
            // nginx Plus; the same name and meaning here.
            "slow_start" => values::duration(value)
                .ok()
                .map(|v| (conf::import::toml_str(&v), "slow_start")),
            "backup" if value.is_empty() => {
                backup = true;
                Some(("true".into(), "backup"))
            }
            "down" if value.is_empty() => Some(("true".into(), "down")),
            _ => None,
        };
        match mapped {
            Some((v, k)) => peer.fields.push((k, v)),
            None => notes.push(w.lose(
                d,
                format!("server parameter \"{p}\" is not supported; the server is used without it"),
            )),
        }
    }
    Some((peer, backup))
}
