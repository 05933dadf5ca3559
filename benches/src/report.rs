//! The results as a markdown table and as an SVG bar chart (hand-written: one panel per case, each
//! with its own scale, since 64 B and 1 MiB responses differ by orders of magnitude in req/s).

use std::fmt::Write as _;

use crate::targets::Kind;
use crate::wrk::WrkResult;

/// One wrk case against one target.
#[derive(Debug, Clone)]
pub struct Row {
    pub case: String,
    pub target: Kind,
    pub wrk: WrkResult,
    /// CPU seconds of the target's process tree per 1000 requests (None for direct).
    pub cpu_per_1k: Option<f64>,
    /// Peak RSS (VmHWM summed over the process tree) during the case, KiB (None for direct).
    pub peak_rss_kib: Option<u64>,
    /// CPU cores busy with work other than this measurement (other processes on a shared
    /// machine) during the run: machine busy time minus wrk, backend, target and the bench.
    pub other_load: Option<f64>,
    /// TCP connects on the machine per request during the run, beyond wrk's own connections:
    /// upstream connections the target opened (plus anything else on the machine connecting).
    pub connects_per_req: Option<f64>,
}

/// Memory of one proxy holding idle keep-alive client connections.
#[derive(Debug, Clone)]
pub struct IdleRow {
    pub target: Kind,
    pub opened: usize,
    /// Still open when memory was read.
    pub open_at_end: usize,
    pub rss_before_kib: u64,
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Chart title (the panel-scale remark is added).
    pub title: String,
    /// Free text shown under the title (command, workers, durations, caveats).
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
    pub idle: Vec<IdleRow>,
}

fn fmt_latency(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

fn fmt_ratio(v: Option<f64>, base: Option<f64>) -> String {
    match (v, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}x", v / b),
        _ => "-".into(),
    }
}

fn kib_to_mib(k: u64) -> f64 {
    k as f64 / 1024.0
}

impl Report {
    /// Case labels in first-seen order.
    pub fn cases(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !out.contains(&r.case.as_str()) {
                out.push(&r.case);
            }
        }
        out
    }

    fn nginx_row(&self, case: &str) -> Option<&Row> {
        self.row_of(case, Kind::Nginx)
    }

    fn row_of(&self, case: &str, target: Kind) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.case == case && r.target == target)
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        for n in &self.notes {
            let _ = writeln!(s, "{n}  ");
        }
        s.push('\n');
        s.push_str("| case | target | req/s | req/s vs nginx | p50 | p99 | CPU s / 1k req | CPU vs nginx | peak RSS MiB | RSS vs nginx | errors | other load | CPU vs haproxy | connects / req |\n");
        s.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for r in &self.rows {
            let ng = self.nginx_row(&r.case);
            let ha = self.row_of(&r.case, Kind::Haproxy);
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.case,
                r.target,
                r.wrk.req_per_sec,
                fmt_ratio(Some(r.wrk.req_per_sec), ng.map(|n| n.wrk.req_per_sec)),
                fmt_latency(r.wrk.p50_us),
                fmt_latency(r.wrk.p99_us),
                r.cpu_per_1k.map_or("-".into(), |c| format!("{c:.4}")),
                fmt_ratio(r.cpu_per_1k, ng.and_then(|n| n.cpu_per_1k)),
                r.peak_rss_kib
                    .map_or("-".into(), |k| format!("{:.1}", kib_to_mib(k))),
                fmt_ratio(
                    r.peak_rss_kib.map(|k| k as f64),
                    ng.and_then(|n| n.peak_rss_kib).map(|k| k as f64)
                ),
                r.wrk.socket_errors + r.wrk.non_2xx,
                r.other_load.map_or("-".into(), |l| format!("{l:.2}")),
                fmt_ratio(r.cpu_per_1k, ha.and_then(|h| h.cpu_per_1k)),
                r.connects_per_req.map_or("-".into(), |c| format!("{c:.3}")),
            );
        }
        if !self.idle.is_empty() {
            let nginx = self
                .idle
                .iter()
                .find(|i| i.target == Kind::Nginx)
                .map(|i| i.rss_kib as f64);
            s.push_str("\n| idle keep-alive conns | target | open at end | RSS before MiB | RSS with conns MiB | KiB per conn | RSS vs nginx |\n");
            s.push_str("|--:|---|--:|--:|--:|--:|--:|\n");
            for i in &self.idle {
                let per = if i.opened > 0 {
                    i.rss_kib.saturating_sub(i.rss_before_kib) as f64 / i.opened as f64
                } else {
                    0.0
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.1} | {:.1} | {:.2} | {} |",
                    i.opened,
                    i.target,
                    i.open_at_end,
                    kib_to_mib(i.rss_before_kib),
                    kib_to_mib(i.rss_kib),
                    per,
                    fmt_ratio(Some(i.rss_kib as f64), nginx),
                );
            }
        }
        s
    }

    pub fn svg(&self) -> String {
        let cases = self.cases();
        let targets: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| self.rows.iter().any(|r| r.target == *k))
            .collect();
        let (panel_w, panel_h, top, bottom) = (190.0, 260.0, 70.0, 60.0);
        let width = (20.0 + panel_w * cases.len().max(1) as f64).max(470.0);
        let height = top + panel_h + bottom;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(
            s,
            r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="15" font-weight="bold">{} (each panel has its own scale)</text>"#,
            esc(&self.title)
        );
        for (i, t) in targets.iter().enumerate() {
            let x = 10.0 + i as f64 * 90.0;
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="34" width="12" height="12" fill="{}"/><text x="{}" y="44">{}</text>"#,
                color(*t),
                x + 16.0,
                esc(t.name())
            );
        }
        for (ci, case) in cases.iter().enumerate() {
            let x0 = 20.0 + ci as f64 * panel_w;
            let rows: Vec<&Row> = targets
                .iter()
                .filter_map(|t| self.rows.iter().find(|r| r.case == *case && r.target == *t))
                .collect();
            let max = rows
                .iter()
                .map(|r| r.wrk.req_per_sec)
                .fold(0.0_f64, f64::max)
                .max(1.0);
            let base = top + panel_h;
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{base}" x2="{}" y2="{base}" stroke="#333"/>"##,
                x0 + panel_w - 20.0
            );
            let bar_w = (panel_w - 30.0) / rows.len().max(1) as f64;
            for (ri, r) in rows.iter().enumerate() {
                let h = (r.wrk.req_per_sec / max) * (panel_h - 20.0);
                let x = x0 + 5.0 + ri as f64 * bar_w;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {}: {:.0} req/s</title></rect>"#,
                    base - h,
                    bar_w - 4.0,
                    color(r.target),
                    esc(case),
                    r.target,
                    r.wrk.req_per_sec
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                    x + (bar_w - 4.0) / 2.0,
                    base - h - 3.0,
                    short(r.wrk.req_per_sec)
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x0 + (panel_w - 20.0) / 2.0,
                base + 18.0,
                esc(case)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// The median row by req/s (the lower middle for an even count); None for no rows.
///
/// CPU per request and connects per request are the medians of their own rounds: on a shared
/// machine the round with the median req/s need not have the median CPU cost.
pub fn median_by_rps(mut rows: Vec<Row>) -> Option<Row> {
    let cpu = median(rows.iter().filter_map(|r| r.cpu_per_1k).collect());
    let connects = median(rows.iter().filter_map(|r| r.connects_per_req).collect());
    rows.sort_by(|a, b| a.wrk.req_per_sec.total_cmp(&b.wrk.req_per_sec));
    let mid = rows.len().checked_sub(1)? / 2;
    let mut row = rows.into_iter().nth(mid)?;
    row.cpu_per_1k = cpu;
    row.connects_per_req = connects;
    Some(row)
}

/// The lower median (the middle of an odd count; the lower middle of an even one).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let mid = v.len().checked_sub(1)? / 2;
    v.get(mid).copied()
}

fn color(k: Kind) -> &'static str {
    match k {
        Kind::Direct => "#9e9e9e",
        Kind::Ours => "#1f77b4",
        Kind::Nginx => "#2ca02c",
        Kind::Haproxy => "#d62728",
    }
}

fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: &str, target: Kind, rps: f64, cpu: Option<f64>) -> Row {
        Row {
            case: case.into(),
            target,
            wrk: WrkResult {
                requests: 1000,
                req_per_sec: rps,
                p50_us: 500.0,
                p99_us: 2500.0,
                non_2xx: 0,
                ..WrkResult::default()
            },
            cpu_per_1k: cpu,
            peak_rss_kib: cpu.map(|_| 4096),
            other_load: Some(0.25),
            connects_per_req: cpu.map(|_| 0.001),
        }
    }

    fn report() -> Report {
        Report {
            title: "req/s".into(),
            notes: vec!["workers = 1".into()],
            rows: vec![
                row("small@50", Kind::Direct, 50_000.0, None),
                row("small@50", Kind::Ours, 45_000.0, Some(0.01)),
                row("small@50", Kind::Nginx, 30_000.0, Some(0.02)),
                row("1m@50", Kind::Nginx, 1_000.0, Some(1.0)),
            ],
            idle: vec![IdleRow {
                target: Kind::Nginx,
                opened: 1000,
                open_at_end: 1000,
                rss_before_kib: 2048,
                rss_kib: 4096,
            }],
        }
    }

    #[test]
    fn markdown_has_ratios_against_nginx() {
        let md = report().markdown();
        assert!(
            md.contains("| small@50 | proxy | 45000 | 1.50x | 500us | 2.50ms | 0.0100 | 0.50x | 4.0 | 1.00x | 0 | 0.25 | - | 0.001 |"),
            "{md}"
        );
        assert!(md.contains("| small@50 | direct | 50000 | 1.67x |"), "{md}");
        assert!(
            md.contains("| 1000 | nginx | 1000 | 2.0 | 4.0 | 2.05 | 1.00x |"),
            "{md}"
        );
    }

    #[test]
    fn median_round_is_picked_by_req_per_sec() {
        let rows = vec![
            row("c", Kind::Ours, 300.0, Some(3.0)),
            row("c", Kind::Ours, 100.0, Some(1.0)),
            row("c", Kind::Ours, 200.0, Some(5.0)),
        ];
        let m = median_by_rps(rows).unwrap();
        assert_eq!(m.wrk.req_per_sec, 200.0);
        assert_eq!(
            m.cpu_per_1k,
            Some(3.0),
            "CPU is the median of its own rounds"
        );
        let two = vec![
            row("c", Kind::Ours, 5.0, None),
            row("c", Kind::Ours, 1.0, None),
        ];
        assert_eq!(median_by_rps(two).unwrap().wrk.req_per_sec, 1.0);
        assert!(median_by_rps(Vec::new()).is_none());
    }

    #[test]
    fn svg_has_one_bar_per_row_and_a_panel_per_case() {
        let r = report();
        assert_eq!(r.cases(), vec!["small@50", "1m@50"]);
        let svg = r.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<title>").count(), 4);
        assert!(svg.contains("45.0k"));
    }
}
