//! Running wrk 4.1 (`-t1 --latency`) and reading its report.
//!
//! wrk's own report stops at p99 and sums socket errors by kind on one line; with
//! [`DISTRIBUTION_LUA`] as its script (`-s`), wrk also prints the exact p90 and p99.9 from its
//! full histogram, which is what tail-latency comparisons need.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{BenchError, Context, Result};

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub req_per_sec: f64,
    pub p50_us: f64,
    /// Only with [`DISTRIBUTION_LUA`] (0 otherwise).
    pub p90_us: f64,
    pub p99_us: f64,
    /// Only with [`DISTRIBUTION_LUA`] (0 otherwise).
    pub p999_us: f64,
    /// Socket errors of every kind (connect, read, write, timeout).
    pub socket_errors: u64,
    pub errors: SocketErrors,
    pub non_2xx: u64,
}

/// wrk's "Socket errors: connect 0, read 0, write 0, timeout 0", by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
}

/// A wrk script whose `done` hook prints the latency distribution from wrk's full histogram
/// (microseconds), one `PCTL <percentile> <us>` line each.
pub const DISTRIBUTION_LUA: &str = r#"done = function(summary, latency, requests)
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("PCTL %g %d\n", p, latency:percentile(p)))
  end
end
"#;

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
                for pair in rest.chunks(2) {
                    let [kind, n] = pair else { continue };
                    let n = n.trim_end_matches(',').parse::<u64>().unwrap_or(0);
                    match *kind {
                        "connect" => r.errors.connect = n,
                        "read" => r.errors.read = n,
                        "write" => r.errors.write = n,
                        "timeout" => r.errors.timeout = n,
                        _ => {}
                    }
                    r.socket_errors += n;
                }
            }
            ["PCTL", p, us] => {
                let us = us.parse().unwrap_or(0.0);
                match *p {
                    "50" => r.p50_us = us,
                    "90" => r.p90_us = us,
                    "99" => r.p99_us = us,
                    "99.9" => r.p999_us = us,
                    _ => {}
                }
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

/// wrk's arguments for one thread, `conns` connections, `secs` seconds, `timeout_s` per request,
/// with the latency report and optionally a script.
pub fn args(
    url: &str,
    conns: usize,
    secs: u64,
    timeout_s: u64,
    script: Option<&Path>,
) -> Vec<String> {
    let mut a = vec![
        "-t1".to_string(),
        format!("-c{conns}"),
        format!("-d{secs}s"),
        "--timeout".into(),
        format!("{timeout_s}s"),
        "--latency".into(),
    ];
    if let Some(s) = script {
        a.push("-s".into());
        a.push(s.display().to_string());
    }
    a.push(url.to_string());
    a
}

/// Run `wrk -t1 -cCONNS -dSECS --latency URL` (bounded: wrk stops itself after `secs`; a
/// watchdog kills it by pid if it overruns by a lot).
pub fn run(url: &str, conns: usize, secs: u64) -> Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.args(args(url, conns, secs, 5, None));
    run_command(cmd, secs)
}

/// Runs a prepared wrk command line (e.g. wrapped in `ip netns exec`, which execs wrk in place)
/// that stops by itself after `secs`; killed by pid if it overruns by 20 s.
pub fn run_command(mut cmd: Command, secs: u64) -> Result<WrkResult> {
    let child = cmd
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
            "wrk failed ({}): {stdout}{}",
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
        let kinds = SocketErrors {
            connect: 1,
            read: 2,
            write: 0,
            timeout: 3,
        };
        assert_eq!(r.errors, kinds);
        assert_eq!(r.non_2xx, 10);
        assert_eq!((r.p90_us, r.p999_us), (0.0, 0.0), "no script, no p90/p99.9");
    }

    #[test]
    fn the_distribution_script_adds_exact_percentiles() {
        let out = format!("{REPORT}PCTL 50 840\nPCTL 90 1190\nPCTL 99 2510\nPCTL 99.9 4100\n");
        let r = parse(&out).unwrap();
        assert_eq!(
            (r.p50_us, r.p90_us, r.p99_us, r.p999_us),
            (840.0, 1190.0, 2510.0, 4100.0)
        );
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
