//! Active health checks, the pure part: what one check's answer means (`expect`) and the
//! fall/rise counting that turns results into up/down (HAProxy's `fall`/`rise`, nginx Plus's
//! `fails`/`passes`). No I/O, no clock: the checker thread feeds results in.

use std::time::Duration;

use serde::Serialize;

use crate::config::HealthCheck;

/// A server's health as the active checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No check configured, or none finished yet: the server is used (as nginx Plus and
    /// HAProxy start servers up).
    Unchecked,
    Up,
    Down,
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A response head with this status arrived within the timeout.
    Status(u16),
    /// Connect refused/reset, timeout, or not an HTTP response: the reason.
    Failed(String),
}

impl Probe {
    pub fn passed(&self, check: &HealthCheck) -> bool {
        matches!(self, Probe::Status(s) if check.expect.matches(*s))
    }

    /// For logs and the status API: "200", "500", "timeout", ...
    pub fn describe(&self) -> String {
        match self {
            Probe::Status(s) => s.to_string(),
            Probe::Failed(why) => why.clone(),
        }
    }
}

/// Consecutive passes and failures of one server's checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counter {
    passes: u32,
    fails: u32,
}

impl Counter {
    /// Count one check; returns the new health (a change only after `fall` failures in a
    /// row while up/unchecked, or `rise` passes in a row while down; the first pass of an
    /// unchecked server makes it up).
    pub fn record(&mut self, health: Health, passed: bool, fall: u32, rise: u32) -> Health {
        if passed {
            self.passes = self.passes.saturating_add(1);
            self.fails = 0;
        } else {
            self.fails = self.fails.saturating_add(1);
            self.passes = 0;
        }
        match health {
            Health::Unchecked if passed => Health::Up,
            Health::Unchecked | Health::Up if self.fails >= fall.max(1) => Health::Down,
            Health::Down if self.passes >= rise.max(1) => Health::Up,
            other => other,
        }
    }
}

/// The last check of a server, for the status API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastCheck {
    /// "200", "timeout", "connection refused", ...
    pub result: String,
    pub passed: bool,
    pub latency_ms: f64,
    /// Unix time in seconds.
    pub at: f64,
}

impl LastCheck {
    pub fn new(probe: &Probe, passed: bool, latency: Duration, at_unix: f64) -> LastCheck {
        LastCheck {
            result: probe.describe(),
            passed,
            latency_ms: latency.as_secs_f64() * 1000.0,
            at: at_unix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Expect;

    fn run(results: &str, fall: u32, rise: u32) -> String {
        let mut c = Counter::default();
        let mut h = Health::Unchecked;
        results
            .chars()
            .map(|r| {
                h = c.record(h, r == '+', fall, rise);
                match h {
                    Health::Unchecked => '?',
                    Health::Up => 'U',
                    Health::Down => 'D',
                }
            })
            .collect()
    }

    #[test]
    fn fall_and_rise_count_consecutive_results() {
        // fall 3, rise 2: two failures are not enough, a pass resets the count.
        assert_eq!(run("--+---++", 3, 2), "??UUUDDU");
        assert_eq!(run("+--+---", 3, 2), "UUUUUUD");
        // Down needs rise passes in a row; one failure in between starts over.
        assert_eq!(run("---+-++", 3, 2), "??DDDDU");
        assert_eq!(run("-+", 1, 1), "DU");
    }

    #[test]
    fn expect_decides_what_passes() {
        let check = HealthCheck {
            uri: "/".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 2,
            expect: Expect(vec![(200, 399)]),
        };
        assert!(Probe::Status(200).passed(&check));
        assert!(Probe::Status(302).passed(&check));
        assert!(!Probe::Status(500).passed(&check));
        assert!(!Probe::Failed("timeout".into()).passed(&check));
        assert_eq!(Probe::Failed("timeout".into()).describe(), "timeout");
    }
}
