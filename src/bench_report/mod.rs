//! `flightbench bench-report`: criterion's estimates → `results/benchmarks.md`.
//!
//! Reads every `<criterion>/**/new/{benchmark,estimates}.json` and the settings the
//! benches write (`<criterion>/flightbench/*.json`), and renders one table per group:
//! mean, its 95% confidence interval, and ratios. In the query groups each path is
//! given as a multiple of `prepared` and of the `raw` floor; other groups are given as
//! multiples of their first arm. Nothing in the report is typed by hand: every number
//! and every sentence of the summary comes from those files.
//!
//! `collect` reads criterion's files, `findings` computes the summary's sentences,
//! `render` writes the markdown; this module holds what they share.

use std::collections::BTreeMap;
use std::path::PathBuf;

mod collect;
mod findings;
mod render;

pub use collect::collect;
pub use findings::findings;
pub use render::render;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no criterion results under {0}: run `cargo bench` first")]
    Empty(PathBuf),
    #[error("cannot read {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path} is not a criterion file this report understands: {cause}")]
    Parse { path: PathBuf, cause: serde_json::Error },
}

impl crate::failure::Classify for ReportError {
    fn failure(&self) -> crate::failure::Failure {
        match self {
            ReportError::Io { cause, .. } => crate::failure::Classify::failure(cause),
            ReportError::Empty(_) | ReportError::Parse { .. } => crate::failure::Failure::BadInput,
        }
    }
}

/// One measured arm.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub name: String,
    /// Nanoseconds per iteration.
    pub mean: f64,
    pub lower: f64,
    pub upper: f64,
    pub bytes: Option<u64>,
    pub elements: Option<u64>,
}

/// Every group, in name order, each with its arms in the order criterion ran them
/// (approximated by name order within known paths).
pub type Groups = BTreeMap<String, Vec<Arm>>;

/// A duration in the unit that keeps three significant digits readable.
pub fn format_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `| name | mean | lower – upper |`, the cells every table starts with.
pub(super) fn timing_cells(a: &Arm) -> String {
    format!("| {} | {} | {} – {} |", a.name, format_ns(a.mean), format_ns(a.lower), format_ns(a.upper))
}

pub(super) fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

pub(super) fn find<'a>(arms: &'a [Arm], name: &str) -> Option<&'a Arm> {
    arms.iter().find(|a| a.name == name)
}

pub(super) fn is_path_group(arms: &[Arm]) -> bool {
    find(arms, "prepared").is_some() && find(arms, "raw").is_some()
}

#[cfg(test)]
mod tests {
    use super::findings::{LEVEL_BODY, compression_findings, http_findings};
    use super::*;
    use std::path::Path;

    fn write(dir: &Path, group: &str, function: &str, mean: f64) {
        let d = dir.join(group.replace('/', "_")).join(function).join("new");
        std::fs::create_dir_all(&d).unwrap();
        let bench = serde_json::json!({"group_id": group, "function_id": function, "value_str": null,
            "throughput": null, "full_id": format!("{group}/{function}"), "directory_name": "x", "title": "x"});
        std::fs::write(d.join("benchmark.json"), bench.to_string()).unwrap();
        let est = serde_json::json!({"mean": {"confidence_interval": {"confidence_level": 0.95,
            "lower_bound": mean * 0.9, "upper_bound": mean * 1.1}, "point_estimate": mean, "standard_error": 1.0}});
        std::fs::write(d.join("estimates.json"), est.to_string()).unwrap();
    }

    #[test]
    fn ratios_and_findings_come_from_the_estimates() {
        let dir = tempfile::tempdir().unwrap();
        for (path, ns) in [("prepared", 20_000.0), ("adhoc", 50_000.0), ("orm", 80_000.0), ("raw", 5_000.0)] {
            write(dir.path(), "sqlite/point_read", path, ns);
        }
        let groups = collect(dir.path()).unwrap();
        let names: Vec<_> = groups["sqlite/point_read"].iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["prepared", "adhoc", "orm", "raw"]);
        let findings = findings(&groups, &BTreeMap::new());
        assert_eq!(
            findings,
            [
                "sqlite point_read: raw floor 5.0 µs; prepared 4.00× the floor, adhoc 10.00×, orm 16.00×; adhoc takes 2.50× as long as prepared."
            ]
        );
        let md = render(&groups, dir.path(), &[("commit".into(), "abc".into())]);
        assert!(md.contains("| adhoc | 50.0 µs | 45.0 µs – 55.0 µs | 2.50× | 10.00× |"), "{md}");

        // Change a figure: the sentence changes with it.
        write(dir.path(), "sqlite/point_read", "adhoc", 20_000.0);
        let again = super::findings(&collect(dir.path()).unwrap(), &BTreeMap::new());
        assert!(again[0].contains("adhoc takes 1.00× as long as prepared"), "{again:?}");
    }

    #[test]
    fn the_level_rule_picks_the_cheapest_level_near_the_smallest_output() {
        let dir = tempfile::tempdir().unwrap();
        let group = format!("compression/{LEVEL_BODY}");
        let mut sizes = BTreeMap::new();
        for (level, ns, out) in [(1, 10_000.0, 1_400u64), (4, 30_000.0, 1_150), (11, 900_000.0, 1_000)] {
            write(dir.path(), &group, &format!("br_{level}"), ns);
            sizes.insert(format!("{group}/br_{level}"), (10_000u64, out));
        }
        let groups = collect(dir.path()).unwrap();
        let names: Vec<_> = groups[&group].iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["br_1", "br_4", "br_11"], "numeric order");
        let found = compression_findings(&groups, &sizes);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("br on departures_50: level 4 is the cheapest"), "{found:?}");
        assert!(found[0].contains("1150 B vs 1000 B at br_11"), "{found:?}");
    }

    #[test]
    fn http_findings_are_ratios_to_the_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        for (name, ns) in [("ceiling/h1", 20_000.0), ("cache_hit/h1", 25_000.0), ("store_raw/h1", 40_000.0)] {
            write(dir.path(), "http/point_read", name, ns);
        }
        let found = http_findings(&collect(dir.path()).unwrap());
        assert_eq!(
            found,
            [
                "http point read over h1, one request at a time: ceiling 20.0 µs; cache_hit 1.25×, store_raw 2.00× its time."
            ]
        );
    }

    #[test]
    fn empty_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(collect(dir.path()), Err(ReportError::Empty(_))));
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(format_ns(512.0), "512 ns");
        assert_eq!(format_ns(12_345.0), "12.3 µs");
        assert_eq!(format_ns(2_500_000.0), "2.50 ms");
    }
}
