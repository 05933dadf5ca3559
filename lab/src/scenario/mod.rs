//! `lab scenario`: the seed's test procedure ("运行测试用例"), automated. A client polls the
//! first VIP every 20 ms while the steps stop and start services and cut links; each step is
//! judged by [`eval::evaluate`], the run summed up in a [`Report`] and drawn by [`timeline`].

pub mod backend;
pub mod ecmp;
pub mod eval;
mod report;
pub mod timeline;

pub use report::{summary, Report};

use std::io::Write as _;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use provision::inventory::Host;
use provision::render;

use crate::error::{LabError, Result};
use crate::host::Service;
use crate::lab::Running;
use crate::probe::Recorder;
use crate::state::Init;
use backend::BackendExpect;
use eval::{Expect, LogDelta, StepResult, StepSpec, Window};

/// Extra time allowed on top of the protocol's own delays (process start, probes, a loaded
/// machine).
pub const SLACK: Duration = Duration::from_millis(2000);

#[derive(Debug, Clone)]
pub struct Options {
    /// Where to write the timeline picture.
    pub svg: PathBuf,
    /// Where to write the machine-readable report (JSON), if anywhere.
    pub json: Option<PathBuf>,
    /// How long each step's expected state must hold without failures.
    pub steady: Duration,
    /// Client polling period.
    pub period: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            svg: PathBuf::from("target/lab/timeline.svg"),
            json: None,
            steady: Duration::from_millis(1500),
            period: Duration::from_millis(20),
        }
    }
}

/// What a step does to the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Stop(String, Vec<Service>),
    Start(String, Vec<Service>),
    Cut(String),
    Heal(String),
    /// Set an upstream server's state ("drain", "ready", "maint") through each listed
    /// balancer's admin API, as an operator would (the token from the balancer's own file).
    SetServer {
        balancers: Vec<String>,
        server: String,
        state: &'static str,
    },
}

impl Action {
    /// What the step does, as an operator would type it: on systemd hosts the seed's own
    /// `systemctl stop/start`, in the order the step applies it.
    pub fn describe(&self, init: Init) -> Option<String> {
        let services = |verb: &str, h: &str, svcs: &[Service]| match init {
            Init::Systemd => {
                let cmds: Vec<String> = svcs
                    .iter()
                    .map(|s| format!("systemctl {verb} {}", s.unit()))
                    .collect();
                format!("{h}: {}", cmds.join(" && "))
            }
            Init::None => {
                let names: Vec<&str> = svcs.iter().map(|s| s.name()).collect();
                format!("lab {verb} {h} {}", names.join(" "))
            }
        };
        match self {
            Action::Nothing => None,
            Action::Stop(h, svcs) => Some(services("stop", h, svcs)),
            Action::Start(h, svcs) => Some(services("start", h, svcs)),
            Action::Cut(h) => Some(format!("lab cut {h}")),
            Action::Heal(h) => Some(format!("lab heal {h}")),
            Action::SetServer {
                balancers,
                server,
                state,
            } => Some(format!(
                "{}: curl -H \"Authorization: Bearer $(cat {})\" -d '{{\"state\":\"{state}\"}}' http://{}{}",
                balancers.join(", "),
                render::PROXY_TOKEN_PATH,
                render::PROXY_ADMIN,
                server_path(server)
            )),
        }
    }

    fn apply(&self, lab: &Running) -> Result<()> {
        match self {
            Action::Nothing => Ok(()),
            Action::Stop(h, svcs) => {
                for s in svcs {
                    lab.stop(h, Some(*s))?;
                }
                Ok(())
            }
            Action::Start(h, svcs) => {
                for s in svcs {
                    lab.start(h, Some(*s))?;
                }
                Ok(())
            }
            Action::Cut(h) => lab.set_link(h, false),
            Action::Heal(h) => lab.set_link(h, true),
            Action::SetServer {
                balancers,
                server,
                state,
            } => {
                for b in balancers {
                    set_server(lab, b, server, state)?;
                }
                Ok(())
            }
        }
    }
}

/// The admin API path of `server` in the rendered upstream.
fn server_path(server: &str) -> String {
    format!("/api/upstreams/{}/servers/{server}", render::UPSTREAM_NAME)
}

/// POSTs `{"state": STATE}` for `server` to `balancer`'s admin listener (127.0.0.1 inside it).
fn set_server(lab: &Running, balancer: &str, server: &str, state: &str) -> Result<()> {
    let host = lab.host(balancer)?;
    let token_path = host.path(render::PROXY_TOKEN_PATH);
    let token = std::fs::read_to_string(&token_path)
        .map_err(|e| LabError::io(format!("read {}", token_path.display()), e))?;
    let admin: std::net::SocketAddr = render::PROXY_ADMIN
        .parse()
        .map_err(|_| LabError::Other("PROXY_ADMIN is not an address".into()))?;
    let (path, body) = (server_path(server), format!("{{\"state\":\"{state}\"}}"));
    let token = token.trim().to_string();
    let answer = crate::probe::in_netns(&lab.lab.names.host_ns(balancer), move || {
        crate::probe::http_post_json(admin, &path, &token, &body, Duration::from_secs(5))
    })?;
    match answer {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => Err(LabError::Other(format!(
            "{balancer}: {state} {server}: HTTP {status}: {}",
            body.trim()
        ))),
        Err(e) => Err(LabError::Other(format!(
            "{balancer}: {state} {server}: {e}"
        ))),
    }
}

/// A step: what to do and what must follow.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    pub spec: StepSpec,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The steps for an inventory with (at least) two balancers and two backends: the seed's own
/// procedure (1)-(5), then what it never tried: (6) proxy death with vrrp running, (7) a
/// backend stopping, (8) a cut link, (9) a backend drained for maintenance through the admin
/// API on both balancers; "+" steps restore what the step before broke.
pub fn steps(lab: &Running) -> Result<Vec<Step>> {
    let mut balancers: Vec<&Host> = lab.inventory.balancers().collect();
    balancers.sort_by_key(|h| std::cmp::Reverse(h.priority.unwrap_or(0)));
    let backends: Vec<&Host> = lab.inventory.backends().collect();
    let (Some(b1), Some(b2), Some(w1), Some(w2)) = (
        balancers.first(),
        balancers.get(1),
        backends.first(),
        backends.get(1),
    ) else {
        return Err(LabError::Other(
            "the scenario needs two balancers and two backends".into(),
        ));
    };
    let adv = lab.inventory.network.advert_int;
    let md = |h: &Host| {
        secs(render::master_down_interval_secs(
            adv,
            h.priority.unwrap_or(100),
        ))
    };
    let track_fail = secs(
        render::TRACK_INTERVAL_SECS * f64::from(render::TRACK_FALL) + render::TRACK_TIMEOUT_SECS,
    );
    let track_rise = secs(render::TRACK_INTERVAL_SECS + render::TRACK_TIMEOUT_SECS);
    let (p, s, w) = (b1.name.clone(), b2.name.clone(), w2.name.clone());
    let pv = vec![Service::Proxy, Service::Vrrp];
    // The rendered proxy.toml says workers = "auto": one per core.
    let workers = thread::available_parallelism().map_or(1, |n| n.get());
    let maintenance = |serving: bool| BackendExpect {
        host: w1.name.clone(),
        body: w1.page.clone().unwrap_or_default(),
        serving,
        bound: SLACK,
    };
    let set_w1 = |state| Action::SetServer {
        balancers: vec![p.clone(), s.clone()],
        server: format!("{}:{}", w1.address, render::BACKEND_PORT),
        state,
    };
    let step = |id: &str, title: String, action, expect, alternate, all_succeed, bound| Step {
        action,
        spec: StepSpec {
            id: id.into(),
            title,
            expect,
            alternate,
            max_run: workers,
            all_succeed,
            bound,
            backend: None,
        },
    };
    let holder = |h: &str| Expect::Holder(h.to_string());
    let with_backend = |mut st: Step, e| {
        st.spec.backend = Some(e);
        st
    };
    let w1n = &w1.name;
    Ok(vec![
        step(
            "1",
            format!("all up: VIP served through {p}, responses alternate between backends"),
            Action::Nothing,
            holder(&p),
            true,
            true,
            Some(SLACK),
        ),
        step(
            "2",
            format!("{p}'s proxy and vrrp stopped: served through {s}"),
            Action::Stop(p.clone(), pv.clone()),
            holder(&s),
            true,
            false,
            Some(md(b2) + SLACK),
        ),
        step(
            "3",
            format!("{s}'s proxy and vrrp stopped too: VIP unreachable"),
            Action::Stop(s.clone(), pv.clone()),
            Expect::Nobody,
            false,
            false,
            Some(SLACK),
        ),
        step(
            "4",
            format!("{s} restarted: served through {s}"),
            Action::Start(s.clone(), pv.clone()),
            holder(&s),
            true,
            false,
            Some(md(b2) + SLACK),
        ),
        step(
            "5",
            format!("{p} restarted: VIP moves back to {p} (preemption)"),
            Action::Start(p.clone(), pv.clone()),
            holder(&p),
            true,
            false,
            Some(md(b1) + SLACK),
        ),
        step(
            "6",
            format!("only {p}'s proxy dies, its vrrp runs: tracking moves the VIP to {s}"),
            Action::Stop(p.clone(), vec![Service::Proxy]),
            holder(&s),
            true,
            false,
            Some(track_fail + md(b2) + SLACK),
        ),
        step(
            "6+",
            format!("{p}'s proxy back: VIP returns to {p}"),
            Action::Start(p.clone(), vec![Service::Proxy]),
            holder(&p),
            true,
            false,
            Some(track_rise + md(b1) + SLACK),
        ),
        step(
            "7",
            format!("backend {w} stops: every request still succeeds"),
            Action::Stop(w.clone(), vec![Service::Httpd]),
            holder(&p),
            false,
            true,
            Some(SLACK),
        ),
        step(
            "7+",
            format!("backend {w} back"),
            Action::Start(w.clone(), vec![Service::Httpd]),
            holder(&p),
            false,
            true,
            Some(SLACK),
        ),
        step(
            "8",
            format!("{p}'s link cut (host death): served through {s}"),
            Action::Cut(p.clone()),
            holder(&s),
            true,
            false,
            Some(md(b2) + SLACK),
        ),
        step(
            "8+",
            format!("{p}'s link back: VIP returns to {p}"),
            Action::Heal(p.clone()),
            holder(&p),
            false,
            false,
            Some(md(b1) + SLACK),
        ),
        with_backend(
            step(
                "9",
                format!("backend {w1n} drained through the admin API under load: no request fails, {w1n} stops answering"),
                set_w1("drain"),
                holder(&p),
                false,
                true,
                Some(SLACK),
            ),
            maintenance(false),
        ),
        with_backend(
            step(
                "9+",
                format!("backend {w1n} ready again: its answers resume"),
                set_w1("ready"),
                holder(&p),
                false,
                true,
                Some(SLACK),
            ),
            maintenance(true),
        ),
    ])
}

/// Brings every host back to "all up": links healed, every service running, the preferred
/// balancer holding the VIP.
fn reset(lab: &Running, preferred: &str) -> Result<()> {
    reset_services(lab)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let holders = lab
            .vip_holders()
            .into_iter()
            .next()
            .map(|(_, h)| h)
            .unwrap_or_default();
        if holders == [preferred.to_string()] {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: format!("{preferred} to hold the VIP before the scenario"),
                secs: 10.0,
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Every link healed, every service running and answering.
fn reset_services(lab: &Running) -> Result<()> {
    for h in lab.hosts() {
        lab.set_link(&h.host.name, true)?;
        lab.start(&h.host.name, None)?;
    }
    lab.wait_ready(Duration::from_secs(15))
}

/// Writes `text` to `path`, creating its directory.
fn write_file(path: &std::path::Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
    }
    std::fs::write(path, text).map_err(|e| LabError::io(format!("write {}", path.display()), e))
}

/// Runs every step, printing as it goes; writes the SVG (and JSON) at the end.
pub fn run(lab: &Running, opts: &Options) -> Result<Report> {
    let steps = steps(lab)?;
    let vip = lab.first_vip()?;
    let preferred = match steps.first().map(|s| &s.spec.expect) {
        Some(Expect::Holder(h)) => h.clone(),
        _ => return Err(LabError::Other("no preferred balancer".into())),
    };
    println!("scenario: preparing (all services up, {preferred} holding {vip})");
    reset(lab, &preferred)?;
    let balancers: Vec<(String, String)> = lab
        .inventory
        .balancers()
        .map(|b| (b.name.clone(), lab.lab.names.host_ns(&b.name)))
        .collect();
    let rec = Recorder::start(&lab.plan.client.ns, &balancers, vip, opts.period)?;
    println!(
        "scenario: client {} polls http://{vip}/ every {} ms\n",
        lab.plan.client.address,
        opts.period.as_millis()
    );
    let mut results = Vec::new();
    let mut error = None;
    for step in &steps {
        let spec = &step.spec;
        println!("step {:<3}{}", spec.id, spec.title);
        if let Some(cmd) = step.action.describe(lab.state.init) {
            println!("      $ {cmd}");
        }
        let _ = std::io::stdout().flush();
        let logs_start = access_log_lines(lab);
        let start = rec.now();
        if let Err(e) = step.action.apply(lab) {
            error = Some(e);
            break;
        }
        let wait = spec.bound.unwrap_or(SLACK) + Duration::from_secs(3);
        let deadline = Instant::now() + wait;
        // Settled: the expected holder, and (when someone should serve) a success after the
        // action. A step that never settles is judged at its deadline and fails.
        loop {
            let holders = rec.holders();
            let settled = match &spec.expect {
                Expect::Holder(h) => {
                    holders == [h.clone()] && {
                        let (samples, _) = rec.snapshot();
                        samples
                            .iter()
                            .rev()
                            .take_while(|s| s.at >= start)
                            .any(|s| s.result.is_ok())
                    }
                }
                Expect::Nobody => holders.is_empty(),
            };
            if settled || Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Requests in flight at the moment of settling may still be old-state answers (and
        // the proxies flush their access logs every 100 ms).
        thread::sleep(Duration::from_millis(300));
        let steady_from = rec.now();
        let logs_steady = access_log_lines(lab);
        thread::sleep(opts.steady);
        let end = rec.now();
        let logs_end = access_log_lines(lab);
        let (samples, changes) = rec.snapshot();
        let mut r = eval::evaluate(
            spec,
            Window {
                start,
                steady_from,
                end,
            },
            &samples,
            &changes,
        );
        let deltas = logs_end
            .iter()
            .map(|(name, n_end)| {
                let at = |v: &[(String, usize)]| {
                    v.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c)
                };
                LogDelta {
                    balancer: name.clone(),
                    step: n_end.saturating_sub(at(&logs_start)),
                    steady: n_end.saturating_sub(at(&logs_steady)),
                }
            })
            .collect();
        eval::check_access_logs(spec, &mut r, deltas);
        print_result(&r);
        results.push(r);
    }
    let duration = rec.now();
    let (samples, changes) = rec.finish();
    let report = Report {
        sent: samples.len(),
        failed: samples.iter().filter(|s| s.result.is_err()).count(),
        duration_s: duration.as_secs_f64(),
        steps: results,
        samples,
        changes,
        balancers: balancers.into_iter().map(|(n, _)| n).collect(),
    };
    write_outputs(lab, &report, opts)?;
    if let Some(e) = error {
        return Err(e);
    }
    Ok(report)
}

/// Each balancer's proxy access log (read through its keeper, from its own /var/log); empty
/// when it cannot be read.
pub(crate) fn access_logs(lab: &Running) -> Vec<(String, String)> {
    let path = format!("{}/access.log", render::PROXY_LOG_DIR);
    lab.hosts()
        .into_iter()
        .filter(|h| h.host.role == provision::inventory::Role::Balancer)
        .map(|h| {
            let text = h.read_file(&path).unwrap_or_default();
            (h.host.name, text)
        })
        .collect()
}

/// Lines in each balancer's access log.
fn access_log_lines(lab: &Running) -> Vec<(String, usize)> {
    access_logs(lab)
        .into_iter()
        .map(|(name, text)| (name, text.matches('\n').count()))
        .collect()
}

fn write_outputs(lab: &Running, report: &Report, opts: &Options) -> Result<()> {
    let pages: Vec<String> = lab
        .inventory
        .backends()
        .filter_map(|b| b.page.clone())
        .collect();
    write_file(&opts.svg, &timeline::render(report, &pages))?;
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(report)
            .map_err(|e| LabError::Other(format!("serialise report: {e}")))?;
        write_file(path, &text)?;
    }
    Ok(())
}

fn print_result(r: &StepResult) {
    let failover = match (r.failover_s, r.bound_s) {
        (Some(f), Some(b)) => format!("{f:.2} s (bound {b:.2} s)"),
        (Some(f), None) => format!("{f:.2} s"),
        (None, _) => "never".into(),
    };
    let bodies: Vec<String> = r.bodies.iter().map(|(b, n)| format!("{b} x{n}")).collect();
    println!(
        "      expected {:<8} observed {:<8} sent {:>4}  failed {:>3} (steady {})  longest gap {:.2} s  failover {}  {}",
        r.expected,
        r.observed,
        r.sent,
        r.failed,
        r.steady_failed,
        r.longest_gap_s,
        failover,
        if r.ok() { "OK" } else { "MISMATCH" }
    );
    if !bodies.is_empty() {
        println!("      answers: {}", bodies.join(", "));
    }
    if !r.errors.is_empty() {
        let errors: Vec<String> = r.errors.iter().map(|(e, n)| format!("{e} x{n}")).collect();
        println!("      failures: {}", errors.join(", "));
    }
    if !r.access_logs.is_empty() {
        let logs: Vec<String> = r
            .access_logs
            .iter()
            .map(|l| format!("{} +{} (steady +{})", l.balancer, l.step, l.steady))
            .collect();
        println!("      access logs: {}", logs.join(", "));
    }
    if let Some(b) = &r.backend {
        let took = b
            .took_s
            .map_or("never".to_string(), |t| format!("{t:.2} s"));
        let what = if b.expect == "drained" {
            "last answer"
        } else {
            "first answer"
        };
        println!(
            "      {} {}: {what} {took} after the action; {} answers in the step, {} in the steady state",
            b.backend, b.expect, b.answers, b.steady_answers
        );
    }
    for p in &r.problems {
        println!("      !! {p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_described_as_systemctl_commands_on_systemd_hosts() {
        let stop = Action::Stop("server1".into(), vec![Service::Proxy, Service::Vrrp]);
        assert_eq!(
            stop.describe(Init::Systemd).as_deref(),
            Some("server1: systemctl stop proxy && systemctl stop vrrp")
        );
        assert_eq!(
            stop.describe(Init::None).as_deref(),
            Some("lab stop server1 proxy vrrp")
        );
        let start = Action::Start("server4".into(), vec![Service::Httpd]);
        assert_eq!(
            start.describe(Init::Systemd).as_deref(),
            Some("server4: systemctl start apache2")
        );
        assert_eq!(Action::Nothing.describe(Init::Systemd), None);
        let drain = Action::SetServer {
            balancers: vec!["server1".into(), "server2".into()],
            server: "172.16.249.201:80".into(),
            state: "drain",
        };
        assert_eq!(
            drain.describe(Init::Systemd).as_deref(),
            Some("server1, server2: curl -H \"Authorization: Bearer $(cat /etc/proxy/admin.token)\" -d '{\"state\":\"drain\"}' http://127.0.0.1:9900/api/upstreams/ProxyServer/servers/172.16.249.201:80")
        );
    }
}
