//! Rounds -> medians, ratios, and the written record (terminal table, markdown, SVG chart).

use std::fmt::Write as _;

use serde::Serialize;

use super::Round;

/// Everything one `lab bench` run measured and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Cores of the machine the whole lab shares (client, balancers, backends).
    pub cores: usize,
    /// The exact commands: the lab's own and the wrk line run in the client namespace.
    pub commands: Vec<String>,
    /// Notes printed under the header (keep-alive settings, binaries used).
    pub notes: Vec<String>,
    /// In the order they ran (interleaved when comparing).
    pub rounds: Vec<Round>,
}

/// One system's medians over its rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Medians {
    pub system: String,
    pub rounds: usize,
    /// Each field the median of that field over the rounds (holder: the most frequent).
    pub median: Round,
}

impl Report {
    /// Systems in first-run order.
    pub fn systems(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.rounds {
            if !out.contains(&r.system.as_str()) {
                out.push(&r.system);
            }
        }
        out
    }

    pub fn medians(&self) -> Vec<Medians> {
        self.medians_where(|_| true)
    }

    /// Medians over the rounds that answered every request with a 2xx and no socket error. A
    /// balancer that answers 502 at once looks fast in wrk's latency percentiles (the seed's
    /// nginx does, once max_fails marks both backends down), so latency is only comparable
    /// between error-free rounds.
    pub fn clean_medians(&self) -> Vec<Medians> {
        self.medians_where(|r| r.errors() == 0)
    }

    fn medians_where(&self, keep: impl Fn(&Round) -> bool) -> Vec<Medians> {
        self.systems()
            .into_iter()
            .filter_map(|s| {
                let rounds: Vec<&Round> = self
                    .rounds
                    .iter()
                    .filter(|r| r.system == s && keep(r))
                    .collect();
                Some(Medians {
                    system: s.to_string(),
                    rounds: rounds.len(),
                    median: median(&rounds)?,
                })
            })
            .collect()
    }

    /// Terminal table: every round, then the medians and, with two systems, first / second.
    pub fn table(&self) -> String {
        let mut s = String::new();
        self.header(&mut s, "");
        let _ = writeln!(s, "{}", row_header());
        for r in &self.rounds {
            let _ = writeln!(s, "{}", row(&r.system, r));
        }
        let medians = self.medians();
        for m in &medians {
            let _ = writeln!(s, "{}", row(&format!("median {}", m.system), &m.median));
        }
        if let Some(line) = ratio_line(&medians) {
            let _ = writeln!(s, "{line}");
        }
        if let Some(line) = self.clean_line() {
            let _ = writeln!(s, "{line}");
        }
        for line in bound_lines(&medians) {
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(s, "{}", LEGEND);
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = String::from("# lab bench\n\n");
        self.header(&mut s, "- ");
        s.push('\n');
        s.push_str(
            "| round | system | VIP on | 2xx/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors \
             | proxy CPU s/1k | backend CPU s/1k | lab CPU s/1k | upstream conns/req |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for (i, r) in self.rounds.iter().enumerate() {
            let _ = writeln!(s, "| {} | {} |", i + 1, md_cells(r));
        }
        for m in self.medians() {
            let _ = writeln!(s, "| median of {} | {} |", m.rounds, md_cells(&m.median));
        }
        if let Some(line) = ratio_line(&self.medians()) {
            let _ = writeln!(s, "\n{line}");
        }
        if let Some(line) = self.clean_line() {
            let _ = writeln!(s, "\n{line}");
        }
        for line in bound_lines(&self.medians()) {
            let _ = writeln!(s, "\n{line}");
        }
        let _ = writeln!(s, "\n{LEGEND}");
        s
    }

    /// The first two systems compared over their error-free rounds only, when some round of
    /// either had errors (otherwise the line above already says it).
    fn clean_line(&self) -> Option<String> {
        let all = self.medians();
        let clean = self.clean_medians();
        let differs = all.iter().any(|m| {
            clean
                .iter()
                .all(|c| c.system != m.system || c.rounds != m.rounds)
        });
        if !differs || all.len() < 2 {
            return None;
        }
        let counts: Vec<String> = all
            .iter()
            .map(|m| {
                let n = clean
                    .iter()
                    .find(|c| c.system == m.system)
                    .map_or(0, |c| c.rounds);
                format!("{} {n} of {}", m.system, m.rounds)
            })
            .collect();
        let ratio = ratio_line(&clean)
            .unwrap_or_else(|| "no error-free round of one system to compare".into());
        Some(format!(
            "error-free rounds only ({}): {ratio}",
            counts.join(", ")
        ))
    }

    /// Two panels: 2xx/s per round, and the median latency distribution, one colour per system.
    pub fn svg(&self) -> String {
        const W: f64 = 760.0;
        const PANEL_H: f64 = 170.0;
        const COLOURS: [&str; 3] = ["#2b7bb9", "#d9822b", "#6a9a3b"];
        let systems = self.systems();
        let colour = |sys: &str| {
            let i = systems.iter().position(|s| *s == sys).unwrap_or(0);
            COLOURS[i % COLOURS.len()]
        };
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{}\" \
             font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
            2.0 * PANEL_H + 80.0
        );
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"16\" font-size=\"13\">lab bench: wrk against the VIP, {} cores shared by client, balancers and backends</text>",
            self.cores
        );
        for (i, sys) in systems.iter().enumerate() {
            let x = 10.0 + i as f64 * 250.0;
            let _ = writeln!(
                s,
                "<rect x=\"{x}\" y=\"24\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"33\">{}</text>",
                colour(sys),
                x + 14.0,
                xml(sys)
            );
        }
        // Panel 1: 2xx/s per round, in run order.
        let top = 50.0;
        let max_rps = self.rounds.iter().map(|r| r.ok_per_sec).fold(1.0, f64::max);
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{}\">2xx responses/s per round (max {max_rps:.0})</text>",
            top + 10.0
        );
        let n = self.rounds.len().max(1) as f64;
        let bw = ((W - 40.0) / n).min(60.0);
        for (i, r) in self.rounds.iter().enumerate() {
            let h = r.ok_per_sec / max_rps * (PANEL_H - 40.0);
            let x = 20.0 + i as f64 * bw;
            let y = top + PANEL_H - 10.0 - h;
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"9\">{:.0}</text>",
                bw * 0.8,
                colour(&r.system),
                y - 2.0,
                r.ok_per_sec
            );
        }
        // Panel 2: median p50 / p90 / p99 / p99.9 per system.
        let top = 60.0 + PANEL_H;
        let medians = self.medians();
        let max_ms = medians
            .iter()
            .map(|m| m.median.p999_ms)
            .fold(0.001, f64::max);
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{}\">median latency, ms (p50, p90, p99, p99.9)</text>",
            top + 10.0
        );
        let group = (W - 40.0) / 4.0;
        let bw = (group * 0.8 / medians.len().max(1) as f64).min(50.0);
        for (g, (label, get)) in PERCENTILES.iter().enumerate() {
            let gx = 20.0 + g as f64 * group;
            let _ = writeln!(
                s,
                "<text x=\"{gx:.1}\" y=\"{:.1}\">{label}</text>",
                top + PANEL_H + 4.0
            );
            for (i, m) in medians.iter().enumerate() {
                let v = get(&m.median);
                let h = v / max_ms * (PANEL_H - 40.0);
                let x = gx + i as f64 * bw;
                let y = top + PANEL_H - 10.0 - h;
                let _ = writeln!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"9\">{v:.1}</text>",
                    bw * 0.9,
                    colour(&m.system),
                    y - 2.0
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }

    fn header(&self, s: &mut String, bullet: &str) {
        let _ = writeln!(
            s,
            "{bullet}machine: {} cores, shared by the client (wrk), both balancers and both backends",
            self.cores
        );
        for c in &self.commands {
            let _ = writeln!(s, "{bullet}command: `{c}`");
        }
        for n in &self.notes {
            let _ = writeln!(s, "{bullet}{n}");
        }
    }
}

type Get = fn(&Round) -> f64;
const PERCENTILES: [(&str, Get); 4] = [
    ("p50", |r| r.p50_ms),
    ("p90", |r| r.p90_ms),
    ("p99", |r| r.p99_ms),
    ("p99.9", |r| r.p999_ms),
];

const LEGEND: &str =
    "errors: non-2xx responses + socket errors (connect/read/write/timeout); CPU: \
    seconds of the proxy processes on the VIP holder (ours or nginx) and of the backends' web \
    servers per 1000 requests; lab CPU: every process in the lab's namespaces and wrk, per \
    1000 requests; upstream conns/req: TCP connections the backends \
    accepted per request";

/// Per system: the lab's CPU per request, its share of the machine, and the 2xx/s a proxy
/// costing nothing would reach on the same cores (the ceiling any proxy faces on this path).
fn bound_lines(m: &[Medians]) -> Vec<String> {
    m.iter()
        .map(|m| {
            let r = &m.median;
            let head = format!(
                "{}: the lab spent {:.0} us of CPU per request ({:.0} us of it in the proxy) and \
                 kept {:.0}% of the machine busy",
                m.system,
                r.lab_cpu_per_1k * 1e3,
                r.balancer_cpu_per_1k * 1e3,
                r.lab_cpu_share * 100.0
            );
            match r.zero_cost_bound() {
                Some(b) => {
                    format!("{head}; a proxy costing nothing would serve at most {b:.0} 2xx/s")
                }
                None => format!("{head}; CPU is not what bounds this run"),
            }
        })
        .collect()
}

fn row_header() -> String {
    format!(
        "{:<34} {:<8} {:>8} {:>7} {:>7} {:>7} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7}",
        "SYSTEM",
        "VIP ON",
        "2XX/S",
        "P50",
        "P90",
        "P99",
        "P99.9",
        "ERRS",
        "CPU/1K",
        "BE/1K",
        "LAB/1K",
        "UP/REQ"
    )
}

/// A round's figures as text, in column order (after the system name).
fn cells(r: &Round) -> [String; 11] {
    [
        r.holder.clone(),
        format!("{:.0}", r.ok_per_sec),
        format!("{:.2}", r.p50_ms),
        format!("{:.2}", r.p90_ms),
        format!("{:.2}", r.p99_ms),
        format!("{:.2}", r.p999_ms),
        r.errors().to_string(),
        format!("{:.3}", r.balancer_cpu_per_1k),
        format!("{:.3}", r.backend_cpu_per_1k),
        format!("{:.3}", r.lab_cpu_per_1k),
        format!("{:.3}", r.upstream_conns_per_request),
    ]
}

fn row(label: &str, r: &Round) -> String {
    let [holder, rest @ ..] = cells(r);
    let widths = [8, 7, 7, 7, 8, 6, 7, 7, 7, 7];
    let mut s = format!("{label:<34} {holder:<8}");
    for (c, w) in rest.iter().zip(widths) {
        let _ = write!(s, " {c:>w$}");
    }
    s
}

fn md_cells(r: &Round) -> String {
    format!("{} | {}", r.system, cells(r).join(" | "))
}

/// "ours / nginx: 2xx/s 1.31x, p99 0.80x, ..." for the first two systems.
fn ratio_line(m: &[Medians]) -> Option<String> {
    let [a, b, ..] = m else { return None };
    let r = |x: f64, y: f64| {
        if y > 0.0 {
            format!("{:.2}x", x / y)
        } else {
            "-".into()
        }
    };
    let (a, b) = (&a.median, &b.median);
    Some(format!(
        "{} / {} (medians): 2xx/s {}, p50 {}, p90 {}, p99 {}, p99.9 {}, proxy CPU per request {} \
         (above 1 favours the first for 2xx/s, below 1 for latency and CPU)",
        m[0].system,
        m[1].system,
        r(a.ok_per_sec, b.ok_per_sec),
        r(a.p50_ms, b.p50_ms),
        r(a.p90_ms, b.p90_ms),
        r(a.p99_ms, b.p99_ms),
        r(a.p999_ms, b.p999_ms),
        r(a.balancer_cpu_per_1k, b.balancer_cpu_per_1k),
    ))
}

/// The median of each field over `rounds` (the mean of the middle two for an even count); the
/// holder is the most frequent one. None for no rounds.
pub fn median(rounds: &[&Round]) -> Option<Round> {
    let first = rounds.first()?;
    let med = |get: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(|r| get(r)).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let med_u = |get: fn(&Round) -> u64| med(&|r| get(r) as f64).round() as u64;
    let mut holders: Vec<(&str, usize)> = Vec::new();
    for r in rounds {
        match holders.iter_mut().find(|(h, _)| *h == r.holder) {
            Some((_, n)) => *n += 1,
            None => holders.push((&r.holder, 1)),
        }
    }
    let holder = holders
        .iter()
        .max_by_key(|(_, n)| *n)
        .map_or("", |(h, _)| h);
    Some(Round {
        system: first.system.clone(),
        holder: holder.to_string(),
        requests: med_u(|r| r.requests),
        requests_per_sec: med(&|r| r.requests_per_sec),
        ok_per_sec: med(&|r| r.ok_per_sec),
        p50_ms: med(&|r| r.p50_ms),
        p90_ms: med(&|r| r.p90_ms),
        p99_ms: med(&|r| r.p99_ms),
        p999_ms: med(&|r| r.p999_ms),
        non_2xx: med_u(|r| r.non_2xx),
        connect_errors: med_u(|r| r.connect_errors),
        read_errors: med_u(|r| r.read_errors),
        write_errors: med_u(|r| r.write_errors),
        timeouts: med_u(|r| r.timeouts),
        balancer_cpu_per_1k: med(&|r| r.balancer_cpu_per_1k),
        backend_cpu_per_1k: med(&|r| r.backend_cpu_per_1k),
        upstream_conns_per_request: med(&|r| r.upstream_conns_per_request),
        lab_cpu_per_1k: med(&|r| r.lab_cpu_per_1k),
        lab_cpu_share: med(&|r| r.lab_cpu_share),
    })
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(system: &str, holder: &str, ok: f64, p99: f64) -> Round {
        Round {
            system: system.into(),
            holder: holder.into(),
            requests: (ok * 5.0) as u64,
            requests_per_sec: ok,
            ok_per_sec: ok,
            p50_ms: p99 / 4.0,
            p90_ms: p99 / 2.0,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            non_2xx: 0,
            connect_errors: 0,
            read_errors: 0,
            write_errors: 0,
            timeouts: 0,
            balancer_cpu_per_1k: 0.1,
            backend_cpu_per_1k: 0.2,
            upstream_conns_per_request: 0.0,
            lab_cpu_per_1k: 1.0,
            lab_cpu_share: 1.0,
        }
    }

    fn report() -> Report {
        Report {
            cores: 2,
            commands: vec!["lab bench --compare nginx --rounds 3".into()],
            notes: vec![],
            rounds: vec![
                round("ours", "server1", 9000.0, 30.0),
                round("nginx", "server1", 7000.0, 20.0),
                round("ours", "server1", 8000.0, 10.0),
                round("nginx", "server2", 6000.0, 25.0),
                round("ours", "server2", 8500.0, 50.0),
                round("nginx", "server1", 6500.0, 22.0),
            ],
        }
    }

    #[test]
    fn medians_are_per_field_and_per_system() {
        let m = report().medians();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].system.as_str(), m[0].rounds), ("ours", 3));
        assert_eq!(m[0].median.ok_per_sec, 8500.0);
        assert_eq!(
            m[0].median.p99_ms, 30.0,
            "p99's own median, not the median round's"
        );
        assert_eq!(m[0].median.holder, "server1");
        assert_eq!(m[1].median.ok_per_sec, 6500.0);
        assert_eq!(m[1].median.p99_ms, 22.0);
        let even = median(&[&round("a", "s", 1.0, 1.0), &round("a", "s", 3.0, 3.0)]).unwrap();
        assert_eq!(even.ok_per_sec, 2.0);
        assert!(median(&[]).is_none());
    }

    #[test]
    fn the_written_record_has_rounds_medians_and_ratios() {
        let r = report();
        let t = r.table();
        assert!(t.contains("2 cores"), "{t}");
        assert!(t.contains("median ours"), "{t}");
        assert!(
            t.contains("ours / nginx (medians): 2xx/s 1.31x, p50 1.36x"),
            "{t}"
        );
        // Median ours: 8500 2xx/s, 1000 us of lab CPU per request of which 100 in the proxy:
        // 8500 * 1000 / 900 = 9444.
        assert!(
            t.contains("ours: the lab spent 1000 us of CPU per request (100 us of it in the proxy) and kept 100% of the machine busy; a proxy costing nothing would serve at most 9444 2xx/s"),
            "{t}"
        );
        let md = r.markdown();
        assert_eq!(md.matches("| median of 3 |").count(), 2, "{md}");
        assert!(md.contains("at most 9444 2xx/s"), "{md}");
        assert!(
            md.contains("`lab bench --compare nginx --rounds 3`"),
            "{md}"
        );
        let svg = r.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // One bar per round plus four percentile groups of two systems.
        assert_eq!(svg.matches("<rect x=").count(), 2 + 6 + 8, "{svg}");
    }

    #[test]
    fn rounds_with_errors_are_left_out_of_the_error_free_comparison() {
        let mut r = report();
        // nginx's 7000 2xx/s round answered 502s quickly: its p99 of 20 ms is not comparable.
        r.rounds[1].non_2xx = 5000;
        let t = r.table();
        assert!(
            t.contains("error-free rounds only (ours 3 of 3, nginx 2 of 3): ours / nginx (medians): 2xx/s 1.36x"),
            "8500 / median(6000, 6500) = 1.36: {t}"
        );
        assert!(report().clean_line().is_none(), "no errors, no second line");
        for round in r.rounds.iter_mut().filter(|x| x.system == "nginx") {
            round.timeouts = 1;
        }
        assert!(r.table().contains("nginx 0 of 3): no error-free round"));
    }
}
