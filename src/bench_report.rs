//! `flightbench bench-report`: criterion's estimates → `results/benchmarks.md`.
//!
//! Reads every `<criterion>/**/new/{benchmark,estimates}.json` and the settings the
//! benches write (`<criterion>/flightbench/*.json`), and renders one table per group:
//! mean, its 95% confidence interval, and ratios. In the query groups each path is
//! given as a multiple of `prepared` and of the `raw` floor; other groups are given as
//! multiples of their first arm. Nothing in the report is typed by hand: every number
//! and every sentence of the summary comes from those files.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

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

#[derive(Debug, Deserialize)]
struct BenchmarkFile {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<ThroughputFile>,
}

#[derive(Debug, Deserialize)]
enum ThroughputFile {
    Bytes(u64),
    BytesDecimal(u64),
    Elements(u64),
    ElementsAndBytes { elements: u64, bytes: u64 },
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(Debug, Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Debug, Deserialize)]
struct EstimatesFile {
    mean: Estimate,
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

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ReportError::Io { path: path.to_owned(), cause })?;
    serde_json::from_str(&text).map_err(|cause| ReportError::Parse { path: path.to_owned(), cause })
}

/// Collects every benchmark's latest estimates under `criterion_dir`.
pub fn collect(criterion_dir: &Path) -> Result<Groups, ReportError> {
    let mut groups = Groups::new();
    let mut stack = vec![criterion_dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") && path.join("estimates.json").is_file() {
                let bench: BenchmarkFile = read_json(&path.join("benchmark.json"))?;
                let estimates: EstimatesFile = read_json(&path.join("estimates.json"))?;
                let name = match (bench.function_id, bench.value_str) {
                    (Some(f), Some(v)) => format!("{f}/{v}"),
                    (Some(f), None) => f,
                    (None, Some(v)) => v,
                    (None, None) => bench.group_id.clone(),
                };
                let (bytes, elements) = match bench.throughput {
                    Some(ThroughputFile::Bytes(b) | ThroughputFile::BytesDecimal(b)) => (Some(b), None),
                    Some(ThroughputFile::Elements(e)) => (None, Some(e)),
                    Some(ThroughputFile::ElementsAndBytes { elements, bytes }) => (Some(bytes), Some(elements)),
                    None => (None, None),
                };
                let m = estimates.mean;
                groups.entry(bench.group_id).or_default().push(Arm {
                    name,
                    mean: m.point_estimate,
                    lower: m.confidence_interval.lower_bound,
                    upper: m.confidence_interval.upper_bound,
                    bytes,
                    elements,
                });
            } else if path.file_name().is_none_or(|n| n != "base" && n != "change" && n != "report") {
                stack.push(path);
            }
        }
    }
    if groups.is_empty() {
        return Err(ReportError::Empty(criterion_dir.to_owned()));
    }
    for arms in groups.values_mut() {
        arms.sort_by_key(|a| arm_order(&a.name));
    }
    Ok(groups)
}

/// Paths in their usual order; anything else by name, numbers compared as numbers
/// (`br_4` before `br_11`, `8_shards` before `16_shards`).
fn arm_order(name: &str) -> (usize, Vec<(String, u64)>) {
    let rank =
        ["prepared", "adhoc", "orm", "raw"].iter().position(|p| name == *p || name.starts_with(&format!("{p}/")));
    let mut key = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let text_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let digits_len = rest[text_len..].find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len() - text_len);
        let number = rest[text_len..text_len + digits_len].parse().unwrap_or(0);
        key.push((rest[..text_len].to_owned(), number));
        rest = &rest[text_len + digits_len..];
    }
    (rank.unwrap_or(4), key)
}

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
fn timing_cells(a: &Arm) -> String {
    format!("| {} | {} | {} – {} |", a.name, format_ns(a.mean), format_ns(a.lower), format_ns(a.upper))
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

fn find<'a>(arms: &'a [Arm], name: &str) -> Option<&'a Arm> {
    arms.iter().find(|a| a.name == name)
}

fn is_path_group(arms: &[Arm]) -> bool {
    find(arms, "prepared").is_some() && find(arms, "raw").is_some()
}

/// The summary, every sentence computed from the figures: each path against the raw
/// floor and prepared against adhoc; one shard against many; the plan cache modes;
/// and the compression level each codec's rule picks.
pub fn findings(groups: &Groups, sizes: &BTreeMap<String, (u64, u64)>) -> Vec<String> {
    let mut out = path_findings(groups);
    for backend in ["sqlite", "postgres"] {
        for op in ["point_read", "departures"] {
            let Some(arms) = groups.get(&format!("{backend}_shards/{op}")) else { continue };
            let one = arms.iter().find(|a| a.name == "raw/1_shard");
            let many = arms.iter().find(|a| a.name.starts_with("raw/") && a.name.ends_with("_shards"));
            if let (Some(one), Some(many)) = (one, many) {
                let shards = many.name.trim_start_matches("raw/").trim_end_matches("_shards");
                out.push(format!(
                    "{backend} {op} on {shards} shards takes {} as long as on 1 shard (raw path, same data).",
                    ratio(many.mean, one.mean)
                ));
            }
        }
    }
    for op in ["point_read", "departures"] {
        let Some(arms) = groups.get(&format!("postgres_plan_cache/{op}")) else { continue };
        let mode = |m: &str| find(arms, &format!("prepared/{m}"));
        if let (Some(auto), Some(custom), Some(generic)) =
            (mode("auto"), mode("force_custom_plan"), mode("force_generic_plan"))
        {
            out.push(format!(
                "postgres {op} with prepared statements over 3 monthly partitions: force_custom_plan takes {} and force_generic_plan {} as long as auto.",
                ratio(custom.mean, auto.mean),
                ratio(generic.mean, auto.mean)
            ));
        }
    }
    out.extend(compression_findings(groups, sizes));
    out.extend(http_findings(groups));
    out
}

/// `benches/http.rs`: each point-read round trip as a multiple of the fixed-body
/// ceiling on the same protocol.
fn http_findings(groups: &Groups) -> Vec<String> {
    let Some(arms) = groups.get("http/point_read") else { return Vec::new() };
    let mut out = Vec::new();
    for proto in ["h1", "h2c"] {
        let Some(ceiling) = find(arms, &format!("ceiling/{proto}")) else { continue };
        let others: Vec<String> = ["cache_hit", "store_raw", "store_prepared"]
            .iter()
            .filter_map(|name| find(arms, &format!("{name}/{proto}")).map(|a| (name, a)))
            .map(|(name, a)| format!("{name} {}", ratio(a.mean, ceiling.mean)))
            .collect();
        if !others.is_empty() {
            out.push(format!(
                "http point read over {proto}, one request at a time: ceiling {}; {} its time.",
                format_ns(ceiling.mean),
                others.join(", ")
            ));
        }
    }
    out
}

/// The body the compression defaults are chosen on: a typical API response.
pub const LEVEL_BODY: &str = "departures_50";
/// A level qualifies if its output is at most this much larger than the codec's
/// smallest measured output on `LEVEL_BODY`; the cheapest qualifying level wins.
pub const LEVEL_SIZE_SLACK: f64 = 1.15;

/// Per codec: the level the rule picks, its cost and size against the codec's
/// highest measured level.
fn compression_findings(groups: &Groups, sizes: &BTreeMap<String, (u64, u64)>) -> Vec<String> {
    let group = format!("compression/{LEVEL_BODY}");
    let Some(arms) = groups.get(&group) else { return Vec::new() };
    let mut out = Vec::new();
    for codec in ["br", "zstd", "gzip", "deflate"] {
        let levels: Vec<(&Arm, u64)> = arms
            .iter()
            .filter(|a| a.name.split('_').next() == Some(codec))
            .filter_map(|a| sizes.get(&format!("{group}/{}", a.name)).map(|&(_, out)| (a, out)))
            .collect();
        let Some(smallest) = levels.iter().map(|&(_, size)| size).min() else { continue };
        let chosen = levels
            .iter()
            .filter(|&&(_, size)| size as f64 <= smallest as f64 * LEVEL_SIZE_SLACK)
            .min_by(|a, b| a.0.mean.total_cmp(&b.0.mean));
        let highest = levels.iter().max_by_key(|(a, _)| arm_order(&a.name));
        if let (Some(&(chosen, size)), Some(&(highest, highest_size))) = (chosen, highest) {
            out.push(format!(
                "{codec} on {LEVEL_BODY}: level {} is the cheapest within {:.0}% of the smallest output ({size} B vs {highest_size} B at {}, which takes {} as long).",
                chosen.name.trim_start_matches(&format!("{codec}_")),
                (LEVEL_SIZE_SLACK - 1.0) * 100.0,
                highest.name,
                ratio(highest.mean, chosen.mean),
            ));
        }
    }
    out
}

fn path_findings(groups: &Groups) -> Vec<String> {
    let mut out = Vec::new();
    for backend in ["sqlite", "postgres"] {
        for op in ["point_read", "departures"] {
            let Some(arms) = groups.get(&format!("{backend}/{op}")) else { continue };
            let (Some(prepared), Some(adhoc), Some(orm), Some(raw)) =
                (find(arms, "prepared"), find(arms, "adhoc"), find(arms, "orm"), find(arms, "raw"))
            else {
                continue;
            };
            out.push(format!(
                "{backend} {op}: raw floor {}; prepared {} the floor, adhoc {}, orm {}; adhoc takes {} as long as prepared.",
                format_ns(raw.mean),
                ratio(prepared.mean, raw.mean),
                ratio(adhoc.mean, raw.mean),
                ratio(orm.mean, raw.mean),
                ratio(adhoc.mean, prepared.mean),
            ));
        }
    }
    out
}

fn compressed_sizes(settings_dir: &Path) -> BTreeMap<String, (u64, u64)> {
    let Ok(value) = read_json::<serde_json::Value>(&settings_dir.join("compression.json")) else {
        return BTreeMap::new();
    };
    value["sizes"]
        .as_object()
        .map(|m| {
            m.iter().filter_map(|(k, v)| Some((k.clone(), (v["input"].as_u64()?, v["output"].as_u64()?)))).collect()
        })
        .unwrap_or_default()
}

/// Renders the report. `provenance` lines (machine, toolchain, commit) come from the
/// caller, so this stays a pure function of its inputs.
pub fn render(groups: &Groups, settings_dir: &Path, provenance: &[(String, String)]) -> String {
    let mut md = String::from("# flightbench benchmarks\n\n");
    md.push_str("Criterion means with 95% confidence intervals. In each query table a path is given as a multiple of `prepared` and of the `raw` driver floor (rusqlite / tokio-postgres with cached statements); other tables are multiples of their first row. Generated by `flightbench bench-report` from criterion's output.\n\n");
    let sizes = compressed_sizes(settings_dir);
    md.push_str("## What the benches found\n\n");
    for line in findings(groups, &sizes) {
        let _ = writeln!(md, "- {line}");
    }
    md.push_str("\n## How it ran\n\n| | |\n|---|---|\n");
    for (k, v) in provenance {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    for name in ["queries", "compression"] {
        if let Ok(settings) = read_json::<serde_json::Value>(&settings_dir.join(format!("{name}.json"))) {
            let mut shown = settings.clone();
            if let Some(obj) = shown.as_object_mut() {
                obj.remove("sizes");
            }
            let _ = writeln!(md, "| {name} bench settings | `{}` |", serde_json::to_string(&shown).unwrap_or_default());
        }
    }
    for (group, arms) in groups {
        let _ = write!(md, "\n## {group}\n\n");
        if is_path_group(arms) {
            let (prepared, raw) = (find(arms, "prepared").map(|a| a.mean), find(arms, "raw").map(|a| a.mean));
            md.push_str("| path | mean | 95% CI | × prepared | × raw floor |\n|---|---|---|---|---|\n");
            for a in arms {
                let _ = writeln!(
                    md,
                    "{} {} | {} |",
                    timing_cells(a),
                    prepared.map_or("–".into(), |p| ratio(a.mean, p)),
                    raw.map_or("–".into(), |r| ratio(a.mean, r)),
                );
            }
        } else {
            let first = arms[0].mean;
            let with_sizes = arms.iter().any(|a| sizes.contains_key(&format!("{group}/{}", a.name)));
            let with_throughput = arms.iter().any(|a| a.bytes.is_some() || a.elements.is_some());
            md.push_str("| arm | mean | 95% CI | × first |");
            md.push_str(if with_throughput { " throughput |" } else { "" });
            md.push_str(if with_sizes { " compressed size |" } else { "" });
            md.push_str("\n|---|---|---|---|");
            md.push_str(if with_throughput { "---|" } else { "" });
            md.push_str(if with_sizes { "---|" } else { "" });
            md.push('\n');
            for a in arms {
                let _ = write!(md, "{} {} |", timing_cells(a), ratio(a.mean, first));
                if with_throughput {
                    let throughput = match (a.bytes, a.elements) {
                        (Some(b), _) => format!("{:.3} MB/s", b as f64 / a.mean * 1e3)
                            .trim_end_matches('0')
                            .trim_end_matches('.')
                            .to_owned(),
                        (None, Some(e)) => format!("{:.1} M/s", e as f64 / a.mean * 1e3),
                        (None, None) => "–".into(),
                    };
                    let _ = write!(md, " {throughput} |");
                }
                if with_sizes {
                    let size = sizes.get(&format!("{group}/{}", a.name)).map_or("–".into(), |(i, o)| {
                        format!("{o} B ({:.1}% of {i} B)", *o as f64 / *i as f64 * 100.0)
                    });
                    let _ = write!(md, " {size} |");
                }
                md.push('\n');
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

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
