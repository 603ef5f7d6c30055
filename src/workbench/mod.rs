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
pub mod headline;
mod measure;
mod plan;
mod provenance;
pub mod report;
pub mod resharding;
mod served;
pub mod stats;
mod tokens;
pub mod topology;
mod writer;

pub use cell::{AtRest, CellId, Keeping, Signing, Wire};
pub use error::WorkbenchError;
pub use plan::{
    CODECS, MAIN_SHARDS, MIXED_LOAD_SHARE, MIXED_MIX, NOISE_RETRIES, NOISE_THRESHOLD, PROFILE_HZ, PROJECTION_SHARDS,
    Part, Placement, Plan, Preset, SHARD_SERIES,
};

use crate::dataset::{DatasetSpec, Manifest};
use crate::http::ServerConfig;
use crate::load::workload::DatasetShape;
use crate::routing::ShardCount;
use crate::seed::{SeedConfig, SeedError, SeedTarget, seed};
use crate::store::{Durability, Store, StoreConfig};
use data::{Cell, Round, RunData, RunSettings};
use measure::{Datasets, H1_CONNECTIONS, H2_CONNECTIONS, H2_STREAMS, measure};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the run is doing, for a progress display.
pub enum Progress<'a> {
    Seeding {
        dir: &'a Path,
        flights: u64,
        shards: u32,
    },
    Cell {
        index: usize,
        total: usize,
        id: CellId,
        left: Duration,
    },
    Profiling {
        index: usize,
        total: usize,
        left: Duration,
    },
    /// The projections part rebuilds each read model of the dataset of `flights`.
    Rebuilding {
        flights: u64,
    },
    CellDone {
        cell: &'a Cell,
        round: &'a Round,
    },
    /// The reshard part, at `stage`.
    Resharding {
        stage: &'a str,
    },
    /// The topology part, at `stage`.
    Topology {
        stage: &'a str,
    },
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
        match Manifest::load(dir) {
            Ok(manifest) => {
                if manifest.backend != crate::dataset::Backend::Sqlite {
                    return Err(WorkbenchError::NotSqlite { dir: dir.to_owned(), backend: manifest.backend });
                }
                if manifest.dataset == *spec && manifest.shards.get() == shards {
                    return Ok(manifest);
                }
            }
            // A dataset an older build seeded (its table layout is not this build's):
            // like another dataset, re-seeded below.
            Err(crate::dataset::ManifestError::Format { .. }) => {}
            Err(e) => return Err(e.into()),
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
    let mut datasets = Datasets::new();
    let store_config = StoreConfig::default();
    let main = Arc::new(Store::open(&main_dir, &store_config).await?);
    datasets.insert(MAIN_SHARDS, (main, DatasetShape::from_manifest(&manifest)));
    let mut series: Vec<u32> = Vec::new();
    if plan.parts.contains(&Part::Shards) {
        series.extend(SHARD_SERIES);
    }
    if plan.parts.contains(&Part::Projections) && !series.contains(&PROJECTION_SHARDS) {
        series.push(PROJECTION_SHARDS);
    }
    // The main dataset serves its own shard count.
    series.retain(|&n| n != MAIN_SHARDS);
    for &n in &series {
        let dir = plan.workbench_dir(n);
        let manifest = ensure_dataset(&dir, &spec, n, progress).await?;
        let store = Arc::new(Store::open(&dir, &store_config).await?);
        datasets.insert(n, (store, DatasetShape::from_manifest(&manifest)));
    }
    let large = match plan.large_rebuild() {
        Some((dir, spec)) => {
            ensure_dataset(&dir, &spec, MAIN_SHARDS, progress).await?;
            Some((Arc::new(Store::open(&dir, &store_config).await?), dir))
        }
        None => None,
    };
    // Every cell starts with the data in the OS page cache (the shard files are mapped),
    // so no part's first cell pays for reading the disk on behalf of the others.
    let mut dirs = vec![main_dir.clone()];
    dirs.extend(series.iter().map(|&n| plan.workbench_dir(n)));
    dirs.extend(large.iter().map(|(_, dir)| dir.clone()));
    tokio::task::spawn_blocking(move || dirs.iter().try_for_each(|dir| read_into_page_cache(dir))).await??;
    let result = measure(plan, &datasets, large.as_ref().map(|(store, _)| store), progress).await;
    for store in datasets.values().map(|(store, _)| store).chain(large.iter().map(|(store, _)| store)) {
        store.close().await;
    }
    let measure::Measured { cells, profile, rebuilds } = result?;
    let resharding =
        if plan.parts.contains(&Part::Reshard) { Some(resharding::measure(plan, progress).await?) } else { None };
    let topology = if plan.parts.contains(&Part::Topology) {
        Some(topology::measure(plan, &main_dir, progress).await?)
    } else {
        None
    };
    let mut run = RunData {
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
            placement: data::Placement {
                pinned: !plan.placement.server_cores.is_empty(),
                server_cores: plan.placement.server_cores.clone(),
                load_cores: plan.placement.load_cores.clone(),
            },
            h1_connections: H1_CONNECTIONS,
            h2_connections: H2_CONNECTIONS,
            h2_streams: H2_STREAMS,
            compression_min_bytes: ServerConfig::default().compression_min_bytes,
            rounds: plan.rounds,
            page_cache_prewarmed: true,
            noise_threshold: plan.noise_threshold,
            noise_retries: plan.noise_retries,
        },
        cells,
        headlines: Vec::new(),
        profile,
        rebuilds,
        resharding,
        topology,
    };
    run.headlines = headline::headlines(&run);
    Ok(run)
}
