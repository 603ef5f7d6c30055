//! The projections part's findings: what keeping the read models costs the writers,
//! how far they lag, how fast they rebuild, and the board against the scatter-gather.

use super::{count, figures, times, versus};
use crate::projection::ReadModel;
use crate::workbench::cell::{CellId, Keeping};
use crate::workbench::data::{Cell, RunData};
use crate::workbench::plan::PROJECTION_SHARDS;

/// What keeping the read models costs the writers: committed writes/s and p99 with
/// no runner, async and inline.
pub(super) fn read_model_writes(run: &RunData) -> Option<String> {
    let cell = |k| run.cell(CellId::ProjectionWrites(k));
    let (off, asynchronous, inline) = (cell(Keeping::Off)?, cell(Keeping::Async)?, cell(Keeping::Inline)?);
    let committed = |c: &Cell| c.acknowledged_writes_per_s.unwrap_or(0.0);
    let share = |a: &Cell, b: &Cell| times(committed(a) / committed(b).max(f64::MIN_POSITIVE));
    Some(format!(
        "Keeping the three read models async cost the writers {} of their committed writes with no runner ({} vs {} writes/s; p99 {:.2} vs {:.2} ms); inline, each write answered once the runner had applied it, {} of async ({} writes/s, p99 {:.2} ms).",
        share(asynchronous, off),
        count(committed(asynchronous)),
        count(committed(off)),
        asynchronous.latency.p99_ms,
        off.latency.p99_ms,
        share(inline, asynchronous),
        count(committed(inline)),
        inline.latency.p99_ms,
    ))
}

/// Which read model costs the writers most when it alone is inline.
pub(super) fn one_model_inline(run: &RunData) -> Option<String> {
    let committed = |k| run.cell(CellId::ProjectionWrites(k))?.acknowledged_writes_per_s;
    let asynchronous = committed(Keeping::Async)?;
    let each = [
        (ReadModel::DeparturesBoard, Keeping::InlineBoard),
        (ReadModel::AirportHours, Keeping::InlineHours),
        (ReadModel::CarrierOnTime, Keeping::InlineCarrier),
    ]
    .iter()
    .map(|&(model, keeping)| {
        let cell = run.cell(CellId::ProjectionWrites(keeping))?;
        let writes = cell.acknowledged_writes_per_s?;
        Some(format!(
            "{model} {} ({} writes/s, p99 {:.2} ms)",
            times(writes / asynchronous.max(f64::MIN_POSITIVE)),
            count(writes),
            cell.latency.p99_ms
        ))
    })
    .collect::<Option<Vec<_>>>()?;
    Some(format!("One read model inline at a time, the others async, against all async: {}.", each.join("; ")))
}

/// How far the slowest async read model trailed the commits, under the write-only
/// load and under the mixed part's mix.
pub(super) fn projection_lag(run: &RunData) -> Option<String> {
    let lag_of = |cell: &Cell| {
        let lag = cell.projection_lag?;
        Some(format!(
            "p50 {} and p99 {} events behind the commits (max {}; {} samples, every 10 ms), at {} committed writes/s",
            count(lag.p50_events as f64),
            count(lag.p99_events as f64),
            count(lag.max_events as f64),
            count(lag.samples as f64),
            count(cell.acknowledged_writes_per_s.unwrap_or(0.0)),
        ))
    };
    let writes = run.cell(CellId::ProjectionWrites(Keeping::Async)).and_then(lag_of);
    let mix = run.cell(CellId::ProjectionMix).and_then(|cell| {
        Some(format!(
            "under the mixed part's mix ({}, closed loop, {} req/s) it lagged {}",
            cell.config.mix,
            count(cell.requests_per_s),
            lag_of(cell)?
        ))
    });
    match (writes, mix) {
        (Some(writes), Some(mix)) => {
            Some(format!("Under the async write-only load the slowest read model lagged {writes}; {mix}."))
        }
        (Some(writes), None) => {
            Some(format!("Under the async write-only load the slowest read model lagged {writes}."))
        }
        (None, Some(mix)) => Some(format!("With the runner async, {mix}.")),
        (None, None) => None,
    }
}

/// Each dataset's rebuild rates, the run's own first, then the 1,000,000 flights.
pub(super) fn rebuilds(run: &RunData) -> Option<String> {
    let mut datasets: Vec<u64> = run.rebuilds.iter().map(|r| r.flights).collect();
    datasets.dedup();
    let each: Vec<String> = datasets
        .iter()
        .map(|&flights| {
            let of: Vec<&crate::workbench::data::RebuildRate> =
                run.rebuilds.iter().filter(|r| r.flights == flights).collect();
            let rates: Vec<String> =
                of.iter().map(|r| format!("{} {} events/s", r.model, count(r.events_per_s))).collect();
            format!("{} flights ({} events): {}", count(flights as f64), count(of[0].events as f64), rates.join(", "))
        })
        .collect();
    (!each.is_empty()).then(|| format!("Rebuilt from the events beside the live tables, {}.", each.join("; ")))
}

pub(super) fn board(run: &RunData) -> Option<String> {
    let (board, scatter) =
        (run.cell(CellId::Board { read_model: true })?, run.cell(CellId::Board { read_model: false })?);
    Some(format!(
        "At {PROJECTION_SHARDS} shards the airport-keyed board (one shard's query) against the departures scatter-gather for the same rows: {} ({}; p99 {:.2} vs {:.2} ms).",
        versus("board/scatter", board, scatter),
        figures(board, scatter),
        board.latency.p99_ms,
        scatter.latency.p99_ms
    ))
}
