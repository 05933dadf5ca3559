//! `lab scenario --topology ecmp`: both balancers announce the VIPs to the router over BGP and
//! serve at once; the steps kill one's proxy (its announcement is withdrawn), bring it back, cut
//! its link (BFD tears the session down) and heal it. Many client connections, each a new
//! flow the router hashes by ports, are attributed to the balancer that served them by its
//! access log; the router's paths to the VIP are read over rtnetlink. Each step is judged by
//! [`eval::evaluate`] and drawn on a timeline as the VRRP scenario's.

pub mod eval;
pub mod held;
pub mod record;

use std::io::Write as _;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use provision::inventory::Host;
use provision::render;
use serde::Serialize;

use super::eval::Window;
use super::{timeline, Action, SLACK};
use crate::error::{LabError, Result};
use crate::host::Service;
use crate::lab::Running;
use crate::router;
use eval::{Spec, StepResult};
use record::Recorder;

#[derive(Debug, Clone)]
pub struct Options {
    pub svg: PathBuf,
    pub json: Option<PathBuf>,
    /// How long each step's expected state must hold without failures.
    pub steady: Duration,
    /// Client threads, each with one connection at a time, a new one per request.
    pub clients: usize,
    /// Pause of each client thread between two requests.
    pub period: Duration,
    /// A request not answered within this fails.
    pub timeout: Duration,
    /// Long-lived keep-alive connections, each asking again every `held_period`.
    pub held: usize,
    pub held_period: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            svg: PathBuf::from("target/lab/ecmp-timeline.svg"),
            json: Some(PathBuf::from("target/lab/ecmp-scenario.json")),
            steady: Duration::from_millis(2000),
            clients: 6,
            period: Duration::from_millis(20),
            // Generous: the lab's daemons share two cores with whatever else runs; a slow
            // answer is not a failover's failure.
            timeout: Duration::from_secs(1),
            held: 20,
            held_period: Duration::from_millis(100),
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub steps: Vec<StepResult>,
    pub sent: usize,
    pub failed: usize,
    pub duration_s: f64,
    pub clients: usize,
    /// Long-lived connections kept open (replaced when broken).
    pub held: usize,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.steps.iter().all(StepResult::ok)
    }
}

pub use eval::summary;

/// How long BIRD and FRR take to bring a healed session back: BFD up, then BGP's connect retry
/// (1 s on the router's side) and OPEN/UPDATE, then the route.
pub const RESESSION: Duration = Duration::from_secs(10);

/// From a balancer's change (VIPs on or off vip0) to the router's kernel: BIRD's export, the
/// BGP UPDATE, bgpd's best path, zebra's install. Well under a second on an idle machine; up
/// to about 3 s was seen while builds and benchmarks loaded both cores.
pub const PROPAGATION: Duration = Duration::from_secs(2);

/// A step: what to do and what must follow.
struct Step {
    action: Action,
    spec: Spec,
}

/// The steps for an inventory with (at least) two balancers.
fn steps(lab: &Running) -> Result<Vec<Step>> {
    let mut balancers: Vec<&Host> = lab.inventory.balancers().collect();
    balancers.sort_by_key(|h| std::cmp::Reverse(h.priority.unwrap_or(0)));
    let (Some(b1), Some(b2)) = (balancers.first(), balancers.get(1)) else {
        return Err(LabError::Other(
            "the ECMP scenario needs two balancers".into(),
        ));
    };
    let (s1, s2) = (b1.name.clone(), b2.name.clone());
    let mut all: Vec<String> = balancers.iter().map(|b| b.name.clone()).collect();
    all.sort();
    let secs = Duration::from_secs_f64;
    let track_fail = secs(
        render::TRACK_INTERVAL_SECS * f64::from(render::TRACK_FALL) + render::TRACK_TIMEOUT_SECS,
    );
    let track_rise = secs(render::TRACK_INTERVAL_SECS + render::TRACK_TIMEOUT_SECS);
    let bfd_detect =
        Duration::from_millis(u64::from(router::BFD_INTERVAL_MS * router::BFD_MULTIPLIER));
    let others: Vec<String> = all.iter().filter(|n| **n != s1).cloned().collect();
    let step = |id: &str, title: String, action, expect: &Vec<String>, bound| Step {
        action,
        spec: Spec {
            id: id.into(),
            title,
            expect: expect.clone(),
            target: s1.clone(),
            bound,
        },
    };
    Ok(vec![
        step(
            "1",
            format!("all up: {} serve at once", all.join(" and ")),
            Action::Nothing,
            &all,
            SLACK,
        ),
        step(
            "2",
            format!("{s1}'s proxy dies: its announcement is withdrawn, {s2} serves everything"),
            Action::Stop(s1.clone(), vec![Service::Proxy]),
            &others,
            track_fail + PROPAGATION + SLACK,
        ),
        step(
            "2+",
            format!("{s1}'s proxy back: announced again, both serve"),
            Action::Start(s1.clone(), vec![Service::Proxy]),
            &all,
            // The proxy's start (`systemctl start`) counts too.
            track_rise + PROPAGATION + SLACK,
        ),
        step(
            "3",
            format!("{s1}'s link cut (the whole balancer dies): {s2} carries everything"),
            Action::Cut(s1.clone()),
            &others,
            bfd_detect + SLACK,
        ),
        step(
            "3+",
            format!("{s1}'s link back: announced again, both serve"),
            Action::Heal(s1.clone()),
            &all,
            RESESSION + SLACK,
        ),
    ])
}

/// Runs every step, printing as it goes; writes the SVG (and JSON) at the end.
pub fn run(lab: &Running, opts: &Options) -> Result<Report> {
    let router = lab.plan.router.as_ref().ok_or_else(|| {
        LabError::Other("this lab has no router: `lab up --topology ecmp` first".into())
    })?;
    let steps = steps(lab)?;
    let vip = lab.first_vip()?;
    println!("scenario (ecmp): preparing (every service up, every balancer announcing {vip})");
    super::reset_services(lab)?;
    let balancers: Vec<(String, std::net::Ipv4Addr)> = lab
        .inventory
        .balancers()
        .map(|b| (b.name.clone(), b.address))
        .collect();
    let names: Vec<String> = balancers.iter().map(|(n, _)| n.clone()).collect();
    let rec = Recorder::start(
        &lab.plan.client.ns,
        &router.ns,
        &balancers,
        vip,
        opts.clients,
        opts.period,
        opts.timeout,
    )?;
    let held = held::Held::start(
        &lab.plan.client.ns,
        vip,
        opts.held,
        opts.held_period,
        rec.started(),
    )?;
    println!(
        "scenario (ecmp): {} client threads on {} ask http://{vip}/?ecmp=ID, a new connection each, every {} ms; {} keep-alive connections ask every {} ms\n",
        opts.clients,
        lab.plan.client.address,
        opts.period.as_millis(),
        opts.held,
        opts.held_period.as_millis()
    );
    let mut windows = Vec::new();
    let mut error = None;
    for step in &steps {
        println!("step {:<3}{}", step.spec.id, step.spec.title);
        if let Some(cmd) = step.action.describe(lab.state.init) {
            println!("      $ {cmd}");
        }
        let _ = std::io::stdout().flush();
        let start = rec.now();
        if let Err(e) = step.action.apply(lab) {
            error = Some(e);
            break;
        }
        let deadline = Instant::now() + step.spec.bound + Duration::from_secs(3);
        while rec.paths() != step.spec.expect && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        // Flows in flight when the paths changed may still end on the old ones.
        thread::sleep(Duration::from_millis(500));
        // Kept connections replaced once the paths settled: the next step shows what a change
        // of paths costs connections opened now (those replaced earlier were retried until
        // they landed on a path that also exists after the change).
        held.renew();
        let steady_from = rec.now();
        thread::sleep(opts.steady);
        windows.push(Window {
            start,
            steady_from,
            end: rec.now(),
        });
        println!("      router routes to {}", rec.paths().join(" and "));
    }
    let duration = rec.now();
    if let Some(e) = rec.error() {
        return Err(LabError::Other(e));
    }
    let run = rec.run();
    let snap = rec.finish();
    let broken: Vec<Duration> = held.finish().into_iter().map(|b| b.at).collect();
    // The proxies flush their access logs every 100 ms.
    thread::sleep(Duration::from_millis(300));
    let served_by = record::served_by(&super::access_logs(lab), run);
    let results: Vec<StepResult> = steps
        .iter()
        .zip(&windows)
        .map(|(s, w)| {
            eval::evaluate(
                &s.spec,
                *w,
                &snap.requests,
                &snap.paths,
                &served_by,
                &names,
                &broken,
            )
        })
        .collect();
    println!();
    for r in &results {
        print_result(r);
    }
    let report = Report {
        sent: snap.requests.len(),
        failed: snap.requests.iter().filter(|r| r.result.is_err()).count(),
        duration_s: duration.as_secs_f64(),
        steps: results,
        clients: opts.clients,
        held: opts.held,
    };
    write_outputs(&report, &snap, &served_by, &broken, opts)?;
    if let Some(e) = error {
        return Err(e);
    }
    Ok(report)
}

fn print_result(r: &StepResult) {
    let opt = |v: Option<f64>| v.map_or_else(|| "never".to_string(), |f| format!("{f:.2} s"));
    let served: Vec<String> = r
        .served
        .iter()
        .map(|b| format!("{} {} (steady {})", b.balancer, b.step, b.steady))
        .collect();
    println!(
        "step {:<3}routed to {:<16} after {} (bound {:.2} s); sent {}, failed {} (steady {}), last failure {}; kept connections broken {}; served by {}{}  {}",
        r.id,
        r.observed,
        opt(r.routed_s),
        r.bound_s,
        r.sent,
        r.failed,
        r.steady_failed,
        opt(r.last_failure_s),
        r.held_broken,
        served.join(", "),
        if r.unattributed > 0 {
            format!(", {} not in any access log", r.unattributed)
        } else {
            String::new()
        },
        if r.ok() { "OK" } else { "MISMATCH" }
    );
    if !r.errors.is_empty() {
        let kinds: Vec<String> = r.errors.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        println!("      failures: {}", kinds.join(", "));
    }
    for p in &r.problems {
        println!("      !! {p}");
    }
}

fn write_outputs(
    report: &Report,
    snap: &record::Snapshot,
    served_by: &std::collections::HashMap<u64, String>,
    broken: &[Duration],
    opts: &Options,
) -> Result<()> {
    let balancers: Vec<String> = report.steps.first().map_or_else(Vec::new, |s| {
        s.served.iter().map(|b| b.balancer.clone()).collect()
    });
    let mut rows: Vec<(String, Vec<(f64, &'static str)>)> = balancers
        .iter()
        .map(|b| (format!("answered by {b}"), Vec::new()))
        .collect();
    let mut failed = Vec::new();
    for r in &snap.requests {
        let t = r.at.as_secs_f64();
        match (&r.result, served_by.get(&r.id)) {
            (Err(_), _) => failed.push((t, timeline::FAILED)),
            (Ok(_), Some(b)) => {
                if let Some((_, ticks)) = rows.iter_mut().find(|(l, _)| l.ends_with(b.as_str())) {
                    ticks.push((t, timeline::OK));
                }
            }
            (Ok(_), None) => failed.push((t, timeline::ODD)),
        }
    }
    rows.push(("failed".into(), failed));
    rows.push((
        "kept conn. broken".into(),
        broken
            .iter()
            .map(|t| (t.as_secs_f64(), timeline::FAILED))
            .collect(),
    ));
    let svg = timeline::render_parts(&timeline::Parts {
        title: format!(
            "lab scenario --topology ecmp: {} requests ({} clients, new connection each), {} failed, {} of {} steps matched",
            report.sent,
            report.clients,
            report.failed,
            report.steps.iter().filter(|r| r.ok()).count(),
            report.steps.len()
        ),
        duration_s: report.duration_s,
        balancers: &balancers,
        changes: &snap.paths,
        holder_label: "in router's ECMP",
        shared_ok: true,
        rows,
        steps: report
            .steps
            .iter()
            .map(|r| (r.id.clone(), r.start_s, r.ok()))
            .collect(),
    });
    super::write_file(&opts.svg, &svg)?;
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(report)
            .map_err(|e| LabError::Other(format!("serialise report: {e}")))?;
        super::write_file(path, &text)?;
    }
    Ok(())
}
