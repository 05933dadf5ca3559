//! Running wrk 4.1 (`-t1 --latency`) and reading its report.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{BenchError, Context, Result};

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub req_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Socket errors of every kind (connect, read, write, timeout).
    pub socket_errors: u64,
    pub non_2xx: u64,
}

/// "1.23ms" / "850.00us" / "1.02s" / "2.00m" -> microseconds.
pub fn parse_duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// Parse wrk's report (run with `--latency`).
pub fn parse(out: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let mut have_rps = false;
    let mut have_requests = false;
    for line in out.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50_us = parse_duration_us(v).unwrap_or(0.0),
            ["99%", v] => r.p99_us = parse_duration_us(v).unwrap_or(0.0),
            ["Requests/sec:", v] => {
                r.req_per_sec = v.parse().unwrap_or(0.0);
                have_rps = true;
            }
            [n, "requests", "in", ..] => {
                r.requests = n.parse().unwrap_or(0);
                have_requests = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                r.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    if !have_rps || !have_requests {
        return Err(BenchError::Other(format!(
            "could not read wrk's report:\n{out}"
        )));
    }
    Ok(r)
}

/// Run `wrk -t1 -cCONNS -dSECS --latency URL` (bounded: wrk stops itself after `secs`; a
/// watchdog kills it by pid if it overruns by a lot).
pub fn run(url: &str, conns: usize, secs: u64) -> Result<WrkResult> {
    let child = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--timeout",
            "5s",
            "--latency",
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx("start wrk (is Debian's wrk installed?)")?;
    let pid = child.id();
    let limit = Duration::from_secs(secs + 20);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            if let Ok(p) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) on the pid of the wrk we started and have not yet reaped
                // (wait_with_output below is still running, so the pid cannot be reused).
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
        }
    });
    let out = child.wait_with_output().ctx("wait for wrk");
    let _ = tx.send(());
    let _ = watchdog.join();
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(BenchError::Other(format!(
            "wrk {url} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    parse(&stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:8080/small
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  200.00us   5.00ms   90.00%
    Req/Sec    49.00k     1.00k   50.00k    80.00%
  Latency Distribution
     50%  850.00us
     75%    1.10ms
     90%    1.20ms
     99%    2.50ms
  245123 requests in 5.00s, 30.00MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 10
Requests/sec:  49024.60
Transfer/sec:      6.00MB
";

    #[test]
    fn parses_a_full_report() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.requests, 245_123);
        assert!((r.req_per_sec - 49_024.6).abs() < 1e-6);
        assert!((r.p50_us - 850.0).abs() < 1e-6);
        assert!((r.p99_us - 2_500.0).abs() < 1e-6);
        assert_eq!(r.socket_errors, 6);
        assert_eq!(r.non_2xx, 10);
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration_us("12.00us"), Some(12.0));
        assert_eq!(parse_duration_us("1.50ms"), Some(1_500.0));
        assert_eq!(parse_duration_us("2.00s"), Some(2_000_000.0));
        assert_eq!(parse_duration_us("1.00m"), Some(60_000_000.0));
        assert_eq!(parse_duration_us("fast"), None);
    }

    #[test]
    fn a_report_without_totals_is_an_error() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_err());
    }
}
