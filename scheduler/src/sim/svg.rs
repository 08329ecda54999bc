//! A simulation as a picture: utilisation and queue length over time, and the distribution of
//! waiting times, as one self-contained SVG. Hand-written rather than through a plotting
//! crate: three plain charts need a few dozen elements, and this keeps the scheduler crate free
//! of dependencies (and of font files: the text uses the viewer's sans-serif).

use std::fmt::Write as _;

use super::engine::SimReport;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;
/// Points per line, at most: more than a screen shows.
const MAX_POINTS: usize = 1500;

/// Upper bounds of the wait-time histogram's bins, seconds, and their labels.
const BINS: [(f64, &str); 8] = [
    (0.0, "0"),
    (60.0, "<1m"),
    (600.0, "<10m"),
    (3600.0, "<1h"),
    (6.0 * 3600.0, "<6h"),
    (86_400.0, "<1d"),
    (7.0 * 86_400.0, "<7d"),
    (f64::INFINITY, "≥7d"),
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Keeps at most `MAX_POINTS` points, taking each bucket's largest value (peaks stay visible).
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let per = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(per)
        .filter_map(|c| {
            let x = c.first()?.0;
            let y = c.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            Some((x, y))
        })
        .collect()
}

/// One line chart in the panel whose top is at `y0`; x in hours.
fn line_chart(
    out: &mut String,
    y0: f64,
    title: &str,
    y_label: &str,
    points: &[(f64, f64)],
    y_max: f64,
    color: &str,
) {
    let w = WIDTH - LEFT - RIGHT;
    let x_max = points.last().map_or(1.0, |p| p.0).max(1e-9);
    let y_max = y_max.max(1e-9);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        y0 - 10.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{y0}" width="{w}" height="{PANEL}" fill="none" stroke="#999"/>"##
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let y = y0 + PANEL * (1.0 - f);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##,
            LEFT + w
        );
        let v = y_max * f;
        let label = if y_max <= 1.0 { format!("{:.0}%", v * 100.0) } else { format!("{v:.0}") };
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{label}</text>"#,
            LEFT - 6.0,
            y + 4.0
        );
        let x = LEFT + w * f;
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{:.1} h</text>"#,
            y0 + PANEL + 16.0,
            x_max * f
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" font-size="12" transform="rotate(-90 16 {:.1})" text-anchor="middle">{}</text>"#,
        y0 + PANEL / 2.0,
        y0 + PANEL / 2.0,
        esc(y_label)
    );
    let mut path = String::new();
    let mut last_y: Option<f64> = None;
    for &(x, v) in &thin(points) {
        let px = LEFT + w * (x / x_max);
        let py = y0 + PANEL * (1.0 - (v / y_max).clamp(0.0, 1.0));
        match last_y {
            None => {
                let _ = write!(path, "M{px:.1},{py:.1}");
            }
            // A step: the value holds until the next sample.
            Some(ly) => {
                let _ = write!(path, " L{px:.1},{ly:.1} L{px:.1},{py:.1}");
            }
        }
        last_y = Some(py);
    }
    let _ = writeln!(out, r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="1.2"/>"#);
}

/// The SVG of a simulation.
pub fn render(report: &SimReport, title: &str) -> String {
    let start = report.first_submit;
    let hours = |t: crate::types::Timestamp| t.since(start).as_secs_f64() / 3600.0;
    let total = report.total_cpus.max(1) as f64;
    let util: Vec<(f64, f64)> =
        report.samples.iter().map(|s| (hours(s.at), s.busy_cpus as f64 / total)).collect();
    let queue: Vec<(f64, f64)> =
        report.samples.iter().map(|s| (hours(s.at), s.waiting as f64)).collect();
    let queue_max = queue.iter().map(|p| p.1).fold(1.0, f64::max);
    let height = TOP + 3.0 * PANEL + 2.0 * GAP + 50.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{LEFT}" y="20" font-size="16">{}</text>"#, esc(title));
    line_chart(&mut out, TOP + 20.0, "Utilisation", "CPUs busy", &util, 1.0, "#1f77b4");
    line_chart(
        &mut out,
        TOP + 20.0 + PANEL + GAP,
        "Queue length",
        "jobs waiting",
        &queue,
        queue_max,
        "#d62728",
    );

    // Wait-time histogram.
    let mut counts = [0usize; BINS.len()];
    for (_, o) in &report.jobs {
        let Some(s) = o.start else { continue };
        let wait = s.since(o.submit).as_secs_f64();
        let bin = BINS
            .iter()
            .position(|&(upper, _)| if upper == 0.0 { wait <= 0.0 } else { wait < upper });
        if let Some(c) = bin.and_then(|b| counts.get_mut(b)) {
            *c += 1;
        }
    }
    let y0 = TOP + 20.0 + 2.0 * (PANEL + GAP);
    let w = WIDTH - LEFT - RIGHT;
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="15" font-weight="bold">Waiting time (jobs)</text>"#,
        y0 - 10.0
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{y0}" width="{w}" height="{PANEL}" fill="none" stroke="#999"/>"##
    );
    let bw = w / BINS.len() as f64;
    for (i, (&count, &(_, label))) in counts.iter().zip(&BINS).enumerate() {
        let h = PANEL * count as f64 / max;
        let x = LEFT + bw * i as f64;
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#2ca02c"/>"##,
            x + 4.0,
            y0 + PANEL - h,
            bw - 8.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{count}</text>"#,
            x + bw / 2.0,
            y0 + PANEL - h - 4.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            x + bw / 2.0,
            y0 + PANEL + 16.0,
            esc(label)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::engine::{JobOutcome, Sample};
    use crate::types::Timestamp;

    #[test]
    fn renders_three_panels() {
        let report = SimReport {
            total_cpus: 8,
            samples: (0..5000)
                .map(|i| Sample {
                    at: Timestamp::from_secs(i * 60),
                    busy_cpus: i % 9,
                    waiting: (i % 7) as usize,
                })
                .collect(),
            jobs: vec![(
                1,
                JobOutcome { start: Some(Timestamp::from_secs(120)), ..JobOutcome::default() },
            )],
            ..SimReport::default()
        };
        let svg = render(&report, "test <run>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains("Utilisation")
                && svg.contains("Queue length")
                && svg.contains("Waiting time")
        );
        assert!(svg.contains("test &lt;run&gt;"));
        assert!(svg.matches(" L").count() <= 4 * MAX_POINTS, "lines are thinned");
    }
}
