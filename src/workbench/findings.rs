//! "What this run found": sentences computed from a run's figures, never written by
//! hand. Each reads its cells from [`RunData`] and says nothing when a cell it needs
//! is missing (a part was skipped), so every sentence in a report is backed by a
//! figure in its `run.json`.

use super::data::{Cell, RunData};

/// One sentence and the part it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub part: &'static str,
    pub text: String,
}

/// Every finding the run's figures support, in part order.
pub fn findings(run: &RunData) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut say = |part: &'static str, text: Option<String>| {
        if let Some(text) = text {
            out.push(Finding { part, text });
        }
    };
    say("paths", paths(run));
    say("paths", prepared_vs_adhoc(run));
    say("protocols", protocols(run));
    for codec in ["br", "zstd", "gzip"] {
        say("compression", compression(run, codec));
    }
    say("shards", shards(run, "read", "point reads"));
    say("shards", shards(run, "departures", "departures (a scatter-gather over every shard)"));
    say("cache", cache(run));
    say("mixed", mixed(run));
    say("profile", profile(run));
    for cell in run.cells.iter().filter(|c| c.errors > 0) {
        say(
            "errors",
            Some(format!(
                "{} had {} failed requests of {}: its figures include errors.",
                cell.id,
                cell.errors,
                cell.responses + cell.errors
            )),
        );
    }
    out
}

/// Thousands separated, no decimals.
pub fn count(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if value < 0.0 { format!("-{grouped}") } else { grouped }
}

/// A ratio as people read it: 1.83×, 0.42×.
pub fn times(ratio: f64) -> String {
    format!("{ratio:.2}×")
}

fn ratio(a: &Cell, b: &Cell) -> f64 {
    a.requests_per_s / b.requests_per_s.max(f64::MIN_POSITIVE)
}

fn paths(run: &RunData) -> Option<String> {
    let mut cells: Vec<&Cell> = run.part("paths").filter(|c| c.requests_per_s > 0.0).collect();
    if cells.len() < 2 {
        return None;
    }
    cells.sort_by(|a, b| b.requests_per_s.total_cmp(&a.requests_per_s));
    let fastest = cells[0];
    let others: Vec<String> = cells[1..].iter().map(|c| format!("{} {}", c.label, times(ratio(c, fastest)))).collect();
    Some(format!(
        "Uncached point reads: {} is the fastest query path at {} req/s; against it, {}.",
        fastest.label,
        count(fastest.requests_per_s),
        others.join(", ")
    ))
}

fn prepared_vs_adhoc(run: &RunData) -> Option<String> {
    let (prepared, adhoc) = (run.cell("paths/prepared")?, run.cell("paths/adhoc")?);
    Some(format!(
        "Prepared statements are {} ad-hoc SQL for point reads ({} vs {} req/s; p99 {:.2} vs {:.2} ms).",
        times(ratio(prepared, adhoc)),
        count(prepared.requests_per_s),
        count(adhoc.requests_per_s),
        prepared.latency.p99_ms,
        adhoc.latency.p99_ms
    ))
}

fn protocols(run: &RunData) -> Option<String> {
    let (h1, h2) = (run.cell("protocols/h1")?, run.cell("protocols/h2c")?);
    Some(format!(
        "For cached point reads, h2c ({} connections × {} streams) is {} HTTP/1.1 ({} connections): {} vs {} req/s, p99 {:.2} vs {:.2} ms.",
        h2.config.connections,
        h2.config.streams_per_connection,
        times(ratio(h2, h1)),
        h1.config.connections,
        count(h2.requests_per_s),
        count(h1.requests_per_s),
        h2.latency.p99_ms,
        h1.latency.p99_ms
    ))
}

fn compression(run: &RunData, codec: &str) -> Option<String> {
    let identity = run.cell("compression/identity")?;
    let compressed = run.cell(&format!("compression/{codec}"))?;
    let share = compressed.wire_bytes_per_response() / identity.wire_bytes_per_response().max(f64::MIN_POSITIVE);
    let threshold = run.settings.compression_min_bytes as f64;
    if identity.wire_bytes_per_response() < threshold {
        return Some(format!(
            "Departures bodies averaged {} bytes, under the server's {}-byte compression threshold, so {codec} was mostly not applied ({} identity's throughput); a larger dataset (--flights) fills the pages.",
            count(identity.wire_bytes_per_response()),
            count(threshold),
            times(ratio(compressed, identity))
        ));
    }
    Some(format!(
        "{codec} cuts departures bodies to {:.0}% of identity ({} → {} bytes per response) at {} identity's throughput.",
        share * 100.0,
        count(identity.wire_bytes_per_response()),
        count(compressed.wire_bytes_per_response()),
        times(ratio(compressed, identity))
    ))
}

fn shards(run: &RunData, kind: &str, what: &str) -> Option<String> {
    let one = run.cell(&format!("shards/{kind}-1"))?;
    let others: Vec<String> = [4, 16]
        .into_iter()
        .filter_map(|n| run.cell(&format!("shards/{kind}-{n}")))
        .map(|c| format!("{} shards {} ({} req/s)", c.config.shards, times(ratio(c, one)), count(c.requests_per_s)))
        .collect();
    if others.is_empty() {
        return None;
    }
    Some(format!("For {what}, against 1 shard ({} req/s): {}.", count(one.requests_per_s), others.join(", ")))
}

fn cache(run: &RunData) -> Option<String> {
    let (off, on) = (run.cell("cache/off")?, run.cell("cache/on")?);
    let hits =
        on.cache_hit_ratio.map_or(String::new(), |h| format!(" answers {:.0}% of them from memory and", h * 100.0));
    Some(format!(
        "With Zipf-skewed flight ids, the point-read cache{hits} makes them {} the uncached rate ({} vs {} req/s; p99 {:.2} vs {:.2} ms).",
        times(ratio(on, off)),
        count(on.requests_per_s),
        count(off.requests_per_s),
        on.latency.p99_ms,
        off.latency.p99_ms
    ))
}

fn mixed(run: &RunData) -> Option<String> {
    let cell = run.cell("mixed/open-loop")?;
    let target = cell.target_rate?;
    let kept = match cell.rate_kept {
        Some(true) => "kept".to_owned(),
        _ => format!("NOT kept (achieved {} req/s)", count(cell.requests_per_s)),
    };
    Some(format!(
        "Open loop at {} req/s of {} (latency from each request's intended send time): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; the rate was {kept}.",
        count(target),
        cell.config.mix,
        cell.latency.p50_ms,
        cell.latency.p99_ms,
        cell.latency.p999_ms,
        cell.latency.max_ms
    ))
}

fn profile(run: &RunData) -> Option<String> {
    let profile = run.profile.as_ref()?;
    let top: Vec<String> = profile
        .top_frames
        .iter()
        .take(3)
        .map(|(frame, share)| format!("{} {:.1}%", crate::profile::short_frame(frame, 80), share * 100.0))
        .collect();
    Some(format!(
        "The fastest configuration ({}) spends its user-space CPU samples most in: {}.",
        profile.cell,
        top.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workbench::data::fixture;

    fn texts(run: &RunData) -> Vec<String> {
        findings(run).into_iter().map(|f| f.text).collect()
    }

    fn about<'a>(texts: &'a [String], needle: &str) -> &'a str {
        texts.iter().find(|t| t.contains(needle)).unwrap_or_else(|| panic!("no finding with {needle:?} in {texts:#?}"))
    }

    #[test]
    fn sentences_follow_the_figures() {
        let mut run = fixture::run();
        let before = texts(&run);
        assert_eq!(
            about(&before, "Prepared statements"),
            "Prepared statements are 1.80× ad-hoc SQL for point reads (9,000 vs 5,000 req/s; p99 4.00 vs 6.00 ms)."
        );
        assert!(about(&before, "fastest query path").starts_with("Uncached point reads: raw is the fastest query path at 12,000 req/s; against it, prepared 0.75×, adhoc 0.42×, orm 0.33×."));
        assert!(about(&before, "h2c").contains("h2c (16 connections × 16 streams) is 1.20× HTTP/1.1"));
        assert_eq!(
            about(&before, "br cuts"),
            "br cuts departures bodies to 11% of identity (6,000 → 660 bytes per response) at 0.70× identity's throughput."
        );
        assert!(about(&before, "For departures").contains("4 shards 0.50× (1,000 req/s), 16 shards 0.15× (300 req/s)"));
        assert!(
            about(&before, "point-read cache")
                .contains("answers 90% of them from memory and makes them 2.50× the uncached rate")
        );
        assert!(about(&before, "Open loop").contains("at 2,000 req/s of read=80,departures=15,write=5"));
        assert!(about(&before, "Open loop").ends_with("the rate was kept."));
        assert!(about(&before, "fastest configuration").contains("memcpy_avx 12.0%"));

        // Change the figures: the sentences change with them.
        run.cells.iter_mut().find(|c| c.id == "paths/adhoc").unwrap().requests_per_s = 3_000.0;
        run.cells.iter_mut().find(|c| c.id == "mixed/open-loop").unwrap().rate_kept = Some(false);
        let compression = run.cells.iter_mut().find(|c| c.id == "compression/identity").unwrap();
        compression.wire_bytes = 500 * compression.responses;
        let after = texts(&run);
        assert!(about(&after, "Prepared statements").starts_with("Prepared statements are 3.00× ad-hoc SQL"));
        assert!(about(&after, "Open loop").contains("NOT kept (achieved 2,000 req/s)"));
        assert!(
            about(&after, "gzip").starts_with(
                "Departures bodies averaged 500 bytes, under the server's 1,024-byte compression threshold"
            )
        );
    }

    #[test]
    fn a_skipped_part_says_nothing() {
        let mut run = fixture::run();
        run.cells.retain(|c| c.part != "paths");
        run.profile = None;
        let texts = texts(&run);
        assert!(
            !texts
                .iter()
                .any(|t| t.contains("query path") || t.contains("Prepared") || t.contains("fastest configuration"))
        );
        assert!(texts.iter().any(|t| t.contains("h2c")));
    }

    #[test]
    fn errors_are_called_out() {
        let mut run = fixture::run();
        run.cells[0].errors = 7;
        assert!(texts(&run).iter().any(|t| t.starts_with("paths/prepared had 7 failed requests")));
    }

    #[test]
    fn counts_are_grouped() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(1_234_567.0), "1,234,567");
        assert_eq!(count(-12_345.0), "-12,345");
    }
}
