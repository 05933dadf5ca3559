//! Judging one scenario step from what the recorder saw (pure: samples and holder changes in,
//! verdict out; no clock).

use std::time::Duration;

use serde::Serialize;

use super::backend::{self, BackendExpect, BackendResult};
use crate::probe::{HolderChange, Sample};

/// Who should hold the VIP once the step has settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Holder(String),
    Nobody,
}

impl Expect {
    pub fn label(&self) -> String {
        match self {
            Expect::Holder(h) => h.clone(),
            Expect::Nobody => "nobody".into(),
        }
    }
}

/// What a step must show.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub id: String,
    pub title: String,
    pub expect: Expect,
    /// Steady-state responses must alternate between backends (round robin).
    pub alternate: bool,
    /// Longest run of one backend allowed by `alternate`: 1 for strict alternation. Each proxy
    /// worker keeps its own round-robin state (as nginx without a shared `zone`) and new
    /// connections land on workers by SO_REUSEPORT hashing, so with N workers a backend can
    /// answer up to N times in a row.
    pub max_run: usize,
    /// Every request of the whole step must succeed, transition included.
    pub all_succeed: bool,
    /// Upper bound for the failover time (Master_Down_Interval + detection + slack).
    pub bound: Option<Duration>,
    /// A maintenance step: what must happen to one backend's answers.
    pub backend: Option<BackendExpect>,
}

/// The step's time span on the recorder's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the step's action was taken.
    pub start: Duration,
    /// From here on the expected state must hold without failures.
    pub steady_from: Duration,
    pub end: Duration,
}

impl Window {
    /// The requests sent in this window, those of its steady state, and how many of each
    /// failed (both scenarios judge their steps from these).
    pub fn split<'a, T: Timed>(&self, requests: &'a [T]) -> Split<'a, T> {
        let in_step: Vec<&T> = requests
            .iter()
            .filter(|r| r.at() >= self.start && r.at() < self.end)
            .collect();
        let steady: Vec<&T> = in_step
            .iter()
            .copied()
            .filter(|r| r.at() >= self.steady_from)
            .collect();
        Split {
            failed: in_step.iter().filter(|r| !r.ok()).count(),
            steady_failed: steady.iter().filter(|r| !r.ok()).count(),
            in_step,
            steady,
        }
    }
}

/// A recorded client request: when it was sent and whether it was answered.
pub trait Timed {
    fn at(&self) -> Duration;
    fn ok(&self) -> bool;
}

impl Timed for Sample {
    fn at(&self) -> Duration {
        self.at
    }
    fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// A step's requests split by [`Window::split`].
pub struct Split<'a, T> {
    pub in_step: Vec<&'a T>,
    pub steady: Vec<&'a T>,
    pub failed: usize,
    pub steady_failed: usize,
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
    /// Longest time without a successful response, in seconds.
    pub longest_gap_s: f64,
    /// From the action to the first response served through the expected holder (or to the
    /// VIP disappearing, for "nobody"), in seconds.
    pub failover_s: Option<f64>,
    pub bound_s: Option<f64>,
    /// Successful responses per body.
    pub bodies: Vec<(String, usize)>,
    /// Failed requests per error (timeout, refused, HTTP status).
    pub errors: Vec<(String, usize)>,
    pub start_s: f64,
    pub end_s: f64,
    /// Requests each balancer's proxy logged during the step (its access log): an independent
    /// check of who served, next to "who held the VIP".
    pub access_logs: Vec<LogDelta>,
    /// A maintenance step: the drained (or readied) backend's answers.
    pub backend: Option<BackendResult>,
    /// Empty when the step matched.
    pub problems: Vec<String>,
}

/// Growth of one balancer's access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogDelta {
    pub balancer: String,
    /// Lines added during the whole step.
    pub step: usize,
    /// Lines added during the steady state.
    pub steady: usize,
}

/// Checks that only the expected holder's proxy logged requests in the steady state (and that
/// it did, if requests succeeded); records the deltas in `r`.
pub fn check_access_logs(spec: &StepSpec, r: &mut StepResult, logs: Vec<LogDelta>) {
    let steady_ok = r.steady_sent - r.steady_failed;
    for l in &logs {
        let expected = matches!(&spec.expect, Expect::Holder(h) if *h == l.balancer);
        if !expected && l.steady > 0 {
            r.problems.push(format!(
                "{}'s access log grew by {} in the steady state, but {} should serve",
                l.balancer,
                l.steady,
                spec.expect.label()
            ));
        }
        if expected && l.steady == 0 && steady_ok > 0 {
            r.problems.push(format!(
                "{}'s access log shows none of the {steady_ok} steady responses",
                l.balancer
            ));
        }
    }
    r.access_logs = logs;
}

impl StepResult {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Who held the VIP at `t` (the last change at or before `t`).
pub fn holders_at(changes: &[HolderChange], t: Duration) -> Vec<String> {
    changes
        .iter()
        .take_while(|c| c.at <= t)
        .last()
        .map(|c| c.holders.clone())
        .unwrap_or_default()
}

pub fn holders_label(holders: &[String]) -> String {
    match holders.len() {
        0 => "nobody".into(),
        _ => holders.join("+"),
    }
}

fn matches(expect: &Expect, holders: &[String]) -> bool {
    match expect {
        Expect::Holder(h) => holders.len() == 1 && holders.first() == Some(h),
        Expect::Nobody => holders.is_empty(),
    }
}

pub fn evaluate(
    spec: &StepSpec,
    w: Window,
    samples: &[Sample],
    changes: &[HolderChange],
) -> StepResult {
    let Split {
        in_step,
        steady,
        failed,
        steady_failed,
    } = w.split(samples);
    let steady_ok = steady.len() - steady_failed;

    // Longest stretch without a success, counting from the action to the window's end.
    let mut last_ok = w.start;
    let mut gap = Duration::ZERO;
    for s in in_step.iter().filter(|s| s.result.is_ok()) {
        gap = gap.max(s.at.saturating_sub(last_ok));
        last_ok = s.at;
    }
    gap = gap.max(w.end.saturating_sub(last_ok));

    let failover = match &spec.expect {
        Expect::Holder(_) => in_step
            .iter()
            .find(|s| s.result.is_ok() && matches(&spec.expect, &holders_at(changes, s.at)))
            .map(|s| s.at.saturating_sub(w.start)),
        Expect::Nobody => {
            if holders_at(changes, w.start).is_empty() {
                Some(Duration::ZERO)
            } else {
                changes
                    .iter()
                    .find(|c| c.at >= w.start && c.at < w.end && c.holders.is_empty())
                    .map(|c| c.at.saturating_sub(w.start))
            }
        }
    };

    let mut bodies: Vec<(String, usize)> = Vec::new();
    let mut errors: Vec<(String, usize)> = Vec::new();
    for s in &in_step {
        let (tally, key) = match &s.result {
            Ok(b) => (&mut bodies, b),
            Err(e) => (&mut errors, e),
        };
        match tally.iter_mut().find(|(k, _)| k == key) {
            Some((_, n)) => *n += 1,
            None => tally.push((key.clone(), 1)),
        }
    }
    bodies.sort();
    errors.sort();

    let observed_holders = holders_at(changes, w.end);
    let mut problems = Vec::new();
    if !matches(&spec.expect, &observed_holders) {
        problems.push(format!(
            "VIP held by {}, expected {}",
            holders_label(&observed_holders),
            spec.expect.label()
        ));
    }
    if changes.iter().any(|c| c.at > w.steady_from && c.at < w.end)
        || !matches(&spec.expect, &holders_at(changes, w.steady_from))
    {
        problems.push("the VIP holder changed during the steady state".into());
    }
    match &spec.expect {
        Expect::Holder(_) => {
            if steady.is_empty() {
                problems.push("no request was sent during the steady state".into());
            }
            if steady_failed > 0 {
                problems.push(format!(
                    "{steady_failed} of {} requests failed in the steady state",
                    steady.len()
                ));
            }
        }
        Expect::Nobody => {
            if steady_ok > 0 {
                problems.push(format!(
                    "{steady_ok} requests were answered while no balancer should serve the VIP"
                ));
            }
        }
    }
    if spec.all_succeed && failed > 0 {
        problems.push(format!(
            "{failed} of {} requests failed; every request had to succeed",
            in_step.len()
        ));
    }
    if spec.alternate {
        let ok_bodies: Vec<&String> = steady
            .iter()
            .filter_map(|s| s.result.as_ref().ok())
            .collect();
        let mut run = 0usize;
        let mut longest = 0usize;
        let mut prev: Option<&String> = None;
        for b in &ok_bodies {
            run = if prev == Some(*b) { run + 1 } else { 1 };
            longest = longest.max(run);
            prev = Some(*b);
        }
        let distinct = {
            let mut d: Vec<&String> = ok_bodies.clone();
            d.sort();
            d.dedup();
            d.len()
        };
        if ok_bodies.len() < 4 {
            problems.push(format!(
                "only {} steady responses: too few to check alternation",
                ok_bodies.len()
            ));
        } else if distinct < 2 {
            problems.push(format!(
                "responses do not alternate: all {} came from one backend",
                ok_bodies.len()
            ));
        } else if longest > spec.max_run.max(1) {
            problems.push(format!(
                "responses do not alternate between backends: one answered {longest} times in a row (at most {} allowed)",
                spec.max_run.max(1)
            ));
        }
    }
    match (spec.bound, failover) {
        (Some(bound), Some(f)) if f > bound => problems.push(format!(
            "failover took {:.2} s, more than the bound of {:.2} s",
            f.as_secs_f64(),
            bound.as_secs_f64()
        )),
        (_, None) => problems.push(match &spec.expect {
            Expect::Holder(h) => format!("no request was served through {h}"),
            Expect::Nobody => "the VIP never disappeared".into(),
        }),
        _ => {}
    }
    let backend = spec.backend.as_ref().map(|e| {
        let (result, found) = backend::check(e, w, samples);
        problems.extend(found);
        result
    });

    StepResult {
        id: spec.id.clone(),
        title: spec.title.clone(),
        expected: spec.expect.label(),
        observed: holders_label(&observed_holders),
        sent: in_step.len(),
        failed,
        steady_sent: steady.len(),
        steady_failed,
        longest_gap_s: gap.as_secs_f64(),
        failover_s: failover.map(|d| d.as_secs_f64()),
        bound_s: spec.bound.map(|d| d.as_secs_f64()),
        bodies,
        errors,
        start_s: w.start.as_secs_f64(),
        end_s: w.end.as_secs_f64(),
        access_logs: Vec::new(),
        backend,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ok(at: u64, body: &str) -> Sample {
        Sample {
            at: ms(at),
            latency: ms(1),
            result: Ok(body.into()),
        }
    }

    fn fail(at: u64) -> Sample {
        Sample {
            at: ms(at),
            latency: ms(100),
            result: Err("connect: timed out".into()),
        }
    }

    fn change(at: u64, holders: &[&str]) -> HolderChange {
        HolderChange {
            at: ms(at),
            holders: holders.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn spec(expect: Expect) -> StepSpec {
        StepSpec {
            id: "2".into(),
            title: "t".into(),
            expect,
            alternate: true,
            max_run: 1,
            all_succeed: false,
            bound: Some(ms(5000)),
            backend: None,
        }
    }

    /// Alternating successes every 20 ms in [from, to).
    fn alternating(from: u64, to: u64) -> Vec<Sample> {
        (from..to)
            .step_by(20)
            .enumerate()
            .map(|(i, t)| ok(t, if i % 2 == 0 { "NODE 01" } else { "NODE 02" }))
            .collect()
    }

    #[test]
    fn failover_to_the_backup_is_measured() {
        // Master until 1000 ms; the action at 1000; failures until 1700; server2 from 1650.
        let mut samples = alternating(0, 1000);
        samples.extend((1000..1700).step_by(100).map(fail));
        samples.extend(alternating(1700, 4000));
        let changes = vec![
            change(0, &["server1"]),
            change(1010, &[]),
            change(1650, &["server2"]),
        ];
        let w = Window {
            start: ms(1000),
            steady_from: ms(2000),
            end: ms(4000),
        };
        let r = evaluate(
            &spec(Expect::Holder("server2".into())),
            w,
            &samples,
            &changes,
        );
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.observed, "server2");
        assert_eq!(r.failed, 7);
        assert_eq!(r.steady_failed, 0);
        assert!((r.failover_s.unwrap() - 0.7).abs() < 1e-9);
        // From the last success before... the action (1000) to 1700.
        assert!((r.longest_gap_s - 0.7).abs() < 1e-9);
        assert_eq!(r.bodies.len(), 2);
    }

    #[test]
    fn wrong_holder_failures_and_slow_failover_are_problems() {
        let mut samples = alternating(0, 3000);
        samples.push(fail(3500));
        let changes = vec![change(0, &["server1"])];
        let w = Window {
            start: ms(0),
            steady_from: ms(1000),
            end: ms(4000),
        };
        let mut s = spec(Expect::Holder("server2".into()));
        s.bound = Some(ms(100));
        let r = evaluate(&s, w, &samples, &changes);
        assert!(!r.ok());
        let all = r.problems.join("\n");
        assert!(
            all.contains("VIP held by server1, expected server2"),
            "{all}"
        );
        assert!(all.contains("1 of"), "{all}");
        assert!(
            all.contains("no request was served through server2"),
            "{all}"
        );
        // The end of the window counts: 3000 -> 4000 without a success.
        assert!((r.longest_gap_s - 1.0).abs() < 0.021, "{}", r.longest_gap_s);
    }

    #[test]
    fn repeats_break_alternation() {
        let samples: Vec<Sample> = (0..2000).step_by(20).map(|t| ok(t, "NODE 01")).collect();
        let changes = vec![change(0, &["server1"])];
        let w = Window {
            start: ms(0),
            steady_from: ms(0),
            end: ms(2000),
        };
        let r = evaluate(
            &spec(Expect::Holder("server1".into())),
            w,
            &samples,
            &changes,
        );
        assert!(
            r.problems.iter().any(|p| p.contains("do not alternate")),
            "{:?}",
            r.problems
        );
        assert_eq!(r.failover_s, Some(0.0));

        // 01 01 02 02 01 01 ...: fine with two workers, not with one.
        let samples: Vec<Sample> = (0..100u64)
            .map(|i| {
                ok(
                    i * 20,
                    if (i / 2) % 2 == 0 {
                        "NODE 01"
                    } else {
                        "NODE 02"
                    },
                )
            })
            .collect();
        let mut s = spec(Expect::Holder("server1".into()));
        let r = evaluate(&s, w, &samples, &changes);
        assert!(
            r.problems.iter().any(|p| p.contains("2 times in a row")),
            "{:?}",
            r.problems
        );
        s.max_run = 2;
        let r = evaluate(&s, w, &samples, &changes);
        assert!(r.ok(), "{:?}", r.problems);
    }

    #[test]
    fn nobody_means_every_steady_request_fails() {
        let mut samples = alternating(0, 500);
        samples.extend((500..3000).step_by(100).map(fail));
        let changes = vec![change(0, &["server2"]), change(300, &[])];
        let w = Window {
            start: ms(0),
            steady_from: ms(800),
            end: ms(3000),
        };
        let mut s = spec(Expect::Nobody);
        s.alternate = false;
        let r = evaluate(&s, w, &samples, &changes);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.observed, "nobody");
        assert!((r.failover_s.unwrap() - 0.3).abs() < 1e-9);

        // Answers while nobody should serve are a problem.
        let samples = alternating(0, 3000);
        let r = evaluate(&s, w, &samples, &changes);
        assert!(
            r.problems.iter().any(|p| p.contains("answered")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn split_brain_and_flapping_are_reported() {
        let samples = alternating(0, 3000);
        let changes = vec![
            change(0, &["server1"]),
            change(2000, &["server1", "server2"]),
        ];
        let w = Window {
            start: ms(0),
            steady_from: ms(500),
            end: ms(3000),
        };
        let r = evaluate(
            &spec(Expect::Holder("server1".into())),
            w,
            &samples,
            &changes,
        );
        assert_eq!(r.observed, "server1+server2");
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("changed during the steady")));
    }

    #[test]
    fn all_succeed_counts_transition_failures() {
        let mut samples = alternating(0, 3000);
        samples.push(fail(100));
        samples.sort_by_key(|s| s.at);
        let changes = vec![change(0, &["server1"])];
        let w = Window {
            start: ms(0),
            steady_from: ms(500),
            end: ms(3000),
        };
        let mut s = spec(Expect::Holder("server1".into()));
        s.alternate = false;
        s.all_succeed = true;
        let r = evaluate(&s, w, &samples, &changes);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("every request had to succeed"));
    }

    #[test]
    fn access_logs_confirm_the_server() {
        let samples = alternating(0, 3000);
        let changes = vec![change(0, &["server2"])];
        let w = Window {
            start: ms(0),
            steady_from: ms(500),
            end: ms(3000),
        };
        let s = spec(Expect::Holder("server2".into()));
        let delta = |b: &str, step, steady| LogDelta {
            balancer: b.into(),
            step,
            steady,
        };
        let mut r = evaluate(&s, w, &samples, &changes);
        check_access_logs(
            &s,
            &mut r,
            vec![delta("server1", 10, 0), delta("server2", 140, 120)],
        );
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.access_logs.len(), 2);

        let mut r = evaluate(&s, w, &samples, &changes);
        check_access_logs(
            &s,
            &mut r,
            vec![delta("server1", 10, 3), delta("server2", 140, 0)],
        );
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems[0].contains("server1's access log grew by 3"));
        assert!(r.problems[1].contains("server2's access log shows none"));
    }

    #[test]
    fn holders_at_picks_the_last_change() {
        let changes = vec![change(10, &["a"]), change(20, &[]), change(30, &["b"])];
        assert!(holders_at(&changes, ms(5)).is_empty());
        assert_eq!(holders_at(&changes, ms(10)), vec!["a".to_string()]);
        assert!(holders_at(&changes, ms(25)).is_empty());
        assert_eq!(holders_at(&changes, ms(99)), vec!["b".to_string()]);
    }
}
