//! The balancers' rollout: one balancer at a time, lowest priority (the backup) first, in the
//! manner of Ansible's `serial: 1` with `max_fail_percentage: 0`. A balancer's turn starts only
//! when every balancer before it has finished its turn healthy (its daemons up and every VIP
//! answering); the first failure stops the rollout, and every balancer still waiting is skipped
//! with the reason. Otherwise a backup that passes `--check` but does not serve would be
//! followed at once by the master, and both would be down.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

/// How a balancer's turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Healthy,
    /// Failed (or never got to its turn: unreachable, an earlier step failed).
    Failed(String),
    /// Skipped because an earlier balancer failed; carries that failure.
    Skipped(String),
}

/// The turn order and how each turn ended.
pub struct Rollout {
    order: Vec<String>,
    ended: Mutex<HashMap<String, Ended>>,
    cv: Condvar,
}

impl Rollout {
    /// `order`: balancer names, first to go first.
    pub fn new(order: Vec<String>) -> Rollout {
        Rollout {
            order,
            ended: Mutex::new(HashMap::new()),
            cv: Condvar::new(),
        }
    }

    /// Blocks until every balancer before `name` has ended its turn. `Err(why)` when one of
    /// them failed or was skipped: `name` must not start (and is recorded as skipped).
    pub fn wait(&self, name: &str) -> Result<(), String> {
        let before: Vec<&String> = self.order.iter().take_while(|n| *n != name).collect();
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // The first balancer (in order) that did not end healthy decides.
            for n in &before {
                match ended.get(*n) {
                    Some(Ended::Healthy) => continue,
                    Some(Ended::Failed(why)) => {
                        let why = format!("{n} failed: {why}");
                        ended.insert(name.to_string(), Ended::Skipped(why.clone()));
                        self.cv.notify_all();
                        return Err(why);
                    }
                    Some(Ended::Skipped(why)) => {
                        let why = why.clone();
                        ended.insert(name.to_string(), Ended::Skipped(why.clone()));
                        self.cv.notify_all();
                        return Err(why);
                    }
                    None => break,
                }
            }
            if before
                .iter()
                .all(|n| ended.get(*n) == Some(&Ended::Healthy))
            {
                return Ok(());
            }
            ended = self.cv.wait(ended).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn end(&self, name: &str, how: Ended) {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        ended.entry(name.to_string()).or_insert(how);
        self.cv.notify_all();
    }

    /// `name`'s turn ended with its daemons healthy and the VIPs answering.
    pub fn healthy(&self, name: &str) {
        self.end(name, Ended::Healthy);
    }

    /// `name` failed (during its turn, or before it: it will not take one).
    pub fn failed(&self, name: &str, why: &str) {
        self.end(name, Ended::Failed(why.to_string()));
    }
}

/// Ends `name`'s turn as failed if its thread ends without saying how (an early return or a
/// panic is never taken for success).
pub struct TurnGuard<'a> {
    pub rollout: &'a Rollout,
    pub name: &'a str,
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        self.rollout
            .failed(self.name, "stopped before its turn ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    fn rollout(order: &[&str]) -> Arc<Rollout> {
        Arc::new(Rollout::new(order.iter().map(|s| s.to_string()).collect()))
    }

    #[test]
    fn backup_goes_first_and_the_master_waits_for_its_health() {
        let r = rollout(&["backup", "master"]);
        let log = Arc::new(Mutex::new(Vec::new()));
        thread::scope(|s| {
            let (r1, l1) = (r.clone(), log.clone());
            s.spawn(move || {
                let _g = TurnGuard {
                    rollout: &r1,
                    name: "master",
                };
                let went = r1.wait("master");
                l1.lock().unwrap().push(format!("master {went:?}"));
            });
            thread::sleep(Duration::from_millis(50));
            assert!(log.lock().unwrap().is_empty(), "master went first");
            log.lock().unwrap().push("backup".into());
            r.healthy("backup");
        });
        assert_eq!(*log.lock().unwrap(), ["backup", "master Ok(())"]);
    }

    #[test]
    fn a_failed_backup_stops_the_rollout_and_says_why() {
        let r = rollout(&["backup", "middle", "master"]);
        thread::scope(|s| {
            let r1 = r.clone();
            let master = s.spawn(move || r1.wait("master"));
            let r2 = r.clone();
            let middle = s.spawn(move || r2.wait("middle"));
            thread::sleep(Duration::from_millis(50));
            r.failed("backup", "step \"proxy\": proxy /healthz does not answer");
            let why = "backup failed: step \"proxy\": proxy /healthz does not answer";
            assert_eq!(middle.join().unwrap(), Err(why.to_string()));
            assert_eq!(master.join().unwrap(), Err(why.to_string()));
        });
    }

    #[test]
    fn a_thread_that_ends_without_saying_is_a_failure() {
        let r = rollout(&["backup", "master"]);
        drop(TurnGuard {
            rollout: &r,
            name: "backup",
        });
        let err = r.wait("master").unwrap_err();
        assert!(err.contains("stopped before its turn ended"), "{err}");
        // A turn that ended healthy is not overwritten by the guard.
        let r = rollout(&["backup", "master"]);
        r.healthy("backup");
        drop(TurnGuard {
            rollout: &r,
            name: "backup",
        });
        assert_eq!(r.wait("master"), Ok(()));
    }
}
