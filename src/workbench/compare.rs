//! `flightbench compare A B`: which figures moved between two runs.
//!
//! Cells are matched by id. A figure **moved** only when its 95% intervals in the two
//! runs do not overlap (`stats`) *and* it changed by more than the threshold (default
//! 10%): a change inside either run's noise is reported as "within noise" with both
//! intervals, however large it looks. Runs of one round have no intervals, so there
//! the threshold alone decides, and the comparison says so. The headline ratios are
//! compared the same way. Differences in what was measured (preset, dataset, build,
//! machine, placement) are listed first, because they explain a move better than the
//! code does.

use super::cell::CellId;
use super::data::{Cell, RunData};
use super::findings::count;
use super::headline::headlines;
use super::stats::Interval;
use std::fmt::Write;

/// One figure in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The cell, or the headline ratio's name.
    pub what: String,
    pub metric: &'static str,
    pub before: Interval,
    pub after: Interval,
    /// after / before, of the estimates.
    pub ratio: f64,
    pub verdict: Verdict,
}

/// What a comparison concludes about one figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Beyond the threshold with intervals apart; `better` says which way.
    Moved { better: bool },
    /// Beyond the threshold, but the intervals overlap.
    WithinNoise,
    /// Within the threshold.
    Steady,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub threshold: f64,
    /// Setting and machine differences between the runs.
    pub caveats: Vec<String>,
    /// Headline ratios first, then every cell's throughput and server CPU per request.
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
    differs("rounds", before.settings.rounds.to_string(), after.settings.rounds.to_string());
    let placement = |run: &RunData| {
        let p = &run.settings.placement;
        if p.pinned {
            format!("server on cores {:?}, load on {:?}", p.server_cores, p.load_cores)
        } else {
            "unpinned".into()
        }
    };
    differs("placement", placement(before), placement(after));
    differs("commit", p.commit.clone(), q.commit.clone());

    let mut changes = Vec::new();
    let judge = |what: String, metric: &'static str, x: Interval, y: Interval, higher_is_better: bool| {
        let ratio = y.estimate / x.estimate;
        let verdict = if (ratio - 1.0).abs() <= threshold {
            Verdict::Steady
        } else if x.has_interval() && y.has_interval() && x.overlaps(&y) {
            Verdict::WithinNoise
        } else {
            Verdict::Moved { better: (ratio > 1.0) == higher_is_better }
        };
        Change { what, metric, before: x, after: y, ratio, verdict }
    };
    let after_headlines = headlines(after);
    for a in headlines(before) {
        let Some(b) = after_headlines.iter().find(|h| h.name == a.name) else { continue };
        changes.push(judge(a.name.clone(), "ratio by throughput", a.throughput, b.throughput, true));
        if let (Some(x), Some(y)) = (a.cpu, b.cpu) {
            changes.push(judge(a.name.clone(), "ratio by server CPU per request", x, y, true));
        }
    }
    for a in &before.cells {
        let Some(b) = after.cell(a.id) else { continue };
        let figure = |c: &Cell, f: fn(&Cell) -> Option<Interval>| f(c);
        if let (Some(x), Some(y)) = (figure(a, Cell::rate_interval), figure(b, Cell::rate_interval)) {
            changes.push(judge(a.id.to_string(), "req/s", x, y, true));
        }
        if let (Some(x), Some(y)) = (figure(a, Cell::cpu_interval), figure(b, Cell::cpu_interval)) {
            changes.push(judge(a.id.to_string(), "server CPU µs/req", x, y, false));
        }
    }
    let only = |run: &RunData, other: &RunData| {
        run.cells.iter().map(|c| c.id).filter(|&id| other.cell(id).is_none()).collect()
    };
    Comparison { threshold, caveats, only_before: only(before, after), only_after: only(after, before), changes }
}

impl Comparison {
    /// Markdown: caveats, what moved, what changed within noise, then every figure.
    pub fn markdown(&self, before: &str, after: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# flightbench compare\n\n{before} → {after}. A figure moved when its 95% intervals in the two runs do not overlap and it changed by more than {:.0}%; a larger change whose intervals overlap is within noise.\n",
            self.threshold * 100.0
        );
        if self.changes.iter().any(|c| !c.before.has_interval() || !c.after.has_interval()) {
            let _ = writeln!(
                md,
                "One of the runs has one round per cell, so its figures have no intervals: there the threshold alone decides.\n"
            );
        }
        if !self.caveats.is_empty() {
            let _ = writeln!(md, "## Not like with like\n");
            for caveat in &self.caveats {
                let _ = writeln!(md, "- {caveat}");
            }
            md.push('\n');
        }
        let moved: Vec<&Change> = self.changes.iter().filter(|c| matches!(c.verdict, Verdict::Moved { .. })).collect();
        let _ = writeln!(md, "## Moved ({})\n", moved.len());
        if moved.is_empty() {
            let _ = writeln!(md, "Nothing moved beyond {:.0}% with its intervals apart.", self.threshold * 100.0);
        }
        for c in &moved {
            let better = matches!(c.verdict, Verdict::Moved { better: true });
            let _ = writeln!(
                md,
                "- {} {}: {} → {} ({:.2}×, {})",
                c.what,
                c.metric,
                figure(c.metric, &c.before),
                figure(c.metric, &c.after),
                c.ratio,
                if better { "better" } else { "worse" }
            );
        }
        let noisy: Vec<&Change> = self.changes.iter().filter(|c| c.verdict == Verdict::WithinNoise).collect();
        if !noisy.is_empty() {
            let _ = writeln!(md, "\n## Within noise ({})\n", noisy.len());
            for c in noisy {
                let _ = writeln!(
                    md,
                    "- {} {}: {} → {} ({:.2}×): within noise, the intervals overlap",
                    c.what,
                    c.metric,
                    figure(c.metric, &c.before),
                    figure(c.metric, &c.after),
                    c.ratio
                );
            }
        }
        let _ = writeln!(
            md,
            "\n## Every figure\n\n| what | figure | before | after | ratio | verdict |\n|---|---|---|---|---|---|"
        );
        for c in &self.changes {
            let verdict = match c.verdict {
                Verdict::Moved { better: true } => "**moved, better**",
                Verdict::Moved { better: false } => "**moved, worse**",
                Verdict::WithinNoise => "within noise",
                Verdict::Steady => "steady",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2}× | {verdict} |",
                c.what,
                c.metric,
                figure(c.metric, &c.before),
                figure(c.metric, &c.after),
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

/// A figure with its interval: `12,000 [11,800–12,200]`, `1.32× [1.29–1.35]`.
fn figure(metric: &str, value: &Interval) -> String {
    match metric {
        "req/s" => {
            let bracket = if value.has_interval() {
                format!(" [{}–{}]", count(value.low), count(value.high))
            } else {
                String::new()
            };
            format!("{}{bracket}", count(value.estimate))
        }
        "server CPU µs/req" => format!("{:.1} {}", value.estimate, value.bracket(1)),
        _ => format!("{:.2}× {}", value.estimate, value.bracket(2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workbench::data::fixture;

    fn id(text: &str) -> CellId {
        text.parse().unwrap()
    }

    #[test]
    fn identical_runs_move_nothing() {
        let run = fixture::run();
        let comparison = compare(&run, &run, 0.1);
        assert!(comparison.caveats.is_empty());
        assert!(!comparison.changes.is_empty());
        assert!(comparison.changes.iter().all(|c| c.verdict == Verdict::Steady && (c.ratio - 1.0).abs() < 1e-12));
        let md = comparison.markdown("a", "b");
        assert!(md.contains("Nothing moved beyond 10% with its intervals apart."), "{md}");
        assert!(md.contains("| paths/raw | req/s | 11,999 [11,766–12,237] | 11,999 [11,766–12,237] |"), "{md}");
    }

    #[test]
    fn a_move_needs_separate_intervals_and_the_threshold() {
        let before = fixture::run();
        let mut after = before.clone();
        after.provenance.commit = "def5678".into();
        // paths/raw: 50% faster in every round (intervals apart): moved.
        let raw = after.cells.iter_mut().find(|c| c.id == id("paths/raw")).unwrap();
        raw.rounds.iter_mut().for_each(|r| r.requests_per_s *= 1.5);
        // cache/on: 30% slower on average, but one round overlaps the old ones: noise.
        let on = after.cells.iter_mut().find(|c| c.id == id("cache/on")).unwrap();
        for (r, f) in on.rounds.iter_mut().zip([0.5, 1.0, 0.5, 1.0, 0.5]) {
            r.requests_per_s *= f;
        }
        after.cells.retain(|c| c.id != CellId::OpenLoop);
        let comparison = compare(&before, &after, 0.1);
        let verdict = |what: &str, metric: &str| {
            comparison.changes.iter().find(|c| c.what == what && c.metric == metric).map(|c| c.verdict)
        };
        assert_eq!(verdict("paths/raw", "req/s"), Some(Verdict::Moved { better: true }));
        assert_eq!(verdict("cache/on", "req/s"), Some(Verdict::WithinNoise));
        assert_eq!(verdict("paths/prepared", "req/s"), Some(Verdict::Steady));
        assert_eq!(verdict("raw/prepared", "ratio by throughput"), Some(Verdict::Moved { better: true }));
        assert_eq!(comparison.only_before, vec![CellId::OpenLoop]);
        assert_eq!(comparison.caveats, vec!["commit differs: abc1234 → def5678".to_owned()]);
        let md = comparison.markdown("before", "after");
        assert!(md.contains("- paths/raw req/s: 11,999 [11,766–12,237] → 17,998 [17,648–18,355]"), "{md}");
        assert!(md.contains("(1.50×, better)"), "{md}");
        assert!(
            md.contains("## Within noise (")
                && md.contains(
                    "- cache/on req/s: 24,997 [24,512–25,493] → 16,492 [10,120–26,877] (0.66×): within noise"
                ),
            "{md}"
        );
        assert!(md.contains("within noise, the intervals overlap"), "{md}");
    }

    #[test]
    fn one_round_runs_fall_back_on_the_threshold_and_say_so() {
        let mut before = fixture::run();
        for cell in &mut before.cells {
            cell.rounds.truncate(1);
        }
        let mut after = before.clone();
        after.cells.iter_mut().find(|c| c.id == id("paths/orm")).unwrap().rounds[0].requests_per_s *= 2.0;
        let comparison = compare(&before, &after, 0.1);
        let orm = comparison.changes.iter().find(|c| c.what == "paths/orm" && c.metric == "req/s").unwrap();
        assert_eq!(orm.verdict, Verdict::Moved { better: true });
        assert!(comparison.markdown("a", "b").contains("the threshold alone decides"));
    }
}
