//! The outcome of a whole scenario run: every step's verdict, plus the raw samples and VIP
//! holder changes the timeline is drawn from, and the closing table printed after the run.

use serde::Serialize;

use super::eval::StepResult;
use crate::probe::{HolderChange, Sample};

/// The full run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub steps: Vec<StepResult>,
    pub sent: usize,
    pub failed: usize,
    pub duration_s: f64,
    #[serde(skip)]
    pub samples: Vec<Sample>,
    #[serde(skip)]
    pub changes: Vec<HolderChange>,
    #[serde(skip)]
    pub balancers: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.steps.iter().all(StepResult::ok)
    }
}

/// The closing table.
pub fn summary(report: &Report) -> String {
    let mut s = String::from(
        "STEP  EXPECTED  OBSERVED  SENT  FAILED  GAP(s)  FAILOVER(s)  BOUND(s)  RESULT\n",
    );
    for r in &report.steps {
        s.push_str(&format!(
            "{:<5} {:<9} {:<9} {:>4}  {:>6}  {:>6.2}  {:>11}  {:>8}  {}\n",
            r.id,
            r.expected,
            r.observed,
            r.sent,
            r.failed,
            r.longest_gap_s,
            r.failover_s
                .map(|f| format!("{f:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.bound_s
                .map(|f| format!("{f:.2}"))
                .unwrap_or_else(|| "-".into()),
            if r.ok() { "ok" } else { "MISMATCH" }
        ));
    }
    for r in &report.steps {
        if let Some(b) = &r.backend {
            let took = b.took_s.map_or("never".into(), |t| format!("{t:.2} s"));
            s.push_str(&format!(
                "step {}: {} {}: {} answer {took} after the API call, {} in the steady state; {} failed requests\n",
                r.id,
                b.backend,
                b.expect,
                if b.expect == "drained" { "last" } else { "first" },
                b.steady_answers,
                r.failed
            ));
        }
    }
    s.push_str(&format!(
        "{} requests in {:.1} s, {} failed; {} of {} steps matched\n",
        report.sent,
        report.duration_s,
        report.failed,
        report.steps.iter().filter(|r| r.ok()).count(),
        report.steps.len()
    ));
    s
}
