//! The scenario's timeline as an SVG: time on x; one row per balancer showing when it held the
//! VIP, one row per backend page with a tick per answer, and a row of failed requests in red.
//! Step boundaries are dashed lines labelled with the step id.

use std::fmt::Write as _;
use std::time::Duration;

use super::eval::holders_at;
use super::report::Report;
use crate::probe::HolderChange;

const LEFT: f64 = 150.0;
const WIDTH: f64 = 1100.0;
const ROW: f64 = 34.0;
const TOP: f64 = 46.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What a timeline shows: bars where a balancer holds the VIP (or is one of the router's
/// paths), rows of ticks, dashed step boundaries.
pub struct Parts<'a> {
    pub title: String,
    pub duration_s: f64,
    pub balancers: &'a [String],
    /// Who holds the VIP (VRRP) or which balancers the router routes it to (ECMP).
    pub changes: &'a [HolderChange],
    /// Row label after the balancer's name: "holds VIP".
    pub holder_label: &'a str,
    /// Several holders at once is normal (ECMP), not a split brain drawn in orange.
    pub shared_ok: bool,
    /// (label, [(time in s, colour)]): one tick per event.
    pub rows: Vec<(String, Vec<(f64, &'static str)>)>,
    /// (id, start in s, matched).
    pub steps: Vec<(String, f64, bool)>,
}

/// Tick colours: an answer, an answer with an unknown body, a failure.
pub const OK: &str = "#1c6dd0";
pub const ODD: &str = "#7a4fd0";
pub const FAILED: &str = "#d62728";

/// Renders the report; `pages` are the backends' bodies, one row each.
pub fn render(report: &Report, pages: &[String]) -> String {
    let mut rows: Vec<(String, Vec<(f64, &'static str)>)> =
        pages.iter().map(|p| (p.clone(), Vec::new())).collect();
    let mut failed = Vec::new();
    for sample in &report.samples {
        let t = sample.at.as_secs_f64();
        match &sample.result {
            Ok(body) => match rows.iter_mut().find(|(p, _)| p == body) {
                Some((_, ticks)) => ticks.push((t, OK)),
                None => failed.push((t, ODD)),
            },
            Err(_) => failed.push((t, FAILED)),
        }
    }
    rows.push(("failed".into(), failed));
    render_parts(&Parts {
        title: format!(
            "lab scenario: {} requests, {} failed, {} of {} steps matched",
            report.sent,
            report.failed,
            report.steps.iter().filter(|r| r.ok()).count(),
            report.steps.len()
        ),
        duration_s: report.duration_s,
        balancers: &report.balancers,
        changes: &report.changes,
        holder_label: "holds VIP",
        shared_ok: false,
        rows,
        steps: report
            .steps
            .iter()
            .map(|r| (r.id.clone(), r.start_s, r.ok()))
            .collect(),
    })
}

/// Renders a timeline from its parts.
pub fn render_parts(p: &Parts<'_>) -> String {
    let total = p.duration_s.max(1.0);
    let x = |t: f64| LEFT + t / total * WIDTH;
    let rows = p.balancers.len() + p.rows.len();
    let height = TOP + ROW * rows as f64 + 50.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="monospace" font-size="12">"#,
        w = LEFT + WIDTH + 20.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="14">{}</text>"#,
        esc(&p.title)
    );
    let row_y = |i: usize| TOP + ROW * i as f64;
    let mut labels: Vec<String> = p
        .balancers
        .iter()
        .map(|b| format!("{b} {}", p.holder_label))
        .collect();
    labels.extend(p.rows.iter().map(|(l, _)| l.clone()));
    for (i, l) in labels.iter().enumerate() {
        let y = row_y(i);
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y}" width="{WIDTH}" height="{h}" fill="#f4f4f4"/><text x="8" y="{ty}">{}</text>"##,
            esc(l),
            h = ROW - 6.0,
            ty = y + ROW / 2.0
        );
    }
    // Holder bars.
    let mut bounds: Vec<f64> = p.changes.iter().map(|c| c.at.as_secs_f64()).collect();
    bounds.insert(0, 0.0);
    bounds.push(total);
    for pair in bounds.windows(2) {
        let (Some(&a), Some(&b)) = (pair.first(), pair.get(1)) else {
            continue;
        };
        if b <= a {
            continue;
        }
        let holders = holders_at(p.changes, Duration::from_secs_f64(a));
        for (i, bal) in p.balancers.iter().enumerate() {
            if holders.contains(bal) {
                let color = if holders.len() > 1 && !p.shared_ok {
                    "#e69f00"
                } else {
                    "#2b8a3e"
                };
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"#,
                    x(a),
                    row_y(i) + 4.0,
                    (x(b) - x(a)).max(0.5),
                    ROW - 14.0
                );
            }
        }
    }
    // One tick per event.
    for (r, (_, ticks)) in p.rows.iter().enumerate() {
        let y = row_y(p.balancers.len() + r);
        for &(t, color) in ticks {
            let t = x(t);
            let _ = writeln!(
                s,
                r#"<line x1="{t:.1}" x2="{t:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="1"/>"#,
                y + 3.0,
                y + ROW - 9.0
            );
        }
    }
    // Steps.
    let bottom = row_y(rows);
    for (id, start_s, ok) in &p.steps {
        let sx = x(*start_s);
        let color = if *ok { "#555" } else { "#d62728" };
        let _ = writeln!(
            s,
            r#"<line x1="{sx:.1}" x2="{sx:.1}" y1="{:.1}" y2="{bottom:.1}" stroke="{color}" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="{color}">{}</text>"#,
            TOP - 12.0,
            sx + 3.0,
            TOP - 4.0,
            esc(id)
        );
    }
    // Time axis.
    let step = if total > 60.0 { 10.0 } else { 5.0 };
    let mut t = 0.0;
    while t <= total {
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" x2="{0:.1}" y1="{bottom:.1}" y2="{1:.1}" stroke="black"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{t:.0} s</text>"#,
            x(t),
            bottom + 5.0,
            bottom + 18.0
        );
        t += step;
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::super::eval::StepResult;
    use super::*;
    use crate::probe::{HolderChange, Sample};

    #[test]
    fn renders_rows_ticks_and_steps() {
        let ms = Duration::from_millis;
        let report = Report {
            steps: vec![StepResult {
                id: "2".into(),
                title: "t".into(),
                expected: "server2".into(),
                observed: "server2".into(),
                sent: 3,
                failed: 1,
                steady_sent: 1,
                steady_failed: 0,
                longest_gap_s: 0.5,
                failover_s: Some(0.5),
                bound_s: Some(5.0),
                bodies: vec![],
                errors: vec![],
                start_s: 1.0,
                end_s: 2.0,
                access_logs: vec![],
                backend: None,
                problems: vec![],
            }],
            sent: 3,
            failed: 1,
            duration_s: 2.0,
            samples: vec![
                Sample {
                    at: ms(100),
                    latency: ms(1),
                    result: Ok("HTTP WEB NODE 01".into()),
                },
                Sample {
                    at: ms(1200),
                    latency: ms(1),
                    result: Err("refused".into()),
                },
                Sample {
                    at: ms(1600),
                    latency: ms(1),
                    result: Ok("HTTP WEB NODE 02".into()),
                },
            ],
            changes: vec![
                HolderChange {
                    at: ms(0),
                    holders: vec!["server1".into()],
                },
                HolderChange {
                    at: ms(1100),
                    holders: vec![],
                },
                HolderChange {
                    at: ms(1500),
                    holders: vec!["server2".into()],
                },
            ],
            balancers: vec!["server1".into(), "server2".into()],
        };
        let pages = vec![
            "HTTP WEB NODE 01".to_string(),
            "HTTP WEB NODE 02".to_string(),
        ];
        let svg = render(&report, &pages);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("server1 holds VIP"));
        assert!(svg.contains("HTTP WEB NODE 02"));
        assert_eq!(svg.matches("#d62728").count(), 1, "one failure tick");
        assert_eq!(svg.matches("#2b8a3e").count(), 2, "two holder bars");
        assert!(svg.contains(">2</text>"), "step label");
    }

    #[test]
    fn escapes_text() {
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
