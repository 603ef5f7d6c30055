//! report.html: one self-contained page, the same figures with the charts inline.

use super::{charts_for, headline_rows, how_to_read, part_tables, part_title, parts_shown, provenance_lines, table};
use crate::chart::escape;
use crate::workbench::data::{Cell, RunData};
use crate::workbench::findings::findings;
use crate::workbench::plan::Part;
use std::fmt::Write;

/// report.html: one file, charts inline.
pub fn html(run: &RunData) -> String {
    let mut h = String::new();
    let date = &run.started_at[..run.started_at.len().min(10)];
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>flightbench run: {date} on {host}</title><style>
body{{font-family:system-ui,sans-serif;max-width:1320px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.charts{{display:flex;flex-wrap:wrap;gap:12px}}figure{{margin:0}}.finding{{margin:.3em 0}}code{{font-size:90%}}
</style></head><body><h1>flightbench run: {date} on {host}</h1>"#,
        host = escape(&run.provenance.host)
    );
    let mut links =
        vec![r#"<a href="run.json">run.json</a>"#.to_owned(), r#"<a href="report.md">report.md</a>"#.to_owned()];
    if let Some(profile) = &run.profile {
        links.push(format!(r#"<a href="{0}">flamegraph</a>"#, escape(&profile.svg)));
    }
    let _ = write!(h, "<p>{}</p><h2>What this run found</h2><ul id=\"findings\">", links.join(" · "));
    for finding in findings(run) {
        let _ = write!(h, r#"<li class="finding">{}</li>"#, escape(&finding.text));
    }
    h.push_str("</ul>");
    if !run.headlines.is_empty() {
        h.push_str(r#"<h3>Headline ratios</h3><table id="headlines">"#);
        html_rows(&mut h, &headline_rows(run));
        h.push_str("</table>");
    }
    for part in parts_shown(run) {
        let (title, about) = part_title(part);
        let _ = write!(h, r#"<section id="{}"><h2>{}</h2><p>{}</p>"#, part.as_str(), escape(title), escape(about));
        let cells: Vec<&Cell> = run.part(part).collect();
        if !cells.is_empty() {
            h.push_str("<table>");
            html_rows(&mut h, &table(&cells));
            h.push_str("</table>");
        }
        let class = if part == Part::Projections { "projection-figures" } else { "part-figures" };
        for table in part_tables(run, part) {
            let _ = write!(h, r#"<table class="{class}">"#);
            html_rows(&mut h, &table);
            h.push_str("</table>");
        }
        h.push_str(r#"<div class="charts">"#);
        for chart in charts_for(run, part) {
            let _ = write!(h, r#"<figure class="chart">{}</figure>"#, chart.svg);
        }
        h.push_str("</div></section>");
    }
    if let Some(profile) = &run.profile {
        let _ = write!(
            h,
            r#"<section id="profile"><h2>Profile</h2><p><a href="{svg}">Flamegraph</a> of {cell} ({samples} samples at {hz} Hz); hottest frames by self samples:</p><ul>"#,
            svg = escape(&profile.svg),
            cell = profile.cell,
            samples = profile.samples,
            hz = profile.frequency_hz
        );
        for (frame, share) in &profile.top_frames {
            let _ = write!(h, "<li>{:.1}% <code>{}</code></li>", share * 100.0, escape(frame));
        }
        h.push_str("</ul></section>");
    }
    h.push_str("<h2>How it ran</h2><ul>");
    for line in provenance_lines(run) {
        let _ = write!(h, "<li>{}</li>", escape(&line));
    }
    let _ = writeln!(h, "</ul><p>{}</p></body></html>", escape(&how_to_read(run)));
    h
}

/// A table's rows in HTML, the first as its header, every cell escaped.
fn html_rows(h: &mut String, rows: &[Vec<String>]) {
    for (i, row) in rows.iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        h.push_str("<tr>");
        for cell in row {
            let _ = write!(h, "<{tag}>{}</{tag}>", escape(cell));
        }
        h.push_str("</tr>");
    }
}
