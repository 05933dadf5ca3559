//! Operations: --check, access log, admin endpoints, SIGHUP reload, SIGQUIT drain, SIGTERM.

mod common;

use common::{Backend, Client, Proxy, Reply};
use std::process::{Command, Stdio};
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

/// A QUIT that arrives while the proxy is still starting (here: blocked opening its config, a
/// FIFO nobody writes yet) is a graceful stop once it is up, not death by the signal's default
/// action (systemd would mark the unit failed after a `systemctl stop` right after a start).
#[test]
fn sigquit_while_starting_is_a_graceful_stop() {
    let backend = Backend::page("ok");
    let dir = common::temp_dir("proxy");
    let fifo = dir.join("proxy.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let (port, admin) = (common::free_port(), common::free_port());
    let log = dir.join("access.log");
    let text = common::config_text(
        port,
        admin,
        &format!("client_body_temp_path = \"{}\"", dir.join("tmp").display()),
        &common::servers(&[&backend]),
        "",
        &log.display().to_string(),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("--config")
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start proxy");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
        != "wait_for_partner"
    {
        assert!(Instant::now() < deadline, "proxy never opened its config");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on the child we started and have not reaped.
    unsafe {
        libc::kill(pid as i32, libc::SIGQUIT);
    }
    std::fs::write(&fifo, text).expect("write the config");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("proxy did not stop after a QUIT received while starting");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// TERM is the fast stop: an in-flight request is cut, and the proxy exits by itself with
/// status 0 (the default action of TERM, were it not handled, would end it by the signal).
/// QUIT, above, finishes the same kind of request instead.
#[test]
fn sigterm_stops_fast_and_cuts_in_flight_requests() {
    let slow = Backend::start(|_| {
        std::thread::sleep(Duration::from_secs(3));
        Reply::text("too late")
    });
    let mut p = Proxy::with_backends(&[&slow], "", "");
    let mut busy = p.client();
    busy.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    p.signal(libc::SIGTERM);
    let st = p.wait_exit(Duration::from_secs(2)).expect("exits fast");
    assert!(
        st.success(),
        "TERM is handled: exit status 0, not death by signal ({st:?})"
    );
    assert!(
        busy.try_response(false).is_err(),
        "the in-flight request is cut"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

/// USR1 reopens the access log (logrotate's postrotate): after a rename and the signal, new
/// lines land in the new file, and every request is logged exactly once across the two.
#[test]
fn usr1_reopens_the_access_log_and_loses_no_line() {
    let b = Backend::page("x");
    let p = Proxy::with_backends(&[&b], "", "");
    let log = p.dir.join("access.log");
    let rotated = p.dir.join("access.log.1");
    let lines = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    let wait_for = |path: &std::path::Path, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(3);
        while !lines(path).contains(needle) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for i in 0..5 {
        assert_eq!(p.get(&format!("/before/{i}")).status, 200);
    }
    wait_for(&log, "/before/4");
    std::fs::rename(&log, &rotated).unwrap();
    for i in 0..5 {
        assert_eq!(p.get(&format!("/between/{i}")).status, 200);
    }
    p.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        assert_eq!(p.get(&format!("/after/{i}")).status, 200);
    }
    wait_for(&log, "/after/4");
    let (old, new) = (lines(&rotated), lines(&log));
    for phase in ["before", "between", "after"] {
        for i in 0..5 {
            let needle = format!("GET /{phase}/{i} ");
            let n = old.matches(&needle).count() + new.matches(&needle).count();
            assert_eq!(n, 1, "{needle} logged {n} times\nold:\n{old}\nnew:\n{new}");
        }
    }
    assert!(old.contains("/before/4") && !new.contains("/before/"));
    assert!(new.contains("/after/0") && !old.contains("/after/"));
}

/// A test-only hook (PROXY_TEST_PANIC_TARGET) panics the connection task of a request to that
/// target: that connection is dropped and the panic logged, the worker and its other
/// connections go on.
#[test]
fn a_panicking_connection_task_takes_only_its_connection() {
    let b = Backend::page("alive");
    let dir = common::temp_dir("panic");
    let (port, admin) = (common::free_port(), common::free_port());
    let text = common::config_text(port, admin, "", &common::servers(&[&b]), "", "off");
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("--config")
        .arg(&path)
        .env("PROXY_TEST_PANIC_TARGET", "/__panic")
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let p = Proxy::adopt(child, dir, port, admin, path);
    let mut other = p.client();
    other.send("GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(other.response().text(), "alive");
    let mut victim = p.client();
    victim.send("GET /__panic HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        victim.try_response(false).is_err(),
        "the panicking connection is dropped"
    );
    other.send("GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        other.response().text(),
        "alive",
        "another connection survives"
    );
    assert_eq!(p.get("/c").text(), "alive");
    assert_eq!(p.admin_get("/healthz").status, 200);
    let err = p.stderr();
    assert!(err.contains("connection task panicked"), "{err}");
    assert!(!err.contains("worker thread died"), "{err}");
}
