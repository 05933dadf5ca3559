//! `lab bench`: wrk from the client namespace against the VIP, bounded in time.

use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::error::{LabError, Result};
use crate::lab::Running;
use crate::sys;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchResult {
    pub url: String,
    pub duration_s: u64,
    pub connections: u32,
    pub requests: u64,
    pub requests_per_sec: f64,
    pub latency_avg: String,
    pub latency_p50: String,
    pub latency_p99: String,
    pub latency_max: String,
    /// wrk's "Socket errors" line, if any.
    pub socket_errors: Option<String>,
    pub non_2xx: u64,
}

impl BenchResult {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "wrk {} for {} s, {} connections: {:.0} req/s ({} requests), latency avg {} p50 {} p99 {} max {}",
            self.url,
            self.duration_s,
            self.connections,
            self.requests_per_sec,
            self.requests,
            self.latency_avg,
            self.latency_p50,
            self.latency_p99,
            self.latency_max
        );
        if self.non_2xx > 0 {
            s.push_str(&format!(", {} non-2xx", self.non_2xx));
        }
        if let Some(e) = &self.socket_errors {
            s.push_str(&format!(", socket errors: {e}"));
        }
        s
    }
}

/// Runs wrk against the first VIP for `duration` with `connections` on one thread.
pub fn run(lab: &Running, duration: Duration, connections: u32) -> Result<BenchResult> {
    if !sys::have_program("wrk") {
        return Err(LabError::Missing {
            what: "`wrk`".into(),
            path: "wrk".into(),
            hint: "apt-get install wrk".into(),
        });
    }
    let vip = lab
        .inventory
        .network
        .vips
        .first()
        .ok_or_else(|| LabError::Other("no VIP".into()))?;
    let url = format!("http://{vip}/");
    let secs = duration.as_secs().clamp(1, 300);
    let out = sys::run(
        Command::new("ip")
            .args(["netns", "exec", &lab.plan.client.ns, "wrk", "-t1"])
            .arg(format!("-c{connections}"))
            .arg(format!("-d{secs}s"))
            .args(["--timeout", "2s", "--latency", &url]),
    )?;
    parse(&out, &url, secs, connections)
        .ok_or_else(|| LabError::Other(format!("cannot understand wrk's output:\n{out}")))
}

/// Parses wrk's text output.
pub fn parse(out: &str, url: &str, duration_s: u64, connections: u32) -> Option<BenchResult> {
    let field = |prefix: &str, idx: usize| -> Option<String> {
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(idx).map(str::to_string))
    };
    let requests_per_sec = field("Requests/sec:", 1)?.parse().ok()?;
    let requests = out
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())?;
    Some(BenchResult {
        url: url.to_string(),
        duration_s,
        connections,
        requests,
        requests_per_sec,
        latency_avg: field("Latency", 1)?,
        latency_max: field("Latency", 3)?,
        latency_p50: field("50%", 1).unwrap_or_else(|| "-".into()),
        latency_p99: field("99%", 1).unwrap_or_else(|| "-".into()),
        socket_errors: out
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("Socket errors: ").map(str::to_string)),
        non_2xx: field("Non-2xx or 3xx responses:", 4)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 5s test @ http://172.16.249.80/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.02ms  20.00ms   90.00%
    Req/Sec    24.00k     1.00k   26.00k    80.00%
  Latency Distribution
     50%    1.98ms
     75%    2.40ms
     90%    2.90ms
     99%    5.00ms
  120000 requests in 5.00s, 30.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
  Non-2xx or 3xx responses: 5
Requests/sec:  24000.00
Transfer/sec:      6.00MB
";

    #[test]
    fn parses_wrk_output() {
        let r = parse(OUT, "http://172.16.249.80/", 5, 50).unwrap();
        assert_eq!(r.requests, 120000);
        assert!((r.requests_per_sec - 24000.0).abs() < 1e-9);
        assert_eq!(r.latency_avg, "2.10ms");
        assert_eq!(r.latency_max, "20.00ms");
        assert_eq!(r.latency_p50, "1.98ms");
        assert_eq!(r.latency_p99, "5.00ms");
        assert_eq!(r.non_2xx, 5);
        assert_eq!(
            r.socket_errors.as_deref(),
            Some("connect 0, read 3, write 0, timeout 0")
        );
        assert!(r.summary().contains("24000 req/s"));
        assert!(parse("garbage", "u", 5, 50).is_none());
    }
}
