//! Small self-contained SVG charts (no scripts, no external fonts), for load reports
//! and the workbench report. Hand-written because the charts are simple and a
//! plotting crate would add a font stack and minutes of compile time for them.

use std::fmt::Write;

/// One line on a chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
}

/// How the x axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XScale {
    Linear,
    /// Percentiles on a "nines" scale: 0, 90, 99, 99.9 … evenly spaced, as HDR
    /// histogram plots do, so the tail is visible.
    Nines,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 32.0;
const BOTTOM: f64 = 44.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

fn nines(p: f64) -> f64 {
    -(1.0 - (p / 100.0).min(0.999_999)).log10()
}

/// Escapes text for SVG and HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A "nice" upper bound and tick step for `max`.
fn ticks(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.25);
    }
    let magnitude = 10f64.powf(max.log10().floor());
    let step = [0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| max / step <= 5.0)
        .unwrap_or(magnitude * 10.0);
    ((max / step).ceil() * step, step)
}

fn label(v: f64) -> String {
    if v == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A line chart as a standalone `<svg>` element.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, scale: XScale, series: &[Series<'_>]) -> String {
    let map_x = |x: f64| match scale {
        XScale::Linear => x,
        XScale::Nines => nines(x),
    };
    let points = series.iter().flat_map(|s| s.points.iter());
    let (x_max, y_max) = points.fold((0.0f64, 0.0f64), |(xm, ym), &(x, y)| (xm.max(map_x(x)), ym.max(y)));
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let (y_top, y_step) = ticks(y_max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + map_x(x) / x_max * plot_w;
    let py = |y: f64| TOP + plot_h - y / y_top * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(svg, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let _ = write!(svg, r#"<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{}</text>"#, escape(title));
    // Horizontal grid and y labels.
    let mut y = 0.0;
    while y <= y_top + y_step / 2.0 {
        let (right, at, label_x, label_y, text) = (WIDTH - RIGHT, py(y), LEFT - 6.0, py(y) + 4.0, label(y));
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{right}" y1="{at:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{label_x}" y="{label_y:.1}" text-anchor="end">{text}</text>"##
        );
        y += y_step;
    }
    // X ticks.
    let x_ticks: Vec<f64> = match scale {
        XScale::Nines => {
            [0.0, 90.0, 99.0, 99.9, 99.99, 99.999].into_iter().filter(|p| nines(*p) <= x_max + 1e-9).collect()
        }
        XScale::Linear => {
            let (top, step) = ticks(x_max);
            (0..).map(|i| i as f64 * step).take_while(|x| *x <= top.min(x_max) + 1e-9).collect()
        }
    };
    for x in x_ticks {
        let text = match scale {
            XScale::Nines => format!("{x}%"),
            XScale::Linear => label(x),
        };
        let _ =
            write!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle">{text}</text>"#, px(x), HEIGHT - BOTTOM + 16.0);
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    let (bottom, right) = (TOP + plot_h, WIDTH - RIGHT);
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom:.1}" stroke="#333"/><line x1="{LEFT}" x2="{right}" y1="{bottom:.1}" y2="{bottom:.1}" stroke="#333"/>"##
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = write!(
            svg,
            r#"<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            path.join(" "),
            escape(s.name)
        );
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            WIDTH - RIGHT - 150.0,
            TOP + 4.0 + i as f64 * 16.0,
            WIDTH - RIGHT - 136.0,
            TOP + 13.0 + i as f64 * 16.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal bar chart as a standalone `<svg>` element: one bar per `(label,
/// value)`, the value written at the bar's end with `unit`.
pub fn bar_chart(title: &str, unit: &str, bars: &[(String, f64)]) -> String {
    const BAR: f64 = 20.0;
    const GAP: f64 = 6.0;
    const LABELS: f64 = 200.0;
    let height = TOP + bars.len() as f64 * (BAR + GAP) + 28.0;
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max);
    let (top, _) = ticks(max);
    let plot_w = WIDTH - LABELS - RIGHT - 70.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(svg, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let _ = write!(svg, r#"<text x="8" y="18" font-size="13" font-weight="bold">{}</text>"#, escape(title));
    for (i, (name, value)) in bars.iter().enumerate() {
        let y = TOP + i as f64 * (BAR + GAP);
        let width = if top > 0.0 { value / top * plot_w } else { 0.0 };
        let colour = COLOURS[i % COLOURS.len()];
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="bar" x="{LABELS}" y="{y:.1}" width="{width:.1}" height="{BAR}" fill="{colour}"><title>{}: {} {}</title></rect><text x="{:.1}" y="{:.1}">{} {}</text>"#,
            LABELS - 6.0,
            y + BAR / 2.0 + 4.0,
            escape(name),
            escape(name),
            label(*value),
            escape(unit),
            LABELS + width + 4.0,
            y + BAR / 2.0 + 4.0,
            label(*value),
            escape(unit)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Charts stacked vertically in one SVG document.
pub fn stack(charts: &[String]) -> String {
    let mut svg = String::new();
    let height = HEIGHT * charts.len() as f64;
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">"#
    );
    for (i, chart) in charts.iter().enumerate() {
        let _ = write!(svg, r#"<g transform="translate(0 {})">{chart}</g>"#, i as f64 * HEIGHT);
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg_with_one_line_per_series() {
        let a = [(0.0, 1.0), (50.0, 2.0), (99.9, 40.0)];
        let b = [(0.0, 1.0), (99.0, 3.0)];
        let svg = line_chart(
            "latency <p99>",
            "percentile",
            "ms",
            XScale::Nines,
            &[Series { name: "corrected", points: &a }, Series { name: "uncorrected", points: &b }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("latency &lt;p99&gt;"));
        assert!(svg.contains(">99.9%<"));
        let stacked = stack(&[svg.clone(), svg]);
        assert_eq!(stacked.matches("<polyline").count(), 4);
    }

    #[test]
    fn bar_charts_have_one_bar_per_value_scaled_to_the_largest() {
        let svg = bar_chart("req/s <by path>", "req/s", &[("raw".into(), 200.0), ("adhoc".into(), 100.0)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="bar""#).count(), 2);
        assert!(svg.contains("&lt;by path&gt;"));
        let widths: Vec<f64> = svg
            .split(r#"class="bar""#)
            .skip(1)
            .map(|rest| rest.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap())
            .collect();
        assert!((widths[0] / widths[1] - 2.0).abs() < 0.01, "{widths:?}");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(7.3), (8.0, 2.0));
        assert_eq!(ticks(42_000.0), (50_000.0, 10_000.0));
        assert_eq!(ticks(0.0), (1.0, 0.25));
    }
}
