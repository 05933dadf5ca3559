//! Process-tree accounting from /proc: CPU time (utime + stime), resident memory (VmRSS) and its
//! peak (VmHWM). nginx and (in master-worker mode) HAProxy do their work in child processes, so
//! every figure is summed over the process and all its descendants.

use std::collections::HashMap;
use std::fs;

/// The fields of /proc/PID/stat after the command name (which may contain spaces and ')').
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    Some(after.split_whitespace().collect())
}

/// Parent pid from a /proc/PID/stat line.
pub fn parse_ppid(stat: &str) -> Option<u32> {
    stat_fields(stat)?.get(1)?.parse().ok()
}

/// utime + stime in clock ticks from a /proc/PID/stat line (fields 14 and 15).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let f = stat_fields(stat)?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Vm...:   1234 kB` line of /proc/PID/status, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `root` and all its live descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_ppid)
            {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        if let Some(c) = children.get(&p) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// The kernel's clock tick rate (USER_HZ) that /proc/PID/stat times are counted in.
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system) used so far by the tree under `root`.
pub fn tree_cpu_seconds(root: u32) -> f64 {
    let ticks: u64 = tree(root)
        .into_iter()
        .filter_map(|p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_cpu_ticks)
        })
        .sum();
    ticks as f64 / clock_ticks_per_sec()
}

/// Sum of a /proc/PID/status memory field (e.g. "VmRSS", "VmHWM") over the tree, in KiB.
pub fn tree_status_kib(root: u32, key: &str) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(|p| {
            fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .as_deref()
                .and_then(|s| parse_status_kib(s, key))
        })
        .sum()
}

/// Busy CPU seconds of the whole machine so far (all CPUs; from the first line of /proc/stat:
/// user + nice + system + irq + softirq + steal).
pub fn parse_system_busy_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

pub fn system_busy_seconds() -> f64 {
    fs::read_to_string("/proc/stat")
        .ok()
        .as_deref()
        .and_then(parse_system_busy_ticks)
        .map_or(0.0, |t| t as f64 / clock_ticks_per_sec())
}

/// TCP connections this network namespace has opened actively (connect) so far: `ActiveOpens`
/// from the `Tcp:` lines of /proc/net/snmp (a header line names the fields, the next has the
/// values).
pub fn parse_tcp_active_opens(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let i = names.split_whitespace().position(|n| n == "ActiveOpens")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Active TCP opens of the machine's network namespace so far (0 if unreadable). Counts every
/// process's connects on the machine: take differences over a measured run.
pub fn tcp_active_opens() -> u64 {
    fs::read_to_string("/proc/net/snmp")
        .ok()
        .as_deref()
        .and_then(parse_tcp_active_opens)
        .unwrap_or(0)
}

/// CPU seconds of this process (`RUSAGE_SELF`) or of its reaped children (`RUSAGE_CHILDREN`).
pub fn rusage_seconds(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is a valid value (plain integers and timevals).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own for the duration of the call.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Reset VmHWM to the current RSS for every process in the tree (writing "5" to clear_refs,
/// Linux >= 4.0), so the next peak reading covers only what follows. Best effort: without the
/// permission the peak stays the lifetime peak.
pub fn reset_peak(root: u32) {
    for p in tree(root) {
        let _ = fs::write(format!("/proc/{p}/clear_refs"), "5");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "1234 (nginx: worker (x)) S 1200 1234 1234 0 -1 4194624 500 0 0 0 \
                        250 75 0 0 20 0 1 0 100 1000000 300 18446744073709551615";

    #[test]
    fn parses_stat_with_parens_in_name() {
        assert_eq!(parse_ppid(STAT), Some(1200));
        assert_eq!(parse_cpu_ticks(STAT), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_system_busy_time() {
        let s = "cpu  100 5 50 1000 7 3 2 1 0 0\ncpu0 50 2 25 500 3 1 1 0 0 0\n";
        assert_eq!(parse_system_busy_ticks(s), Some(161));
        assert_eq!(parse_system_busy_ticks("intr 1 2"), None);
    }

    #[test]
    fn parses_tcp_active_opens() {
        let s = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens\nTcp: 1 200 120000 -1 4711 12\nUdp: InDatagrams\nUdp: 3\n";
        assert_eq!(parse_tcp_active_opens(s), Some(4711));
        assert_eq!(parse_tcp_active_opens("Ip: 1\n"), None);
        let before = tcp_active_opens();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(tcp_active_opens() > before);
    }

    #[test]
    fn parses_status_fields() {
        let s = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_status_kib(s, "VmRSS"), Some(1024));
        assert_eq!(parse_status_kib(s, "VmHWM"), Some(2048));
        assert_eq!(parse_status_kib(s, "VmSwap"), None);
    }

    #[test]
    fn own_tree_has_cpu_and_memory() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let t = tree(me);
        assert_eq!(t.first(), Some(&me));
        assert!(t.contains(&child.id()), "{t:?}");
        // Burn a little CPU so the counter moves.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(tree_cpu_seconds(me) > 0.0);
        assert!(rusage_seconds(libc::RUSAGE_SELF) > 0.0);
        assert!(system_busy_seconds() > 0.0);
        assert!(tree_status_kib(me, "VmRSS") > 0);
        reset_peak(me);
        assert!(tree_status_kib(me, "VmHWM") > 0);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
