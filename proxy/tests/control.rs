//! Server state shared by all workers: round robin across workers, runtime control through
//! the admin API (drain, maint, weight, token), the state file, active health checks and
//! `proxy ctl`. Real proxy processes and real backend sockets on loopback.

mod common;

use common::{Backend, Proxy};

/// A proxy with `workers` workers in front of `backends`, plus extra top-level and upstream
/// settings.
fn proxy(workers: usize, backends: &[&Backend], top: &str, upstream_extra: &str) -> Proxy {
    let dir = common::temp_dir("control");
    let port = common::free_port();
    let admin = common::free_port();
    let log = dir.join("access.log");
    let upstream = format!("{}\n{upstream_extra}", common::servers(backends));
    let top = format!(
        "client_body_temp_path = \"{}\"\n{top}",
        dir.join("body").display()
    );
    let text = common::config_text(port, admin, &top, &upstream, "", &log.display().to_string())
        .replace("workers = 1\n", &format!("workers = {workers}\n"));
    let config_path = dir.join("proxy.toml");
    std::fs::write(&config_path, text).unwrap();
    Proxy::spawn(config_path, dir, port, admin, &[])
}

/// The bodies of `n` requests, each on its own connection (like a curl loop).
fn bodies(p: &Proxy, n: usize) -> Vec<String> {
    (0..n).map(|_| p.get("/").text()).collect()
}

#[test]
fn round_robin_alternates_strictly_across_workers() {
    let a = Backend::page("NODE01");
    let b = Backend::page("NODE02");
    let p = proxy(2, &[&a, &b], "", "");
    let got = bodies(&p, 40);
    for pair in got.windows(2) {
        assert_ne!(pair[0], pair[1], "two in a row from one server: {got:?}");
    }
    // Both workers picked (else the test would prove nothing about sharing): the per-worker
    // request counters, published by each worker about every 200 ms.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let m = p.admin_get("/metrics").text();
    for w in 0..2 {
        let label = format!("worker=\"{w}\"");
        let n: u64 = m
            .lines()
            .filter(|l| {
                l.starts_with("proxy_upstream_server_requests_total{") && l.contains(&label)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(n > 0, "worker {w} served nothing:\n{m}");
    }
}

const TOKEN: &str = "test-token-0123456789";

/// A token file readable by its owner only, in the proxy's test directory.
fn token_file(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("admin.token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A proxy with an admin token and a state file in its own directory.
fn controlled(workers: usize, backends: &[&Backend], upstream_extra: &str) -> Proxy {
    let dir = common::temp_dir("ctl-files");
    let token = token_file(&dir);
    let top = format!(
        "admin_token_file = \"{}\"\nstate_file = \"{}\"\n",
        token.display(),
        dir.join("server-state").display()
    );
    proxy(workers, backends, &top, upstream_extra)
}

/// POST to the admin listener with an optional bearer token.
fn post(p: &Proxy, path: &str, token: Option<&str>, body: &str) -> common::Response {
    let mut c = common::Client::connect(p.admin);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    c.send(&format!(
        "POST {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    c.response()
}

fn set(p: &Proxy, b: &Backend, body: &str) -> common::Response {
    post(
        p,
        &format!("/api/upstreams/u/servers/{}", b.addr),
        Some(TOKEN),
        body,
    )
}

/// Workers apply shared state at their next tick (50 ms).
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(150));
}

fn server_json(p: &Proxy, b: &Backend) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_slice(&p.admin_get("/api/upstreams").body).unwrap();
    all["upstreams"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["resolved"] == b.addr.to_string())
        .cloned()
        .expect("server in /api/upstreams")
}

/// A backend answering its name, after `slow` for /slow.
fn named(name: &'static str, slow: std::time::Duration) -> Backend {
    Backend::start(move |r| {
        if r.target == "/slow" {
            std::thread::sleep(slow);
        }
        common::Reply::text(name)
    })
}

#[test]
fn drain_stops_new_requests_while_the_in_flight_one_finishes() {
    use std::time::Duration;
    let a = named("A", Duration::from_millis(1500));
    let b = named("B", Duration::from_millis(1500));
    let p = controlled(2, &[&a, &b], "");
    let addr = p.addr;
    let slow = std::thread::spawn(move || {
        let mut c = common::Client::connect(addr);
        c.send("GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        c.response()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while a.count() + b.count() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (busy, busy_name, other_name) = if a.count() > 0 {
        (&a, "A", "B")
    } else {
        (&b, "B", "A")
    };
    let r = set(&p, busy, r#"{"state": "drain"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let js: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(js["admin_state"], "drain");
    assert_eq!(js["state"], "drain");
    settle();
    let before = busy.count();
    for got in bodies(&p, 10) {
        assert_eq!(got, other_name, "a drained server got a new request");
    }
    assert_eq!(busy.count(), before);
    // The in-flight request on the drained server completes normally.
    let done = slow.join().unwrap();
    assert_eq!((done.status, done.text()), (200, busy_name.to_string()));
    // ready: back in the rotation.
    assert_eq!(set(&p, busy, r#"{"state": "ready"}"#).status, 200);
    settle();
    let got = bodies(&p, 4);
    assert!(got.contains(&busy_name.to_string()), "{got:?}");
}

#[test]
fn maint_takes_a_server_out_and_weight_changes_the_share() {
    let a = Backend::page("A");
    let b = Backend::page("B");
    let p = controlled(1, &[&a, &b], "");
    assert_eq!(set(&p, &a, r#"{"state": "maint"}"#).status, 200);
    settle();
    assert!(bodies(&p, 6).iter().all(|g| g == "B"));
    let js = server_json(&p, &a);
    assert_eq!(
        (js["state"].as_str(), js["admin_state"].as_str()),
        (Some("maint"), Some("maint"))
    );
    let r = set(&p, &a, r#"{"state": "ready", "weight": 3}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    settle();
    // nginx's smooth WRR for {3, 1}: A A B A, repeating.
    let got = bodies(&p, 8).join(" ");
    assert_eq!(got.matches('A').count(), 6, "{got}");
    let js = server_json(&p, &a);
    assert_eq!(
        (js["weight"].as_u64(), js["configured_weight"].as_u64()),
        (Some(3), Some(1))
    );
}

#[test]
fn mutations_need_the_token_and_bad_requests_get_a_message() {
    let a = Backend::page("A");
    let p = controlled(1, &[&a], "");
    let path = format!("/api/upstreams/u/servers/{}", a.addr);
    let r = post(&p, &path, None, r#"{"state": "drain"}"#);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(
        post(&p, &path, Some("wrong"), r#"{"state": "drain"}"#).status,
        403
    );
    for (body, needle) in [
        ("{not json", "JSON"),
        (r#"{"state": "sleeping"}"#, "sleeping"),
        (r#"{"weight": 0}"#, "weight"),
        (r#"{"colour": "red"}"#, "colour"),
        ("{}", "nothing to change"),
        ("", "JSON"),
    ] {
        let r = post(&p, &path, Some(TOKEN), body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(needle), "{body}: {}", r.text());
    }
    let r = post(
        &p,
        "/api/upstreams/nope/servers/1.2.3.4:80",
        Some(TOKEN),
        r#"{"state":"drain"}"#,
    );
    assert_eq!(r.status, 404);
    assert!(r.text().contains("nope"));
    assert_eq!(p.admin_get(&path).status, 405);
    // Nothing changed, and the proxy is still serving.
    assert_eq!(server_json(&p, &a)["admin_state"], "ready");
    assert_eq!(p.get("/").status, 200);
}

#[test]
fn a_group_readable_token_file_is_refused_with_its_name() {
    use std::os::unix::fs::PermissionsExt;
    let a = Backend::page("A");
    let p = controlled(1, &[&a], "");
    let config = std::fs::read_to_string(&p.config_path).unwrap();
    let token_path = config
        .lines()
        .find_map(|l| l.strip_prefix("admin_token_file = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .unwrap();
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = set(&p, &a, r#"{"state": "drain"}"#);
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains(&token_path) && r.text().contains("644"),
        "{}",
        r.text()
    );
}

#[test]
fn state_survives_reload_and_restart() {
    let a = Backend::page("A");
    let b = Backend::page("B");
    let mut p = controlled(2, &[&a, &b], "");
    assert_eq!(set(&p, &a, r#"{"state": "maint"}"#).status, 200);
    assert_eq!(set(&p, &b, r#"{"weight": 2}"#).status, 200);
    // SIGHUP with a changed config (a new timeout): the states stay.
    let text = std::fs::read_to_string(&p.config_path).unwrap();
    std::fs::write(
        &p.config_path,
        text.replace("[upstream.u]\n", "[upstream.u]\nread_timeout = \"30s\"\n"),
    )
    .unwrap();
    p.signal(nix::sys::signal::Signal::SIGHUP as i32);
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(bodies(&p, 6).iter().all(|g| g == "B"));
    assert_eq!(server_json(&p, &a)["admin_state"], "maint");
    // A restart reads the state file.
    let _ = p.child.kill();
    let _ = p.child.wait();
    let port = p.addr.port();
    let q = Proxy::spawn(
        p.config_path.clone(),
        p.dir.clone(),
        port,
        p.admin.port(),
        &[],
    );
    assert!(bodies(&q, 6).iter().all(|g| g == "B"));
    assert_eq!(server_json(&q, &a)["admin_state"], "maint");
    assert_eq!(server_json(&q, &b)["weight"], 2);
    std::mem::forget(p);
}

mod checks {
    use super::*;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const OK: u8 = 0;
    const ERROR_500: u8 = 1;
    const HANG: u8 = 2;
    const CLOSE: u8 = 3;

    /// A backend whose /health answers as `mode` says; everything else gets its name.
    fn switchable(name: &'static str, mode: Arc<AtomicU8>) -> Backend {
        Backend::start(move |r| {
            if r.target != "/health" {
                return common::Reply::text(name);
            }
            match mode.load(Ordering::Relaxed) {
                OK => common::Reply::text("ok"),
                ERROR_500 => common::Reply::Full {
                    status: 500,
                    headers: vec![],
                    body: b"broken".to_vec(),
                    chunked: false,
                    close: false,
                },
                HANG => common::Reply::Hang,
                _ => common::Reply::Drop,
            }
        })
    }

    const CHECK: &str = "health_check = { uri = \"/health\", interval = \"200ms\", timeout = \"300ms\", fall = 2, rise = 2 }";

    /// Wait until `b`'s health is `want`; returns its server object.
    fn wait_health(p: &Proxy, b: &Backend, want: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = server_json(p, b);
            if s["health"] == want {
                return s;
            }
            assert!(Instant::now() < deadline, "health never became {want}: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn traffic(b: &Backend) -> usize {
        b.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target != "/health")
            .count()
    }

    #[test]
    fn a_server_failing_checks_gets_no_traffic_until_it_passes_again() {
        let mode = Arc::new(AtomicU8::new(OK));
        let a = switchable("A", Arc::new(AtomicU8::new(OK)));
        let b = switchable("B", mode.clone());
        let p = proxy(2, &[&a, &b], "", CHECK);
        wait_health(&p, &b, "up");
        for (bad, result) in [
            (ERROR_500, "500"),
            (HANG, "timeout"),
            (CLOSE, "closed without a response"),
        ] {
            mode.store(bad, Ordering::Relaxed);
            let s = wait_health(&p, &b, "down");
            assert_eq!(s["state"], "down");
            assert_eq!(s["last_check"]["result"], result, "{s}");
            assert_eq!(s["last_check"]["passed"], false);
            settle();
            let before = traffic(&b);
            assert!(bodies(&p, 8).iter().all(|g| g == "A"));
            assert_eq!(traffic(&b), before, "a server failing checks got traffic");
            mode.store(OK, Ordering::Relaxed);
            let s = wait_health(&p, &b, "up");
            assert_eq!(s["last_check"]["result"], "200");
            settle();
            let got = bodies(&p, 4);
            assert!(got.contains(&"B".to_string()), "{got:?}");
        }
        let m = p.admin_get("/metrics").text();
        let line = format!(
            "proxy_upstream_server_health_changes_total{{upstream=\"u\",server=\"{}\",to=\"down\"}} 3",
            b.addr
        );
        assert!(m.contains(&line), "{line}\n{m}");
    }

    #[test]
    fn nothing_listening_is_down_and_one_checker_serves_all_workers() {
        let a = switchable("A", Arc::new(AtomicU8::new(OK)));
        let dead = common::free_port();
        let upstream = format!(
            "servers = [{{ address = \"{}\" }}, {{ address = \"127.0.0.1:{dead}\" }}]\n{CHECK}",
            a.addr
        );
        let dir = common::temp_dir("dead");
        let port = common::free_port();
        let admin = common::free_port();
        let top = format!("client_body_temp_path = \"{}\"", dir.join("b").display());
        let text = common::config_text(port, admin, &top, &upstream, "", "off")
            .replace("workers = 1\n", "workers = 2\n");
        std::fs::write(dir.join("proxy.toml"), text).unwrap();
        let p = Proxy::spawn(dir.join("proxy.toml"), dir, port, admin, &[]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let dead_state = loop {
            let all: serde_json::Value =
                serde_json::from_slice(&p.admin_get("/api/upstreams").body).unwrap();
            let s = all["upstreams"][0]["servers"][1].clone();
            if s["health"] == "down" || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(dead_state["health"], "down", "{dead_state}");
        assert_eq!(dead_state["last_check"]["result"], "connection refused");
        // Every request reaches A (none fails over from the dead one: it gets no traffic).
        assert!(bodies(&p, 6).iter().all(|g| g == "A"));
        // One checker for the process: 2 workers, a check every 200 ms, so about 5 a second,
        // not 10 (measured 5-6; bound 8).
        let n0 = a.count() - traffic(&a);
        std::thread::sleep(Duration::from_secs(1));
        let checks = a.count() - traffic(&a) - n0;
        assert!((3..=8).contains(&checks), "{checks} checks in 1 s");
    }

    #[test]
    fn passive_max_fails_still_applies_to_a_server_passing_its_checks() {
        // B passes /health but drops real requests: the passive accounting takes it out.
        let a = switchable("A", Arc::new(AtomicU8::new(OK)));
        let b = Backend::start(|r| {
            if r.target == "/health" {
                common::Reply::text("ok")
            } else {
                common::Reply::Drop
            }
        });
        let p = proxy(1, &[&a, &b], "", CHECK);
        wait_health(&p, &b, "up");
        assert!(bodies(&p, 6).iter().all(|g| g == "A"));
        std::thread::sleep(Duration::from_millis(300));
        let s = server_json(&p, &b);
        assert_eq!(
            (s["health"].as_str(), s["state"].as_str()),
            (Some("up"), Some("down")),
            "{s}"
        );
        assert!(s["fails"].as_u64() >= Some(1), "{s}");
        assert_eq!(traffic(&b), 1, "one try, then out for fail_timeout");
    }
}

fn ctl(p: &Proxy, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("ctl")
        .arg("--config")
        .arg(&p.config_path)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn proxy_ctl_finds_the_admin_listener_and_token_from_the_config() {
    let a = Backend::page("A");
    let b = Backend::page("B");
    let p = controlled(2, &[&a, &b], "");
    let addr = a.addr.to_string();
    let out = ctl(&p, &["drain", "u", &addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("u {addr}: drain (weight 1)\n")
    );
    settle();
    assert!(bodies(&p, 4).iter().all(|g| g == "B"));
    let show = ctl(&p, &["show"]);
    let table = String::from_utf8_lossy(&show.stdout);
    let line = table
        .lines()
        .find(|l| l.contains(&addr))
        .expect("server row");
    assert!(line.contains("drain"), "{table}");
    let out = ctl(&p, &["ready", "u", &addr, "--weight", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server_json(&p, &a)["weight"], 2);
    // Errors: exit 1 and the API's message.
    let out = ctl(&p, &["maint", "u", "10.9.9.9:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no server \"10.9.9.9:1\""));
}

#[test]
fn slow_start_after_maintenance_ramps_the_share_up() {
    use std::time::Duration;
    let a = Backend::page("A");
    let b = Backend::page("B");
    let dir = common::temp_dir("slow");
    let token = token_file(&dir);
    let upstream = format!(
        "servers = [{{ address = \"{}\" }}, {{ address = \"{}\", slow_start = \"2s\" }}]",
        a.addr, b.addr
    );
    let port = common::free_port();
    let admin = common::free_port();
    let top = format!(
        "client_body_temp_path = \"{}\"\nadmin_token_file = \"{}\"",
        dir.join("b").display(),
        token.display()
    );
    let text = common::config_text(port, admin, &top, &upstream, "", "off");
    std::fs::write(dir.join("proxy.toml"), text).unwrap();
    let p = Proxy::spawn(dir.join("proxy.toml"), dir, port, admin, &[]);
    assert_eq!(set(&p, &b, r#"{"state": "maint"}"#).status, 200);
    settle();
    assert_eq!(set(&p, &b, r#"{"state": "ready"}"#).status, 200);
    settle();
    // Early in the ramp (< 15% of 2 s) B weighs under 0.15 against A's 1.
    let early = bodies(&p, 10);
    let b_early = early.iter().filter(|g| *g == "B").count();
    assert!(b_early <= 2, "{early:?}");
    assert_eq!(server_json(&p, &b)["state"], "slow_start");
    std::thread::sleep(Duration::from_millis(2000));
    // After the ramp: nginx's alternation.
    let late = bodies(&p, 6);
    assert_eq!(late.iter().filter(|g| *g == "B").count(), 3, "{late:?}");
    assert_eq!(server_json(&p, &b)["state"], "up");
}

#[test]
fn a_foreign_state_file_is_a_warning_not_a_failure() {
    let a = Backend::page("A");
    let dir = common::temp_dir("foreign");
    let state = dir.join("server-state");
    std::fs::write(&state, "# haproxy server-state\n1\n").unwrap();
    let top = format!("state_file = \"{}\"", state.display());
    let p = proxy(1, &[&a], &top, "");
    assert_eq!(p.get("/").text(), "A");
    let err = p.stderr();
    assert!(
        err.contains(&state.display().to_string()) && err.contains("WARN"),
        "{err}"
    );
    assert_eq!(server_json(&p, &a)["admin_state"], "ready");
}

/// A request queued behind `max_conns` is served as soon as a server comes back from
/// maintenance, not only when a busy server finishes a request.
#[test]
fn a_server_made_ready_serves_the_queue_at_once() {
    use std::time::{Duration, Instant};
    let a = named("A", Duration::from_secs(3));
    let b = named("B", Duration::from_secs(3));
    let dir = common::temp_dir("queue-ready");
    let token = token_file(&dir);
    let (port, admin) = (common::free_port(), common::free_port());
    let top = format!(
        "client_body_temp_path = \"{}\"\nadmin_token_file = \"{}\"\nstate_file = \"{}\"",
        dir.join("body").display(),
        token.display(),
        dir.join("server-state").display()
    );
    let upstream = format!(
        "servers = [{{ address = \"{}\", max_conns = 1 }}, {{ address = \"{}\", max_conns = 1 }}]\nqueue = 10",
        a.addr, b.addr
    );
    let log = dir.join("access.log");
    let text = common::config_text(port, admin, &top, &upstream, "", &log.display().to_string());
    let config_path = dir.join("proxy.toml");
    std::fs::write(&config_path, text).unwrap();
    let p = Proxy::spawn(config_path, dir, port, admin, &[]);

    assert_eq!(set(&p, &a, r#"{"state": "maint"}"#).status, 200);
    settle();
    // B is busy for 3 s with /slow; the next request finds A in maintenance and B full.
    let mut slow = p.client();
    slow.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let mut queued = p.client();
    let t = Instant::now();
    queued.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(set(&p, &a, r#"{"state": "ready"}"#).status, 200);
    let r = queued.response();
    let took = t.elapsed();
    eprintln!("queued request answered after {took:?}");
    assert_eq!((r.status, r.text()), (200, "A".to_string()));
    // Ready at +300 ms, applied at the next 50 ms tick: measured 348-350 ms (2.8 s before the
    // wake-up existed: it waited for B's 3 s request); bound: + ~1.1 s for a busy CI.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(slow.response().status, 200);
}
