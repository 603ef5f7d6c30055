//! "What this run found": sentences computed from a run's figures, never written by
//! hand. Each reads its cells from [`RunData`] and says nothing when a cell it needs
//! is missing (a part was skipped), so every sentence in a report is backed by a
//! figure in its `run.json`.

mod projections;
mod security;

use super::cell::{CellId, Wire};
use super::data::{Cell, RunData};
use super::headline::headline;
use super::plan::{CODECS, Part, SHARD_SERIES};
use crate::compression::Encoding;
use crate::store::QueryPath;

/// One sentence and the part it is about (`None`: about the run as a whole).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub part: Option<Part>,
    pub text: String,
}

/// A finding: the part it is about and how its sentences are computed; none when a
/// cell it needs did not run.
type Rule = (Part, fn(&RunData) -> Vec<String>);

/// Every rule, in part order. A test runs each over a run of every cell the plan
/// makes and expects sentences from each: a rule that names a cell no run has fails.
const RULES: &[Rule] = &[
    (Part::Paths, |run| paths(run).into_iter().collect()),
    (Part::Paths, |run| prepared_vs_adhoc(run).into_iter().collect()),
    (Part::Paths, |run| raw_vs_prepared(run).into_iter().collect()),
    (Part::Protocols, |run| protocols(run).into_iter().collect()),
    (Part::Compression, |run| {
        CODECS.iter().filter(|&&c| c != Encoding::Identity).filter_map(|&c| compression(run, c)).collect()
    }),
    (Part::Shards, |run| shards(run, CellId::ShardReads, "point reads").into_iter().collect()),
    (Part::Shards, |run| {
        shards(run, CellId::ShardDepartures, "departures (a scatter-gather over every shard)").into_iter().collect()
    }),
    (Part::Cache, |run| cache(run).into_iter().collect()),
    (Part::Mixed, |run| mixed(run).into_iter().collect()),
    (Part::Projections, |run| projections::read_model_writes(run).into_iter().collect()),
    (Part::Projections, |run| projections::one_model_inline(run).into_iter().collect()),
    (Part::Projections, |run| projections::projection_lag(run).into_iter().collect()),
    (Part::Projections, |run| projections::rebuilds(run).into_iter().collect()),
    (Part::Projections, |run| projections::board(run).into_iter().collect()),
    (Part::Security, |run| security::token_verification(run).into_iter().collect()),
    (Part::Security, |run| security::token_cache(run).into_iter().collect()),
    (Part::Security, |run| security::tls(run).into_iter().collect()),
    (Part::Security, |run| security::at_rest(run).into_iter().collect()),
    (Part::Reshard, super::resharding::findings),
    (Part::Topology, super::topology::findings),
    (Part::Profile, |run| profile(run).into_iter().collect()),
];

/// Every finding the run's figures support, in part order.
pub fn findings(run: &RunData) -> Vec<Finding> {
    let mut out: Vec<Finding> = RULES
        .iter()
        .flat_map(|(part, rule)| rule(run).into_iter().map(|text| Finding { part: Some(*part), text }))
        .collect();
    for cell in run.cells.iter().filter(|c| c.disturbed_rounds() > 0) {
        let worst = cell.rounds.iter().filter_map(|r| r.disturbance).map(|d| d.others_share.max(d.steal_share));
        out.push(Finding {
            part: None,
            text: format!(
                "{} was measured while other work took up to {:.0}% of the machine in {} of its {} rounds, even after retries: read its figures with care.",
                cell.id,
                worst.fold(0.0, f64::max) * 100.0,
                cell.disturbed_rounds(),
                cell.rounds.len()
            ),
        });
    }
    if run.settings.rounds == 1 {
        out.push(Finding {
            part: None,
            text: "Each configuration was measured once, so no ratio here has an interval; --rounds 5 (the default) gives them."
                .to_owned(),
        });
    }
    for cell in run.cells.iter().filter(|c| c.errors > 0) {
        out.push(Finding {
            part: None,
            text: format!(
                "{} had {} failed requests of {}: its figures include errors.",
                cell.id,
                cell.errors,
                cell.responses + cell.errors
            ),
        });
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

/// `a` against `b` with its intervals (`headline::Headline::both`), or the plain
/// throughput ratio where the rounds do not give one.
fn versus(name: &str, a: &Cell, b: &Cell) -> String {
    headline(name.to_owned(), a, b).map_or_else(|| times(ratio(a, b)), |h| h.both())
}

/// `9,000 vs 5,000 req/s, 178 vs 320 µs of server CPU per request`.
fn figures(a: &Cell, b: &Cell) -> String {
    let cpu = match (a.server_cpu_us_per_request, b.server_cpu_us_per_request) {
        (Some(x), Some(y)) => format!(", {x:.0} vs {y:.0} µs of server CPU per request"),
        _ => String::new(),
    };
    format!("{} vs {} req/s{cpu}", count(a.requests_per_s), count(b.requests_per_s))
}

fn paths(run: &RunData) -> Option<String> {
    let mut cells: Vec<&Cell> = run.part(Part::Paths).filter(|c| c.requests_per_s > 0.0).collect();
    if cells.len() < 2 {
        return None;
    }
    cells.sort_by(|a, b| b.requests_per_s.total_cmp(&a.requests_per_s));
    let fastest = cells[0];
    let others: Vec<String> =
        cells[1..].iter().map(|c| format!("{} {}", c.id.label(), times(ratio(c, fastest)))).collect();
    Some(format!(
        "Uncached point reads: {} is the fastest query path at {} req/s; against it, {}.",
        fastest.id.label(),
        count(fastest.requests_per_s),
        others.join(", ")
    ))
}

fn prepared_vs_adhoc(run: &RunData) -> Option<String> {
    let (prepared, adhoc) = (run.cell(CellId::Path(QueryPath::Prepared))?, run.cell(CellId::Path(QueryPath::Adhoc))?);
    Some(format!(
        "Prepared statements against ad-hoc SQL for point reads: {} ({}; p99 {:.2} vs {:.2} ms).",
        versus("prepared/adhoc", prepared, adhoc),
        figures(prepared, adhoc),
        prepared.latency.p99_ms,
        adhoc.latency.p99_ms
    ))
}

fn raw_vs_prepared(run: &RunData) -> Option<String> {
    let (raw, prepared) = (run.cell(CellId::Path(QueryPath::Raw))?, run.cell(CellId::Path(QueryPath::Prepared))?);
    Some(format!(
        "The raw driver against sqlx's prepared statements (what the library costs over the database): {} ({}).",
        versus("raw/prepared", raw, prepared),
        figures(raw, prepared)
    ))
}

fn protocols(run: &RunData) -> Option<String> {
    let (h1, h2) = (run.cell(CellId::Protocol(Wire::H1))?, run.cell(CellId::Protocol(Wire::H2c))?);
    Some(format!(
        "For cached point reads, h2c ({} connections × {} streams) against HTTP/1.1 ({} connections): {} ({}, p99 {:.2} vs {:.2} ms).",
        h2.config.connections,
        h2.config.streams_per_connection,
        h1.config.connections,
        versus("h2c/h1", h2, h1),
        figures(h2, h1),
        h2.latency.p99_ms,
        h1.latency.p99_ms
    ))
}

fn compression(run: &RunData, codec: Encoding) -> Option<String> {
    let identity = run.cell(CellId::Codec(Encoding::Identity))?;
    let compressed = run.cell(CellId::Codec(codec))?;
    let share = compressed.wire_bytes_per_response() / identity.wire_bytes_per_response().max(f64::MIN_POSITIVE);
    let threshold = run.settings.compression_min_bytes as f64;
    if identity.wire_bytes_per_response() < threshold {
        return Some(format!(
            "Departures bodies averaged {} bytes, under the server's {}-byte compression threshold, so {codec} was mostly not applied (against identity: {}); a larger dataset (--flights) fills the pages.",
            count(identity.wire_bytes_per_response()),
            count(threshold),
            versus(&format!("{codec}/identity"), compressed, identity)
        ));
    }
    Some(format!(
        "{codec} cuts departures bodies to {:.0}% of identity ({} → {} bytes per response); against identity: {} ({}).",
        share * 100.0,
        count(identity.wire_bytes_per_response()),
        count(compressed.wire_bytes_per_response()),
        versus(&format!("{codec}/identity"), compressed, identity),
        figures(compressed, identity)
    ))
}

fn shards(run: &RunData, kind: fn(u32) -> CellId, what: &str) -> Option<String> {
    let (fewest, more) = SHARD_SERIES.split_first()?;
    let one = run.cell(kind(*fewest))?;
    let others: Vec<String> = more
        .iter()
        .filter_map(|&n| run.cell(kind(n)))
        .map(|c| {
            let name = format!("{}/{fewest} shards", c.config.shards);
            format!("{} shards {} ({} req/s)", c.config.shards, versus(&name, c, one), count(c.requests_per_s))
        })
        .collect();
    if others.is_empty() {
        return None;
    }
    Some(format!(
        "For {what}, against {} shard{} ({} req/s): {}.",
        fewest,
        if *fewest == 1 { "" } else { "s" },
        count(one.requests_per_s),
        others.join(", ")
    ))
}

fn cache(run: &RunData) -> Option<String> {
    let (off, on) = (run.cell(CellId::Cache(false))?, run.cell(CellId::Cache(true))?);
    let hits =
        on.cache_hit_ratio.map_or(String::new(), |h| format!(" (answering {:.0}% of them from memory)", h * 100.0));
    Some(format!(
        "With Zipf-skewed flight ids, the point-read cache{hits} against none: {} ({}; p99 {:.2} vs {:.2} ms).",
        versus("cache on/off", on, off),
        figures(on, off),
        on.latency.p99_ms,
        off.latency.p99_ms
    ))
}

fn mixed(run: &RunData) -> Option<String> {
    let cell = run.cell(CellId::OpenLoop)?;
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

    fn id(text: &str) -> CellId {
        text.parse().unwrap()
    }

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
            "Prepared statements against ad-hoc SQL for point reads: 1.80× by throughput (95% CI 1.80–1.80×) and 1.80× by server CPU per request (95% CI 1.80–1.80×) (9,000 vs 5,000 req/s, 178 vs 320 µs of server CPU per request; p99 4.00 vs 6.00 ms)."
        );
        assert!(about(&before, "raw driver").contains("1.33× by throughput"));
        assert!(about(&before, "fastest query path").starts_with("Uncached point reads: raw is the fastest query path at 12,000 req/s; against it, prepared 0.75×, adhoc 0.42×, orm 0.33×."));
        assert!(
            about(&before, "h2c")
                .contains("h2c (16 connections × 16 streams) against HTTP/1.1 (64 connections): 1.20× by throughput")
        );
        assert_eq!(
            about(&before, "br cuts"),
            "br cuts departures bodies to 11% of identity (6,000 → 660 bytes per response); against identity: 0.70× by throughput (95% CI 0.70–0.70×) and 0.70× by server CPU per request (95% CI 0.70–0.70×) (700 vs 1,000 req/s, 2286 vs 1600 µs of server CPU per request)."
        );
        let departures = about(&before, "For departures");
        assert!(departures.contains("4 shards 0.50× by throughput (95% CI 0.50–0.50×)"), "{departures}");
        assert!(departures.contains("16 shards 0.15× by throughput"), "{departures}");
        assert!(
            about(&before, "point-read cache")
                .contains("cache (answering 90% of them from memory) against none: 2.50× by throughput")
        );
        assert!(about(&before, "Open loop").contains("at 2,000 req/s of read=80,departures=15,write=5"));
        assert!(about(&before, "Open loop").ends_with("the rate was kept."));
        assert!(about(&before, "fastest configuration").contains("memcpy_avx 12.0%"));
        let verifying = about(&before, "Verifying a bearer token");
        assert!(verifying.contains("against no auth (30,000 req/s): RS256 0.67× by"), "{verifying}");
        // 1.6e6 / 20,000 - 1.6e6 / 30,000 = 80 - 53.3 µs.
        assert!(verifying.contains("(+26.7 µs of server CPU per request); ES256"), "{verifying}");
        assert!(verifying.contains("; EdDSA 0.60× by"), "{verifying}");
        let cached = about(&before, "verified-token cache");
        assert!(cached.contains("(29,000 vs 16,000 req/s) and 0.97× of no auth (+1.8 µs"), "{cached}");
        let tls = about(&before, "TLS (1.3");
        assert!(tls.contains("HTTP/1.1 0.80× by"), "{tls}");
        assert!(
            tls.contains(
                "(30,000 vs 36,000 req/s, 53 vs 44 µs of server CPU per request; +8.9 µs of server CPU per request)."
            ),
            "{tls}"
        );
        let lag = about(&before, "lagged");
        assert!(
            lag.starts_with("Under the async write-only load the slowest read model lagged p50 40 and p99 300 events"),
            "{lag}"
        );
        assert!(
            lag.contains("under the mixed part's mix (read=80,departures=15,write=5, closed loop, 5,000 req/s) it lagged p50 6 and p99 40 events behind the commits (max 55; 250 samples, every 10 ms), at 240 committed writes/s."),
            "{lag}"
        );
        let rebuilt = about(&before, "Rebuilt");
        assert!(rebuilt.contains("live tables, 100,000 flights (300,000 events): "), "{rebuilt}");
        assert!(rebuilt.contains("; 1,000,000 flights (3,000,000 events): "), "{rebuilt}");

        // Change the figures: the sentences change with them.
        let adhoc = run.cells.iter_mut().find(|c| c.id == id("paths/adhoc")).unwrap();
        adhoc.requests_per_s = 3_000.0;
        adhoc.rounds.iter_mut().for_each(|r| r.requests_per_s *= 0.6);
        run.cells.iter_mut().find(|c| c.id == id("mixed/open-loop")).unwrap().rate_kept = Some(false);
        let compression = run.cells.iter_mut().find(|c| c.id == id("compression/identity")).unwrap();
        compression.wire_bytes = 500 * compression.responses;
        let after = texts(&run);
        assert!(about(&after, "Prepared statements").contains("SQL for point reads: 3.00× by throughput"));
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
        run.cells.retain(|c| c.id.part() != Part::Paths);
        run.profile = None;
        let texts = texts(&run);
        assert!(
            !texts
                .iter()
                .any(|t| t.contains("query path") || t.contains("Prepared") || t.contains("fastest configuration"))
        );
        assert!(texts.iter().any(|t| t.contains("h2c")));
    }

    /// Every rule speaks on a run of every cell the plan makes: none names a cell that
    /// does not exist.
    #[test]
    fn every_rule_speaks_on_a_run_of_every_cell() {
        let run = fixture::run();
        let planned: Vec<CellId> = CellId::all().collect();
        assert_eq!(run.cells.iter().map(|c| c.id).collect::<Vec<_>>(), planned, "the fixture has every planned cell");
        for (i, (part, rule)) in RULES.iter().enumerate() {
            let said = rule(&run);
            assert!(!said.is_empty(), "rule {i} ({part}) says nothing on a full run");
        }
        let compression = RULES.iter().filter(|(p, _)| *p == Part::Compression).flat_map(|(_, r)| r(&run)).count();
        assert_eq!(compression, CODECS.len() - 1, "a sentence per compressed coding");
        let parts: std::collections::BTreeSet<Part> = RULES.iter().map(|(p, _)| *p).collect();
        assert_eq!(parts.len(), Part::ALL.len(), "every part has a finding");
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
