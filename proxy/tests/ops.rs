//! Operations: --check, access log, admin endpoints, SIGHUP reload, SIGQUIT drain, SIGTERM.

mod common;

use common::{Backend, Client, Proxy, Reply};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn check_accepts_the_deploy_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(["--check", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/proxy.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("test is successful"));
}

#[test]
fn check_reports_every_error_with_file_and_line() {
    let dir = common::temp_dir("check");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "workers = 1\n\
         [upstream.a]\n\
         servers = [{ address = \"127.0.0.1:1\", wieght = 2 }]\n\
         read_timeout = \"5 parsecs\"\n\
         [[server]]\n\
         listen = [\"127.0.0.1:8080\"]\n\
         [[server.location]]\n\
         path = \"/\"\n\
         proxy_pass = \"nowhere\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!("{file}:3:")),
        "unknown key on line 3:\n{err}"
    );
    assert!(
        err.contains(&format!("{file}:4:")),
        "bad duration on line 4:\n{err}"
    );
    assert!(
        err.contains(&format!("{file}:9:")),
        "undefined upstream on line 9:\n{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn access_log_in_nginx_main_format() {
    let b = Backend::page("logged");
    let p = Proxy::with_backends(&[&b], "", "");
    let mut c = p.client();
    c.send(
        "GET /log?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: curl/7.88.1\r\nReferer: http://r/\r\n\r\n",
    );
    assert_eq!(c.response().status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut log = String::new();
    while Instant::now() < deadline && !log.contains("/log") {
        std::thread::sleep(Duration::from_millis(50));
        log = p.access_log();
    }
    let line = log.lines().find(|l| l.contains("/log")).expect("log line");
    let re_ok = line.starts_with("127.0.0.1 - - [")
        && line.contains("] \"GET /log?x=1 HTTP/1.1\" 200 6 \"http://r/\" \"curl/7.88.1\" \"-\"");
    assert!(re_ok, "{line}");
}

#[test]
fn healthz_and_metrics() {
    let b = Backend::page("m");
    let p = Proxy::with_backends(&[&b], "", "");
    for _ in 0..3 {
        assert_eq!(p.get("/").status, 200);
    }
    assert_eq!(p.get("/").status, 200);
    let h = p.admin_get("/healthz");
    assert_eq!(h.status, 200);
    // Workers publish their peers' state a few times a second.
    std::thread::sleep(Duration::from_millis(400));
    let m = p.admin_get("/metrics").text();
    assert!(m.contains("proxy_requests_total{status=\"200\"} 4"), "{m}");
    assert!(m.contains("proxy_up 1"), "{m}");
    assert!(m.contains(&format!("server=\"{}\"", b.addr)), "{m}");
    assert!(m.contains("proxy_sent_bytes_total"), "{m}");
    assert!(m.contains("proxy_active_connections"), "{m}");
}

#[test]
fn sighup_reload_switches_upstreams_and_keeps_connections() {
    let old = Backend::page("old");
    let new = Backend::page("new");
    let p = Proxy::with_backends(&[&old], "", "");
    let mut kept = p.client();
    kept.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(kept.response().text(), "old");

    // A broken config is refused and the old one keeps serving.
    let good_text = std::fs::read_to_string(&p.config_path).unwrap();
    std::fs::write(&p.config_path, "workers = [broken\n").unwrap();
    p.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(p.get("/").text(), "old");
    assert!(p.stderr().contains("reload refused"), "{}", p.stderr());

    // A good one applies to new requests, also on the established connection.
    std::fs::write(
        &p.config_path,
        good_text.replace(&old.addr.to_string(), &new.addr.to_string()),
    )
    .unwrap();
    p.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.get("/").text() != "new" {
        assert!(Instant::now() < deadline, "reload did not apply");
        std::thread::sleep(Duration::from_millis(50));
    }
    kept.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(kept.response().text(), "new");
}

#[test]
fn sighup_under_load_fails_no_request() {
    let a = Backend::page("a");
    let b = Backend::page("b");
    let p = Proxy::with_backends(&[&a, &b], "", "");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..4 {
        let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), p.addr);
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                n += 1;
                // Half the clients keep connections open across reloads, half reconnect.
                let mut c = Client::connect(addr);
                for _ in 0..if t % 2 == 0 { 50 } else { 1 } {
                    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                    match c.try_response(false) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        }));
    }
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        p.signal(libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too few requests: {}",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}

#[test]
fn sigquit_finishes_in_flight_requests_then_exits() {
    let slow = Backend::start(|_| {
        std::thread::sleep(Duration::from_millis(800));
        Reply::text("finished")
    });
    let mut p = Proxy::with_backends(&[&slow], "", "");
    let mut idle = p.client();
    idle.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.response().text(), "finished");
    let mut busy = p.client();
    busy.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    p.signal(libc::SIGQUIT);
    let r = busy.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "finished");
    assert!(
        idle.closed_within(Duration::from_secs(3)),
        "idle keep-alive connection closed on drain"
    );
    let st = p
        .wait_exit(Duration::from_secs(5))
        .expect("proxy exits after draining");
    assert!(st.success());
}

#[test]
fn sigterm_stops_fast() {
    let b = Backend::page("x");
    let mut p = Proxy::with_backends(&[&b], "", "");
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(2)).is_some());
}
