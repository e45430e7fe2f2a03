//! Charts as SVG drawn on the server: lines over time and horizontal bars. Each chart is an
//! image with a text label; the table beside it is its text alternative. No script, no fonts,
//! nothing fetched: a chart of ten million events costs what its table of points costs.

use std::fmt::Write as _;

use maud::{Markup, PreEscaped, html};

/// Series colours, told apart also by their order in the legend and the table beside.
const COLOURS: [&str; 8] = [
    "#2f6fdf", "#d9480f", "#2b8a3e", "#ae3ec9", "#e8a200", "#0b7285", "#c2255c", "#5c940d",
];

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// `s` escaped for HTML and SVG text.
fn esc(s: &str) -> String {
    html! { (s) }.into_string()
}

/// A short number for an axis: 1.2k, 3.4M.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The smallest "round" number (1, 2 or 5 times a power of ten) at least `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * p)
}

/// Lines over `x` (period labels), one per series; a missing point breaks its line.
pub fn lines(label: &str, x: &[String], series: &[(String, Vec<Option<f64>>)]) -> Markup {
    let max = nice_max(
        series
            .iter()
            .flat_map(|(_, v)| v.iter().flatten())
            .copied()
            .fold(0.0, f64::max),
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    #[allow(clippy::cast_precision_loss)]
    let px = |i: usize| {
        if x.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (x.len() - 1) as f64
        }
    };
    let py = |v: f64| TOP + plot_h * (1.0 - v / max);
    let mut svg = String::new();
    // Grid and y labels at 0, ½ and the top.
    for frac in [0.0, 0.5, 1.0] {
        let y = py(max * frac);
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            short(max * frac)
        );
    }
    // x labels: first, middle and last.
    if !x.is_empty() {
        let mut picks = vec![0, x.len() / 2, x.len() - 1];
        picks.dedup();
        for i in picks {
            let anchor = if i == 0 {
                "start"
            } else if i == x.len() - 1 {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
                px(i),
                H - 8.0,
                esc(&x[i])
            );
        }
    }
    for (n, (_, values)) in series.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let mut d = String::new();
        let mut pen_down = false;
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        px(i),
                        py(*v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            svg,
            r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            d.trim_end()
        );
        if values.len() == 1
            && let Some(v) = values[0]
        {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                px(0),
                py(v)
            );
        }
    }
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(label) {
                title { (label) }
                (PreEscaped(svg))
            }
            @if series.len() > 1 || series.first().is_some_and(|(n, _)| !n.is_empty()) {
                figcaption.legend {
                    @for (n, (name, _)) in series.iter().enumerate() {
                        span { i style=(format!("background:{}", COLOURS[n % COLOURS.len()])) {} (name) }
                    }
                }
            }
        }
    }
}

/// Horizontal bars, one per `(label, value)`, largest scale first as given.
pub fn bars(label: &str, items: &[(String, f64)]) -> Markup {
    let max = nice_max(items.iter().map(|(_, v)| *v).fold(0.0, f64::max));
    let row = 22.0;
    #[allow(clippy::cast_precision_loss)]
    let h = (items.len() as f64).mul_add(row, 8.0);
    let label_w = 180.0;
    let bar_w = W - label_w - 70.0;
    let mut svg = String::new();
    for (i, (name, v)) in items.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = (i as f64).mul_add(row, 4.0);
        let mut shown: String = name.chars().take(28).collect();
        if name.chars().count() > 28 {
            shown.push('…');
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{label_w}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            label_w - 6.0,
            y + 15.0,
            esc(&shown),
            (bar_w * v / max).max(1.0),
            row - 6.0,
            COLOURS[0],
            label_w + (bar_w * v / max).max(1.0) + 6.0,
            y + 15.0,
            short(*v)
        );
    }
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {h}")) role="img" aria-label=(label) {
                title { (label) }
                (PreEscaped(svg))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_round_up_and_labels_are_escaped() {
        assert!((nice_max(0.0) - 1.0).abs() < f64::EPSILON);
        assert!((nice_max(3.2) - 5.0).abs() < f64::EPSILON);
        assert!((nice_max(170.0) - 200.0).abs() < f64::EPSILON);
        assert!((nice_max(1000.0) - 1000.0).abs() < f64::EPSILON);
        assert_eq!(short(12_345.0), "12k");
        assert_eq!(short(2_500_000.0), "2.5M");
        let svg = lines(
            "events",
            &["<a>".into(), "b".into()],
            &[("x".into(), vec![Some(1.0), None])],
        )
        .into_string();
        assert!(svg.contains("&lt;a&gt;") && !svg.contains("<a>"));
        let svg = bars("b", &[("<script>".into(), 3.0)]).into_string();
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("<rect"));
    }
}
