//! `flightbench compare A B`: which figures moved between two runs. Cells are matched
//! by id; a figure moved when it changed by more than the threshold (default 10%,
//! about what identical runs differ by on a shared 2-core machine). Differences in
//! what was measured (preset, dataset, build, machine) are listed first, because they
//! explain a move better than the code does.

use super::cell::CellId;
use super::data::RunData;
use super::findings::count;
use std::fmt::Write;

/// One figure of one cell in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: CellId,
    pub metric: &'static str,
    pub before: f64,
    pub after: f64,
    /// after / before.
    pub ratio: f64,
    /// Beyond the threshold; `better` says in which direction.
    pub moved: bool,
    pub better: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub threshold: f64,
    /// Setting and machine differences between the runs.
    pub caveats: Vec<String>,
    pub changes: Vec<Change>,
    pub only_before: Vec<CellId>,
    pub only_after: Vec<CellId>,
}

/// Compares `after` against `before`; `threshold` is a fraction (0.1 = 10%).
pub fn compare(before: &RunData, after: &RunData, threshold: f64) -> Comparison {
    let mut caveats = Vec::new();
    let mut differs = |what: &str, a: String, b: String| {
        if a != b {
            caveats.push(format!("{what} differs: {a} → {b}"));
        }
    };
    let (p, q) = (&before.provenance, &after.provenance);
    differs("preset", before.preset.to_string(), after.preset.to_string());
    differs("build", p.build.clone(), q.build.clone());
    differs("host", p.host.clone(), q.host.clone());
    differs("CPU", format!("{} × {}", p.cpu, p.cores), format!("{} × {}", q.cpu, q.cores));
    differs(
        "dataset",
        format!("{} flights, seed {}", p.dataset.flights, p.dataset.seed),
        format!("{} flights, seed {}", q.dataset.flights, q.dataset.seed),
    );
    differs("measured seconds per cell", before.settings.measure_s.to_string(), after.settings.measure_s.to_string());
    differs("commit", p.commit.clone(), q.commit.clone());
    let mut changes = Vec::new();
    for a in &before.cells {
        let Some(b) = after.cell(a.id) else { continue };
        let mut push = |metric: &'static str, x: f64, y: f64, higher_is_better: bool| {
            let ratio = y / x.max(f64::MIN_POSITIVE);
            let moved = (ratio - 1.0).abs() > threshold && x > 0.0;
            changes.push(Change {
                id: a.id,
                metric,
                before: x,
                after: y,
                ratio,
                moved,
                better: (ratio > 1.0) == higher_is_better,
            });
        };
        push("req/s", a.requests_per_s, b.requests_per_s, true);
        push("p99 ms", a.latency.p99_ms, b.latency.p99_ms, false);
    }
    let only = |run: &RunData, other: &RunData| {
        run.cells.iter().map(|c| c.id).filter(|&id| other.cell(id).is_none()).collect()
    };
    Comparison { threshold, caveats, only_before: only(before, after), only_after: only(after, before), changes }
}

impl Comparison {
    /// Markdown: caveats, the figures that moved, then every figure.
    pub fn markdown(&self, before: &str, after: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# flightbench compare\n\n{before} → {after}; a figure moved when it changed by more than {:.0}%.\n",
            self.threshold * 100.0
        );
        if !self.caveats.is_empty() {
            let _ = writeln!(md, "## Not like with like\n");
            for caveat in &self.caveats {
                let _ = writeln!(md, "- {caveat}");
            }
            md.push('\n');
        }
        let moved: Vec<&Change> = self.changes.iter().filter(|c| c.moved).collect();
        let _ = writeln!(md, "## Moved ({})\n", moved.len());
        if moved.is_empty() {
            let _ = writeln!(md, "Nothing moved beyond {:.0}%.", self.threshold * 100.0);
        }
        for c in &moved {
            let _ = writeln!(
                md,
                "- {} {}: {} → {} ({:.2}×, {})",
                c.id,
                c.metric,
                figure(c.metric, c.before),
                figure(c.metric, c.after),
                c.ratio,
                if c.better { "better" } else { "worse" }
            );
        }
        let _ = writeln!(md, "\n## Every figure\n\n| cell | figure | before | after | ratio |\n|---|---|---|---|---|");
        for c in &self.changes {
            let mark = if c.moved { " **moved**" } else { "" };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2}×{mark} |",
                c.id,
                c.metric,
                figure(c.metric, c.before),
                figure(c.metric, c.after),
                c.ratio
            );
        }
        for (ids, side) in [(&self.only_before, "only in the first run"), (&self.only_after, "only in the second run")]
        {
            if !ids.is_empty() {
                let ids: Vec<String> = ids.iter().map(CellId::to_string).collect();
                let _ = writeln!(md, "\n{}: {}", side, ids.join(", "));
            }
        }
        md
    }
}

fn figure(metric: &str, value: f64) -> String {
    if metric == "req/s" { count(value) } else { format!("{value:.2}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workbench::data::fixture;

    #[test]
    fn identical_runs_move_nothing() {
        let run = fixture::run();
        let comparison = compare(&run, &run, 0.1);
        assert!(comparison.caveats.is_empty());
        assert!(!comparison.changes.is_empty());
        assert!(comparison.changes.iter().all(|c| !c.moved && (c.ratio - 1.0).abs() < 1e-12));
        assert!(comparison.markdown("a", "b").contains("Nothing moved beyond 10%."));
    }

    #[test]
    fn moves_beyond_the_threshold_are_reported_with_their_direction() {
        let before = fixture::run();
        let mut after = before.clone();
        after.provenance.commit = "def5678".into();
        let id = |text: &str| text.parse::<CellId>().unwrap();
        let raw = after.cells.iter_mut().find(|c| c.id == id("paths/raw")).unwrap();
        raw.requests_per_s *= 1.5;
        raw.latency.p99_ms *= 1.05;
        after.cells.iter_mut().find(|c| c.id == id("cache/on")).unwrap().latency.p99_ms *= 2.0;
        after.cells.retain(|c| c.id != CellId::OpenLoop);
        let comparison = compare(&before, &after, 0.1);
        let moved: Vec<(String, &str, bool)> =
            comparison.changes.iter().filter(|c| c.moved).map(|c| (c.id.to_string(), c.metric, c.better)).collect();
        assert_eq!(moved, vec![("paths/raw".into(), "req/s", true), ("cache/on".into(), "p99 ms", false)]);
        assert_eq!(comparison.only_before, vec![CellId::OpenLoop]);
        assert_eq!(comparison.caveats, vec!["commit differs: abc1234 → def5678".to_owned()]);
        let md = comparison.markdown("before", "after");
        assert!(md.contains("- paths/raw req/s: 12,000 → 18,000 (1.50×, better)"), "{md}");
        assert!(md.contains("- cache/on p99 ms: 4.00 → 8.00 (2.00×, worse)"), "{md}");
    }
}
