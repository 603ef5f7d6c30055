//! The run's headline ratios, each with its 95% interval, by throughput and by the
//! server's CPU per request: what "what this run found" leads with, what `compare`
//! checks first, and what `results/reproducibility.md` tracks across runs.
//!
//! Both figures are given because they answer slightly different questions and are
//! not equally steady. Throughput on a shared machine moves with whatever else runs;
//! CPU time per request is what the server spent on each answer, which the machine's
//! other work moves much less (`results/reproducibility.md`). Each headline names the
//! steadier of the two for this run: the one with the narrower interval.

use super::cell::{CellId, Wire};
use super::data::{Cell, RunData};
use super::plan::{PROJECTION_SHARDS, SHARD_SERIES};
use super::stats::Interval;
use crate::choice::as_text;
use crate::compression::Encoding;
use crate::store::QueryPath;
use serde::{Deserialize, Serialize};

crate::choices! {
    /// Which figure a headline ratio is computed from.
    #[derive(Debug)]
    pub enum Figure as "figure" {
        /// Responses per second.
        Throughput = "throughput",
        /// The server's CPU time per response (the inverse, so that above 1 is better).
        Cpu = "server CPU per request",
    }
}

/// One headline: `a` against `b`, on the same data and load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Headline {
    /// `prepared/adhoc`, `16/1 shards (departures)`.
    pub name: String,
    #[serde(with = "as_text")]
    pub a: CellId,
    #[serde(with = "as_text")]
    pub b: CellId,
    /// `a`'s throughput over `b`'s, round by round.
    pub throughput: Interval,
    /// `b`'s server CPU per request over `a`'s (above 1: `a` costs less per answer),
    /// when both cells measured it.
    pub cpu: Option<Interval>,
    /// The figure with the narrower interval in this run.
    pub steadier: Figure,
}

impl Headline {
    /// The steadier figure's interval.
    pub fn lead(&self) -> &Interval {
        match (self.steadier, &self.cpu) {
            (Figure::Cpu, Some(cpu)) => cpu,
            _ => &self.throughput,
        }
    }

    /// `1.32× by server CPU per request (95% CI 1.29–1.35×) and 1.28× by throughput
    /// (95% CI 1.20–1.37×)`: the steadier figure first.
    pub fn both(&self) -> String {
        let other = match (self.steadier, &self.cpu) {
            (Figure::Cpu, Some(_)) => Some((Figure::Throughput, self.throughput)),
            (Figure::Throughput, Some(cpu)) => Some((Figure::Cpu, *cpu)),
            _ => None,
        };
        let head = self.lead().times_by(self.lead_figure().as_str());
        match other {
            Some((figure, interval)) => format!("{head} and {}", interval.times_by(figure.as_str())),
            None => head,
        }
    }

    fn lead_figure(&self) -> Figure {
        if self.cpu.is_some() { self.steadier } else { Figure::Throughput }
    }
}

/// The headline ratios, `a` over `b`: the issue that asked for them lists exactly
/// these (each path against the next, the protocols, each codec, the shard series'
/// ends, the cache), and the read-model board against the scatter-gather.
pub fn planned() -> Vec<(String, CellId, CellId)> {
    let (fewest, most) = (SHARD_SERIES[0], SHARD_SERIES[SHARD_SERIES.len() - 1]);
    let mut out = vec![
        ("prepared/adhoc".to_owned(), CellId::Path(QueryPath::Prepared), CellId::Path(QueryPath::Adhoc)),
        ("raw/prepared".to_owned(), CellId::Path(QueryPath::Raw), CellId::Path(QueryPath::Prepared)),
        ("h2c/h1".to_owned(), CellId::Protocol(Wire::H2c), CellId::Protocol(Wire::H1)),
    ];
    for coding in [Encoding::Br, Encoding::Zstd, Encoding::Gzip] {
        out.push((format!("{coding}/identity"), CellId::Codec(coding), CellId::Codec(Encoding::Identity)));
    }
    out.push((format!("{most}/{fewest} shards (reads)"), CellId::ShardReads(most), CellId::ShardReads(fewest)));
    out.push((
        format!("{most}/{fewest} shards (departures)"),
        CellId::ShardDepartures(most),
        CellId::ShardDepartures(fewest),
    ));
    out.push(("cache on/off".to_owned(), CellId::Cache(true), CellId::Cache(false)));
    out.push((
        format!("board/scatter ({PROJECTION_SHARDS} shards)"),
        CellId::Board { read_model: true },
        CellId::Board { read_model: false },
    ));
    out
}

/// Every headline the run's cells support.
pub fn headlines(run: &RunData) -> Vec<Headline> {
    planned().into_iter().filter_map(|(name, a, b)| headline(name, run.cell(a)?, run.cell(b)?)).collect()
}

/// `a` against `b`, round by round.
pub fn headline(name: String, a: &Cell, b: &Cell) -> Option<Headline> {
    let throughput = Interval::ratio(&a.round_rates(), &b.round_rates())?;
    let cpu = match (a.round_cpu(), b.round_cpu()) {
        (Some(a_cpu), Some(b_cpu)) => Interval::ratio(&b_cpu, &a_cpu),
        _ => None,
    };
    let steadier = match cpu {
        Some(cpu) if cpu.relative_half_width() < throughput.relative_half_width() => Figure::Cpu,
        Some(_) if !throughput.has_interval() => Figure::Cpu,
        _ => Figure::Throughput,
    };
    Some(Headline { name, a: a.id, b: b.id, throughput, cpu, steadier })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workbench::data::fixture;

    #[test]
    fn every_planned_headline_names_planned_cells_and_a_full_run_has_them_all() {
        let all: Vec<CellId> = CellId::all().collect();
        for (name, a, b) in planned() {
            assert!(all.contains(&a) && all.contains(&b), "{name}");
        }
        let run = fixture::run();
        assert_eq!(headlines(&run).len(), planned().len());
    }

    #[test]
    fn ratios_and_their_intervals_follow_the_rounds() {
        let run = fixture::run();
        let prepared = headlines(&run).into_iter().find(|h| h.name == "prepared/adhoc").unwrap();
        // The fixture's rounds move together, so the ratio is the figures' ratio.
        assert!((prepared.throughput.estimate - 9_000.0 / 5_000.0).abs() < 0.01, "{prepared:?}");
        let cpu = prepared.cpu.unwrap();
        assert!((cpu.estimate - 9_000.0 / 5_000.0).abs() < 0.02, "{cpu:?}");
        assert!(prepared.throughput.has_interval() && cpu.has_interval());
        assert!(prepared.both().contains("95% CI"), "{}", prepared.both());
    }

    #[test]
    fn the_steadier_figure_leads() {
        let mut run = fixture::run();
        // Make throughput noisy for one cell: CPU is then the steadier figure.
        let noisy = [0.8, 1.2, 0.9, 1.1, 1.0];
        let adhoc = run.cells.iter_mut().find(|c| c.id == CellId::Path(QueryPath::Adhoc)).unwrap();
        adhoc.rounds.iter_mut().zip(noisy).for_each(|(r, f)| r.requests_per_s *= f);
        let h = headlines(&run).into_iter().find(|h| h.name == "prepared/adhoc").unwrap();
        assert_eq!(h.steadier, Figure::Cpu);
        assert!(h.both().starts_with(&format!("{:.2}× by server CPU per request", h.cpu.unwrap().estimate)));
        // Without CPU figures throughput leads.
        for cell in &mut run.cells {
            cell.rounds.iter_mut().for_each(|r| r.server_cpu_us_per_request = None);
        }
        let h = headlines(&run).into_iter().find(|h| h.name == "prepared/adhoc").unwrap();
        assert_eq!((h.cpu, h.steadier), (None, Figure::Throughput));
        assert!(h.both().contains("by throughput"));
    }
}
