//! `flightbench seed`: writes a generated dataset into fresh shards.
//!
//! Safe by construction: an existing dataset is replaced only with `force`; shard data
//! is written first and the manifest after it (atomically), so an interrupted seed
//! leaves no manifest and every other command refuses the half-written shards until a
//! new seed completes. Then the async read models are built from the events
//! (`project`); interrupted there, the dataset is complete and the runner finishes
//! them.
//!
//! Fast by construction: one writer per shard running in parallel, each generating
//! only its own flights (generation is a pure function of the flight id, see
//! `dataset`); SQLite is bulk-loaded with journaling off inside large transactions,
//! then switched to WAL once the data is in; PostgreSQL is loaded with binary `COPY`.
//! Secondary indexes are built after the load.

mod postgres;
mod sqlite;

use crate::dataset::GeneratedFlight;
use crate::dataset::{
    AIRPORTS, Backend, Counts, DatasetSpec, Generator, MANIFEST_FORMAT, Manifest, ManifestError, PostgresLayout,
    SqliteSettings,
};
use crate::domain::SCHEMA_VERSION;
use crate::projection::{ProjectionError, Projector, ProjectorConfig, ReadModel};
use crate::routing::ShardCount;
use crate::store::row::EventRow;
use crate::store::{Durability, Store, StoreConfig, redact_password};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use postgres::PgShards;
pub(crate) use postgres::{connect, quote_ident, replace_dbname};

/// Where and what to seed.
#[derive(Debug, Clone)]
pub struct SeedConfig {
    pub dir: PathBuf,
    pub spec: DatasetSpec,
    pub shards: ShardCount,
    pub target: SeedTarget,
    /// Replace an existing dataset.
    pub force: bool,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

#[derive(Debug, Clone)]
pub enum SeedTarget {
    Sqlite { durability: Durability },
    Postgres { shards: PgShards, password: Option<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("a dataset already exists at {0}; pass --force to replace it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("SQLite shard {shard} ({path}): {cause}")]
    Sqlite { shard: usize, path: PathBuf, cause: rusqlite::Error },
    #[error("PostgreSQL shard {shard} ({url}): {cause}")]
    Postgres { shard: usize, url: String, cause: tokio_postgres::Error },
    #[error("PostgreSQL server ({url}): {cause}")]
    PostgresAdmin { url: String, cause: tokio_postgres::Error },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("the dataset is seeded, but building its read models failed: {0}")]
    Projection(ProjectionError),
}

/// What a finished seed reports.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub manifest: Manifest,
    pub elapsed: Duration,
}

/// Seeds the dataset and writes its manifest.
pub async fn seed(config: &SeedConfig) -> Result<SeedReport, SeedError> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&config.dir).map_err(|cause| SeedError::Io { path: config.dir.clone(), cause })?;
    let manifest_path = Manifest::path_in(&config.dir);
    if manifest_path.exists() && !config.force {
        return Err(SeedError::Exists(manifest_path));
    }
    let generator = Generator::new(config.spec);
    let progress = progress_bar(config);
    let (counts, sqlite, postgres) = match &config.target {
        SeedTarget::Sqlite { durability } => {
            // The old manifest goes first: from here until the new one is written the
            // directory holds no complete dataset, and says so.
            remove_if_present(&manifest_path)?;
            let (counts, files) = sqlite::seed_all(&config.dir, &generator, config.shards, *durability, &progress)?;
            let settings = SqliteSettings {
                journal_mode: "wal".into(),
                synchronous: durability.pragma().to_ascii_lowercase(),
                files,
            };
            (counts, Some(settings), None)
        }
        SeedTarget::Postgres { shards, password } => {
            let urls = shards.resolve(config.shards, password.as_deref(), config.force).await?;
            remove_if_present(&manifest_path)?;
            let counts = postgres::seed_all(&urls, &generator, config.shards, password.as_deref(), &progress).await?;
            let layout = PostgresLayout {
                shard_urls: urls.iter().map(|u| redact_password(u)).collect(),
                partition_interval: "month".into(),
            };
            (counts, None, Some(layout))
        }
    };
    progress.finish_and_clear();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        generator_version: env!("CARGO_PKG_VERSION").into(),
        backend: match config.target {
            SeedTarget::Sqlite { .. } => Backend::Sqlite,
            SeedTarget::Postgres { .. } => Backend::Postgres,
        },
        shards: config.shards,
        dataset: config.spec,
        counts,
        popularity: generator.popularity(),
        airports: AIRPORTS.iter().map(|a| a.code.to_owned()).collect(),
        sqlite,
        postgres,
        layout: crate::dataset::FIRST_LAYOUT,
    };
    manifest.save(&config.dir).map_err(|cause| SeedError::Io { path: manifest_path, cause })?;
    project(config, manifest.counts.events).await?;
    Ok(SeedReport { manifest, elapsed: started.elapsed() })
}

/// Builds the async read models from the seeded events, so a fresh dataset serves
/// them current. The dataset is complete before this (its manifest is written): a
/// seed interrupted here leaves read models that the runner finishes when it starts.
async fn project(config: &SeedConfig, events: u64) -> Result<(), SeedError> {
    let store_config = match &config.target {
        SeedTarget::Sqlite { durability } => StoreConfig { durability: *durability, ..StoreConfig::default() },
        SeedTarget::Postgres { password, .. } => {
            StoreConfig { pg_password: password.clone(), ..StoreConfig::default() }
        }
    };
    let store = Arc::new(Store::open(&config.dir, &store_config).await.map_err(|e| SeedError::Projection(e.into()))?);
    let bar =
        if config.progress { ProgressBar::new(events * ReadModel::ALL.len() as u64) } else { ProgressBar::hidden() };
    // Cannot fail: the template is a literal.
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} projecting [{bar:30}] {human_pos}/{human_len} events ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let projector = Projector::new(store.clone(), ProjectorConfig { batch: 5000, ..ProjectorConfig::default() });
    let done = projector.catch_up(&|n| bar.inc(n)).await;
    bar.finish_and_clear();
    store.close().await;
    done.map(drop).map_err(SeedError::Projection)
}

fn remove_if_present(path: &std::path::Path) -> Result<(), SeedError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SeedError::Io { path: path.to_owned(), cause: e }),
        _ => Ok(()),
    }
}

fn progress_bar(config: &SeedConfig) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(config.spec.flights);
    // Cannot fail: the template is a literal checked by the seed tests.
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} seeding {msg} [{bar:30}] {human_pos}/{human_len} flights ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("{} shards", config.shards.get()));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The ids one shard owns, in ascending order.
fn shard_ids(spec: &DatasetSpec, shards: ShardCount, shard: usize) -> impl Iterator<Item = crate::domain::FlightId> {
    (1..=spec.flights as i64)
        .filter(move |&id| shards.shard_for(id) == shard)
        // Cannot fail: 1 <= id <= flights <= MAX_FLIGHTS.
        .map(|id| crate::domain::FlightId::new(id).expect("id in range"))
}

/// Adds up per-shard counts.
/// A generated flight's events as rows, each in the schema version the dataset's
/// history stored it with (`DatasetSpec::stored_schema_version`): both seeders write
/// exactly these.
fn event_rows<'g>(spec: &DatasetSpec, g: &'g GeneratedFlight) -> impl Iterator<Item = EventRow<'g>> {
    let spec = *spec;
    g.versioned_events().map(move |(version, e)| {
        let row = EventRow::new(g.flight.id, version, g.flight.scheduled_departure, e);
        if spec.stored_schema_version(e.occurred_at) < SCHEMA_VERSION { row.as_version_1() } else { row }
    })
}

fn total(counts: impl IntoIterator<Item = Counts>) -> Counts {
    counts.into_iter().fold(Counts { flights: 0, events: 0 }, |a, b| Counts {
        flights: a.flights + b.flights,
        events: a.events + b.events,
    })
}

impl crate::failure::Classify for SeedError {
    fn failure(&self) -> crate::failure::Failure {
        use crate::failure::Failure;
        // A server that answers with an SQL error is reachable; one that does not answer
        // at all is not.
        let postgres = |cause: &tokio_postgres::Error| {
            if cause.as_db_error().is_some() { Failure::Internal } else { Failure::Unreachable }
        };
        match self {
            SeedError::Exists(_) | SeedError::Config(_) => Failure::Usage,
            SeedError::Io { cause, .. } => crate::failure::Classify::failure(cause),
            SeedError::Sqlite { .. } => Failure::Internal,
            SeedError::Postgres { cause, .. } | SeedError::PostgresAdmin { cause, .. } => postgres(cause),
            SeedError::Manifest(_) => Failure::BadInput,
            SeedError::Projection(e) => crate::failure::Classify::failure(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UtcTime;

    #[test]
    fn progress_bar_template_is_valid() {
        let config = SeedConfig {
            dir: PathBuf::from("unused"),
            spec: DatasetSpec::new(1, 10, 1, UtcTime::parse("2026-12-01").unwrap()).unwrap(),
            shards: ShardCount::new(2).unwrap(),
            target: SeedTarget::Sqlite { durability: Durability::Normal },
            force: false,
            progress: true,
        };
        let bar = progress_bar(&config);
        assert_eq!(bar.length(), Some(10));
        bar.finish_and_clear();
    }

    #[test]
    fn every_id_belongs_to_exactly_one_shard() {
        let spec = DatasetSpec::new(1, 5_000, 1, UtcTime::parse("2026-12-01").unwrap()).unwrap();
        let shards = ShardCount::new(7).unwrap();
        let mut ids: Vec<i64> = (0..7).flat_map(|s| shard_ids(&spec, shards, s)).map(|id| id.get()).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=5_000).collect::<Vec<_>>());
    }
}
