//! report.md: the run's figures as markdown, the charts as SVG files beside it.

use super::{charts_for, headline_rows, how_to_read, part_tables, part_title, parts_shown, provenance_lines, table};
use crate::workbench::data::{Cell, RunData};
use crate::workbench::findings::findings;
use std::fmt::Write;

/// report.md, referring to the chart files.
pub fn markdown(run: &RunData) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# flightbench run: {} on {}\n",
        &run.started_at[..run.started_at.len().min(10)],
        run.provenance.host
    );
    let mut links = vec!["[HTML report](report.html)".to_owned(), "[run.json](run.json)".to_owned()];
    if let Some(profile) = &run.profile {
        links.push(format!("[flamegraph]({})", profile.svg));
    }
    let _ = writeln!(md, "{}\n", links.join(" · "));
    let _ = writeln!(md, "## What this run found\n");
    for finding in findings(run) {
        let _ = writeln!(md, "- {}", finding.text);
    }
    if !run.headlines.is_empty() {
        let _ = writeln!(md, "\n### Headline ratios\n");
        md_table(&mut md, &headline_rows(run));
    }
    for part in parts_shown(run) {
        let (title, about) = part_title(part);
        let _ = writeln!(md, "\n## {title}\n\n{about}\n");
        let cells: Vec<&Cell> = run.part(part).collect();
        if !cells.is_empty() {
            md_table(&mut md, &table(&cells));
            md.push('\n');
        }
        for table in part_tables(run, part) {
            md_table(&mut md, &table);
            md.push('\n');
        }
        for chart in charts_for(run, part) {
            let _ = writeln!(md, "![{}](charts/{})", chart.file, chart.file);
        }
    }
    if let Some(profile) = &run.profile {
        let _ = writeln!(
            md,
            "\n## Profile\n\n[{}]({}) ({} samples at {} Hz, folded stacks in [{}]({})): {}, re-run with sampling. Hottest frames by self samples:\n",
            profile.svg,
            profile.svg,
            profile.samples,
            profile.frequency_hz,
            profile.folded,
            profile.folded,
            profile.cell
        );
        for (frame, share) in &profile.top_frames {
            let _ = writeln!(md, "- {:.1}% `{}`", share * 100.0, frame.replace('`', "'"));
        }
    }
    let _ = writeln!(md, "\n## How it ran\n");
    for line in provenance_lines(run) {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(md, "\n{}", how_to_read(run));
    md
}

/// A markdown table whose first row is its header.
fn md_table(md: &mut String, rows: &[Vec<String>]) {
    for (i, row) in rows.iter().enumerate() {
        let _ = writeln!(md, "| {} |", row.join(" | "));
        if i == 0 {
            let _ = writeln!(md, "|{}", "---|".repeat(row.len()));
        }
    }
}
