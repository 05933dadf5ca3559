//! `lab bench --compare nginx`: the seed's own system (Debian's nginx + keepalived, configs from
//! [`provision::render_seed`]) against ours (proxy + vrrp) on the same four hosts, with the same
//! wrk load against the same VIP, in interleaved rounds (ours, nginx, ours, nginx, ...) so a
//! slow minute of the machine hits both alike. Each round:
//!
//! 1. our stack as `lab up` left it: wrk against the VIP;
//! 2. our proxy and vrrp stopped on both balancers (the lab's own stop), nginx and keepalived
//!    started inside them; once one holds the VIP and it answers: wrk again;
//! 3. nginx and keepalived stopped by pid, ours started again, the VIP back on the preferred
//!    balancer.
//!
//! Step 3 runs whatever happens in step 2 (a guard also runs it on unwinding), so the lab is
//! left serving through our stack, with the VIP back on the preferred balancer.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use provision::render_seed;
use serde::Serialize;

use crate::bench::report::Report;
use crate::bench::{self, Load, Round};
use crate::error::{LabError, Result};
use crate::host::{HostHandle, Service};
use crate::lab::Running;
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

/// What `lab bench --compare nginx` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub load: Load,
    /// Where the wrk script goes.
    pub out: std::path::PathBuf,
    /// Rounds per system, interleaved.
    pub rounds: u32,
    /// Print a line per phase.
    pub progress: bool,
}

/// One system over all its rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub system: String,
    /// The balancer that held the VIP while wrk ran (most rounds).
    pub holder: String,
    /// Medians over the rounds.
    pub bench: Round,
    /// Errors the balancer logged while wrk ran, summed over the rounds, by kind:
    /// ("no live upstreams", 74388).
    pub logged_errors: Vec<(String, u64)>,
}

/// Both systems, and every round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub ours: Row,
    pub seed: Row,
    pub report: Report,
    /// Idle upstream connections pooled per worker by both sides (0: neither pools).
    pub upstream_keepalive: u32,
    /// Where the proxy and vrrp binaries came from (a debug build is much slower).
    pub bin_dir: String,
    /// Who holds the first VIP after our stack is back.
    pub restored_holder: String,
}

/// Round labels: short, so the ratio line reads "ours / nginx".
const OURS: &str = "ours";
const SEED: &str = "nginx";

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
    let script = bench::write_script(&opts.out)?;
    let mut rounds = Vec::new();
    let mut seed_errors: Vec<(String, u64)> = Vec::new();
    let mut restored_holder = String::new();
    for i in 1..=opts.rounds.max(1) {
        say(format!("== round {i}: ours (proxy + vrrp)"));
        let holder = bench::wait_answering(lab, "our stack", &bench::our_holder(lab))?;
        let r = bench::measure(lab, &opts.load, OURS, &holder, &script)?;
        say(r.summary());
        rounds.push(r);

        say(format!(
            "== round {i}: the seed's nginx + keepalived (our proxy and vrrp stopped)"
        ));
        let mut guard = Seed {
            lab,
            balancers: &balancers,
            started: Vec::new(),
            done: false,
        };
        let seed = guard.run(&configs, &opts.load, &script, &say);
        let restored = guard.restore();
        let (r, errors) = seed?;
        restored_holder = restored?;
        say(r.summary());
        say(format!(
            "VIP on {restored_holder} again, served by our proxy"
        ));
        rounds.push(r);
        for (msg, n) in errors {
            match seed_errors.iter_mut().find(|(m, _)| *m == msg) {
                Some((_, total)) => *total += n,
                None => seed_errors.push((msg, n)),
            }
        }
    }
    let report = Report {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        commands: vec![
            format!(
                "lab bench --compare nginx --rounds {} --duration {} --connections {}",
                opts.rounds,
                opts.load.duration.as_secs(),
                opts.load.connections
            ),
            bench::wrk_command_line(lab, &opts.load, &script)?,
        ],
        notes: vec![
            keepalive_note(upstream_keepalive),
            format!(
                "binaries from {}; {OURS} = proxy + vrrp, {SEED} = {} + {}",
                lab.lab.bin_dir.display(),
                version(NGINX),
                version(KEEPALIVED)
            ),
        ],
        rounds,
    };
    let medians = report.medians();
    let row = |system: &str, label: &str, logged_errors: Vec<(String, u64)>| {
        let m = medians
            .iter()
            .find(|m| m.system == label)
            .ok_or_else(|| LabError::Other(format!("no round of {label}")))?;
        Ok::<_, LabError>(Row {
            system: system.into(),
            holder: m.median.holder.clone(),
            bench: m.median.clone(),
            logged_errors,
        })
    };
    seed_errors.sort_by_key(|k| std::cmp::Reverse(k.1));
    Ok(Comparison {
        ours: row("proxy + vrrp (ours)", OURS, Vec::new())?,
        seed: row(
            &format!("{} + {} (seed)", version(NGINX), version(KEEPALIVED)),
            SEED,
            seed_errors,
        )?,
        report,
        upstream_keepalive,
        bin_dir: lab.lab.bin_dir.display().to_string(),
        restored_holder,
    })
}

fn keepalive_note(n: u32) -> String {
    if n > 0 {
        format!(
            "upstream keep-alive on both sides: our proxy.toml sets no `keepalive`, so the \
             default \"auto\" pools as many idle connections as were recently busy; nginx has \
             `keepalive {n}` per worker + proxy_http_version 1.1 + Connection \"\""
        )
    } else {
        "upstream keep-alive on neither side: our proxy.toml sets keepalive = 0, nginx has no \
         `keepalive`"
            .into()
    }
}

/// The side-by-side record: every round, medians, ratios, and what nginx logged.
pub fn table(c: &Comparison) -> String {
    let mut s = c.report.table();
    for (msg, n) in &c.seed.logged_errors {
        let _ = writeln!(s, "  {n:>8} x nginx error log: {msg}");
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

/// A process started for the comparison: its host, its pid outside the host, its stop signal.
struct Started {
    host: String,
    what: &'static str,
    pid: i32,
    signal: sys::Signal,
}

/// The seed's stack while it runs; `restore` (or, failing that, Drop) puts ours back.
struct Seed<'a> {
    lab: &'a Running,
    balancers: &'a [HostHandle],
    started: Vec<Started>,
    done: bool,
}

impl Seed<'_> {
    /// Replaces our stack with the seed's and measures one round; returns it with the errors the
    /// VIP holder's nginx logged meanwhile.
    fn run(
        &mut self,
        configs: &[(String, String)],
        load: &Load,
        script: &std::path::Path,
        say: &dyn Fn(String),
    ) -> Result<(Round, Vec<(String, u64)>)> {
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
        // keepalived runs on every balancer: the highest priority one must hold the VIP.
        let want = match self.balancers.first() {
            Some(h) => bench::Holder::Preferred(h.host.name.clone()),
            None => bench::Holder::Any,
        };
        let holder = bench::wait_answering(self.lab, "nginx + keepalived", &want)?;
        let log_len =
            |h: &HostHandle| std::fs::metadata(h.path(NGINX_ERROR_LOG)).map_or(0, |m| m.len());
        let before: Vec<u64> = self.balancers.iter().map(log_len).collect();
        let round = bench::measure(self.lab, load, SEED, &holder, script)?;
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
        Ok((round, errors))
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
        bench::wait_answering(
            self.lab,
            "our stack, restarted",
            &bench::our_holder(self.lab),
        )
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
    fn keepalive_is_stated_either_way() {
        assert!(keepalive_note(32).contains("`keepalive 32`"));
        assert!(keepalive_note(0).contains("neither side"));
    }
}
