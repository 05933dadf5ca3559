//! `vrrp_script` tracking: probes (a shell script or the built-in HTTP GET), keepalived's
//! fall/rise hysteresis, and the mapping of script states + link states to an instance's
//! effective priority or Fault.
//!
//! The hysteresis and the priority arithmetic are pure (`FallRise`, `health`, here); `url`
//! parses the HTTP probe's address for the config; `probe` runs the checks on their own
//! threads and reports each raw result through a callback.

pub mod probe;
pub mod url;

pub use probe::{Probe, Runner, ScriptSpec};
pub use url::HttpUrl;

/// keepalived's fall/rise: `fall` consecutive failures take an OK script to failing, `rise`
/// consecutive successes take a failing script to OK. The very first result decides at once
/// (keepalived starts the counter at rise - 1), so a broken check is noticed after one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallRise {
    fall: u32,
    rise: u32,
    state: Option<bool>,
    streak: u32,
}

impl FallRise {
    pub fn new(fall: u32, rise: u32) -> FallRise {
        FallRise {
            fall: fall.max(1),
            rise: rise.max(1),
            state: None,
            streak: 0,
        }
    }

    /// None until the first result; then whether the script counts as OK.
    pub fn state(&self) -> Option<bool> {
        self.state
    }

    /// Records one probe result; returns the new state when it changed.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        match self.state {
            None => {
                self.state = Some(success);
                self.streak = 0;
                Some(success)
            }
            Some(ok) if ok == success => {
                // A result agreeing with the state resets the opposite streak.
                self.streak = 0;
                None
            }
            Some(ok) => {
                self.streak += 1;
                let needed = if ok { self.fall } else { self.rise };
                if self.streak >= needed {
                    self.state = Some(success);
                    self.streak = 0;
                    Some(success)
                } else {
                    None
                }
            }
        }
    }
}

/// What tracking makes of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Effective priority after script weights (1..=254, or 255 for an address owner).
    Priority(u8),
    /// A weight-0 script is failing or a tracked link is down.
    Fault(String),
}

impl Health {
    pub fn is_fault(&self) -> bool {
        matches!(self, Health::Fault(_))
    }
}

/// keepalived's rules: a script with weight 0 that fails puts the instance in Fault; a positive
/// weight is added while the script is OK; a negative weight is added while it fails. The
/// result is clamped to 1..=254 (0 means "leaving" and 255 "owner" on the wire). An address
/// owner (255) is never adjusted, as in keepalived. Scripts with no result yet count as OK.
/// `links`: (name, up) of the instance's interface and its `track_interface`s.
pub fn health(base: u8, scripts: &[(&str, i32, Option<bool>)], links: &[(&str, bool)]) -> Health {
    if let Some((name, _)) = links.iter().find(|(_, up)| !up) {
        return Health::Fault(format!("interface {name} is down"));
    }
    let mut prio = i64::from(base);
    for (name, weight, state) in scripts {
        let ok = state.unwrap_or(true);
        if *weight == 0 {
            if !ok {
                return Health::Fault(format!("track script {name} is failing (weight 0)"));
            }
        } else if (*weight > 0) == ok {
            prio += i64::from(*weight);
        }
    }
    if base == 255 {
        return Health::Priority(255);
    }
    Health::Priority(u8::try_from(prio.clamp(1, 254)).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_rise_hysteresis() {
        let mut fr = FallRise::new(3, 2);
        assert_eq!(fr.state(), None);
        assert_eq!(fr.record(true), Some(true));
        assert_eq!(fr.record(false), None);
        assert_eq!(fr.record(false), None);
        assert_eq!(fr.record(true), None); // streak reset
        assert_eq!(fr.record(false), None);
        assert_eq!(fr.record(false), None);
        assert_eq!(fr.record(false), Some(false));
        assert_eq!(fr.record(true), None);
        assert_eq!(fr.record(false), None); // reset
        assert_eq!(fr.record(true), None);
        assert_eq!(fr.record(true), Some(true));
        // First result failing decides at once.
        let mut fr = FallRise::new(5, 5);
        assert_eq!(fr.record(false), Some(false));
        // fall/rise 0 behave as 1.
        let mut fr = FallRise::new(0, 0);
        fr.record(true);
        assert_eq!(fr.record(false), Some(false));
        assert_eq!(fr.record(true), Some(true));
    }

    #[test]
    fn priority_from_weights() {
        assert_eq!(
            health(150, &[("c", -20, Some(false))], &[]),
            Health::Priority(130)
        );
        assert_eq!(
            health(150, &[("c", -20, Some(true))], &[]),
            Health::Priority(150)
        );
        assert_eq!(
            health(100, &[("c", 30, Some(true))], &[]),
            Health::Priority(130)
        );
        assert_eq!(
            health(100, &[("c", 30, Some(false))], &[]),
            Health::Priority(100)
        );
        assert_eq!(health(100, &[("c", 30, None)], &[]), Health::Priority(130));
        assert_eq!(
            health(250, &[("c", 100, Some(true))], &[]),
            Health::Priority(254)
        );
        assert_eq!(
            health(10, &[("c", -100, Some(false))], &[]),
            Health::Priority(1)
        );
        assert_eq!(
            health(255, &[("c", -100, Some(false))], &[]),
            Health::Priority(255)
        );
        assert!(health(150, &[("c", 0, Some(false))], &[]).is_fault());
        assert!(!health(150, &[("c", 0, None)], &[]).is_fault());
        assert!(health(150, &[], &[("eth0", true), ("eth1", false)]).is_fault());
        assert_eq!(
            health(
                150,
                &[("a", -20, Some(false)), ("b", -30, Some(false))],
                &[("eth0", true)]
            ),
            Health::Priority(100)
        );
    }
}
