//! `lab bench`: wrk from the client namespace against the VIP, bounded in time, measured the way
//! a tail-latency comparison needs: several rounds, wrk's full latency distribution, errors by
//! kind, the CPU the balancing proxy and the backends spent per request, and how many upstream
//! connections the proxy opened per request.
//!
//! Every figure is read from outside the hosts, so it does not matter how a daemon was started
//! (our units, the seed's nginx): CPU from /proc of the processes in a host's network namespace,
//! connections from the backend namespaces' own TCP counters (`PassiveOpens` in
//! /proc/PID/net/snmp counts every connection a backend accepted, whoever opened it).

mod cpu;
pub mod report;
pub mod tuning;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use benches::wrk::{self, WrkResult};
use serde::Serialize;

use crate::error::{LabError, Result};
use crate::host::{HostHandle, Service};
use crate::lab::Running;
use crate::sys;

/// Process names that balance HTTP on a balancer (ours, the seed's) and serve it on a backend.
const BALANCER_PROXIES: &[&str] = &["proxy", "nginx"];
const BACKEND_SERVERS: &[&str] = &["apache2", "httpd"];

/// One wrk load: connections and duration (wrk stops itself; the run is bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub duration: Duration,
    pub connections: u32,
}

impl Load {
    fn secs(&self) -> u64 {
        self.duration.as_secs().clamp(1, 300)
    }
}

/// What one round of one system measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Round {
    pub system: String,
    /// The balancer that held the first VIP while wrk ran.
    pub holder: String,
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Successful (2xx/3xx) responses per second: a balancer answering 502 at once looks fast
    /// in wrk's own req/s.
    pub ok_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub non_2xx: u64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    /// CPU seconds per 1000 requests of the proxy processes (ours or nginx) on the holder.
    pub balancer_cpu_per_1k: f64,
    /// CPU seconds per 1000 requests of the web servers on all backends.
    pub backend_cpu_per_1k: f64,
    /// TCP connections the backends accepted per request (0: every request reused one).
    pub upstream_conns_per_request: f64,
    /// CPU seconds per 1000 requests of the whole lab: every process in its namespaces and wrk
    /// (see `cpu`).
    #[serde(default)]
    pub lab_cpu_per_1k: f64,
    /// The lab's CPU seconds over (cores x wall seconds): near 1 means the machine was full.
    #[serde(default)]
    pub lab_cpu_share: f64,
}

impl Round {
    /// What a proxy costing nothing would serve on the same cores (see `cpu`).
    pub fn zero_cost_bound(&self) -> Option<f64> {
        cpu::zero_cost_bound(
            self.ok_per_sec,
            self.lab_cpu_per_1k,
            self.balancer_cpu_per_1k,
            self.lab_cpu_share,
        )
    }

    pub fn errors(&self) -> u64 {
        self.non_2xx + self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {:.0} req/s ({} requests, VIP on {}), latency p50 {:.2} p90 {:.2} p99 {:.2} \
             p99.9 {:.2} ms, CPU per 1k requests: proxy {:.3} s, backends {:.3} s, upstream \
             connections per request {:.3}",
            self.system,
            self.requests_per_sec,
            self.requests,
            self.holder,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.balancer_cpu_per_1k,
            self.backend_cpu_per_1k,
            self.upstream_conns_per_request
        );
        if self.errors() > 0 {
            s.push_str(&format!(
                ", errors: {} non-2xx, connect {}, read {}, write {}, timeout {}",
                self.non_2xx,
                self.connect_errors,
                self.read_errors,
                self.write_errors,
                self.timeouts
            ));
        }
        s
    }
}

/// Counters read before and after a wrk run.
struct Counters {
    balancer_cpu: f64,
    backend_cpu: f64,
    passive_opens: u64,
    lab: cpu::Snapshot,
    at: Instant,
}

fn counters(lab: &Running, holder: &str) -> Counters {
    let hosts = lab.hosts();
    let cpu = |h: &HostHandle, names: &[&str]| cpu_seconds(&sys::pids_in_netns(&h.ns), names);
    Counters {
        balancer_cpu: hosts
            .iter()
            .filter(|h| h.host.name == holder)
            .map(|h| cpu(h, BALANCER_PROXIES))
            .sum(),
        backend_cpu: hosts
            .iter()
            .filter(|h| h.host.priority.is_none())
            .map(|h| cpu(h, BACKEND_SERVERS))
            .sum(),
        passive_opens: hosts
            .iter()
            .filter(|h| h.host.priority.is_none())
            .filter_map(|h| passive_opens(h.keeper))
            .sum(),
        lab: cpu::Snapshot::read(
            hosts
                .iter()
                .map(|h| h.ns.as_str())
                .chain([lab.plan.client.ns.as_str()])
                .flat_map(sys::pids_in_netns),
        ),
        at: Instant::now(),
    }
}

/// utime + stime (all threads) of the processes in `pids` whose name is one of `names`.
fn cpu_seconds(pids: &[i32], names: &[&str]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter(|stat| names.contains(&comm(stat)))
        .filter_map(|stat| benches::procfs::parse_cpu_ticks(&stat))
        .sum();
    ticks as f64 / benches::procfs::clock_ticks_per_sec()
}

/// The command name in a /proc/PID/stat line: between the first '(' and the last ')'.
fn comm(stat: &str) -> &str {
    let start = stat.find('(').map_or(0, |i| i + 1);
    let end = stat.rfind(')').unwrap_or(stat.len());
    stat.get(start..end).unwrap_or("")
}

/// TCP PassiveOpens of the network namespace `pid` lives in.
fn passive_opens(pid: i32) -> Option<u64> {
    parse_passive_opens(&std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).ok()?)
}

/// /proc/net/snmp has a "Tcp:" header line of names and a "Tcp:" line of values.
fn parse_passive_opens(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let idx = names.split_whitespace().position(|n| n == "PassiveOpens")?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

/// Where `lab bench` keeps the wrk script and its reports unless told otherwise.
pub fn default_out_dir() -> PathBuf {
    PathBuf::from("target/lab")
}

/// The wrk command `measure` runs, as a person would type it.
pub fn wrk_command_line(lab: &Running, load: &Load, script: &Path) -> Result<String> {
    let args = wrk::args(
        &vip_url(lab)?,
        load.connections as usize,
        load.secs(),
        2,
        Some(script),
    );
    Ok(format!(
        "ip netns exec {} wrk {}",
        lab.plan.client.ns,
        args.join(" ")
    ))
}

fn vip_url(lab: &Running) -> Result<String> {
    let vip = lab.first_vip()?;
    Ok(format!("http://{vip}/"))
}

/// Writes the wrk script that prints the latency distribution; returns its path.
pub fn write_script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("distribution.lua");
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, wrk::DISTRIBUTION_LUA))
        .map_err(|e| LabError::Other(format!("write {}: {e}", path.display())))?;
    Ok(path)
}

/// One measured round against the first VIP: counters, wrk, counters.
pub fn measure(
    lab: &Running,
    load: &Load,
    system: &str,
    holder: &str,
    script: &Path,
) -> Result<Round> {
    if !sys::have_program("wrk") {
        return Err(LabError::Missing {
            what: "`wrk`".into(),
            path: "wrk".into(),
            hint: "apt-get install wrk".into(),
        });
    }
    let args = wrk::args(
        &vip_url(lab)?,
        load.connections as usize,
        load.secs(),
        2,
        Some(script),
    );
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.plan.client.ns, "wrk"])
        .args(&args);
    let before = counters(lab, holder);
    let w = wrk::run_command(cmd, load.secs()).map_err(|e| LabError::Other(e.to_string()))?;
    let after = counters(lab, holder);
    Ok(round(system, holder, &w, &before, &after))
}

/// `rounds` rounds of our stack as it runs now (the VIP holder measured each round).
pub fn run(
    lab: &Running,
    load: &Load,
    rounds: u32,
    out: &Path,
    progress: bool,
) -> Result<report::Report> {
    let script = write_script(out)?;
    let mut out = Vec::new();
    for i in 1..=rounds.max(1) {
        let holder = wait_answering(lab, "our stack", &our_holder(lab))?;
        let r = measure(lab, load, "ours", &holder, &script)?;
        if progress {
            println!("round {i}: {}", r.summary());
        }
        out.push(r);
    }
    Ok(report::Report {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        commands: vec![
            format!(
                "lab bench --rounds {rounds} --duration {} --connections {}",
                load.duration.as_secs(),
                load.connections
            ),
            wrk_command_line(lab, load, &script)?,
        ],
        notes: vec![format!("binaries from {}", lab.lab.bin_dir.display())],
        rounds: out,
    })
}

/// How long a bench waits for the VIP to be held and to answer (after `--workers` restarted
/// both proxies, a failover, or the seed's stack starting) before it refuses to measure.
pub const SERVED_TIMEOUT: Duration = Duration::from_secs(15);

/// Who must hold the first VIP before a round is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Any balancer, or several: the ECMP topology, where every balancer that runs announces it.
    Any,
    /// Exactly this balancer. VRRP preempts: while a lower-priority balancer holds the VIP
    /// (after a restart or a failover) the preferred one takes it over a Master_Down_Interval
    /// after it is back, and a round started before that measured the takeover (seen: 50 read
    /// errors in the first round after `--workers` restarted both proxies).
    Preferred(String),
}

/// The pure choice behind [`Holder::Preferred`]: the highest-priority balancer among those
/// whose stack runs (`(name, priority, running)`; ties go to the first listed, as VRRP's own
/// tie-break on the higher address is not known here). None when none runs.
pub fn preferred(balancers: &[(String, u8, bool)]) -> Option<String> {
    let mut best: Option<&(String, u8, bool)> = None;
    for b in balancers.iter().filter(|b| b.2) {
        if best.is_none_or(|x| b.1 > x.1) {
            best = Some(b);
        }
    }
    best.map(|b| b.0.clone())
}

/// Who must hold the VIP when our stack serves it: any balancer on ECMP; on VRRP the
/// highest-priority balancer whose proxy and vrrp both run.
pub fn our_holder(lab: &Running) -> Holder {
    if lab.inventory.anycast().is_some() {
        return Holder::Any;
    }
    let balancers: Vec<(String, u8, bool)> = lab
        .hosts()
        .into_iter()
        .filter_map(|h| {
            let running = [Service::Proxy, Service::Vrrp]
                .iter()
                .all(|&svc| h.service_pid(svc).is_some());
            Some((h.host.name.clone(), h.host.priority?, running))
        })
        .collect();
    preferred(&balancers).map_or(Holder::Any, Holder::Preferred)
}

/// Waits until the first VIP is held as `want` says and answers 200 from the client; returns
/// the holder. A round against a VIP nobody serves would only measure connect errors, and one
/// against a VIP about to move would measure the move.
pub fn wait_answering(lab: &Running, what: &str, want: &Holder) -> Result<String> {
    let vip = lab.first_vip()?;
    let addr = std::net::SocketAddr::from((vip, 80));
    let deadline = Instant::now() + SERVED_TIMEOUT;
    loop {
        let holders = lab
            .vip_holders()
            .into_iter()
            .find(|(v, _)| *v == vip)
            .map(|(_, h)| h)
            .unwrap_or_default();
        let who = holders.join("+");
        let held = match want {
            Holder::Any => !holders.is_empty(),
            Holder::Preferred(name) => holders == [name.as_str()],
        };
        let last = if !held {
            match want {
                Holder::Any => format!("{vip} held by {holders:?}"),
                Holder::Preferred(name) => format!(
                    "{vip} held by {holders:?}, waiting for {name} (the highest priority with \
                     its stack running) to take it over"
                ),
            }
        } else {
            match crate::probe::in_netns(&lab.plan.client.ns, move || {
                crate::probe::http_get(addr, Duration::from_millis(800))
            })? {
                Ok((200, _)) => return Ok(who),
                Ok((status, _)) => format!("{vip} on {who} answers {status}"),
                Err(e) => format!("{vip} on {who}: {e}"),
            }
        };
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: format!("{what} to serve the VIP (last: {last})"),
                secs: SERVED_TIMEOUT.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The holder of the first VIP ("nobody", or several joined with '+').
pub fn holder(lab: &Running) -> String {
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

/// Writes the report as bench.md and bench.svg in `dir`; returns the paths.
pub fn record(report: &report::Report, dir: &Path) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    for (name, text) in [("bench.md", report.markdown()), ("bench.svg", report.svg())] {
        let path = dir.join(name);
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| LabError::Other(format!("write {}: {e}", path.display())))?;
        paths.push(path.display().to_string());
    }
    Ok(paths)
}

fn round(system: &str, holder: &str, w: &WrkResult, before: &Counters, after: &Counters) -> Round {
    let per_1k = |a: f64, b: f64| {
        if w.requests == 0 {
            0.0
        } else {
            (a - b).max(0.0) * 1000.0 / w.requests as f64
        }
    };
    let ok = w.requests.saturating_sub(w.non_2xx);
    let lab_cpu = after.lab.seconds_since(&before.lab);
    let wall = after.at.duration_since(before.at).as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Round {
        system: system.into(),
        holder: holder.into(),
        requests: w.requests,
        requests_per_sec: w.req_per_sec,
        ok_per_sec: if w.requests == 0 {
            0.0
        } else {
            w.req_per_sec * ok as f64 / w.requests as f64
        },
        p50_ms: w.p50_us / 1e3,
        p90_ms: w.p90_us / 1e3,
        p99_ms: w.p99_us / 1e3,
        p999_ms: w.p999_us / 1e3,
        non_2xx: w.non_2xx,
        connect_errors: w.errors.connect,
        read_errors: w.errors.read,
        write_errors: w.errors.write,
        timeouts: w.errors.timeout,
        balancer_cpu_per_1k: per_1k(after.balancer_cpu, before.balancer_cpu),
        backend_cpu_per_1k: per_1k(after.backend_cpu, before.backend_cpu),
        upstream_conns_per_request: if w.requests == 0 {
            0.0
        } else {
            after.passive_opens.saturating_sub(before.passive_opens) as f64 / w.requests as f64
        },
        lab_cpu_per_1k: per_1k(lab_cpu, 0.0),
        lab_cpu_share: if wall > 0.0 {
            lab_cpu / (cores * wall)
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferred_holder_is_the_highest_priority_balancer_whose_stack_runs() {
        let b = |n: &str, p: u8, running: bool| (n.to_string(), p, running);
        let both = [b("server2", 100, true), b("server1", 150, true)];
        assert_eq!(preferred(&both).as_deref(), Some("server1"));
        // server1's proxy is down: vrrp put it in FAULT, server2 is the one to wait for.
        let one = [b("server1", 150, false), b("server2", 100, true)];
        assert_eq!(preferred(&one).as_deref(), Some("server2"));
        assert_eq!(preferred(&[b("server1", 150, false)]), None);
        let tie = [b("a", 100, true), b("b", 100, true)];
        assert_eq!(preferred(&tie).as_deref(), Some("a"));
    }

    #[test]
    fn reads_passive_opens_from_snmp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\n\
                    Tcp: 1 200 120000 -1 12 345 0\nUdp: InDatagrams\nUdp: 3\n";
        assert_eq!(parse_passive_opens(snmp), Some(345));
        assert_eq!(parse_passive_opens("Tcp: A B\n"), None);
    }

    #[test]
    fn comm_may_hold_spaces_and_parentheses() {
        assert_eq!(comm("12 (proxy) S 1 2"), "proxy");
        assert_eq!(comm("12 (a (b) c) S 1 2"), "a (b) c");
    }

    #[test]
    fn a_round_turns_counters_into_per_request_figures() {
        let w = WrkResult {
            requests: 20_000,
            req_per_sec: 4_000.0,
            p50_us: 1_500.0,
            p90_us: 3_000.0,
            p99_us: 9_000.0,
            p999_us: 20_000.0,
            non_2xx: 2_000,
            ..WrkResult::default()
        };
        let t0 = Instant::now();
        let before = Counters {
            balancer_cpu: 10.0,
            backend_cpu: 100.0,
            passive_opens: 50,
            lab: cpu::Snapshot::default(),
            at: t0,
        };
        let after = Counters {
            balancer_cpu: 12.0,
            backend_cpu: 104.0,
            passive_opens: 250,
            lab: cpu::Snapshot {
                processes: [(7, 8 * benches::procfs::clock_ticks_per_sec() as u64)].into(),
                ..cpu::Snapshot::default()
            },
            at: t0 + Duration::from_secs(5),
        };
        let r = round("ours", "server1", &w, &before, &after);
        assert!((r.ok_per_sec - 3_600.0).abs() < 1e-9);
        assert!((r.balancer_cpu_per_1k - 0.1).abs() < 1e-9);
        assert!((r.backend_cpu_per_1k - 0.2).abs() < 1e-9);
        assert!((r.upstream_conns_per_request - 0.01).abs() < 1e-9);
        assert!(
            (r.lab_cpu_per_1k - 0.4).abs() < 1e-9,
            "8 s of lab CPU over 20k requests"
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!((r.lab_cpu_share - 8.0 / (5.0 * cores)).abs() < 1e-9);
        assert!((r.p999_ms - 20.0).abs() < 1e-9);
        assert_eq!(r.errors(), 2_000);
        assert!(r.summary().contains("2000 non-2xx"), "{}", r.summary());
    }
}
