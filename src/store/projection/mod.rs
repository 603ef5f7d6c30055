//! What the async projections need from the store: events in commit order, the read
//! models' tables, and checkpoints written in the same transaction as the change.
//!
//! # Never skipping an event
//! Every event gets a per-shard number, `seq`, from a trigger at insert time
//! (`schema::SQLITE_SEQUENCING`, `schema::POSTGRES_SEQUENCING`), and the runner reads
//! `seq > checkpoint` in order. The numbers have no gaps and appear in order, so
//! "everything up to n" is exact:
//! - SQLite has one writer at a time per file (`BEGIN IMMEDIATE`), so numbers are
//!   taken and committed in order, and a rolled-back insert returns its number.
//! - PostgreSQL writers take the number by updating the one counter row, and hold
//!   its lock until they commit or roll back. A writer that commits late holds every
//!   later writer back at that row (it cannot be passed over, because nothing after it
//!   exists yet); one that rolls back undoes its increment, and the next takes the
//!   same number. A reader that sees number n therefore sees every number below it.
//!
//! This is the design Marten's users ask for after its high-water mark skipped events
//! whose sequence number was taken early and committed late (JasperFx/marten #3321,
//! #2370): the price is that one shard's appends serialise from their insert to their
//! commit (one statement and the commit), which `flightbench run --only projections`
//! measures. Writers on different shards never wait for each other.
//!
//! # Exactly-once effect
//! A read-model row lives on the shard its key hashes to (an airport's board, a
//! carrier's figures), which is usually not the shard the event is on, so one change
//! cannot share a transaction with the event. Instead each target shard keeps its own
//! checkpoint per (projection, source shard) in `projection_checkpoints`, and a batch
//! changes a target's rows and moves that target's checkpoint in one transaction,
//! guarded by the checkpoint it started from: a crash between targets leaves some
//! ahead, and the runner re-reads from the lowest and skips, per target, what that
//! target already has. Two runners on the same data cannot both apply a batch: the
//! second one's guarded update finds the checkpoint moved and rolls back.
//!
//! Table names in run-time SQL (`AssertSqlSafe`) come only from this crate's own
//! constants and `Generation`, never from input.

mod tx;

pub use tx::ProjectionTx;
use tx::Tx;

use super::decode::{self, Columns, Offset};
use super::path::sqlx_rows::SqlxCols;
use super::path::{OnShard, sqlite_rows};
use super::row::event_columns;
use super::{Shard, ShardConn, Store, StoreError};
use crate::domain::{AirportCode, Carrier, Departure, Flight, Limit, RecordedEvent, Tally, TimeWindow, UtcTime};
use futures_util::future::try_join_all;

/// An event with its place in its shard's commit order and the flight it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequencedEvent {
    pub seq: i64,
    pub recorded: RecordedEvent,
    pub flight: Flight,
}

/// Which copy of a read model's table: the one serving, or the one a rebuild is
/// building beside it (`<table>_next`, swapped in by [`ProjectionTx::swap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    Live,
    Next,
}

impl Generation {
    /// The table's name in this generation.
    pub fn table(self, base: &str) -> String {
        match self {
            Generation::Live => base.to_owned(),
            Generation::Next => format!("{base}_next"),
        }
    }
}

/// The tables the tallying read models keep, each keyed differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TallyKey<'a> {
    /// `airport_hour_stats`: an airport and the hour (Unix seconds) its flights were
    /// scheduled to leave in.
    AirportHour(&'a str, i64),
    /// `carrier_on_time`.
    Carrier(&'a str),
}

const HEAD: &str = "SELECT last FROM event_sequence WHERE id = 0";

const EVENTS_AFTER: &str = concat!(
    "SELECT ",
    event_columns!(),
    ", seq, id, carrier, number, origin, destination, sched_dep, sched_arr \
     FROM delay_events JOIN flights ON id = flight_id AND sched_dep = flight_dep \
     WHERE seq > $1 ORDER BY seq LIMIT $2"
);

/// `EVENTS_AFTER` for PostgreSQL: the batch first (the `seq` index, in order), then
/// each event's flight by its key. As a plain join the planner hashed every flight of
/// the partition for each batch: 0.34–0.58 s per 5,000 events on the 1,000,000-flight
/// dataset, against 53 ms this way (`EXPLAIN ANALYZE`, results/projections.md).
const EVENTS_AFTER_PG: &str = concat!(
    "SELECT ",
    event_columns!(),
    ", seq, id, carrier, number, origin, destination, sched_dep, sched_arr \
     FROM (SELECT * FROM delay_events WHERE seq > $1 ORDER BY seq LIMIT $2) e \
     CROSS JOIN LATERAL (SELECT id, carrier, number, origin, destination, sched_dep, sched_arr FROM flights \
        WHERE id = e.flight_id AND sched_dep = e.flight_dep) f \
     ORDER BY seq"
);
/// Where `EVENTS_AFTER`'s `seq` and flight columns start: after the event's own.
const SEQ_COLUMN: usize = crate::store::row::EVENT_PG_TYPES.len();

const FLIGHTS: &str = "SELECT id, carrier, number, origin, destination, sched_dep, sched_arr FROM flights \
     WHERE id > $1 ORDER BY id LIMIT $2";

const CHECKPOINTS: &str = "SELECT source_shard, seq FROM projection_checkpoints WHERE projection = $1";

const BOARD: &str = "SELECT flight_id, carrier, number, origin, destination, sched_dep, sched_arr, \
     version, state, delay_minutes, updated_at FROM board_departures \
     WHERE origin = $1 AND sched_dep >= $2 AND sched_dep < $3 ORDER BY sched_dep, flight_id LIMIT $4";

const AIRPORT_HOURS: &str = "SELECT hour, departed, on_time, cancelled, delay_minutes, reports \
     FROM airport_hour_stats WHERE airport = $1 AND hour >= $2 AND hour < $3 ORDER BY hour";

const CARRIER: &str =
    "SELECT departed, on_time, cancelled, delay_minutes, reports FROM carrier_on_time WHERE carrier = $1";

impl Store {
    fn shard(&self, index: usize) -> Result<&Shard, StoreError> {
        self.shards.get(index).ok_or_else(|| StoreError::Config(format!("no shard {index}")))
    }

    /// The number of the newest event on a shard (0 when it has none).
    pub async fn event_head(&self, shard: usize) -> Result<i64, StoreError> {
        let shard = self.shard(shard)?;
        with_pool!(shard, |pool| {
            let row: (i64,) = sqlx::query_as(HEAD).fetch_one(pool).await.on(shard)?;
            Ok(row.0)
        })
    }

    /// Up to `limit` events of a shard numbered after `after`, in commit order, each
    /// decoded (and upcast) as every reader sees it. SQLite reads through rusqlite on
    /// the blocking pool: through sqlx every row crossed a thread (its worker's
    /// channel), and a profile of a rebuild showed those wake-ups and value copies as
    /// the largest cost.
    pub async fn events_after(&self, shard: usize, after: i64, limit: i64) -> Result<Vec<SequencedEvent>, StoreError> {
        let shard = self.shard(shard)?;
        let index = shard.index;
        match &shard.conn {
            ShardConn::Sqlite(s) => {
                let raw = s.raw.clone();
                tokio::task::spawn_blocking(move || {
                    raw.with(|c| {
                        let mut stmt = c.prepare_cached(EVENTS_AFTER)?;
                        let rows = stmt.query_map([after, limit], sqlite_rows(index, |c| sequenced_event(c)))?;
                        rows.collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .on(index)?
                    .into_iter()
                    .collect()
                })
                .await
                .on(shard)?
            }
            ShardConn::Postgres(p) => {
                let rows = sqlx::query(EVENTS_AFTER_PG).bind(after).bind(limit).fetch_all(&p.pool).await.on(shard)?;
                rows.iter().map(|r| sequenced_event(&SqlxCols::new(r, index))).collect()
            }
        }
    }

    /// Up to `limit` of a shard's flights with ids above `after`, in id order.
    pub async fn flights_after(&self, shard: usize, after: i64, limit: i64) -> Result<Vec<Flight>, StoreError> {
        let shard = self.shard(shard)?;
        with_pool!(shard, |pool| {
            let rows = sqlx::query(FLIGHTS).bind(after).bind(limit).fetch_all(pool).await.on(shard)?;
            rows.iter().map(|r| decode::flight(&SqlxCols::new(r, shard.index))).collect()
        })
    }

    /// A projection's checkpoints kept on `target`, as (source shard, last seq applied).
    pub async fn checkpoints(&self, target: usize, projection: &str) -> Result<Vec<(usize, i64)>, StoreError> {
        let shard = self.shard(target)?;
        with_pool!(shard, |pool| {
            let rows: Vec<(i64, i64)> = sqlx::query_as(CHECKPOINTS).bind(projection).fetch_all(pool).await.on(shard)?;
            rows.into_iter()
                .map(|(source, seq)| {
                    usize::try_from(source)
                        .ok()
                        .filter(|s| *s < self.shards.len())
                        .map(|s| (s, seq))
                        .ok_or_else(|| StoreError::corrupt(target, format!("checkpoint names shard {source}")))
                })
                .collect()
        })
    }

    /// Per source shard: its newest event and how far `projection` has applied it:
    /// the lowest checkpoint over the target shards (`None` where some target has not
    /// started), or, where a runner in this process has noted a later position
    /// (`note_position`), that. The lag in events is their difference.
    ///
    /// Why both: a runner moves a target's checkpoint only when a batch has events for
    /// it (and the rest when it goes idle), so under a steady load the lowest
    /// checkpoint trails by whatever the least-touched shard last saw. The runner's own
    /// position is exact but lives in its process.
    pub async fn projection_positions(&self, projection: &str) -> Result<Vec<(i64, Option<i64>)>, StoreError> {
        let n = self.shards.len();
        let heads = try_join_all((0..n).map(|s| self.event_head(s)));
        let checkpoints = try_join_all((0..n).map(|t| self.checkpoints(t, projection)));
        let (heads, checkpoints) = futures_util::try_join!(heads, checkpoints)?;
        let mut lowest: Vec<Option<i64>> = vec![None; n];
        let mut seen = vec![0usize; n];
        for (source, seq) in checkpoints.into_iter().flatten() {
            seen[source] += 1;
            lowest[source] = Some(lowest[source].map_or(seq, |low: i64| low.min(seq)));
        }
        let noted = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        Ok(heads
            .into_iter()
            .enumerate()
            .map(|(source, head)| {
                let durable = if seen[source] == n { lowest[source] } else { None };
                let here = noted.get(&(projection.to_owned(), source)).copied();
                (head, durable.map(|d| here.map_or(d, |h| h.max(d))))
            })
            .collect())
    }

    /// Records that a runner in this process has applied `projection` from `source`
    /// up to `seq` on every target shard (see `projection_positions`).
    pub fn note_position(&self, projection: &str, source: usize, seq: i64) {
        let mut noted = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        noted.insert((projection.to_owned(), source), seq);
    }

    /// Opens a read-model transaction on `target` (SQLite: with the write lock taken).
    pub async fn begin_projection(&self, target: usize) -> Result<ProjectionTx<'_>, StoreError> {
        let shard = self.shard(target)?;
        let tx = match &shard.conn {
            ShardConn::Sqlite(s) => Tx::Sqlite(s.pool.begin_with("BEGIN IMMEDIATE").await.on(shard)?),
            ShardConn::Postgres(p) => Tx::Postgres(p.pool.begin().await.on(shard)?),
        };
        Ok(ProjectionTx::new(tx, target))
    }

    /// Departures from `airport` in `window` from the departures-board read model: one
    /// query on the shard the airport hashes to, where `departures` asks every shard.
    /// The rows are the same once the projection has caught up.
    pub async fn board(
        &self,
        airport: AirportCode,
        window: TimeWindow,
        limit: Limit,
    ) -> Result<Vec<Departure>, StoreError> {
        let shard = self.shard(self.shard_count.shard_for_name(airport.as_str()))?;
        with_pool!(shard, |pool| {
            let rows = sqlx::query(BOARD)
                .bind(airport.as_str())
                .bind(window.from.unix())
                .bind(window.to.unix())
                .bind(limit.get() as i64)
                .fetch_all(pool)
                .await
                .on(shard)?;
            rows.iter().map(|r| decode::flight_view(&SqlxCols::new(r, shard.index))).collect()
        })
    }

    /// An airport's tallies per hour of scheduled departure in `window`, from its shard.
    pub async fn airport_hours(
        &self,
        airport: AirportCode,
        window: TimeWindow,
    ) -> Result<Vec<(UtcTime, Tally)>, StoreError> {
        let shard = self.shard(self.shard_count.shard_for_name(airport.as_str()))?;
        with_pool!(shard, |pool| {
            let rows: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(AIRPORT_HOURS)
                .bind(airport.as_str())
                .bind(window.from.unix())
                .bind(window.to.unix())
                .fetch_all(pool)
                .await
                .on(shard)?;
            rows.into_iter()
                .map(|(hour, departed, on_time, cancelled, delay_minutes, reports)| {
                    Ok((
                        decode::time(shard.index, hour)?,
                        Tally { departed, on_time, cancelled, delay_minutes, reports },
                    ))
                })
                .collect()
        })
    }

    /// A carrier's tally, from its shard (all zero before anything was counted).
    pub async fn carrier_on_time(&self, carrier: Carrier) -> Result<Tally, StoreError> {
        let shard = self.shard(self.shard_count.shard_for_name(carrier.as_str()))?;
        with_pool!(shard, |pool| {
            let row: Option<(i64, i64, i64, i64, i64)> =
                sqlx::query_as(CARRIER).bind(carrier.as_str()).fetch_optional(pool).await.on(shard)?;
            Ok(row.map_or_else(Tally::default, |(departed, on_time, cancelled, delay_minutes, reports)| Tally {
                departed,
                on_time,
                cancelled,
                delay_minutes,
                reports,
            }))
        })
    }
}

/// A row of `EVENTS_AFTER`.
fn sequenced_event(c: &impl Columns) -> Result<SequencedEvent, StoreError> {
    Ok(SequencedEvent {
        recorded: decode::recorded_event(c)?,
        seq: c.int(SEQ_COLUMN)?,
        flight: decode::flight(&Offset(c, SEQ_COLUMN + 1))?,
    })
}
