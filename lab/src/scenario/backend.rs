//! Judging a maintenance step by one backend's answers (pure): after a drain the backend must
//! stop answering, after a ready it must answer again, and the time each took is measured
//! from the samples (a backend is told by its page, e.g. "HTTP WEB NODE 01").

use std::time::Duration;

use serde::Serialize;

use super::eval::Window;
use crate::probe::Sample;

/// What a maintenance step expects of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendExpect {
    /// The backend's host name (for the report).
    pub host: String,
    /// Its page: how its answers are recognised.
    pub body: String,
    /// true: it must answer again (ready); false: it must stop answering (drain).
    pub serving: bool,
    /// Longest time allowed from the action to its last (drain) or first (ready) answer.
    pub bound: Duration,
}

/// What the step saw of the backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendResult {
    pub backend: String,
    /// "drained" or "ready".
    pub expect: &'static str,
    /// Drain: from the action to the backend's last answer (0 when it gave none after the
    /// action). Ready: from the action to its first answer (`None`: it never answered).
    pub took_s: Option<f64>,
    /// Its answers during the whole step, and during the steady state.
    pub answers: usize,
    pub steady_answers: usize,
}

/// The backend's part of a step's verdict, with any problems found.
pub fn check(e: &BackendExpect, w: Window, samples: &[Sample]) -> (BackendResult, Vec<String>) {
    let from_it: Vec<Duration> = samples
        .iter()
        .filter(|s| s.at >= w.start && s.at < w.end)
        .filter(|s| s.result.as_deref() == Ok(e.body.as_str()))
        .map(|s| s.at)
        .collect();
    let steady_answers = from_it.iter().filter(|&&at| at >= w.steady_from).count();
    let took = if e.serving {
        from_it.first().map(|at| at.saturating_sub(w.start))
    } else {
        Some(
            from_it
                .last()
                .map_or(Duration::ZERO, |at| at.saturating_sub(w.start)),
        )
    };
    let mut problems = Vec::new();
    match (e.serving, took) {
        (false, _) if steady_answers > 0 => problems.push(format!(
            "{} answered {steady_answers} requests in the steady state after its drain",
            e.host
        )),
        (true, None) => problems.push(format!("{} never answered after ready", e.host)),
        (true, Some(_)) if steady_answers == 0 => problems.push(format!(
            "{} answered no request in the steady state after ready",
            e.host
        )),
        _ => {}
    }
    if let Some(t) = took.filter(|t| *t > e.bound) {
        problems.push(format!(
            "{} took {:.2} s to {}, more than the bound of {:.2} s",
            e.host,
            t.as_secs_f64(),
            if e.serving {
                "answer again"
            } else {
                "stop answering"
            },
            e.bound.as_secs_f64()
        ));
    }
    let result = BackendResult {
        backend: e.host.clone(),
        expect: if e.serving { "ready" } else { "drained" },
        took_s: took.map(|t| t.as_secs_f64()),
        answers: from_it.len(),
        steady_answers,
    };
    (result, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(at: u64, body: &str) -> Sample {
        Sample {
            at: ms(at),
            latency: ms(1),
            result: Ok(body.into()),
        }
    }

    /// Alternating answers every 20 ms in [from, to), NODE 01 only while `with_01`.
    fn answers(from: u64, to: u64, with_01: bool) -> Vec<Sample> {
        (from..to)
            .step_by(20)
            .enumerate()
            .map(|(i, t)| {
                let body = if with_01 && i % 2 == 0 {
                    "NODE 01"
                } else {
                    "NODE 02"
                };
                sample(t, body)
            })
            .collect()
    }

    fn expect(serving: bool) -> BackendExpect {
        BackendExpect {
            host: "server3".into(),
            body: "NODE 01".into(),
            serving,
            bound: ms(1000),
        }
    }

    const W: Window = Window {
        start: Duration::from_millis(1000),
        steady_from: Duration::from_millis(1500),
        end: Duration::from_millis(3000),
    };

    #[test]
    fn drain_takes_effect_and_is_timed() {
        // server3 answers every other request until 1080 (in flight at the drain), then never.
        let mut samples = answers(0, 1120, true);
        samples.extend(answers(1120, 3000, false));
        let (r, problems) = check(&expect(false), W, &samples);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(r.expect, "drained");
        assert_eq!(r.steady_answers, 0);
        assert!((r.took_s.unwrap() - 0.08).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn answers_after_the_drain_are_a_problem() {
        let samples = answers(0, 3000, true);
        let (r, problems) = check(&expect(false), W, &samples);
        assert!(r.steady_answers > 0);
        assert!(problems[0].contains("in the steady state after its drain"));
        // And it took "forever": its last answer is near the end, over the bound.
        assert!(problems[1].contains("to stop answering"), "{problems:?}");
    }

    #[test]
    fn ready_brings_answers_back() {
        let mut samples = answers(0, 1200, false);
        samples.extend(answers(1200, 3000, true));
        let (r, problems) = check(&expect(true), W, &samples);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(r.expect, "ready");
        assert!((r.took_s.unwrap() - 0.2).abs() < 1e-9, "{r:?}");

        let (r, problems) = check(&expect(true), W, &answers(0, 3000, false));
        assert_eq!(r.took_s, None);
        assert!(problems[0].contains("never answered"), "{problems:?}");
    }
}
