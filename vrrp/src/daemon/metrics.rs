//! The Prometheus endpoint (`global_defs.metrics = "127.0.0.1:9901"`): `GET /metrics` in the
//! text exposition format. It runs on its own thread from the last state the event loop
//! published, so a slow scraper never delays an advert.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::snapshot::unix_ms;
use super::status::{InstanceStatus, Status};

/// The state the event loop last published.
pub(super) type Shared = Arc<Mutex<Option<Status>>>;

/// A scraper gets this long to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head read.
const MAX_REQUEST: usize = 8192;

/// Binds `addr` and serves it on a thread for the life of the process.
pub(super) fn start(addr: SocketAddr, shared: Shared) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = answer(conn, &shared) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
        })?;
    Ok(())
}

fn answer(mut conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    conn.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let (status, body) = if line.starts_with(b"GET /metrics ") {
        let st = shared.lock().ok().and_then(|g| g.clone());
        let body = st.map_or_else(String::new, |s| render(&s, unix_ms(SystemTime::now())));
        ("200 OK", body)
    } else {
        ("404 Not Found", "only GET /metrics here\n".to_string())
    };
    write!(
        conn,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// One metric family's header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The Prometheus text for `st`; `now_ms` ages the peers' adverts.
pub fn render(st: &Status, now_ms: u64) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "vrrp_instance_state",
        "gauge",
        "1 for the state the instance is in.",
    );
    for i in &st.instance {
        for s in ["INIT", "BACKUP", "MASTER", "FAULT"] {
            let v = u8::from(i.state == s);
            let _ = writeln!(
                out,
                "vrrp_instance_state{{instance=\"{}\",state=\"{s}\"}} {v}",
                i.name
            );
        }
    }
    type Read = fn(&InstanceStatus) -> u64;
    let simple: [(&str, &str, &str, Read); 7] = [
        (
            "vrrp_instance_priority",
            "gauge",
            "Effective priority after tracking.",
            |i| u64::from(i.priority),
        ),
        (
            "vrrp_instance_base_priority",
            "gauge",
            "Configured priority.",
            |i| u64::from(i.base_priority),
        ),
        (
            "vrrp_transitions_total",
            "counter",
            "State transitions.",
            |i| i.transitions,
        ),
        (
            "vrrp_garps_sent_total",
            "counter",
            "Gratuitous ARP / unsolicited NA rounds sent.",
            |i| i.garps_sent,
        ),
        ("vrrp_adverts_sent_total", "counter", "Adverts sent.", |i| {
            i.adverts_sent
        }),
        (
            "vrrp_adverts_received_total",
            "counter",
            "Adverts accepted.",
            |i| i.adverts_received,
        ),
        (
            "vrrp_adverts_dropped_total",
            "counter",
            "Adverts dropped (version, auth, interval, VIP list).",
            |i| i.adverts_dropped,
        ),
    ];
    for (name, kind, help, read) in simple {
        family(&mut out, name, kind, help);
        for i in &st.instance {
            let _ = writeln!(out, "{name}{{instance=\"{}\"}} {}", i.name, read(i));
        }
    }
    family(
        &mut out,
        "vrrp_vip_on_interface",
        "gauge",
        "1 when the VIP is on the instance's interface.",
    );
    for i in &st.instance {
        for v in &i.vips {
            let _ = writeln!(
                out,
                "vrrp_vip_on_interface{{instance=\"{}\",vip=\"{}\"}} {}",
                i.name,
                v.address,
                u8::from(v.on_interface)
            );
        }
    }
    family(
        &mut out,
        "vrrp_track_contribution",
        "gauge",
        "What each track adds to the priority now.",
    );
    for i in &st.instance {
        for t in &i.tracks {
            let _ = writeln!(
                out,
                "vrrp_track_contribution{{instance=\"{}\",track=\"{}\"}} {}",
                i.name, t.what, t.contribution
            );
        }
    }
    family(
        &mut out,
        "vrrp_peer_priority",
        "gauge",
        "Priority in the peer's last advert.",
    );
    for i in &st.instance {
        for p in &i.peers {
            let _ = writeln!(
                out,
                "vrrp_peer_priority{{instance=\"{}\",peer=\"{}\"}} {}",
                i.name, p.address, p.priority
            );
        }
    }
    family(
        &mut out,
        "vrrp_peer_last_advert_age_seconds",
        "gauge",
        "Age of the peer's last advert.",
    );
    for i in &st.instance {
        for p in &i.peers {
            let age = now_ms.saturating_sub(p.last_advert_ms) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "vrrp_peer_last_advert_age_seconds{{instance=\"{}\",peer=\"{}\"}} {age}",
                i.name, p.address
            );
        }
    }
    lateness(&mut out, st);
    if let Some(a) = &st.anycast {
        anycast(&mut out, a);
    }
    out
}

/// `[anycast]`: announced or not, transitions, and each VIP on the interface.
fn anycast(out: &mut String, a: &super::status::AnycastStatus) {
    family(
        out,
        "vrrp_anycast_announced",
        "gauge",
        "1 while this balancer announces the anycast VIPs.",
    );
    let _ = writeln!(
        out,
        "vrrp_anycast_announced{{interface=\"{}\"}} {}",
        a.interface,
        u8::from(a.state == "ANNOUNCED")
    );
    family(
        out,
        "vrrp_anycast_transitions_total",
        "counter",
        "Announcements and withdrawals since start.",
    );
    let _ = writeln!(
        out,
        "vrrp_anycast_transitions_total{{interface=\"{}\"}} {}",
        a.interface, a.transitions
    );
    family(
        out,
        "vrrp_anycast_vip_on_interface",
        "gauge",
        "1 when the anycast VIP is on the interface (and so exported by BIRD).",
    );
    for v in &a.vips {
        let _ = writeln!(
            out,
            "vrrp_anycast_vip_on_interface{{interface=\"{}\",vip=\"{}\"}} {}",
            a.interface,
            v.address,
            u8::from(v.on_interface)
        );
    }
}

/// The advert lateness histogram (cumulative buckets, seconds).
fn lateness(out: &mut String, st: &Status) {
    let name = "vrrp_advert_lateness_seconds";
    family(
        out,
        name,
        "histogram",
        "How late adverts left after their Adver_Timer.",
    );
    for i in &st.instance {
        let l = &i.advert_lateness;
        let mut cumulative = 0;
        for (k, bound) in l.bounds_us.iter().enumerate() {
            cumulative += l.counts.get(k).copied().unwrap_or(0);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{instance=\"{}\",le=\"{le}\"}} {cumulative}",
                i.name
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{instance=\"{}\",le=\"+Inf\"}} {}",
            i.name, l.count
        );
        let _ = writeln!(
            out,
            "{name}_sum{{instance=\"{}\"}} {}",
            i.name,
            l.sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{instance=\"{}\"}} {}", i.name, l.count);
    }
}
