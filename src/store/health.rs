//! Readiness probes, run by `/readyz` on every call.
//!
//! Per shard, concurrently and within one deadline:
//! - **the serving pool answers**: `SELECT 1` through the shard's sqlx pool, the
//!   connections requests use. A PostgreSQL shard that went away fails here.
//! - **the data is readable and projected**: one query that reads both tables,
//!   `COUNT(*)` of `delay_events` minus `SUM(version)` of `flight_status`. A flight's
//!   version is the number of its events, so the difference is how many events the
//!   projection has not applied: the projection lag, in events. For SQLite it runs on
//!   a fresh read-only connection, so a shard file that was moved, replaced or made
//!   unreadable fails even while the pools still hold open descriptors to the old one.
//!
//! The projection is written in the same transaction as its event, so the lag is 0
//! unless something wrote events around the store (another tool, a bug, a restore
//! from mismatched backups); the default threshold is therefore 0. Both counts come
//! from one statement, so a write landing between them cannot show as lag. The
//! counts scan both tables (about 20 ms per 100,000 flights and their events on
//! SQLite), so the lag is read at most every `projection_every` (10 s by default) and
//! reused in between; the body says how old it is.

use super::{Shard, ShardConn};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Events not yet applied to the projection: one statement, one snapshot.
pub const PROJECTION_LAG: &str = "SELECT CAST((SELECT COUNT(*) FROM delay_events) \
     - (SELECT COALESCE(SUM(version), 0) FROM flight_status) AS BIGINT)";

/// What `/readyz` checks against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// How long every shard has to answer both probes.
    pub deadline: Duration,
    /// Largest projection lag, in events, that is still ready.
    pub max_projection_lag: u64,
    /// How often the projection lag is read again (it scans both tables); the other
    /// probes run on every call.
    pub projection_every: Duration,
    /// The async read models whose lag is probed (their checkpoints against each
    /// shard's newest event: a few key lookups per shard, read on every call); none
    /// when no runner keeps them.
    pub async_projections: &'static [&'static str],
    /// Largest async lag, in events, that is still ready.
    pub max_async_lag: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(2),
            max_projection_lag: 0,
            projection_every: Duration::from_secs(10),
            async_projections: &[],
            max_async_lag: 1_000,
        }
    }
}

/// One async read model's lag behind one source shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsyncLag {
    pub projection: &'static str,
    pub shard: usize,
    /// Events on the shard not yet in the read model (all of them before the runner
    /// has started on every target shard).
    pub lag_events: i64,
    pub started: bool,
}

/// Every async read model keeps within the threshold of every shard.
#[derive(Debug, Clone, Serialize)]
pub struct AsyncProbe {
    pub ready: bool,
    pub threshold_events: u64,
    pub max_lag_events: Option<i64>,
    /// Why the lag could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub lags: Vec<AsyncLag>,
}

impl AsyncProbe {
    fn of(lags: Result<Vec<AsyncLag>, String>, config: ProbeConfig) -> Self {
        match lags {
            Ok(lags) => Self {
                ready: lags.iter().all(|l| l.lag_events.unsigned_abs() <= config.max_async_lag),
                threshold_events: config.max_async_lag,
                max_lag_events: lags.iter().map(|l| l.lag_events).max(),
                error: None,
                lags,
            },
            Err(error) => Self {
                ready: false,
                threshold_events: config.max_async_lag,
                max_lag_events: None,
                error: Some(error),
                lags: Vec::new(),
            },
        }
    }
}

/// The answer `/readyz` returns as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub probes: Probes,
    pub shards: Vec<ShardHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probes {
    pub shard_query: ShardQueryProbe,
    pub projection_lag: ProjectionProbe,
    pub async_projections: AsyncProbe,
}

/// Every shard answered within the deadline.
#[derive(Debug, Clone, Serialize)]
pub struct ShardQueryProbe {
    pub ready: bool,
    pub deadline_ms: u64,
    pub failed_shards: Vec<usize>,
}

/// No shard's projection lags by more than the threshold. Shards that did not answer
/// are the other probe's failure and are not counted here.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionProbe {
    pub ready: bool,
    pub threshold_events: u64,
    pub max_lag_events: Option<i64>,
    pub lagging_shards: Vec<usize>,
}

/// One shard's probe results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardHealth {
    pub shard: usize,
    pub ready: bool,
    /// How long both probes took together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_lag_events: Option<i64>,
    /// How long ago the lag was read (see `ProbeConfig::projection_every`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_checked_ms_ago: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Readiness {
    pub fn of(shards: Vec<ShardHealth>, lags: Result<Vec<AsyncLag>, String>, config: ProbeConfig) -> Self {
        let failed_shards: Vec<usize> = shards.iter().filter(|s| s.error.is_some()).map(|s| s.shard).collect();
        let lagging_shards: Vec<usize> = shards
            .iter()
            .filter(|s| s.projection_lag_events.is_some_and(|lag| lag.unsigned_abs() > config.max_projection_lag))
            .map(|s| s.shard)
            .collect();
        let shard_query = ShardQueryProbe {
            ready: failed_shards.is_empty(),
            deadline_ms: config.deadline.as_millis() as u64,
            failed_shards,
        };
        let projection_lag = ProjectionProbe {
            ready: lagging_shards.is_empty(),
            threshold_events: config.max_projection_lag,
            max_lag_events: shards.iter().filter_map(|s| s.projection_lag_events).max_by_key(|lag| lag.abs()),
            lagging_shards,
        };
        let shards = shards
            .into_iter()
            .map(|mut s| {
                s.ready = s.error.is_none() && !projection_lag.lagging_shards.contains(&s.shard);
                s
            })
            .collect();
        let async_projections = AsyncProbe::of(lags, config);
        Self {
            ready: shard_query.ready && projection_lag.ready && async_projections.ready,
            probes: Probes { shard_query, projection_lag, async_projections },
            shards,
        }
    }
}

/// The last projection lag read per shard, and when: the lag query scans both tables,
/// so it runs at most once per `ProbeConfig::projection_every` while the cheap probes
/// run on every call.
#[derive(Debug, Default)]
pub(crate) struct LagCache(Mutex<Vec<Option<(Instant, i64)>>>);

impl LagCache {
    fn fresh(&self, shard: usize, within: Duration) -> Option<(Instant, i64)> {
        let cache = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(shard).copied().flatten().filter(|(at, _)| at.elapsed() < within)
    }

    fn store(&self, shard: usize, lag: i64) {
        let mut cache = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() <= shard {
            cache.resize(shard + 1, None);
        }
        cache[shard] = Some((Instant::now(), lag));
    }
}

/// Both probes on one shard, within the deadline.
pub(crate) async fn probe(shard: &Shard, config: ProbeConfig, lags: &LagCache) -> ShardHealth {
    let start = Instant::now();
    let deadline = config.deadline;
    let cached = lags.fresh(shard.index, config.projection_every);
    let result = tokio::time::timeout(deadline, probe_unbounded(shard, deadline, cached.is_none()))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", deadline.as_millis())));
    let answered_ms = Some(start.elapsed().as_secs_f64() * 1e3);
    let health = |projection: Option<(Instant, i64)>, error: Option<String>| ShardHealth {
        shard: shard.index,
        ready: error.is_none(),
        answered_ms,
        projection_lag_events: projection.map(|(_, lag)| lag),
        projection_checked_ms_ago: projection.map(|(at, _)| at.elapsed().as_millis() as u64),
        error,
    };
    match result {
        Ok(Some(lag)) => {
            lags.store(shard.index, lag);
            health(Some((Instant::now(), lag)), None)
        }
        Ok(None) => health(cached, None),
        Err(error) => health(None, Some(error)),
    }
}

/// The serving pool answers, the data is readable, and (when `read_lag`) the lag.
async fn probe_unbounded(shard: &Shard, deadline: Duration, read_lag: bool) -> Result<Option<i64>, String> {
    match &shard.conn {
        ShardConn::Sqlite(s) => {
            // The file is named whichever probe fails: when it has moved, the pool
            // fails too if it has to open a connection for this probe.
            sqlx::query("SELECT 1")
                .execute(&s.pool)
                .await
                .map_err(|e| format!("serving pool ({}): {e}", s.file.display()))?;
            let file = s.file.clone();
            tokio::task::spawn_blocking(move || read_file(file, deadline, read_lag))
                .await
                .map_err(|e| format!("probe task: {e}"))?
        }
        ShardConn::Postgres(p) => {
            sqlx::query("SELECT 1").execute(&p.pool).await.map_err(|e| format!("serving pool: {e}"))?;
            if !read_lag {
                return Ok(None);
            }
            let lag = sqlx::query_scalar::<_, i64>(PROJECTION_LAG).fetch_one(&p.pool).await;
            lag.map(Some).map_err(|e| format!("projection lag: {e}"))
        }
    }
}

/// Reads the shard through a connection opened for this probe alone: a b-tree lookup
/// always (the file is there and readable), the lag when asked.
fn read_file(file: PathBuf, deadline: Duration, read_lag: bool) -> Result<Option<i64>, String> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let read = || -> rusqlite::Result<Option<i64>> {
        let conn = rusqlite::Connection::open_with_flags(&file, flags)?;
        conn.busy_timeout(deadline)?;
        conn.query_row("SELECT COUNT(*) FROM flight_status WHERE flight_id = 0", [], |row| row.get::<_, i64>(0))?;
        if !read_lag {
            return Ok(None);
        }
        conn.query_row(PROJECTION_LAG, [], |row| row.get(0)).map(Some)
    };
    read().map_err(|e| format!("reading {}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard: usize, lag: Option<i64>, error: Option<&str>) -> ShardHealth {
        ShardHealth {
            shard,
            ready: true,
            answered_ms: None,
            projection_lag_events: lag,
            projection_checked_ms_ago: None,
            error: error.map(Into::into),
        }
    }

    #[test]
    fn readiness_names_the_failing_probe() {
        let config = ProbeConfig { max_projection_lag: 2, ..ProbeConfig::default() };
        let all_well = Readiness::of(vec![shard(0, Some(0), None), shard(1, Some(2), None)], Ok(vec![]), config);
        assert!(all_well.ready && all_well.probes.shard_query.ready && all_well.probes.projection_lag.ready);
        assert_eq!(all_well.probes.projection_lag.max_lag_events, Some(2));

        let lagging = Readiness::of(vec![shard(0, Some(3), None), shard(1, Some(0), None)], Ok(vec![]), config);
        assert!(!lagging.ready && lagging.probes.shard_query.ready && !lagging.probes.projection_lag.ready);
        assert_eq!(lagging.probes.projection_lag.lagging_shards, [0]);
        assert_eq!(lagging.shards.iter().map(|s| s.ready).collect::<Vec<_>>(), [false, true]);

        let down = Readiness::of(vec![shard(0, Some(0), None), shard(1, None, Some("gone"))], Ok(vec![]), config);
        assert!(!down.ready && !down.probes.shard_query.ready && down.probes.projection_lag.ready);
        assert_eq!(down.probes.shard_query.failed_shards, [1]);
        assert!(!down.shards[1].ready);

        let lag = |lag_events| AsyncLag { projection: "departures_board", shard: 1, lag_events, started: true };
        let behind = Readiness::of(vec![shard(0, Some(0), None)], Ok(vec![lag(1_001)]), config);
        assert!(!behind.ready && !behind.probes.async_projections.ready && behind.probes.projection_lag.ready);
        assert_eq!(behind.probes.async_projections.max_lag_events, Some(1_001));
        let within = Readiness::of(vec![shard(0, Some(0), None)], Ok(vec![lag(1_000)]), config);
        assert!(within.ready);
        let unread = Readiness::of(vec![shard(0, Some(0), None)], Err("shard 1: gone".into()), config);
        assert!(!unread.ready && unread.probes.async_projections.error.is_some());
    }
}
