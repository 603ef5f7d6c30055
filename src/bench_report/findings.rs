//! The report's summary: every sentence computed from the estimates.

use super::collect::arm_order;
use super::{Arm, Groups, find, format_ns, ratio};
use std::collections::BTreeMap;

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
pub(super) fn http_findings(groups: &Groups) -> Vec<String> {
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
pub(super) fn compression_findings(groups: &Groups, sizes: &BTreeMap<String, (u64, u64)>) -> Vec<String> {
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
