//! `flightbench run`: the workbench run. Seeds (or reuses) the embedded SQLite
//! datasets, serves each configuration in-process ([`LocalServer`]) and measures it
//! with the load generator, one cell at a time, then profiles the fastest
//! configuration. The figures go into [`RunData`]; `report` renders them and
//! `findings` says in sentences what they show.
//!
//! Every cell of a part differs from its neighbours in the one setting the part is
//! about, on the same data and the same load shape, so a ratio within a part compares
//! like with like.

pub mod cell;
pub mod compare;
pub mod data;
mod error;
pub mod findings;
mod plan;
mod provenance;
pub mod report;

pub use cell::{CellId, Wire};
pub use error::WorkbenchError;
use plan::CellPlan;
pub use plan::{CODECS, MAIN_SHARDS, MIXED_LOAD_SHARE, MIXED_MIX, PROFILE_HZ, Part, Plan, Preset, SHARD_SERIES};

use crate::compression::Encoding;
use crate::dataset::{DatasetSpec, Manifest};
use crate::harness::{LoadShape, LocalServer, sample_under_load};
use crate::http::{QUERY_PATH_HEADER, ServerConfig};
use crate::load::Workload;
use crate::load::workload::{DatasetShape, Mix};
use crate::routing::ShardCount;
use crate::seed::{SeedConfig, SeedError, SeedTarget, seed};
use crate::store::{Durability, QueryPath, Store, StoreConfig};
use data::{Cell, LoopKind, ProfileSummary, RunData, RunSettings};
use http::{HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the run is doing, for a progress display.
pub enum Progress<'a> {
    Seeding { dir: &'a Path, flights: u64, shards: u32 },
    Cell { index: usize, total: usize, id: CellId, left: Duration },
    Profiling { index: usize, total: usize, left: Duration },
    CellDone { cell: &'a Cell },
}

/// Makes sure `dir` holds the dataset `spec` with `shards` SQLite shards: reused when
/// its manifest matches, seeded when there is none, re-seeded when it holds another
/// SQLite dataset (only the workbench's own directories can; see `Plan::main_dir`).
/// A PostgreSQL dataset is never replaced.
pub async fn ensure_dataset(
    dir: &Path,
    spec: &DatasetSpec,
    shards: u32,
    progress: &dyn Fn(Progress<'_>),
) -> Result<Manifest, WorkbenchError> {
    if Manifest::exists_in(dir) {
        let manifest = Manifest::load(dir)?;
        if manifest.backend != crate::dataset::Backend::Sqlite {
            return Err(WorkbenchError::NotSqlite { dir: dir.to_owned(), backend: manifest.backend });
        }
        if manifest.dataset == *spec && manifest.shards.get() == shards {
            return Ok(manifest);
        }
    }
    progress(Progress::Seeding { dir, flights: spec.flights, shards });
    let config = SeedConfig {
        dir: dir.to_owned(),
        spec: *spec,
        shards: ShardCount::new(i64::from(shards)).map_err(|e| SeedError::Config(e.to_string()))?,
        target: SeedTarget::Sqlite { durability: Durability::Normal },
        force: true,
        progress: false,
    };
    Ok(seed(&config).await?.manifest)
}

/// Reads every shard file of the dataset in `dir` once, so its pages are in the OS
/// page cache.
fn read_into_page_cache(dir: &Path) -> Result<(), WorkbenchError> {
    let manifest = Manifest::load(dir)?;
    for file in manifest.sqlite.iter().flat_map(|s| s.files.iter()) {
        let path = dir.join(file);
        let read = std::fs::File::open(&path).and_then(|mut f| std::io::copy(&mut f, &mut std::io::sink()));
        read.map_err(|cause| WorkbenchError::Read { path, cause })?;
    }
    Ok(())
}

/// Runs the plan. Stores are opened once per dataset and shared by its cells.
pub async fn run(plan: &Plan, progress: &dyn Fn(Progress<'_>)) -> Result<RunData, WorkbenchError> {
    let started = Instant::now();
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_owned());
    let spec = plan.spec();
    let main_dir = plan.main_dir(&spec);
    let manifest = ensure_dataset(&main_dir, &spec, MAIN_SHARDS, progress).await?;
    // Before measuring: the commit and working tree are what was built and run, not
    // what someone changed while the run was going.
    let provenance = provenance::provenance(&manifest);
    let mut datasets: BTreeMap<u32, (Arc<Store>, DatasetShape)> = BTreeMap::new();
    let store_config = StoreConfig::default();
    let main = Arc::new(Store::open(&main_dir, &store_config).await?);
    datasets.insert(MAIN_SHARDS, (main, DatasetShape::from_manifest(&manifest)));
    if plan.parts.contains(&Part::Shards) {
        for n in SHARD_SERIES {
            let dir = plan.workbench_dir(n);
            let manifest = ensure_dataset(&dir, &spec, n, progress).await?;
            let store = Arc::new(Store::open(&dir, &store_config).await?);
            datasets.insert(n, (store, DatasetShape::from_manifest(&manifest)));
        }
    }
    // Every cell starts with the data in the OS page cache (the shard files are mapped),
    // so no part's first cell pays for reading the disk on behalf of the others.
    let mut dirs = vec![main_dir.clone()];
    if plan.parts.contains(&Part::Shards) {
        dirs.extend(SHARD_SERIES.map(|n| plan.workbench_dir(n)));
    }
    tokio::task::spawn_blocking(move || dirs.iter().try_for_each(|dir| read_into_page_cache(dir))).await??;
    let result = measure(plan, &datasets, progress).await;
    for (store, _) in datasets.values() {
        store.close().await;
    }
    let (cells, profile) = result?;
    Ok(RunData {
        schema_version: data::RUN_SCHEMA_VERSION,
        started_at,
        elapsed_s: started.elapsed().as_secs_f64(),
        preset: plan.preset,
        parts: plan.parts.clone(),
        provenance,
        settings: RunSettings {
            warmup_s: plan.warmup.as_secs_f64(),
            measure_s: plan.measure.as_secs_f64(),
            server_threads: plan.server_threads,
            load_threads: plan.load_threads,
            pinned: false,
            h1_connections: H1_CONNECTIONS,
            h2_connections: H2_CONNECTIONS,
            h2_streams: H2_STREAMS,
            compression_min_bytes: ServerConfig::default().compression_min_bytes,
            rounds: plan.rounds,
            page_cache_prewarmed: true,
        },
        cells,
        profile,
    })
}

const H1_CONNECTIONS: usize = 64;
const H2_CONNECTIONS: usize = 16;
const H2_STREAMS: usize = 16;

async fn measure(
    plan: &Plan,
    datasets: &BTreeMap<u32, (Arc<Store>, DatasetShape)>,
    progress: &dyn Fn(Progress<'_>),
) -> Result<(Vec<Cell>, Option<ProfileSummary>), WorkbenchError> {
    let total = plan.cell_count();
    let per_cell = plan.estimate() / total.max(1) as u32;
    let mut cells: Vec<Cell> = Vec::new();
    let mut index = 0;
    for &part in &plan.parts {
        if part == Part::Profile {
            continue;
        }
        let mut cell_plans: Vec<CellPlan> = CellId::of(part).into_iter().map(CellPlan::of).collect();
        if part == Part::Mixed {
            let rate = mixed_rate(&cells);
            cell_plans.iter_mut().for_each(|c| c.rate = Some(rate));
        }
        // Rounds alternate the order of the part's cells, so a cell that always ran
        // first (or last) does not carry the machine's drift alone.
        let mut rounds: Vec<Vec<Cell>> = vec![Vec::new(); cell_plans.len()];
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
                let cell = measure_cell(plan, cell_plan, store.clone(), shape).await?;
                progress(Progress::CellDone { cell: &cell });
                rounds[i].push(cell);
            }
        }
        cells.extend(rounds.into_iter().filter_map(median_round));
    }
    let profile = if plan.parts.contains(&Part::Profile) {
        index += 1;
        progress(Progress::Profiling { index, total, left: per_cell });
        Some(profile_hottest(plan, &cells, datasets).await?)
    } else {
        None
    };
    Ok((cells, profile))
}

/// The round with the median throughput (the lower middle of an even count), whole,
/// so its latencies and bytes belong to the same run as its rate, with every round's
/// rate in measurement order.
fn median_round(mut rounds: Vec<Cell>) -> Option<Cell> {
    let rates: Vec<f64> = rounds.iter().map(|c| c.requests_per_s).collect();
    rounds.sort_by(|a, b| a.requests_per_s.total_cmp(&b.requests_per_s));
    let middle = rounds.len().checked_sub(1)? / 2;
    let mut median = rounds.swap_remove(middle);
    median.round_rates = rates;
    Some(median)
}

fn load_shape(plan: &Plan, cell: &CellPlan, shape: &DatasetShape) -> Result<LoadShape, WorkbenchError> {
    let (connections, streams) = connections(cell.wire);
    let mut headers = vec![(HeaderName::from_static(QUERY_PATH_HEADER), HeaderValue::from_static(cell.path.as_str()))];
    if let Some(encoding) = cell.encoding {
        headers.push((http::header::ACCEPT_ENCODING, HeaderValue::from_static(encoding.as_str())));
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
    })
}

fn server_config(cell: &CellPlan) -> ServerConfig {
    ServerConfig {
        default_path: cell.path,
        cache_capacity: if cell.cache { ServerConfig::default().cache_capacity } else { 0 },
        ..ServerConfig::default()
    }
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
    let server = LocalServer::start(store, server_config(cell), plan.server_threads)
        .map_err(|cause| WorkbenchError::Server { cell: cell.id, cause })?;
    let load = load_shape(plan, cell, shape)?.config(server.addr, plan.load_threads);
    let before = server.state.cache.as_ref().map(|c| c.stats());
    // The load runs on its own threads and blocks its caller until it ends.
    let report = tokio::task::spawn_blocking(move || crate::load::run(&load, |_, _| {})).await?;
    let after = server.state.cache.as_ref().map(|c| c.stats());
    server.stop().await.map_err(|cause| WorkbenchError::Server { cell: cell.id, cause })?;
    let report = report.map_err(|cause| WorkbenchError::Load { cell: cell.id, cause })?;
    let mut measured = Cell::from_report(cell.id, config, &report);
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
async fn profile_hottest(
    plan: &Plan,
    cells: &[Cell],
    datasets: &BTreeMap<u32, (Arc<Store>, DatasetShape)>,
) -> Result<ProfileSummary, WorkbenchError> {
    let hottest = cells
        .iter()
        .filter(|c| c.config.loop_model == LoopKind::Closed)
        .max_by(|a, b| a.requests_per_s.total_cmp(&b.requests_per_s));
    let id = hottest.map_or(CellId::Cache(true), |hot| hot.id);
    let cell_plan = CellPlan::of(id);
    let (store, shape) = &datasets[&cell_plan.shard_count()];
    let server = LocalServer::start(store.clone(), server_config(&cell_plan), plan.server_threads)
        .map_err(|cause| WorkbenchError::Server { cell: id, cause })?;
    let load = load_shape(plan, &cell_plan, shape)?.config(server.addr, plan.load_threads);
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
    use data::fixture::cell;

    #[test]
    fn the_median_round_is_kept_whole_with_every_rate() {
        let rounds = vec![cell("paths/raw", 300.0, 9.0), cell("paths/raw", 100.0, 1.0), cell("paths/raw", 200.0, 5.0)];
        let median = median_round(rounds).unwrap();
        assert_eq!(median.requests_per_s, 200.0);
        assert_eq!(median.latency.p99_ms, 5.0, "latencies come from the same round as the rate");
        assert_eq!(median.round_rates, vec![300.0, 100.0, 200.0], "rates in measurement order");
        let two = median_round(vec![cell("cache/on", 500.0, 2.0), cell("cache/on", 400.0, 3.0)]).unwrap();
        assert_eq!(two.requests_per_s, 400.0, "the lower middle of an even count");
        assert!(median_round(Vec::new()).is_none());
    }
}
