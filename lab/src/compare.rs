//! `lab bench --compare nginx`: the seed's own system (Debian's nginx + keepalived, configs from
//! [`provision::render_seed`]) against ours (proxy + vrrp) on the same four hosts, in one run,
//! with the same wrk parameters against the same VIP.
//!
//! 1. our stack as `lab up` left it: wrk against the VIP;
//! 2. our proxy and vrrp stopped on both balancers (the lab's own stop), nginx and keepalived
//!    started inside them; once one holds the VIP and it answers: wrk again;
//! 3. nginx and keepalived stopped by pid, ours started again; the table.
//!
//! Step 3 runs whatever happens in step 2 (a guard also runs it on unwinding), so the lab is
//! left serving through our stack, with the VIP back on the preferred balancer.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use provision::render_seed;
use serde::Serialize;

use crate::bench::{self, BenchResult};
use crate::error::{LabError, Result};
use crate::host::{HostHandle, Service};
use crate::lab::Running;
use crate::probe;
use crate::sys;

const NGINX: &str = "/usr/sbin/nginx";
const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// Both configs live on the host's /run (a private tmpfs): removing them afterwards leaves the
/// host's /etc exactly as it was.
const DIR: &str = "/run/lab/compare";
const NGINX_CONF: &str = "/run/lab/compare/nginx.conf";
const KEEPALIVED_CONF: &str = "/run/lab/compare/keepalived.conf";
const NGINX_PID: &str = "/run/lab/compare/nginx.pid";
const KEEPALIVED_PID: &str = "/run/lab/compare/keepalived.pid";
const NGINX_ERROR_LOG: &str = "/var/log/nginx/error.log";
const NGINX_STDERR: &str = "/var/log/nginx/lab-stderr.log";
const KEEPALIVED_LOG: &str = "/var/log/keepalived/keepalived.log";

/// How long each stack gets to elect a master and answer on the VIP.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What `lab bench --compare nginx` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub duration: Duration,
    pub connections: u32,
    /// Print a line per phase.
    pub progress: bool,
}

/// One system's measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub system: String,
    /// The balancer that held the VIP while wrk ran.
    pub holder: String,
    pub bench: BenchResult,
    /// Errors the balancer logged while wrk ran, by kind: ("no live upstreams", 74388).
    pub logged_errors: Vec<(String, u64)>,
}

/// Both measurements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub ours: Row,
    pub seed: Row,
    /// Idle upstream connections pooled per worker by both sides (0: neither pools).
    pub upstream_keepalive: u32,
    /// Where the proxy and vrrp binaries came from (a debug build is much slower).
    pub bin_dir: String,
    /// Who holds the first VIP after our stack is back.
    pub restored_holder: String,
}

impl Comparison {
    /// ours / nginx of successful req/s (above 1: ours is faster).
    pub fn rps_ratio(&self) -> Option<f64> {
        ratio(ok_rps(&self.ours.bench), ok_rps(&self.seed.bench))
    }
}

/// Successful (2xx/3xx) responses per second: wrk's req/s counts error responses too, and a
/// balancer answering 502 at once looks fast.
pub fn ok_rps(b: &BenchResult) -> f64 {
    if b.requests == 0 {
        return 0.0;
    }
    // u64 -> f64 loses precision only beyond 2^53 requests.
    b.requests_per_sec * b.requests.saturating_sub(b.non_2xx) as f64 / b.requests as f64
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// wrk's latency ("850.00us", "1.98ms", "1.20s", "2.00m") in milliseconds.
pub fn latency_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        return None;
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v * scale)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
}

/// The side-by-side table.
pub fn table(c: &Comparison) -> String {
    let mut s = String::new();
    let ka = if c.upstream_keepalive > 0 {
        format!(
            "upstream keep-alive on both sides: our proxy pools {n} idle connections per worker \
             (proxy.toml sets no `keepalive`, the default {n} applies); nginx has `keepalive {n}` \
             + proxy_http_version 1.1 + Connection \"\"",
            n = c.upstream_keepalive
        )
    } else {
        "upstream keep-alive on neither side: our proxy.toml sets keepalive = 0, nginx has no \
         `keepalive`"
            .into()
    };
    let _ = writeln!(s, "{ka}");
    let b = &c.ours.bench;
    let _ = writeln!(
        s,
        "wrk -t1 -c{} -d{}s --timeout 2s --latency {} from the client namespace; binaries from {}",
        b.connections, b.duration_s, b.url, c.bin_dir
    );
    let _ = writeln!(
        s,
        "{:<40} {:<8} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "SYSTEM", "VIP ON", "REQ/S", "2XX/S", "P50", "P99", "ERRORS"
    );
    for r in [&c.ours, &c.seed] {
        let errs = r.bench.non_2xx
            + r.bench
                .socket_errors
                .as_deref()
                .map(socket_error_count)
                .unwrap_or(0);
        let _ = writeln!(
            s,
            "{:<40} {:<8} {:>9.0} {:>9.0} {:>9} {:>9} {:>8}",
            r.system,
            r.holder,
            r.bench.requests_per_sec,
            ok_rps(&r.bench),
            r.bench.latency_p50,
            r.bench.latency_p99,
            errs
        );
    }
    let lat = |f: fn(&BenchResult) -> &str| {
        latency_ms(f(&c.ours.bench))
            .zip(latency_ms(f(&c.seed.bench)))
            .and_then(|(a, b)| ratio(a, b))
    };
    let _ = writeln!(
        s,
        "{:<40} {:<8} {:>9} {:>9} {:>9} {:>9}",
        "ours / nginx",
        "",
        "",
        fmt_ratio(c.rps_ratio()),
        fmt_ratio(lat(|b| &b.latency_p50)),
        fmt_ratio(lat(|b| &b.latency_p99)),
    );
    let _ = writeln!(
        s,
        "(ERRORS: non-2xx/3xx responses + socket errors; the ratio is of 2XX/S; above 1 for \
         2XX/S and below 1 for latency favour ours)"
    );
    for r in [&c.ours, &c.seed] {
        if r.bench.non_2xx > 0 {
            let _ = writeln!(
                s,
                "{}: {} of {} responses were errors",
                r.system, r.bench.non_2xx, r.bench.requests
            );
        }
        for (msg, n) in &r.logged_errors {
            let _ = writeln!(s, "  {n:>8} x error log: {msg}");
        }
    }
    s
}

/// nginx error-log lines by message: "2026/11/25 13:20:06 [error] 128#128: *1478 no live
/// upstreams while connecting to upstream, client: ..." counts as "no live upstreams while
/// connecting to upstream". Most frequent first.
pub fn error_kinds(log: &str) -> Vec<(String, u64)> {
    let mut kinds: Vec<(String, u64)> = Vec::new();
    for line in log
        .lines()
        .filter(|l| l.contains("[error]") || l.contains("[crit]"))
    {
        let msg = line.split_once(": *").map_or(line, |(_, r)| r);
        let msg = msg.split_once(' ').map_or(msg, |(_, r)| r);
        let msg = msg.split_once(", client:").map_or(msg, |(m, _)| m).trim();
        match kinds.iter_mut().find(|(k, _)| k == msg) {
            Some((_, n)) => *n += 1,
            None => kinds.push((msg.to_string(), 1)),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    kinds
}

/// Sum of the counts in wrk's "connect 0, read 3, write 0, timeout 0".
fn socket_error_count(s: &str) -> u64 {
    s.split(',')
        .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Runs the comparison on a lab whose balancers run our proxy and vrrp.
pub fn run(lab: &Running, opts: &Options) -> Result<Comparison> {
    let say = |m: String| {
        if opts.progress {
            println!("{m}");
        }
    };
    for (prog, pkg) in [(NGINX, "nginx"), (KEEPALIVED, "keepalived"), ("wrk", "wrk")] {
        if !sys::have_program(prog) {
            return Err(LabError::Missing {
                what: format!("`{prog}`"),
                path: prog.into(),
                hint: format!("apt-get install {pkg}"),
            });
        }
    }
    let balancers = balancers(lab);
    let first = balancers
        .first()
        .ok_or_else(|| LabError::Other("the inventory has no balancer".into()))?;
    for h in &balancers {
        for svc in [Service::Proxy, Service::Vrrp] {
            if h.service_pid(svc).is_none() {
                return Err(LabError::Other(format!(
                    "{svc} is not running on {}: the comparison starts from the lab as `lab up` \
                     leaves it (`lab start {} all`)",
                    h.host.name, h.host.name
                )));
            }
        }
    }
    let upstream_keepalive = render_seed::proxy_upstream_keepalive(&lab.inventory, &first.host)?;
    // Rendered before anything is stopped: an error here leaves our stack untouched.
    let configs = balancers
        .iter()
        .map(|h| {
            Ok((
                render_seed::nginx_conf(&lab.inventory, &h.host)?,
                render_seed::keepalived_conf(&lab.inventory, &h.host)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;

    say("== ours: proxy + vrrp".into());
    wait_serving(lab, "our stack")?;
    let ours_holder = holder(lab);
    let ours = bench::run(lab, opts.duration, opts.connections)?;
    say(format!("{} (VIP on {ours_holder})", ours.summary()));

    say("== the seed's: nginx + keepalived (our proxy and vrrp stopped)".into());
    let mut guard = Seed {
        lab,
        balancers: &balancers,
        started: Vec::new(),
        done: false,
    };
    let seed = guard.run(&configs, opts, &say);
    if let Ok((h, b, _)) = &seed {
        say(format!("{} (VIP on {h})", b.summary()));
    }
    say("== back to ours: nginx and keepalived stopped, proxy + vrrp started".into());
    let restored = guard.restore();
    let (seed_holder, seed_bench, seed_errors) = seed?;
    let restored_holder = restored?;
    say(format!(
        "VIP on {restored_holder} again, served by our proxy\n"
    ));
    Ok(Comparison {
        ours: Row {
            system: "proxy + vrrp (ours)".into(),
            holder: ours_holder,
            bench: ours,
            logged_errors: Vec::new(),
        },
        seed: Row {
            system: format!("{} + {} (seed)", version(NGINX), version(KEEPALIVED)),
            holder: seed_holder,
            bench: seed_bench,
            logged_errors: seed_errors,
        },
        upstream_keepalive,
        bin_dir: lab.lab.bin_dir.display().to_string(),
        restored_holder,
    })
}

/// Balancers, preferred (highest priority) first.
fn balancers(lab: &Running) -> Vec<HostHandle> {
    let mut b: Vec<HostHandle> = lab
        .hosts()
        .into_iter()
        .filter(|h| h.host.priority.is_some() && h.services().contains(&Service::Vrrp))
        .collect();
    b.sort_by_key(|h| std::cmp::Reverse(h.host.priority));
    b
}

/// The holder of the first VIP ("nobody", or several joined with '+').
fn holder(lab: &Running) -> String {
    lab.vip_holders()
        .into_iter()
        .next()
        .map(|(_, h)| {
            if h.is_empty() {
                "nobody".into()
            } else {
                h.join("+")
            }
        })
        .unwrap_or_else(|| "nobody".into())
}

/// "nginx/1.22.1", "Keepalived v2.2.7": the first line of `-v`, trimmed to name and version.
fn version(prog: &str) -> String {
    let name = prog.rsplit('/').next().unwrap_or(prog).to_string();
    let Ok(out) = Command::new(prog).arg("-v").output() else {
        return name;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    parse_version(&text).unwrap_or(name)
}

fn parse_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    // "nginx version: nginx/1.22.1" or "Keepalived v2.2.7 (01/16,2022), git commit ..."
    if let Some(v) = line.strip_prefix("nginx version: ") {
        return Some(v.trim().to_string());
    }
    let mut words = line.split_whitespace();
    let (a, b) = (words.next()?, words.next()?);
    Some(format!("{} {b}", a.to_lowercase()))
}

/// Waits until exactly one balancer holds the first VIP and the VIP answers 200 from the client.
fn wait_serving(lab: &Running, what: &str) -> Result<String> {
    let vip = lab
        .inventory
        .network
        .vips
        .first()
        .copied()
        .ok_or_else(|| LabError::Other("no VIP in the inventory".into()))?;
    let addr = SocketAddr::from((vip, 80));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let holders = lab
            .vip_holders()
            .into_iter()
            .find(|(v, _)| *v == vip)
            .map(|(_, h)| h)
            .unwrap_or_default();
        let last = if let [one] = holders.as_slice() {
            match probe::in_netns(&lab.plan.client.ns, move || {
                probe::http_get(addr, Duration::from_millis(800))
            })? {
                Ok((200, _)) => return Ok(one.clone()),
                Ok((status, _)) => format!("{vip} on {one} answers {status}"),
                Err(e) => format!("{vip} on {one}: {e}"),
            }
        } else {
            format!("{vip} held by {holders:?}")
        };
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: format!("{what} to serve the VIP (last: {last})"),
                secs: READY_TIMEOUT.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A process started for the comparison: its host, its pid outside the host, its stop signal.
struct Started {
    host: String,
    what: &'static str,
    pid: i32,
    signal: sys::Signal,
}

/// What the seed's run measured: the VIP holder, wrk's result, the holder's logged errors.
type SeedRun = (String, BenchResult, Vec<(String, u64)>);

/// The seed's stack while it runs; `restore` (or, failing that, Drop) puts ours back.
struct Seed<'a> {
    lab: &'a Running,
    balancers: &'a [HostHandle],
    started: Vec<Started>,
    done: bool,
}

impl Seed<'_> {
    fn run(
        &mut self,
        configs: &[(String, String)],
        opts: &Options,
        say: &dyn Fn(String),
    ) -> Result<SeedRun> {
        for h in self.balancers {
            for svc in [Service::Proxy, Service::Vrrp] {
                self.lab.stop(&h.host.name, Some(svc))?;
            }
        }
        for (h, (nginx, keepalived)) in self.balancers.iter().zip(configs) {
            h.write_file(NGINX_CONF, nginx, 0o644)?;
            h.write_file(KEEPALIVED_CONF, keepalived, 0o644)?;
            // Config tests first (`nginx -t`, `keepalived -t`): a bad config is reported as
            // such rather than as a daemon that died.
            h.sh(
                "mkdir -p /var/log/nginx /var/lib/nginx && \"$1\" -t -q -c \"$2\"",
                &[NGINX, NGINX_CONF],
            )?;
            h.sh("\"$1\" -t -f \"$2\"", &[KEEPALIVED, KEEPALIVED_CONF])?;
        }
        for h in self.balancers {
            // Foreground (`daemon off`) under setsid, so $! is nginx's master.
            let pid = start(
                h,
                &format!(
                    "setsid \"$1\" -c \"$2\" -g 'daemon off;' </dev/null >>{NGINX_STDERR} 2>&1 & echo $! >{NGINX_PID}"
                ),
                &[NGINX, NGINX_CONF],
                NGINX_PID,
                NGINX_STDERR,
            )?;
            self.started.push(Started {
                host: h.host.name.clone(),
                what: "nginx",
                pid,
                // Graceful, as our proxy is stopped (QUIT).
                signal: sys::Signal::SIGQUIT,
            });
            say(format!("{}: nginx {pid}", h.host.name));
        }
        for h in self.balancers {
            let pid = start(
                h,
                &format!(
                    "mkdir -p /run/keepalived /var/log/keepalived; setsid \"$1\" -n -l -D -f \"$2\" \
                     -p /run/keepalived/k.pid -r /run/keepalived/v.pid -c /run/keepalived/c.pid \
                     </dev/null >>{KEEPALIVED_LOG} 2>&1 & echo $! >{KEEPALIVED_PID}"
                ),
                &[KEEPALIVED, KEEPALIVED_CONF],
                KEEPALIVED_PID,
                KEEPALIVED_LOG,
            )?;
            self.started.push(Started {
                host: h.host.name.clone(),
                what: "keepalived",
                pid,
                // keepalived's stop: priority-0 advert, VIPs removed.
                signal: sys::Signal::SIGTERM,
            });
            say(format!("{}: keepalived {pid}", h.host.name));
        }
        let holder = wait_serving(self.lab, "nginx + keepalived")?;
        let log_len =
            |h: &HostHandle| std::fs::metadata(h.path(NGINX_ERROR_LOG)).map_or(0, |m| m.len());
        let before: Vec<u64> = self.balancers.iter().map(log_len).collect();
        let b = bench::run(self.lab, opts.duration, opts.connections)?;
        let mut errors = Vec::new();
        for (h, from) in self.balancers.iter().zip(before) {
            if h.host.name == holder {
                let text = std::fs::read(h.path(NGINX_ERROR_LOG)).unwrap_or_default();
                let new = text
                    .get(usize::try_from(from).unwrap_or(0)..)
                    .unwrap_or(&[]);
                errors = error_kinds(&String::from_utf8_lossy(new));
            }
        }
        Ok((holder, b, errors))
    }

    /// Stops what `run` started (keepalived first, so the VIPs go away with a priority-0
    /// advert), removes the configs and starts our proxy and vrrp again, the preferred balancer
    /// first; returns who holds the VIP once it answers.
    fn restore(&mut self) -> Result<String> {
        self.done = true;
        let mut errors = Vec::new();
        self.started.sort_by_key(|s| s.what != "keepalived");
        for s in self.started.drain(..) {
            stop_tree(s.pid, s.signal);
            if sys::pid_alive(s.pid) {
                errors.push(format!("{} {} on {} did not stop", s.what, s.pid, s.host));
            }
        }
        for h in self.balancers {
            let _ = std::fs::remove_dir_all(h.path(DIR));
        }
        for h in self.balancers {
            for svc in [Service::Proxy, Service::Vrrp] {
                if let Err(e) = self.lab.start(&h.host.name, Some(svc)) {
                    errors.push(e.to_string());
                }
            }
        }
        if !errors.is_empty() {
            return Err(LabError::Other(format!(
                "restoring our stack: {}",
                errors.join("; ")
            )));
        }
        // The preferred balancer takes the VIP back (preemption) after the other one may have
        // grabbed it first.
        let want = self
            .balancers
            .first()
            .map(|h| h.host.name.clone())
            .unwrap_or_default();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let who = wait_serving(self.lab, "our stack, restarted")?;
            if who == want || Instant::now() >= deadline {
                return Ok(who);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Seed<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.restore() {
                eprintln!("lab: {e}");
            }
        }
    }
}

/// Runs `script` (which starts a daemon in the background and writes its host-local pid to
/// `pidfile`) inside `h`; returns the daemon's pid outside the host once it has stayed up.
fn start(h: &HostHandle, script: &str, args: &[&str], pidfile: &str, log: &str) -> Result<i32> {
    h.sh(&format!("mkdir -p {DIR}; {script}"), args)?;
    let failed = |detail: String| LabError::ServiceFailed {
        host: h.host.name.clone(),
        service: args
            .first()
            .and_then(|p| p.rsplit('/').next())
            .unwrap_or("daemon")
            .into(),
        detail,
    };
    let local: i32 = h
        .read_file(pidfile)
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| failed(format!("no pid in {pidfile}")))?;
    let pid = sys::outer_pid(h.keeper, local)
        .ok_or_else(|| failed(format!("pid {local} not found in the host")))?;
    // A daemon that dies at once (port in use, bad config) is reported with its log.
    std::thread::sleep(Duration::from_millis(300));
    if !sys::pid_alive(pid) {
        let text = h.read_file(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines.get(lines.len().saturating_sub(10)..).unwrap_or(&[]);
        return Err(failed(format!(
            "exited right away; last lines of {log}:\n{}",
            tail.join("\n")
        )));
    }
    Ok(pid)
}

/// Direct children of `pid` (nginx's workers, keepalived's vrrp and checker processes).
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Stops `pid` with `signal` (SIGKILL after 3 s) and then whatever children it had that
/// outlived it: only processes this comparison started, each by pid.
fn stop_tree(pid: i32, signal: sys::Signal) {
    let kids = children(pid);
    sys::stop_with(&[pid], signal, Duration::from_secs(3));
    let left: Vec<i32> = kids.into_iter().filter(|&k| sys::pid_alive(k)).collect();
    if !left.is_empty() {
        sys::terminate(&left, Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(rps: f64, p50: &str, p99: &str) -> BenchResult {
        BenchResult {
            url: "http://172.16.249.80/".into(),
            duration_s: 3,
            connections: 50,
            requests: 1000,
            requests_per_sec: rps,
            latency_avg: "1ms".into(),
            latency_p50: p50.into(),
            latency_p99: p99.into(),
            latency_max: "9ms".into(),
            socket_errors: Some("connect 0, read 2, write 0, timeout 1".into()),
            non_2xx: 0,
        }
    }

    #[test]
    fn latencies_in_ms() {
        assert_eq!(latency_ms("850.00us"), Some(0.85));
        assert_eq!(latency_ms("1.98ms"), Some(1.98));
        assert_eq!(latency_ms("1.20s"), Some(1200.0));
        assert_eq!(latency_ms("2.00m"), Some(120_000.0));
        assert_eq!(latency_ms("-"), None);
        assert_eq!(latency_ms("ms"), None);
        assert_eq!(latency_ms("NaNms"), None);
    }

    #[test]
    fn nginx_error_kinds() {
        let log = "2026/11/25 13:20:03 [error] 128#128: *45 upstream prematurely closed connection while reading response header from upstream, client: 172.16.249.10, server: _\n\
                   2026/11/25 13:20:06 [error] 128#128: *1478 no live upstreams while connecting to upstream, client: 172.16.249.10, server: _\n\
                   2026/11/25 13:20:06 [notice] 128#128: signal 3\n\
                   2026/11/25 13:20:06 [error] 129#129: *1480 no live upstreams while connecting to upstream, client: 172.16.249.10\n";
        assert_eq!(
            error_kinds(log),
            [
                ("no live upstreams while connecting to upstream".to_string(), 2),
                (
                    "upstream prematurely closed connection while reading response header from upstream".to_string(),
                    1
                )
            ]
        );
        assert!(error_kinds("").is_empty());
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("nginx version: nginx/1.22.1\n").as_deref(),
            Some("nginx/1.22.1")
        );
        assert_eq!(
            parse_version("Keepalived v2.2.7 (01/16,2022), git commit v2.2.7-x\n\nCopyright")
                .as_deref(),
            Some("keepalived v2.2.7")
        );
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn table_has_both_rows_and_ratios() {
        let c = Comparison {
            ours: Row {
                system: "proxy + vrrp (ours)".into(),
                holder: "server1".into(),
                bench: bench(30000.0, "1.00ms", "4.00ms"),
                logged_errors: Vec::new(),
            },
            seed: Row {
                system: "nginx/1.22.1 + keepalived v2.2.7 (seed)".into(),
                holder: "server1".into(),
                bench: bench(20000.0, "2.00ms", "5.00ms"),
                logged_errors: vec![("no live upstreams".into(), 7)],
            },
            upstream_keepalive: 32,
            bin_dir: "/x/target/release".into(),
            restored_holder: "server1".into(),
        };
        assert_eq!(c.rps_ratio(), Some(1.5));
        let mut half = c.clone();
        half.seed.bench.non_2xx = 500;
        assert_eq!(ok_rps(&half.seed.bench), 10000.0);
        assert_eq!(half.rps_ratio(), Some(3.0));
        assert!(table(&half).contains("500 of 1000 responses were errors"));
        let t = table(&c);
        assert!(t.contains("keepalive 32"), "{t}");
        assert!(t.contains("7 x error log: no live upstreams"), "{t}");
        assert!(t.contains("ours / nginx"), "{t}");
        assert!(t.contains("1.50x"), "{t}");
        assert!(t.contains("0.50x"), "{t}");
        assert!(t.contains("0.80x"), "{t}");
        let ours = t
            .lines()
            .find(|l| l.starts_with("proxy + vrrp"))
            .unwrap_or_default();
        assert!(
            ours.contains("30000") && ours.trim_end().ends_with('3'),
            "{ours}"
        );
        assert_eq!(
            socket_error_count("connect 0, read 2, write 0, timeout 1"),
            3
        );
        let mut none = c.clone();
        none.seed.bench.requests_per_sec = 0.0;
        assert_eq!(none.rps_ratio(), None);
    }
}
