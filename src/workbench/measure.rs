//! Measuring: each part's cells in interleaved rounds (ABCD DCBA …), each measurement
//! guarded against a busy machine, and the profile of the fastest configuration.

use super::cell::{CellId, Keeping, Wire};
use super::data::{Cell, LoopKind, ProfileSummary, ProjectionLag, RebuildRate, Round};
use super::plan::{CellPlan, MAIN_SHARDS, MIXED_LOAD_SHARE, PROFILE_HZ, Part, Plan};
use super::served::{Served, protected_store};
use super::{Progress, WorkbenchError};
use crate::compression::Encoding;
use crate::domain::FlightId;
use crate::harness::{LoadShape, sample_under_load};
use crate::http::QUERY_PATH_HEADER;
use crate::load::Workload;
use crate::load::workload::{DatasetShape, Mix};
use crate::machine::{CpuTime, Disturbance, MachineCpu};
use crate::projection::{Projector, ProjectorConfig, ProjectorStats, ReadModel};
use crate::store::{QueryPath, Store};
use http::{HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The datasets of a run by shard count, each opened once and shared by its cells.
pub(super) type Datasets = BTreeMap<u32, (Arc<Store>, DatasetShape)>;

pub(super) const H1_CONNECTIONS: usize = 64;
pub(super) const H2_CONNECTIONS: usize = 16;
pub(super) const H2_STREAMS: usize = 16;

/// What [`measure`] measured.
pub(super) struct Measured {
    pub cells: Vec<Cell>,
    pub profile: Option<ProfileSummary>,
    pub rebuilds: Vec<RebuildRate>,
}

/// Measures every part of the plan; returns the cells (each with every round), the
/// profile and the projections part's rebuilds (of the main dataset, then of `large`,
/// [`Plan::large_rebuild`]'s dataset).
pub(super) async fn measure(
    plan: &Plan,
    datasets: &Datasets,
    large: Option<&Arc<Store>>,
    progress: &dyn Fn(Progress<'_>),
) -> Result<Measured, WorkbenchError> {
    let total = plan.cell_count();
    let per_cell = plan.estimate() / total.max(1) as u32;
    let mut cells: Vec<Cell> = Vec::new();
    let mut rebuilds = Vec::new();
    let mut index = 0;
    for &part in &plan.parts {
        if matches!(part, Part::Profile | Part::Reshard | Part::Topology) {
            continue;
        }
        let mut cell_plans: Vec<CellPlan> = CellId::of(part).into_iter().map(CellPlan::of).collect();
        if part == Part::Mixed {
            let rate = mixed_rate(&cells);
            cell_plans.iter_mut().for_each(|c| c.rate = Some(rate));
        }
        // Rounds alternate the order of the part's cells, so a cell that always ran
        // first (or last) does not carry the machine's drift alone.
        let mut rounds: Vec<Vec<(Cell, Round)>> = vec![Vec::new(); cell_plans.len()];
        for round in 0..plan.rounds {
            let mut order: Vec<usize> = (0..cell_plans.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let cell_plan = &cell_plans[i];
                index += 1;
                let left = per_cell * (total - index + 1) as u32;
                progress(Progress::Cell { index, total, id: cell_plan.id, left });
                let (store, shape) = &datasets[&cell_plan.shard_count()];
                let (cell, round) = measure_guarded(plan, cell_plan, store, shape).await?;
                progress(Progress::CellDone { cell: &cell, round: &round });
                rounds[i].push((cell, round));
            }
        }
        cells.extend(rounds.into_iter().filter_map(median_round));
        if part == Part::Projections {
            for store in std::iter::once(&datasets[&MAIN_SHARDS].0).chain(large) {
                progress(Progress::Rebuilding { flights: store.manifest().counts.flights });
                rebuilds.extend(rebuild_rates(store).await?);
            }
        }
    }
    let profile = if plan.parts.contains(&Part::Profile) {
        index += 1;
        progress(Progress::Profiling { index, total, left: per_cell });
        Some(profile_hottest(plan, &cells, datasets).await?)
    } else {
        None
    };
    Ok(Measured { cells, profile, rebuilds })
}

/// Rebuilds each read model of `store`'s dataset (blue/green, as `projections
/// rebuild` does), timed. The live models are caught up first (a run's last write
/// cell may have had no runner), untimed.
async fn rebuild_rates(store: &Arc<Store>) -> Result<Vec<RebuildRate>, WorkbenchError> {
    Projector::new(store.clone(), ProjectorConfig::default()).catch_up(&|_| {}).await?;
    let flights = store.manifest().counts.flights;
    let mut rates = Vec::new();
    for &model in ReadModel::ALL {
        let started = std::time::Instant::now();
        let rebuilt = crate::projection::rebuild::rebuild(store, model, 5_000, false, &|_| {}, &|_| {}).await?;
        let seconds = started.elapsed().as_secs_f64();
        rates.push(RebuildRate {
            model,
            flights,
            events: rebuilt.replayed,
            seconds,
            events_per_s: rebuilt.replayed as f64 / seconds.max(1e-9),
        });
    }
    Ok(rates)
}

/// Flights a write cell writes to: of the first [`WRITABLE_SCAN`] ids, those that
/// still take events, with their versions now (earlier cells and rounds moved them).
/// Read before the load, untimed.
async fn writable_flights(store: &Store) -> Result<std::sync::Arc<[(FlightId, i64)]>, WorkbenchError> {
    let mut pool = Vec::new();
    let last = (store.manifest().counts.flights as i64).min(WRITABLE_SCAN);
    for id in (1..=last).filter_map(|id| FlightId::new(id).ok()) {
        let view = store.flight(QueryPath::Raw, id).await?;
        if !view.status.state.is_terminal() {
            pool.push((id, view.status.version));
        }
    }
    Ok(pool.into())
}

/// Flight ids a write cell looks at for its pool: enough that 64 connections rarely
/// write the same flight at once (a 409), few enough to read in well under a second.
const WRITABLE_SCAN: i64 = 20_000;

/// The in-process runner of a projections write cell, and its lag sampler.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    runner: tokio::task::JoinHandle<()>,
    sampler: tokio::task::JoinHandle<Vec<u64>>,
}

/// How often the lag is sampled while a write cell runs.
const LAG_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Catches the read models up (untimed), then starts the runner and samples the
/// slowest follower's lag: each shard's newest event (read once, then counted from
/// this store's appends, which are every write of the cell) less its position.
async fn start_runner(
    store: &Arc<Store>,
    inline: &[ReadModel],
) -> Result<(Running, Arc<ProjectorStats>), WorkbenchError> {
    let projector = Projector::new(store.clone(), ProjectorConfig::for_writes(inline));
    projector.catch_up(&|_| {}).await?;
    let stats = projector.stats();
    let mut base = Vec::new();
    for shard in 0..store.shard_count() {
        let head = store.event_head(shard).await?;
        let appends = store.watch_appends(shard);
        let counted = appends.as_ref().map_or(0, |rx| *rx.borrow());
        base.push((head, counted, appends));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn({
        let stopped = stopped.clone();
        async move { projector.run(stopped).await }
    });
    let sampled = stats.clone();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut every = tokio::time::interval(LAG_EVERY);
        while !*stopped.borrow() {
            every.tick().await;
            let heads: Vec<i64> = base
                .iter()
                .map(|(head, counted, rx)| {
                    let now = rx.as_ref().map_or(*counted, |rx| *rx.borrow());
                    head + now.wrapping_sub(*counted) as i64
                })
                .collect();
            let lag = sampled
                .followers
                .iter()
                .map(|(_, shard, f)| (heads[*shard] - f.position.load(std::sync::atomic::Ordering::Acquire)).max(0))
                .max()
                .unwrap_or(0);
            samples.push(lag as u64);
        }
        samples
    });
    Ok((Running { stop, runner, sampler }, stats))
}

/// The round with the median throughput (the lower middle of an even count), whole,
/// so its latencies and bytes belong to the same run as its rate, with every round's
/// figures in measurement order.
fn median_round(rounds: Vec<(Cell, Round)>) -> Option<Cell> {
    let (mut cells, all): (Vec<Cell>, Vec<Round>) = rounds.into_iter().unzip();
    cells.sort_by(|a, b| a.requests_per_s.total_cmp(&b.requests_per_s));
    let middle = cells.len().checked_sub(1)? / 2;
    let mut median = cells.swap_remove(middle);
    median.rounds = all;
    Some(median)
}

/// One round of a cell, guarded: the machine's CPU is read before and after, and a
/// measurement taken while other work took more than the plan's share of the machine
/// is taken again, up to the plan's retries. The least disturbed attempt is kept, and
/// marked if even it was over.
async fn measure_guarded(
    plan: &Plan,
    cell: &CellPlan,
    store: &Arc<Store>,
    shape: &DatasetShape,
) -> Result<(Cell, Round), WorkbenchError> {
    let mut best: Option<(Cell, Option<Disturbance>)> = None;
    let mut attempts = 0;
    for _ in 0..=plan.noise_retries {
        attempts += 1;
        let before = (MachineCpu::now(), CpuTime::of_process());
        let measured = measure_cell(plan, cell, store.clone(), shape).await?;
        let after = (MachineCpu::now(), CpuTime::of_process());
        let disturbance = match (before, after) {
            ((Some(m0), Some(p0)), (Some(m1), Some(p1))) => Disturbance::between((m0, m1), (p0, p1)),
            _ => None,
        };
        let share = |d: &Option<Disturbance>| d.map_or(0.0, |d| d.others_share.max(d.steal_share));
        if best.as_ref().is_none_or(|(_, kept)| share(&disturbance) < share(kept)) {
            best = Some((measured, disturbance));
        }
        if !disturbance.is_some_and(|d| d.exceeds(plan.noise_threshold)) {
            break;
        }
    }
    // Cannot be None: the loop runs at least once and keeps its first attempt.
    let (cell_figures, disturbance) =
        best.ok_or(WorkbenchError::Plan { cell: cell.id, problem: "no attempt".into() })?;
    let disturbed = disturbance.is_some_and(|d| d.exceeds(plan.noise_threshold));
    let round = cell_figures.as_round(disturbance, disturbed, attempts);
    Ok((cell_figures, round))
}

pub(super) fn load_shape(
    plan: &Plan,
    cell: &CellPlan,
    shape: &DatasetShape,
    served: &Served,
) -> Result<LoadShape, WorkbenchError> {
    let (connections, streams) = connections(cell.wire);
    let mut headers = vec![(HeaderName::from_static(QUERY_PATH_HEADER), HeaderValue::from_static(cell.path.as_str()))];
    if let Some(encoding) = cell.encoding {
        headers.push((http::header::ACCEPT_ENCODING, HeaderValue::from_static(encoding.as_str())));
    }
    if let Some(token) = &served.token {
        headers.push((http::header::AUTHORIZATION, token.clone()));
    }
    Ok(LoadShape {
        protocol: cell.wire.protocol(),
        connections,
        streams_per_connection: streams,
        workload: Workload::Mix {
            mix: Mix::parse(cell.mix).map_err(|e| WorkbenchError::Plan { cell: cell.id, problem: e.to_string() })?,
            shape: shape.clone(),
            skew: cell.skew,
        },
        headers,
        warmup: plan.warmup,
        measure: plan.measure,
        rate: cell.rate,
        tls: served.tls.as_ref().map(|(_, client)| client.clone()),
    })
}

/// Connections and streams per connection for a protocol.
fn connections(wire: Wire) -> (usize, usize) {
    match wire {
        Wire::H1 => (H1_CONNECTIONS, 1),
        Wire::H2c => (H2_CONNECTIONS, H2_STREAMS),
    }
}

async fn measure_cell(
    plan: &Plan,
    cell: &CellPlan,
    store: Arc<Store>,
    shape: &DatasetShape,
) -> Result<Cell, WorkbenchError> {
    let (connections, streams) = connections(cell.wire);
    let config = cell
        .config(connections, streams)
        .map_err(|e| WorkbenchError::Plan { cell: cell.id, problem: e.to_string() })?;
    let placement = &plan.placement;
    let running = match cell.keeping {
        Some(keeping) if keeping != Keeping::Off => Some(start_runner(&store, &keeping.inline_models()).await?),
        _ => None,
    };
    // The security part's write cells write through a store of their own over the same
    // dataset (sealing is set once per store), the clear one too: opened the same way,
    // so the cells differ only in what they do to a report.
    let protected = match cell.at_rest {
        Some(at_rest) => Some(protected_store(plan, at_rest).await?),
        None => None,
    };
    let store = protected.clone().unwrap_or(store);
    let served = Served::of(cell)?;
    let server = served.start(plan, store, cell.id)?;
    if let Some((_, stats)) = &running {
        server.state.report_projector(stats.clone());
    }
    let mut load_shape = load_shape(plan, cell, shape, &served)?;
    if cell.keeping.is_some()
        && let Workload::Mix { shape, .. } = &mut load_shape.workload
    {
        shape.writable = Some(writable_flights(&server.state.store()).await?);
    }
    let load = load_shape.config(server.addr, plan.load_threads, &placement.load_cores);
    let before = server.state.cache.as_ref().map(|c| c.stats());
    // The load runs on its own threads and blocks its caller until it ends.
    let report = tokio::task::spawn_blocking(move || crate::load::run(&load, |_, _| {})).await?;
    let after = server.state.cache.as_ref().map(|c| c.stats());
    server.stop().await.map_err(|cause| WorkbenchError::Server { cell: cell.id, cause })?;
    if let Some(protected) = protected {
        protected.close().await;
    }
    let lag = match running {
        Some((running, _)) => {
            let _ = running.stop.send(true);
            running.runner.await?;
            ProjectionLag::of(running.sampler.await?)
        }
        None => None,
    };
    let report = report.map_err(|cause| WorkbenchError::Load { cell: cell.id, cause })?;
    let mut measured = Cell::from_report(cell.id, config, &report);
    measured.projection_lag = lag;
    if cell.keeping.is_some() {
        let committed = report.status_counts.get(&201).copied().unwrap_or(0);
        let answered = report.status_counts.values().sum::<u64>().max(1);
        measured.acknowledged_writes_per_s = Some(report.achieved_rate * committed as f64 / answered as f64);
    }
    if let (Some(before), Some(after)) = (before, after) {
        let (hits, misses) = (after.hits - before.hits, after.misses - before.misses);
        measured.cache_hit_ratio = Some(hits as f64 / (hits + misses).max(1) as f64);
    }
    Ok(measured)
}

/// Half the capacity the closed-loop cells imply for the mixed part's mix: requests
/// take 1/throughput each, weighted by the mix. Writes are costed like uncached reads.
/// Without those cells, a conservative 500 req/s.
fn mixed_rate(cells: &[Cell]) -> f64 {
    let find = |id: CellId| cells.iter().find(|c| c.id == id).map(|c| c.requests_per_s).filter(|r| *r > 0.0);
    let read = find(CellId::Cache(true)).or(find(CellId::Protocol(Wire::H1)));
    let uncached = find(CellId::Path(QueryPath::Raw)).or(find(CellId::Cache(false)));
    let departures = find(CellId::Codec(Encoding::Identity));
    match (read, uncached, departures) {
        (Some(read), Some(uncached), Some(departures)) => {
            let seconds_per_request = 0.80 / read + 0.15 / departures + 0.05 / uncached;
            (MIXED_LOAD_SHARE / seconds_per_request).round().max(1.0)
        }
        _ => 500.0,
    }
}

/// Profiles the closed-loop cell with the highest throughput, re-run with sampling.
async fn profile_hottest(plan: &Plan, cells: &[Cell], datasets: &Datasets) -> Result<ProfileSummary, WorkbenchError> {
    let hottest = cells
        .iter()
        .filter(|c| c.config.loop_model == LoopKind::Closed)
        .max_by(|a, b| a.requests_per_s.total_cmp(&b.requests_per_s));
    let id = hottest.map_or(CellId::Cache(true), |hot| hot.id);
    let cell_plan = CellPlan::of(id);
    let (store, shape) = &datasets[&cell_plan.shard_count()];
    let placement = &plan.placement;
    let served = Served::of(&cell_plan)?;
    let server = served.start(plan, store.clone(), id)?;
    let load =
        load_shape(plan, &cell_plan, shape, &served)?.config(server.addr, plan.load_threads, &placement.load_cores);
    let sampled = tokio::task::spawn_blocking(move || sample_under_load(&load, PROFILE_HZ as i32, |_, _| {})).await?;
    server.stop().await.map_err(|cause| WorkbenchError::Server { cell: id, cause })?;
    let (lines, report) = sampled.map_err(|cause| WorkbenchError::Profile { cell: id, cause })?;
    let samples = crate::profile::sample_total(&lines);
    if samples == 0 {
        return Err(WorkbenchError::NoSamples(id));
    }
    let subtitle = format!("{id}: {:.0} req/s, {} samples at {PROFILE_HZ} Hz", report.achieved_rate, samples);
    let title = "flightbench run: the fastest configuration";
    crate::profile::write_lines(&lines, &plan.out, "flamegraph", title, Some(&subtitle))
        .map_err(|e| WorkbenchError::Flamegraph(e.to_string()))?;
    let (svg, folded) = ("flamegraph.svg".to_owned(), "flamegraph.folded".to_owned());
    let top_frames = crate::profile::by_leaf(&lines)
        .into_iter()
        .take(8)
        .map(|(frame, n)| (frame, n as f64 / samples as f64))
        .collect();
    Ok(ProfileSummary { cell: id, svg, folded, samples, frequency_hz: PROFILE_HZ, top_frames })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workbench::data::fixture::cell;

    fn round_of(cell: &Cell) -> Round {
        cell.as_round(None, false, 1)
    }

    #[test]
    fn the_median_round_is_kept_whole_with_every_round() {
        let measured = [cell("paths/raw", 300.0, 9.0), cell("paths/raw", 100.0, 1.0), cell("paths/raw", 200.0, 5.0)];
        let rounds = measured.iter().map(|c| (c.clone(), round_of(c))).collect();
        let median = median_round(rounds).unwrap();
        assert_eq!(median.requests_per_s, 200.0);
        assert_eq!(median.latency.p99_ms, 5.0, "latencies come from the same round as the rate");
        assert_eq!(median.round_rates(), vec![300.0, 100.0, 200.0], "rounds in measurement order");
        let two = [cell("cache/on", 500.0, 2.0), cell("cache/on", 400.0, 3.0)];
        let two = median_round(two.iter().map(|c| (c.clone(), round_of(c))).collect()).unwrap();
        assert_eq!(two.requests_per_s, 400.0, "the lower middle of an even count");
        assert!(median_round(Vec::new()).is_none());
    }
}
