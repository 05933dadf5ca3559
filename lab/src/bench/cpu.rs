//! Where the machine's CPU went during a round, to tell a slow proxy from a full machine.
//!
//! On this path the client (wrk), both balancers and both backends share the machine's cores, so
//! requests per second are bounded by the CPU the whole lab spends per request, not by the proxy
//! alone. Summing that CPU (every process in the lab's namespaces and wrk) gives the bound a
//! proxy costing nothing would reach: if the lab spends T seconds of CPU per request of which the
//! proxy spends P, the same cores serve at most `rate * T / (T - P)` requests per second without
//! the proxy's share.
//!
//! Interrupt work is not added separately: with tick-based accounting (no
//! CONFIG_IRQ_TIME_ACCOUNTING, as Debian's and this machine's kernels) a softirq that runs in a
//! process's context is already in that process's stime, and adding /proc/stat's softirq column
//! counted it twice (the first version did: the lab came out at 115% of the machine). What runs
//! in ksoftirqd is missed, so T is a lower bound and the zero-cost figure an upper bound.

use std::collections::HashMap;

use benches::procfs;

/// CPU ticks per pid, for every process in the given network namespaces.
pub type Ticks = HashMap<i32, u64>;

/// A reading of everything that costs the lab CPU.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// utime + stime per process in the lab's namespaces.
    pub processes: Ticks,
    /// This process's reaped children (wrk, once waited for): cutime + cstime in ticks.
    pub children: u64,
}

impl Snapshot {
    pub fn read(pids: impl IntoIterator<Item = i32>) -> Snapshot {
        let processes = pids
            .into_iter()
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                Some((pid, procfs::parse_cpu_ticks(&stat)?))
            })
            .collect();
        Snapshot {
            processes,
            children: std::fs::read_to_string("/proc/self/stat")
                .ok()
                .as_deref()
                .and_then(parse_children_ticks)
                .unwrap_or(0),
        }
    }

    /// CPU seconds spent between `before` and `self`. A process that started in between counts
    /// from zero; one that exited in between is lost (its ticks cannot be read any more), so
    /// the figure is a lower bound.
    pub fn seconds_since(&self, before: &Snapshot) -> f64 {
        let processes: u64 = self
            .processes
            .iter()
            .map(|(pid, t)| t.saturating_sub(before.processes.get(pid).copied().unwrap_or(0)))
            .sum();
        let ticks = processes + self.children.saturating_sub(before.children);
        ticks as f64 / procfs::clock_ticks_per_sec()
    }
}

/// cutime + cstime (fields 16 and 17) of a /proc/PID/stat line.
fn parse_children_ticks(stat: &str) -> Option<u64> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?)
}

/// The 2xx/s a proxy costing nothing would reach on the same cores: `ok_per_sec * T / (T - P)`
/// with T the lab's and P the proxy's CPU per request. None when the lab did not keep the
/// machine busy (`lab_share` under 0.9: then CPU is not what bounds it) or T <= P.
pub fn zero_cost_bound(
    ok_per_sec: f64,
    lab_per_1k: f64,
    proxy_per_1k: f64,
    lab_share: f64,
) -> Option<f64> {
    (lab_share >= 0.9 && lab_per_1k > proxy_per_1k)
        .then(|| ok_per_sec * lab_per_1k / (lab_per_1k - proxy_per_1k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_children_ticks() {
        let stat = "42 (lab bench) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 250 130 20 0 1 0";
        assert_eq!(parse_children_ticks(stat), Some(380));
    }

    #[test]
    fn a_process_that_started_during_the_round_counts_from_zero() {
        let before = Snapshot {
            processes: HashMap::from([(1, 100), (2, 50)]),
            children: 10,
        };
        let after = Snapshot {
            processes: HashMap::from([(1, 150), (3, 20)]),
            children: 40,
        };
        let ticks = 50 + 20 + 30;
        let want = ticks as f64 / procfs::clock_ticks_per_sec();
        assert!((after.seconds_since(&before) - want).abs() < 1e-9);
    }

    #[test]
    fn the_bound_removes_the_proxy_share_only_on_a_busy_machine() {
        // 110 us of lab CPU per request, 20 of them the proxy's: 18000 * 110 / 90 = 22000.
        let b = zero_cost_bound(18000.0, 0.110, 0.020, 0.98).unwrap();
        assert!((b - 22000.0).abs() < 1e-6);
        assert_eq!(zero_cost_bound(18000.0, 0.110, 0.020, 0.5), None);
        assert_eq!(zero_cost_bound(18000.0, 0.020, 0.020, 1.0), None);
    }
}
