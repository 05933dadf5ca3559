//! CI smoke test of the load benchmark harness: `loadbench --smoke` against the backend, our
//! (debug) proxy and nginx must produce a table where every target served requests and every
//! idle keep-alive connection stayed open. It checks that the harness works, not the numbers.
//!
//! Needs the `proxy` binary next to `loadbench` (`cargo build --bins` first; `./run test` does)
//! and Debian's nginx and wrk (installed by `./run`).

use std::path::PathBuf;
use std::process::Command;

fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

#[test]
fn quick_smoke_run_fills_every_row() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_loadbench"));
    let proxy = exe.with_file_name("proxy");
    assert!(
        proxy.exists(),
        "{} is missing: run `cargo build --bins` before the tests",
        proxy.display()
    );
    let out_dir = std::env::temp_dir().join(format!("loadbench-smoke-{}", std::process::id()));
    let out = Command::new(&exe)
        .args(["--smoke", "--out"])
        .arg(&out_dir)
        .output()
        .expect("run loadbench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "loadbench failed\n{stdout}\n{stderr}");
    let md = std::fs::read_to_string(out_dir.join("results.md")).expect("results.md written");
    let svg = std::fs::read_to_string(out_dir.join("results.svg")).expect("results.svg written");
    let _ = std::fs::remove_dir_all(&out_dir);
    assert_eq!(md, stdout, "stdout and results.md differ");
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"));

    let mut load_rows = Vec::new();
    let mut idle_rows = Vec::new();
    for line in md.lines().filter(|l| l.starts_with("| ")) {
        let c = cells(line);
        match c.first() {
            Some(&"64B c50") => load_rows.push(c),
            Some(n) if n.parse::<usize>().is_ok() => idle_rows.push(c),
            _ => {}
        }
    }
    let targets: Vec<&str> = load_rows.iter().map(|c| c[1]).collect();
    assert_eq!(targets, ["direct", "proxy", "nginx"], "{md}");
    for c in &load_rows {
        let rps: f64 = c[2].parse().unwrap_or(0.0);
        assert!(rps > 0.0, "no requests served by {}:\n{md}\n{stderr}", c[1]);
        if c[1] != "direct" {
            let cpu: f64 = c[6].parse().unwrap_or(-1.0);
            assert!(cpu >= 0.0, "no CPU figure for {}:\n{md}", c[1]);
            let rss: f64 = c[8].parse().unwrap_or(0.0);
            assert!(rss > 0.0, "no peak RSS for {}:\n{md}", c[1]);
        }
    }
    let idle_targets: Vec<&str> = idle_rows.iter().map(|c| c[1]).collect();
    assert_eq!(idle_targets, ["proxy", "nginx"], "{md}");
    for c in &idle_rows {
        assert_eq!(
            c[0], c[2],
            "idle connections closed early by {}:\n{md}",
            c[1]
        );
        let rss: f64 = c[4].parse().unwrap_or(0.0);
        assert!(rss > 0.0, "no RSS for {}:\n{md}", c[1]);
    }
}
