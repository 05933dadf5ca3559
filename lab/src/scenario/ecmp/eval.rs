//! Judging one step of the ECMP scenario (pure: requests, the router's path changes and who
//! served which request in; verdict out; no clock).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::record::Request;
use crate::probe::HolderChange;
use crate::scenario::eval::{holders_at, holders_label, Split, Timed, Window};

impl Timed for Request {
    fn at(&self) -> Duration {
        self.at
    }
    fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// What a step must show.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub id: String,
    pub title: String,
    /// The balancers the router must route the VIP to once the step has settled (sorted).
    pub expect: Vec<String>,
    /// The balancer the step acts on: its last served and last failed request are measured.
    pub target: String,
    /// Upper bound from the action until the router's paths are `expect`.
    pub bound: Duration,
}

/// Each expected balancer serves at least this share of an even split of the steady answers
/// (a quarter of a half with two balancers): "well above zero", with room for hashing luck.
pub const MIN_SHARE_OF_EVEN: f64 = 0.25;

/// Answers one balancer served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Served {
    pub balancer: String,
    pub step: usize,
    pub steady: usize,
}

/// The verdict on one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    pub id: String,
    pub title: String,
    pub expected: String,
    pub observed: String,
    pub sent: usize,
    pub failed: usize,
    pub steady_sent: usize,
    pub steady_failed: usize,
    /// From the action until the router's paths were the expected ones, in seconds.
    pub routed_s: Option<f64>,
    pub bound_s: f64,
    /// From the action to the start of the last failed request of the step: after it, no new
    /// connection went to a balancer that could not answer.
    pub last_failure_s: Option<f64>,
    /// From the action to the start of the last request the target balancer answered.
    pub target_last_served_s: Option<f64>,
    /// Answers by balancer (from their access logs).
    pub served: Vec<Served>,
    /// Answers no access log holds (a log not yet flushed, or lost).
    pub unattributed: usize,
    /// Failed requests by what went wrong ("connect: Connection refused", "timeout", ...).
    pub errors: Vec<(String, usize)>,
    /// Long-lived keep-alive connections that broke during the step (reset, closed or
    /// silent): the established flows the step cost.
    pub held_broken: usize,
    pub start_s: f64,
    pub end_s: f64,
    /// Empty when the step matched.
    pub problems: Vec<String>,
}

impl StepResult {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Failed requests grouped by their error without the errno suffix, most frequent first.
fn error_kinds(requests: &[&Request]) -> Vec<(String, usize)> {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for r in requests {
        if let Err(e) = &r.result {
            let kind = e.split(" (os error").next().unwrap_or(e).to_string();
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((kind, 1)),
            }
        }
    }
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    kinds
}

/// Seconds from `from` to `t`.
fn since(t: Duration, from: Duration) -> f64 {
    t.saturating_sub(from).as_secs_f64()
}

pub fn evaluate(
    spec: &Spec,
    w: Window,
    requests: &[Request],
    paths: &[HolderChange],
    served_by: &HashMap<u64, String>,
    balancers: &[String],
    held_broken: &[Duration],
) -> StepResult {
    let Split {
        in_step,
        steady,
        failed,
        steady_failed,
    } = w.split(requests);
    let steady_ok = steady.len() - steady_failed;
    let by = |r: &Request| served_by.get(&r.id).map(String::as_str);
    let served: Vec<Served> = balancers
        .iter()
        .map(|b| Served {
            balancer: b.clone(),
            step: in_step.iter().filter(|r| by(r) == Some(b)).count(),
            steady: steady.iter().filter(|r| by(r) == Some(b)).count(),
        })
        .collect();
    let unattributed = in_step
        .iter()
        .filter(|r| r.result.is_ok() && by(r).is_none())
        .count();
    let routed = if holders_at(paths, w.start) == spec.expect {
        Some(Duration::ZERO)
    } else {
        paths
            .iter()
            .find(|c| c.at >= w.start && c.at < w.end && c.holders == spec.expect)
            .map(|c| c.at.saturating_sub(w.start))
    };
    let observed = holders_at(paths, w.end);
    let expected = holders_label(&spec.expect);

    let mut problems = Vec::new();
    if observed != spec.expect {
        problems.push(format!(
            "the router routes to {}, expected {expected}",
            holders_label(&observed)
        ));
    }
    if paths.iter().any(|c| c.at > w.steady_from && c.at < w.end)
        || holders_at(paths, w.steady_from) != spec.expect
    {
        problems.push("the router's paths changed during the steady state".into());
    }
    match routed {
        None => problems.push(format!("the router never routed to {expected}")),
        Some(t) if t > spec.bound => problems.push(format!(
            "the router took {:.2} s to route to {expected}, more than the bound of {:.2} s",
            t.as_secs_f64(),
            spec.bound.as_secs_f64()
        )),
        Some(_) => {}
    }
    if steady.is_empty() {
        problems.push("no request was sent during the steady state".into());
    }
    if steady_failed > 0 {
        problems.push(format!(
            "{steady_failed} of {} requests failed in the steady state",
            steady.len()
        ));
    }
    let even = steady_ok as f64 / spec.expect.len().max(1) as f64;
    for s in &served {
        if spec.expect.contains(&s.balancer) {
            if (s.steady as f64) < even * MIN_SHARE_OF_EVEN || s.steady == 0 {
                problems.push(format!(
                    "{} answered only {} of {steady_ok} steady requests",
                    s.balancer, s.steady
                ));
            }
        } else if s.steady > 0 {
            problems.push(format!(
                "{} answered {} steady requests, but the router should not route to it",
                s.balancer, s.steady
            ));
        }
    }
    StepResult {
        id: spec.id.clone(),
        title: spec.title.clone(),
        expected,
        observed: holders_label(&observed),
        sent: in_step.len(),
        failed,
        steady_sent: steady.len(),
        steady_failed,
        routed_s: routed.map(|d| d.as_secs_f64()),
        bound_s: spec.bound.as_secs_f64(),
        last_failure_s: in_step
            .iter()
            .rev()
            .find(|r| r.result.is_err())
            .map(|r| since(r.at, w.start)),
        target_last_served_s: in_step
            .iter()
            .rev()
            .find(|r| by(r) == Some(spec.target.as_str()))
            .map(|r| since(r.at, w.start)),
        served,
        unattributed,
        errors: error_kinds(&in_step),
        held_broken: held_broken
            .iter()
            .filter(|t| **t >= w.start && **t < w.end)
            .count(),
        start_s: w.start.as_secs_f64(),
        end_s: w.end.as_secs_f64(),
        problems,
    }
}

/// The closing table.
pub fn summary(steps: &[StepResult], duration_s: f64) -> String {
    let mut s = String::from(
        "STEP  EXPECTED         OBSERVED          SENT  FAILED  ROUTED(s)  BOUND(s)  LAST-FAIL(s)  KEPT BROKEN  STEADY SERVED BY  RESULT\n",
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |f| format!("{f:.2}"));
    for r in steps {
        let served: Vec<String> = r
            .served
            .iter()
            .map(|b| format!("{} {}", b.balancer, b.steady))
            .collect();
        s.push_str(&format!(
            "{:<5} {:<16} {:<16} {:>5}  {:>6}  {:>9}  {:>8.2}  {:>12}  {:>11}  {:<16}  {}\n",
            r.id,
            r.expected,
            r.observed,
            r.sent,
            r.failed,
            opt(r.routed_s),
            r.bound_s,
            opt(r.last_failure_s),
            r.held_broken,
            served.join(", "),
            if r.ok() { "ok" } else { "MISMATCH" }
        ));
    }
    let sent: usize = steps.iter().map(|r| r.sent).sum();
    let failed: usize = steps.iter().map(|r| r.failed).sum();
    s.push_str(&format!(
        "{sent} requests in {duration_s:.1} s, {failed} failed; {} of {} steps matched\n",
        steps.iter().filter(|r| r.ok()).count(),
        steps.len()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn both() -> Vec<String> {
        vec!["server1".into(), "server2".into()]
    }

    /// A request every 10 ms from `from` to `to`; ids from `first`; those before `fail_until`
    /// that `fails(id)` fail, the others are served alternately by server1/server2 (or only by
    /// server2 after `only2_from`).
    fn traffic(
        from: u64,
        to: u64,
        fail_until: u64,
        only2_from: u64,
    ) -> (Vec<Request>, HashMap<u64, String>) {
        let mut reqs = Vec::new();
        let mut by = HashMap::new();
        for (i, t) in (from..to).step_by(10).enumerate() {
            let id = i as u64;
            let to_1 = id.is_multiple_of(2);
            let fails = to_1 && t >= only2_from && t < fail_until;
            let served = if t >= only2_from && to_1 {
                None
            } else if to_1 {
                Some("server1")
            } else {
                Some("server2")
            };
            let served = if fails {
                None
            } else {
                served.or(Some("server2"))
            };
            if let Some(b) = served {
                by.insert(id, b.to_string());
            }
            reqs.push(Request {
                id,
                at: ms(t),
                latency: ms(1),
                result: if fails {
                    Err("refused".into())
                } else {
                    Ok("x".into())
                },
            });
        }
        (reqs, by)
    }

    #[test]
    fn withdrawal_is_measured_and_judged() {
        // Kill at 1000 ms; failures until 1800; router drops server1 at 1700.
        let (reqs, by) = traffic(0, 4000, 1800, 1000);
        let paths = vec![
            HolderChange {
                at: ms(0),
                holders: both(),
            },
            HolderChange {
                at: ms(1700),
                holders: vec!["server2".into()],
            },
        ];
        let spec = Spec {
            id: "2".into(),
            title: "t".into(),
            expect: vec!["server2".into()],
            target: "server1".into(),
            bound: ms(3000),
        };
        let w = Window {
            start: ms(1000),
            steady_from: ms(2500),
            end: ms(4000),
        };
        let r = evaluate(&spec, w, &reqs, &paths, &by, &both(), &[]);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.routed_s, Some(0.7));
        assert_eq!(r.last_failure_s, Some(0.78));
        assert_eq!(r.failed, 40);
        assert_eq!(r.errors, vec![("refused".to_string(), 40)]);
        assert_eq!(r.target_last_served_s, None);
        assert_eq!(r.served[0].steady, 0);
        assert_eq!(r.served[1].steady, 150);
        assert_eq!(r.observed, "server2");

        // The same run judged against a tighter bound, and against "both serve".
        let tight = Spec {
            bound: ms(500),
            ..spec.clone()
        };
        let r = evaluate(&tight, w, &reqs, &paths, &by, &both(), &[]);
        assert!(
            r.problems.iter().any(|p| p.contains("more than the bound")),
            "{:?}",
            r.problems
        );
        let both_spec = Spec {
            expect: both(),
            ..spec
        };
        let r = evaluate(
            &both_spec,
            w,
            &reqs,
            &paths,
            &by,
            &both(),
            &[ms(900), ms(1200), ms(1300)],
        );
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("server1 answered only 0")),
            "{:?}",
            r.problems
        );
        assert!(r.problems.iter().any(|p| p.contains("routes to server2")));
        // Breakages are counted inside the step's window only.
        assert_eq!(r.held_broken, 2);
    }

    #[test]
    fn both_serving_needs_a_fair_share_each() {
        let (reqs, mut by) = traffic(0, 2000, 0, u64::MAX);
        let paths = vec![HolderChange {
            at: ms(0),
            holders: both(),
        }];
        let spec = Spec {
            id: "1".into(),
            title: "t".into(),
            expect: both(),
            target: "server1".into(),
            bound: ms(2000),
        };
        let w = Window {
            start: ms(0),
            steady_from: ms(500),
            end: ms(2000),
        };
        let r = evaluate(&spec, w, &reqs, &paths, &by, &both(), &[]);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.routed_s, Some(0.0));
        assert_eq!(r.served[0].steady, 75);
        // server1's answers mostly moved to server2: 11 of 150 is under a quarter of 75.
        for id in 0..200u64 {
            if id.is_multiple_of(2) && id > 70 {
                by.insert(id, "server2".into());
            }
        }
        let r = evaluate(&spec, w, &reqs, &paths, &by, &both(), &[]);
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("server1 answered only")),
            "{:?}",
            r.problems
        );
        let table = summary(&[r], 2.0);
        assert!(table.contains("MISMATCH") && table.contains("200 requests in 2.0 s"));
    }
}
