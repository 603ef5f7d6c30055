//! Reading criterion's output: every benchmark's latest estimates, and the settings
//! the benches write beside them.

use super::{Arm, Groups, ReportError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

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

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ReportError> {
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
pub(super) fn arm_order(name: &str) -> (usize, Vec<(String, u64)>) {
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

pub(super) fn compressed_sizes(settings_dir: &Path) -> BTreeMap<String, (u64, u64)> {
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
