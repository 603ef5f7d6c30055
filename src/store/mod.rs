//! The sharded data layer.
//!
//! A [`Store`] is N shards, each a SQLite file or a PostgreSQL database, opened from a
//! dataset's manifest. Every operation runs under a [`QueryPath`] chosen per call, so
//! one store (and later one server) can be measured on all four paths against the same
//! data. Single-flight operations go to the one shard that owns the flight
//! (`routing`); airport queries scatter to every shard concurrently and gather: for
//! departures, each shard's share of the page and a k-way merge (`scatter`), for delay
//! statistics, a histogram merge.
//!
//! What the store leaves to others: validation of user input (`domain` types arrive
//! already valid), and HTTP concerns.

/// Expands `$body` once per backend with `$pool` bound to that backend's sqlx pool, so
/// the same code is type-checked against both drivers (`path::prepared`, `path::adhoc`,
/// `projection`).
macro_rules! with_pool {
    ($shard:expr, |$pool:ident| $body:expr) => {
        match &$shard.conn {
            ShardConn::Sqlite(s) => {
                let $pool = &s.pool;
                $body
            }
            ShardConn::Postgres(p) => {
                let $pool = &p.pool;
                $body
            }
        }
    };
}

mod audited;
mod decode;
mod digest;
mod error;
mod health;
mod merge;
mod metrics;
mod migrate;
mod path;
mod personal;
pub(crate) mod pg_tls;
mod postgres;
mod projection;
pub mod row;
mod scatter;
pub mod schema;
pub mod sql;
mod sqlite;

pub use audited::{AuditReport, Change, now_micros};
pub use error::{DriverError, StoreError};
pub use health::{AsyncLag, PROJECTION_LAG, ProbeConfig, Readiness, ShardHealth};
pub use merge::merge_departures;
pub use metrics::{Op, PoolStats, StoreMetrics, latency_buckets, latency_histogram};
pub use migrate::{ShardMigration, upgrade_layout};
pub use personal::{SubjectErasure, SubjectExport};
pub use postgres::redact_password;
pub use projection::{Generation, ProjectionTx, SequencedEvent, TallyKey};
pub use scatter::ScatterPlan;
pub(crate) use sqlite::drop_planner_samples;
pub use sqlite::sqlite_pragmas;

use crate::dataset::{Backend, Manifest};
use crate::domain::{
    AirportCode, AppendOutcome, DelayEvent, DelayHistogram, DelayStats, Departure, FlightId, FlightView, Limit,
    RecordedEvent, TimeWindow,
};
use crate::routing::ShardCount;
use futures_util::future::try_join_all;
use postgres::PostgresShard;

use sqlite::SqliteShard;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tracing::Instrument;

crate::choices! {
    /// How a query reaches the database. All four return identical results.
    #[derive(Debug, Hash)]
    pub enum QueryPath as "query path" {
        /// sqlx with persistent (cached) prepared statements and bound parameters.
        Prepared = "prepared",
        /// SQL text built per call with validated, escaped literals, sent unprepared.
        Adhoc = "adhoc",
        /// sea-orm entities and query builder over the same sqlx pools.
        Orm = "orm",
        /// The driver floor: rusqlite with cached statements, tokio-postgres prepared.
        Raw = "raw",
    }
}

crate::choices! {
    /// SQLite's `synchronous` setting. NORMAL in WAL mode never corrupts the database
    /// but may lose the last commits on power loss (not on a process crash); FULL syncs
    /// the WAL on every commit.
    #[derive(Debug)]
    pub enum Durability as "durability", default Normal {
        /// WAL-safe; may lose the last commits on power loss.
        Normal = "normal",
        /// Syncs the WAL on every commit.
        Full = "full",
    }
}

impl Durability {
    pub fn pragma(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        }
    }
}

crate::choices! {
    /// PostgreSQL's `plan_cache_mode` for the shard connections. After five executions
    /// a prepared statement may switch to a generic plan, which cannot prune partitions
    /// at plan time (only at execution); `force_custom_plan` re-plans with the actual
    /// values every time. `benches/queries.rs` measures both.
    #[derive(Debug)]
    pub enum PlanCacheMode as "plan cache mode", default Auto {
        /// PostgreSQL's default: custom plans first, generic once it looks no worse.
        Auto = "auto",
        /// Re-plan with the actual values on every execution.
        ForceCustomPlan = "force_custom_plan",
        /// Always the generic plan.
        ForceGenericPlan = "force_generic_plan",
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub durability: Durability,
    /// Connections per shard, per library.
    pub pool_size: u32,
    /// How long a SQLite writer waits for the shard's write lock, and (at least
    /// 10 s) how long anyone waits for a pooled connection.
    pub busy_timeout: Duration,
    /// Applied to every PostgreSQL shard URL (the manifest stores none).
    pub pg_password: Option<String>,
    /// PostgreSQL `plan_cache_mode` for every shard connection.
    pub plan_cache_mode: PlanCacheMode,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            pool_size: 4,
            busy_timeout: Duration::from_secs(5),
            pg_password: None,
            plan_cache_mode: PlanCacheMode::Auto,
        }
    }
}

/// One shard's connections.
pub(crate) struct Shard {
    pub index: usize,
    pub conn: ShardConn,
}

pub(crate) enum ShardConn {
    Sqlite(SqliteShard),
    Postgres(PostgresShard),
}

/// The sharded store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    manifest: Manifest,
    shard_count: ShardCount,
    shards: Vec<Shard>,
    pool_size: u32,
    /// The readiness probes' last projection lag per shard.
    lags: health::LagCache,
    /// Per-shard query durations, when a server records metrics. Set once: a store
    /// shared by two servers records into the first one's registry.
    metrics: OnceLock<Arc<StoreMetrics>>,
    /// Per shard, bumped after every append this store commits, so an in-process
    /// projection runner wakes at once instead of at its next poll.
    appended: Vec<tokio::sync::watch::Sender<u64>>,
    /// Positions runners in this process have reached, by (projection, source shard).
    positions: std::sync::Mutex<std::collections::HashMap<(String, usize), i64>>,
    /// Seals appends and opens reads when set (`personal`).
    sealer: OnceLock<Arc<crate::seal::Sealer>>,
    /// Audits every append when set (`audited`).
    audit: OnceLock<audited::Auditing>,
    /// A global audit chain's head (`None` until read), and its lock.
    global_head: tokio::sync::Mutex<Option<Option<(i64, String)>>>,
}

impl Store {
    /// Opens the dataset described by `dir/manifest.json`, connecting to every shard.
    pub async fn open(dir: &Path, config: &StoreConfig) -> Result<Self, StoreError> {
        let manifest = Manifest::load(dir)?;
        let opening = (0..manifest.shards.get() as usize).map(|index| {
            let manifest = &manifest;
            async move {
                let conn = match (&manifest.sqlite, &manifest.postgres) {
                    (Some(sqlite), _) => {
                        ShardConn::Sqlite(SqliteShard::open(index, &dir.join(&sqlite.files[index]), config).await?)
                    }
                    (None, Some(pg)) => {
                        ShardConn::Postgres(PostgresShard::open(index, &pg.shard_urls[index], config).await?)
                    }
                    // Cannot happen: `Manifest::load` checks each backend has its section.
                    (None, None) => return Err(StoreError::Config("manifest names no shards".into())),
                };
                Ok::<_, StoreError>(Shard { index, conn })
            }
        });
        let shards = try_join_all(opening).await?;
        let appended = shards.iter().map(|_| tokio::sync::watch::Sender::new(0)).collect();
        Ok(Self {
            appended,
            positions: Default::default(),
            shard_count: manifest.shards,
            manifest,
            shards,
            pool_size: config.pool_size,
            lags: Default::default(),
            metrics: OnceLock::new(),
            sealer: OnceLock::new(),
            audit: OnceLock::new(),
            global_head: Default::default(),
        })
    }

    /// Records every per-shard query's duration in `metrics` from now on.
    pub fn record_metrics(&self, metrics: Arc<StoreMetrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Every shard's pools, for `/metrics`.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        self.shards.iter().flat_map(|shard| metrics::pool_stats(shard, self.pool_size)).collect()
    }

    /// One query on one shard, in a `shard_query` span and timed when metrics are on.
    /// The span is at debug level: with no subscriber that wants it (no OTLP export,
    /// log filter above debug) it is never built.
    async fn on_shard<T>(&self, op: Op, path: QueryPath, shard: &Shard, query: impl Future<Output = T>) -> T {
        let span = child_span(|| {
            tracing::debug_span!("shard_query", op = op.as_str(), path = path.as_str(), shard = shard.index)
        });
        match self.metrics.get() {
            None => query.instrument(span).await,
            Some(metrics) => {
                let start = Instant::now();
                let out = query.instrument(span).await;
                metrics.observe(op, path, shard.index, start.elapsed());
                out
            }
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn backend(&self) -> Backend {
        self.manifest.backend
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn owner(&self, id: FlightId) -> &Shard {
        &self.shards[self.shard_count.shard_for(id.get())]
    }

    /// A flight and its current status.
    pub async fn flight(&self, path: QueryPath, id: FlightId) -> Result<FlightView, StoreError> {
        let shard = self.owner(id);
        let found =
            self.on_shard(Op::Flight, path, shard, path::flight(path, shard, id)).instrument(op_span(Op::Flight, path));
        found.await?.ok_or(StoreError::FlightNotFound(id))
    }

    /// Departures from `airport` in `window`, ordered by scheduled time then id, at most
    /// `limit`: each shard is asked for its share of the page, topped up only where it
    /// could hold more ([`ScatterPlan::bounded`]), and the answers are merged.
    pub async fn departures(
        &self,
        path: QueryPath,
        airport: AirportCode,
        window: TimeWindow,
        limit: Limit,
    ) -> Result<Vec<Departure>, StoreError> {
        let plan = ScatterPlan::bounded(limit, self.shards.len());
        self.departures_planned(path, airport, window, limit, plan).await
    }

    /// [`Store::departures`] with the first round's size chosen by the caller: the same
    /// rows for every plan (tests force top-ups with small ones; benches run
    /// [`ScatterPlan::full`], the plan before, beside the default).
    pub async fn departures_planned(
        &self,
        path: QueryPath,
        airport: AirportCode,
        window: TimeWindow,
        limit: Limit,
        plan: ScatterPlan,
    ) -> Result<Vec<Departure>, StoreError> {
        let query = |shard: usize, window, limit| {
            let shard = &self.shards[shard];
            self.on_shard(Op::Departures, path, shard, path::departures(path, shard, airport, window, limit))
        };
        scatter::gather(self.shards.len(), window, limit, plan, query).instrument(op_span(Op::Departures, path)).await
    }

    /// A flight's events in version order.
    pub async fn events(&self, path: QueryPath, id: FlightId) -> Result<Vec<RecordedEvent>, StoreError> {
        let shard = self.owner(id);
        async {
            let mut events = self.on_shard(Op::Events, path, shard, path::events(path, shard, id)).await?;
            // An empty stream is either a flight nothing happened to or no flight at all.
            if events.is_empty()
                && self.on_shard(Op::Flight, path, shard, path::flight(path, shard, id)).await?.is_none()
            {
                return Err(StoreError::FlightNotFound(id));
            }
            self.open_events(&mut events).await?;
            Ok(events)
        }
        .instrument(op_span(Op::Events, path))
        .await
    }

    /// Delay statistics for departures from `airport` in `window`, exact across shards.
    pub async fn delay_stats(
        &self,
        path: QueryPath,
        airport: AirportCode,
        window: TimeWindow,
    ) -> Result<DelayStats, StoreError> {
        let per_shard = try_join_all(self.shards.iter().map(|shard| {
            self.on_shard(Op::DelayHistogram, path, shard, path::delay_histogram(path, shard, airport, window))
        }))
        .instrument(op_span(Op::DelayHistogram, path))
        .await?;
        let mut total = DelayHistogram::default();
        per_shard.iter().for_each(|h| total.merge(h));
        Ok(total.into_stats(airport, window))
    }

    /// Appends `event` to a flight's stream if its current version is
    /// `expected_version`, updating the status projection in the same transaction.
    pub async fn append(
        &self,
        path: QueryPath,
        id: FlightId,
        expected_version: i64,
        event: &DelayEvent,
    ) -> Result<AppendOutcome, StoreError> {
        self.append_as(path, id, expected_version, event, &Change::unattributed()).await
    }

    /// [`Store::append`], attributed to `change` in the audit log (when it is on).
    pub async fn append_as(
        &self,
        path: QueryPath,
        id: FlightId,
        expected_version: i64,
        event: &DelayEvent,
        change: &Change,
    ) -> Result<AppendOutcome, StoreError> {
        event.kind.validate().map_err(StoreError::InvalidEvent)?;
        let shard = self.owner(id);
        // A global chain is locked from here to the commit.
        let mut global = self.global_chain().await?;
        let global_head = global.as_deref().and_then(|read| read.clone()).flatten();
        let audit = self.audit_plan(shard, id, event, change, global_head).await?;
        let event = self.sealed_for_append(id, expected_version, event).await?;
        let append = path::append(path, shard, id, expected_version, &event, audit.as_ref());
        let outcome = self.on_shard(Op::Append, path, shard, append).instrument(op_span(Op::Append, path)).await?;
        if let (Some(head), Some(plan)) = (global.as_deref_mut(), &audit) {
            let record = plan.record(head.clone().flatten(), expected_version, outcome.status.version);
            *head = Some(Some((record.seq, record.hash)));
        }
        self.appended[shard.index].send_modify(|n| *n = n.wrapping_add(1));
        Ok(outcome)
    }

    /// Changes whenever this store commits an append on `shard` (see `appended`).
    pub fn watch_appends(&self, shard: usize) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.appended.get(shard).map(|s| s.subscribe())
    }

    /// The shard count, for routing read-model keys.
    pub fn shards(&self) -> ShardCount {
        self.shard_count
    }

    /// One BLAKE3 digest per shard over all rows in primary-key order: equal digests
    /// mean equal data, whatever the backend.
    pub async fn shard_digests(&self) -> Result<Vec<String>, StoreError> {
        try_join_all(self.shards.iter().map(digest::shard_digest)).await
    }

    /// Runs the readiness probes (`store::health`) on every shard, concurrently.
    pub async fn readiness(&self, config: ProbeConfig) -> Readiness {
        let probes = self.shards.iter().map(|s| health::probe(s, config, &self.lags));
        let lags = async {
            let mut lags = Vec::new();
            for &projection in config.async_projections {
                let positions = self.projection_positions(projection).await.map_err(|e| e.to_string())?;
                lags.extend(positions.into_iter().enumerate().map(|(shard, (head, low))| health::AsyncLag {
                    projection,
                    shard,
                    lag_events: head - low.unwrap_or(0),
                    started: low.is_some(),
                }));
            }
            Ok(lags)
        };
        let lags = async {
            tokio::time::timeout(config.deadline, lags).await.unwrap_or_else(|_| Err("no answer in time".into()))
        };
        let (shards, lags) = futures_util::join!(futures_util::future::join_all(probes), lags);
        Readiness::of(shards, lags, config)
    }

    /// Closes every pool; in-flight queries finish first.
    pub async fn close(&self) {
        for shard in &self.shards {
            match &shard.conn {
                ShardConn::Sqlite(s) => s.close().await,
                ShardConn::Postgres(p) => p.close().await,
            }
        }
    }
}

/// The span of one store operation; its per-shard queries are its children.
fn op_span(op: Op, path: QueryPath) -> tracing::Span {
    child_span(|| tracing::debug_span!("store", op = op.as_str(), path = path.as_str()))
}

/// A span built only inside a span being recorded: when the server decided not to
/// trace a request (head sampling), its store and shard spans are not built either.
/// With nothing listening at debug level (the default) it checks one atomic.
fn child_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if tracing::level_enabled!(tracing::Level::DEBUG) && !tracing::Span::current().is_none() {
        make()
    } else {
        tracing::Span::none()
    }
}
