//! deploy/proxy.service and deploy/vrrp.service proven on lab hosts that boot a real systemd:
//! start/stop/restart/reload, a refused bad config, least privilege, Restart=on-failure with
//! the VIP coming back by preemption, the exposure scores, and a balancer reboot. Needs root;
//! one lab with its own id and state directory, removed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use e2e::{inventory, TestLab};

/// `systemctl ARGS` (or any command) inside `host`: (success, stdout trimmed).
fn exec(lab: &TestLab, host: &str, cmd: &[&str]) -> (bool, String) {
    let out = lab
        .cmd()
        .args(["exec", host, "--"])
        .args(cmd)
        .output()
        .expect("lab exec");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn show(lab: &TestLab, host: &str, unit: &str, prop: &str) -> String {
    exec(
        lab,
        host,
        &["systemctl", "show", "-p", prop, "--value", unit],
    )
    .1
}

fn main_pid(lab: &TestLab, host: &str, unit: &str) -> u32 {
    show(lab, host, unit, "MainPID").parse().unwrap_or(0)
}

/// A field of /proc/PID/status inside the host ("Uid", "CapEff", ...).
fn status_field(lab: &TestLab, host: &str, pid: u32, field: &str) -> String {
    let (_, text) = exec(lab, host, &["cat", &format!("/proc/{pid}/status")]);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap_or(u64::MAX)
}

/// Moves the calling thread into the lab's client network namespace (the only place the
/// lab's addresses are reachable from).
fn enter_client(path: &str) {
    let ns = std::fs::File::open(path).expect("client netns");
    nix::sched::setns(ns.as_raw_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// One GET on an open keep-alive connection; the response's status code.
fn get_on(conn: &mut TcpStream) -> u16 {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // Apache's pages are small: the head plus Content-Length bytes arrive at once or nearly.
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body_start = head.find("\r\n\r\n").map_or(0, |i| i + 4);
    let mut have = got.len() - body_start;
    while have < len {
        let n = conn.read(&mut buf).expect("read body");
        assert!(n > 0);
        have += n;
    }
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Polls http://VIP/ from the client every 20 ms for `dur`; returns the longest time without
/// a successful answer and the time of the first failure (from the start).
fn outage_from_client(
    lab: &TestLab,
    vip: &'static str,
    dur: Duration,
    act: impl FnOnce(),
) -> (Duration, bool) {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/run/netns/{}-client", lab.id);
    let poller = std::thread::spawn(move || {
        enter_client(&path);
        let start = Instant::now();
        let mut last_ok = Instant::now();
        let mut longest = Duration::ZERO;
        let mut any_fail = false;
        let _ = tx.send(());
        while start.elapsed() < dur {
            let ok = TcpStream::connect_timeout(
                &format!("{vip}:80").parse().expect("addr"),
                Duration::from_millis(300),
            )
            .ok()
            .and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
                c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
                let mut b = Vec::new();
                c.read_to_end(&mut b).ok()?;
                b.starts_with(b"HTTP/1.1 200").then_some(())
            })
            .is_some();
            if ok {
                longest = longest.max(last_ok.elapsed());
                last_ok = Instant::now();
            } else {
                any_fail = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        longest = longest.max(last_ok.elapsed());
        (longest, any_fail)
    });
    rx.recv().expect("poller started");
    std::thread::sleep(Duration::from_millis(300));
    act();
    poller.join().expect("poller")
}

fn vip_holder(lab: &TestLab) -> String {
    let out = lab.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("VIP 172.16.249.80   held by "))
        .unwrap_or("?")
        .to_string()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_NET_ADMIN: u64 = 1 << 12;
/// vrrp's `realtime = true`: SCHED_RR for the advert thread, its memory locked.
const CAP_SYS_NICE: u64 = 1 << 23;
const CAP_IPC_LOCK: u64 = 1 << 14;
const CAP_NET_RAW: u64 = 1 << 13;

#[test]
fn units_on_systemd_hosts() {
    let lab = TestLab::new("u");
    let out = lab.run(&[
        "up",
        "--init",
        "systemd",
        inventory().to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "lab up");
    let pids = lab.processes();

    least_privilege(&lab);
    reload_keeps_connections(&lab);
    bad_config_is_refused(&lab);
    stop_and_restart(&lab);
    kill_9_restarts_and_preempts(&lab);
    security_scores(&lab);
    reboot_rejoins(&lab);
    reboot_after_a_crash(&lab);

    assert!(lab.run(&["down"]).status.success());
    lab.assert_gone(&pids);
}

/// The proxy: a dynamic (unprivileged) user with CAP_NET_BIND_SERVICE only, writing nowhere
/// but its log directory; vrrp: root with CAP_NET_ADMIN and CAP_NET_RAW, plus CAP_SYS_NICE and
/// CAP_IPC_LOCK for its realtime advert thread.
fn least_privilege(lab: &TestLab) {
    assert_eq!(show(lab, "server1", "proxy", "DynamicUser"), "yes");
    // The system call filter leaves io_uring to the proxy.
    let (_, journal) = exec(
        lab,
        "server1",
        &["journalctl", "-u", "proxy", "-b", "--no-pager"],
    );
    assert!(journal.contains("engine=\"io_uring\""), "{journal}");
    assert_eq!(
        show(lab, "server1", "proxy", "AmbientCapabilities"),
        "cap_net_bind_service"
    );
    assert_eq!(
        show(lab, "server1", "proxy", "CapabilityBoundingSet"),
        "cap_net_bind_service"
    );
    let pid = main_pid(lab, "server1", "proxy");
    assert!(pid > 0);
    let uid = status_field(lab, "server1", pid, "Uid");
    let uid: u32 = uid
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    // systemd's dynamic range, not root and not a static account such as Debian's "proxy".
    assert!((61184..=65519).contains(&uid), "uid {uid}");
    assert_eq!(show(lab, "server1", "proxy", "User"), "proxyd");
    for f in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(
            hex(&status_field(lab, "server1", pid, f)),
            CAP_NET_BIND_SERVICE,
            "proxy {f}"
        );
    }
    // As the proxy sees the file system (its mount namespace, its user): only the log and
    // state directories are writable.
    let as_proxy = |script: &str| {
        let (pid, uid) = (pid.to_string(), uid.to_string());
        let cmd = ["nsenter", "-t", &pid, "-m", "-S", &uid, "-G", &uid, "--"];
        let mut args = cmd.to_vec();
        args.extend(["sh", "-c", script]);
        exec(lab, "server1", &args).0
    };
    let writes = |path: &str| as_proxy(&format!("echo x > {path} && rm {path}"));
    assert!(
        writes("/var/log/proxy/probe"),
        "its log directory is writable"
    );
    assert!(
        writes("/var/lib/proxy/probe"),
        "its state directory (state_file) is writable"
    );
    // The admin token: root's file stays unreadable to it, systemd's copy (LoadCredential=)
    // is readable, and it is the same token.
    assert!(!as_proxy("cat /etc/proxy/admin.token"), "root's token file");
    assert!(
        as_proxy("test -s /run/credentials/proxy.service/admin.token && cat /run/credentials/proxy.service/admin.token >/dev/null"),
        "the token credential"
    );
    for p in [
        "/etc/proxy/probe",
        "/usr/local/bin/probe",
        "/var/lib/probe",
        "/root/probe",
        "/run/probe",
    ] {
        assert!(!writes(p), "the proxy could write {p}");
    }
    // PrivateTmp: its /tmp and /var/tmp (body buffers) are its own, not the host's.
    assert!(
        as_proxy("echo x > /var/tmp/lab-probe"),
        "its private /var/tmp is writable"
    );
    assert!(
        !exec(lab, "server1", &["test", "-e", "/var/tmp/lab-probe"]).0,
        "the proxy's /var/tmp is not the host's"
    );
    let vpid = main_pid(lab, "server1", "vrrp");
    assert_eq!(
        status_field(lab, "server1", vpid, "Uid")
            .split_whitespace()
            .next(),
        Some("0")
    );
    for f in ["CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            hex(&status_field(lab, "server1", vpid, f)),
            CAP_NET_ADMIN | CAP_NET_RAW | CAP_SYS_NICE | CAP_IPC_LOCK,
            "vrrp {f}"
        );
    }
}

/// `systemctl reload proxy` (HUP): same main process, and an open keep-alive connection
/// keeps being served.
fn reload_keeps_connections(lab: &TestLab) {
    let before = main_pid(lab, "server1", "proxy");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(u16, u16)>();
    let path = format!("/run/netns/{}-client", lab.id);
    let client = std::thread::spawn(move || {
        enter_client(&path);
        let mut c = TcpStream::connect("172.16.249.101:80").expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let first = get_on(&mut c);
        rx.recv().expect("reloaded");
        let second = get_on(&mut c);
        done_tx.send((first, second)).expect("send");
    });
    std::thread::sleep(Duration::from_millis(500));
    let (ok, _) = exec(lab, "server1", &["systemctl", "reload", "proxy"]);
    assert!(ok, "reload");
    std::thread::sleep(Duration::from_millis(500));
    tx.send(()).expect("go");
    let (first, second) = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("client done");
    client.join().expect("client");
    assert_eq!(
        (first, second),
        (200, 200),
        "the connection survives the reload"
    );
    assert_eq!(
        main_pid(lab, "server1", "proxy"),
        before,
        "reload kept the process"
    );
}

/// A config error: ExecStartPre (`proxy --check`) refuses it, the running proxy is not
/// replaced by a broken one: restart fails, the journal names file and line.
fn bad_config_is_refused(lab: &TestLab) {
    let (_, good) = exec(lab, "server2", &["cat", "/etc/proxy/proxy.toml"]);
    let (ok, _) = exec(lab, "server2", &["sh", "-c", "cp /etc/proxy/proxy.toml /root/good.toml && printf 'workers = \"many\"\\n' >> /etc/proxy/proxy.toml"]);
    assert!(ok);
    let (ok, _) = exec(lab, "server2", &["systemctl", "restart", "proxy"]);
    assert!(!ok, "a bad config must not start");
    // Restart=on-failure covers a failed ExecStartPre too: "activating (auto-restart)" until
    // the start limit, never running.
    let state = show(lab, "server2", "proxy", "ActiveState");
    assert!(state == "activating" || state == "failed", "{state}");
    assert_eq!(
        main_pid(lab, "server2", "proxy"),
        0,
        "no proxy with a bad config"
    );
    let (_, journal) = exec(
        lab,
        "server2",
        &["journalctl", "-u", "proxy", "-n", "20", "--no-pager"],
    );
    assert!(
        journal.contains("proxy.toml:"),
        "error names the file and line:\n{journal}"
    );
    assert!(journal.contains("Control process exited"), "{journal}");
    let (ok, _) = exec(
        lab,
        "server2",
        &[
            "sh",
            "-c",
            "cp /root/good.toml /etc/proxy/proxy.toml && systemctl reset-failed proxy && systemctl restart proxy",
        ],
    );
    assert!(ok, "back to the good config");
    let (_, now) = exec(lab, "server2", &["cat", "/etc/proxy/proxy.toml"]);
    assert_eq!(now, good);
}

/// Waits until the proxy with main pid `pid` logged that it runs (its signal handlers are in
/// place then: a QUIT that arrives earlier kills it with the default action, which systemd
/// reports as a failure).
fn wait_proxy_started(lab: &TestLab, host: &str, pid: u32) {
    let field = format!("_PID={pid}");
    wait_for("the proxy to start", Duration::from_secs(10), || {
        exec(
            lab,
            host,
            &["journalctl", "--no-pager", "-o", "cat", &field],
        )
        .1
        .contains("proxy started")
    });
}

/// stop: QUIT (graceful) well within TimeoutStopSec, a clean exit; restart: a new process.
fn stop_and_restart(lab: &TestLab) {
    let before = main_pid(lab, "server2", "proxy");
    wait_proxy_started(lab, "server2", before);
    // An in-flight response: 16 MB read slowly by the client (several seconds); the stop
    // must wait for it (QUIT drains) and the client must get every byte.
    const BIG: usize = 16 << 20;
    for b in ["server3", "server4"] {
        let (ok, _) = exec(
            lab,
            b,
            &[
                "sh",
                "-c",
                &format!("head -c {BIG} /dev/zero > /var/www/html/big.bin"),
            ],
        );
        assert!(ok, "big file on {b}");
    }
    let path = format!("/run/netns/{}-client", lab.id);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        enter_client(&path);
        let mut c = TcpStream::connect("172.16.249.102:80").expect("connect");
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut buf = [0u8; 16384];
        let mut total = 0usize;
        let t = Instant::now();
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
            if total > 1 << 20 {
                let _ = started_tx.send(());
            }
            std::thread::sleep(Duration::from_millis(4));
        }
        (total, t.elapsed())
    });
    started_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("download under way");
    let t = Instant::now();
    let (ok, _) = exec(lab, "server2", &["systemctl", "stop", "proxy"]);
    let took = t.elapsed();
    assert!(ok);
    let (got, read_for) = reader.join().expect("reader");
    eprintln!("systemctl stop proxy took {took:?}; the in-flight download got {got} bytes in {read_for:?}");
    assert!(
        got > BIG,
        "the whole response (head + {BIG} bytes) arrived: {got}"
    );
    assert!(
        took > Duration::from_millis(500),
        "stop waited for the download: {took:?}"
    );
    assert!(
        took < Duration::from_secs(30),
        "within TimeoutStopSec=30: {took:?}"
    );
    let journal = exec(
        lab,
        "server2",
        &["journalctl", "-u", "proxy", "-n", "12", "--no-pager"],
    )
    .1;
    assert_eq!(
        show(lab, "server2", "proxy", "ActiveState"),
        "inactive",
        "{journal}"
    );
    assert_eq!(
        show(lab, "server2", "proxy", "Result"),
        "success",
        "exited cleanly on QUIT"
    );
    assert_eq!(show(lab, "server2", "proxy", "KillSignal"), "3");
    let (ok, _) = exec(lab, "server2", &["systemctl", "restart", "proxy"]);
    assert!(ok);
    let after = main_pid(lab, "server2", "proxy");
    assert!(after > 0 && after != before);
    let vbefore = main_pid(lab, "server2", "vrrp");
    let (ok, _) = exec(lab, "server2", &["systemctl", "restart", "vrrp"]);
    assert!(ok);
    assert_ne!(main_pid(lab, "server2", "vrrp"), vbefore);
    assert_eq!(
        show(lab, "server2", "vrrp", "Result"),
        "success",
        "vrrp exits 0 on TERM"
    );
}

/// kill -9 of the proxy's main process: systemd restarts it (Restart=on-failure, RestartSec=1s);
/// the VIP moves to server2 while server1's proxy is down and comes back by preemption.
fn kill_9_restarts_and_preempts(lab: &TestLab) {
    wait_for("server1 to hold the VIP", Duration::from_secs(15), || {
        vip_holder(lab) == "server1"
    });
    let before = main_pid(lab, "server1", "proxy");
    let restarts: u32 = show(lab, "server1", "proxy", "NRestarts")
        .parse()
        .unwrap_or(0);
    let since = exec(lab, "server1", &["date", "+%s"]).1;
    let (gap, failed) = outage_from_client(lab, "172.16.249.80", Duration::from_secs(15), || {
        let (ok, _) = exec(lab, "server1", &["kill", "-9", &before.to_string()]);
        assert!(ok, "kill -9");
    });
    eprintln!(
        "kill -9 of server1's proxy: longest gap seen by the client {gap:?} (failures: {failed})"
    );
    let after = main_pid(lab, "server1", "proxy");
    assert!(after > 0 && after != before, "restarted");
    assert_eq!(
        show(lab, "server1", "proxy", "NRestarts")
            .parse::<u32>()
            .unwrap_or(0),
        restarts + 1
    );
    wait_for("the VIP back on server1", Duration::from_secs(15), || {
        vip_holder(lab) == "server1"
    });
    // What vrrp on server1 did since the kill: tracking saw the proxy die (FAULT, the VIP to
    // server2), then the restarted proxy healthy again, and server1 took the VIP back.
    let since = format!("@{since}");
    let (_, journal) = exec(
        lab,
        "server1",
        &[
            "journalctl",
            "-u",
            "vrrp",
            "--no-pager",
            "-o",
            "cat",
            "--since",
            &since,
        ],
    );
    eprintln!("server1's vrrp after the kill:\n{journal}");
    let fault = journal.find("to=FAULT");
    let master = journal.rfind("to=MASTER");
    assert!(
        matches!((fault, master), (Some(f), Some(m)) if f < m),
        "FAULT then MASTER again:\n{journal}"
    );
    // Measured here: 1.1-1.3 s without an answer (RestartSec=1s plus the proxy's start; the
    // VIP's moves to server2 and back add no gap). Bound: that plus 1.5 s for a loaded machine.
    assert!(gap < Duration::from_millis(2800), "outage {gap:?}");
}

/// `systemd-analyze security`: the exposure score of each unit (lower is better).
fn security_scores(lab: &TestLab) {
    for unit in ["proxy", "vrrp"] {
        let (_, out) = exec(
            lab,
            "server1",
            &["systemd-analyze", "security", "--no-pager", unit],
        );
        let line = out
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no score for {unit}:\n{out}"));
        eprintln!("{unit}: {line}");
        let score: f64 = line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .expect("score");
        // Measured with systemd 252: proxy 1.5, vrrp 2.2 (they were 3.7 and 3.9 before
        // ProtectClock, ProtectProc, SystemCallFilter and friends); 0.3 of margin, so a
        // hardening line lost from a unit fails here.
        let bound = if unit == "proxy" { 1.8 } else { 2.5 };
        assert!(score <= bound, "{unit} exposure {score} > {bound}:\n{out}");
    }
}

/// A balancer powered off and booted again comes back with its units enabled, without
/// provision, as BACKUP first, then takes the VIP back by preemption.
fn reboot_rejoins(lab: &TestLab) {
    let out = lab.run(&["reboot", "server1"]);
    assert!(out.status.success(), "reboot");
    for unit in ["proxy", "vrrp", "ssh"] {
        assert_eq!(
            exec(lab, "server1", &["systemctl", "is-active", unit]).1,
            "active",
            "{unit}"
        );
    }
    wait_for(
        "server1 to preempt after its reboot",
        Duration::from_secs(15),
        || vip_holder(lab) == "server1",
    );
    let (_, journal) = exec(
        lab,
        "server1",
        &["journalctl", "-b", "-u", "vrrp", "--no-pager"],
    );
    let backup = journal.find("to=BACKUP").expect("BACKUP after boot");
    let master = journal.find("to=MASTER").expect("then MASTER");
    assert!(backup < master, "{journal}");
}

/// A host whose systemd died (SIGKILL from outside: no units stopped, ifupdown never took its
/// address down) boots again with `lab reboot`, and its units come back.
fn reboot_after_a_crash(lab: &TestLab) {
    let state = std::fs::read_to_string(lab.root.join(&lab.id).join("state.toml")).expect("state");
    let keeper: i32 = state
        .lines()
        .find_map(|l| l.strip_prefix("server2 = "))
        .and_then(|p| p.trim().parse().ok())
        .expect("server2's keeper");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keeper),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill server2's systemd");
    wait_for("server2's systemd to die", Duration::from_secs(5), || {
        !e2e::alive(keeper)
    });
    let out = lab.run(&["reboot", "server2"]);
    assert!(out.status.success(), "reboot after a crash");
    for unit in ["networking", "proxy", "vrrp"] {
        assert_eq!(
            exec(lab, "server2", &["systemctl", "is-active", unit]).1,
            "active",
            "{unit}"
        );
    }
}
