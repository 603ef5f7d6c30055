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

use super::decode::{self, Columns, Offset};
use super::path::sqlx_rows::SqlxCols;
use super::path::{OnShard, sqlite_rows};
use super::row::event_columns;
use super::{Shard, ShardConn, Store, StoreError};
use crate::domain::{
    AirportCode, Carrier, Departure, Flight, FlightStatus, Limit, RecordedEvent, Tally, TimeWindow, UtcTime,
};
use futures_util::future::try_join_all;
use sqlx::AssertSqlSafe;
use std::collections::HashMap;

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

/// How `ProjectionTx::digest` reads a table: its rows in key order, each column's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    OptInt,
    Text,
}

/// Every read-model table's columns in key order, for digests.
fn digest_layout(base: &str) -> Option<(&'static str, &'static str, &'static [Kind])> {
    use Kind::*;
    Some(match base {
        "board_departures" => (
            "flight_id, carrier, number, origin, destination, sched_dep, sched_arr, version, state, delay_minutes, updated_at",
            "flight_id",
            &[Int, Text, Int, Text, Text, Int, Int, Int, Text, Int, OptInt],
        ),
        "airport_hour_stats" => (
            "airport, hour, departed, on_time, cancelled, delay_minutes, reports",
            "airport, hour",
            &[Text, Int, Int, Int, Int, Int, Int],
        ),
        "carrier_on_time" => (
            "carrier, departed, on_time, cancelled, delay_minutes, reports",
            "carrier",
            &[Text, Int, Int, Int, Int, Int],
        ),
        _ => return None,
    })
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
/// Where `EVENTS_AFTER`'s `seq` and flight columns start.
const SEQ_COLUMN: usize = 10;

const FLIGHTS: &str = "SELECT id, carrier, number, origin, destination, sched_dep, sched_arr FROM flights \
     WHERE id > $1 ORDER BY id LIMIT $2";

const CHECKPOINTS: &str = "SELECT source_shard, seq FROM projection_checkpoints WHERE projection = $1";

const CHECKPOINTS_FOR_UPDATE: &str =
    "SELECT source_shard, seq FROM projection_checkpoints WHERE projection = $1 FOR UPDATE";

const START_CHECKPOINT: &str = "INSERT INTO projection_checkpoints (projection, source_shard, seq) \
     VALUES ($1, $2, 0) ON CONFLICT (projection, source_shard) DO NOTHING";

const ADVANCE_CHECKPOINT: &str = "UPDATE projection_checkpoints SET seq = $1 \
     WHERE projection = $2 AND source_shard = $3 AND seq = $4";

const BOARD: &str = "SELECT flight_id, carrier, number, origin, destination, sched_dep, sched_arr, \
     version, state, delay_minutes, updated_at FROM board_departures \
     WHERE origin = $1 AND sched_dep >= $2 AND sched_dep < $3 ORDER BY sched_dep, flight_id LIMIT $4";

const AIRPORT_HOURS: &str = "SELECT hour, departed, on_time, cancelled, delay_minutes, reports \
     FROM airport_hour_stats WHERE airport = $1 AND hour >= $2 AND hour < $3 ORDER BY hour";

const CARRIER: &str =
    "SELECT departed, on_time, cancelled, delay_minutes, reports FROM carrier_on_time WHERE carrier = $1";

/// Rows per multi-row statement: 500 rows of at most 11 values stay far below either
/// database's bound-parameter limit (32,766 and 65,535).
const ROWS_PER_STATEMENT: usize = 500;

/// Expands `$body` once per backend with `$tx` bound to the open transaction and
/// `$db` to its sqlx database type.
macro_rules! on_tx {
    ($self:expr, |$tx:ident, $db:ident| $body:expr) => {
        match &mut $self.tx {
            Tx::Sqlite($tx) => {
                type $db = sqlx::Sqlite;
                $body
            }
            Tx::Postgres($tx) => {
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}

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
        Ok(ProjectionTx { tx, shard: target })
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

/// A board row's flight and status (`board_statuses`' columns).
fn board_status(c: &impl Columns) -> Result<(i64, FlightStatus), StoreError> {
    let row = super::row::StatusRow {
        flight_id: c.int(0)?,
        version: c.int(1)?,
        state: c.text(2)?,
        delay_minutes: c.int(3)?,
        updated_at: c.opt_int(4)?,
    };
    Ok((row.flight_id, decode::status_of(c.shard(), row)?))
}

enum Tx<'s> {
    Sqlite(sqlx::Transaction<'s, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'s, sqlx::Postgres>),
}

/// One read-model transaction on one target shard. Dropped without `commit`, it rolls
/// back.
pub struct ProjectionTx<'s> {
    tx: Tx<'s>,
    shard: usize,
}

impl ProjectionTx<'_> {
    /// The checkpoints `projection` keeps on this shard, as (source shard, seq),
    /// locked until this transaction ends: a runner's batch on this shard, which moves
    /// its checkpoint first, waits (SQLite: the transaction holds the write lock
    /// already; PostgreSQL: `FOR UPDATE`).
    pub async fn lock_checkpoints(&mut self, projection: &str) -> Result<Vec<(usize, i64)>, StoreError> {
        let shard = self.shard;
        let rows: Vec<(i64, i64)> = match &mut self.tx {
            Tx::Sqlite(tx) => sqlx::query_as(CHECKPOINTS).bind(projection).fetch_all(&mut **tx).await.on(shard)?,
            Tx::Postgres(tx) => {
                sqlx::query_as(CHECKPOINTS_FOR_UPDATE).bind(projection).fetch_all(&mut **tx).await.on(shard)?
            }
        };
        Ok(rows.into_iter().map(|(source, seq)| (source as usize, seq)).collect())
    }

    /// Creates the checkpoint of `projection` for `source` at 0; false when it exists.
    pub async fn start_checkpoint(&mut self, projection: &str, source: usize) -> Result<bool, StoreError> {
        let shard = self.shard;
        on_tx!(self, |tx, _Db| {
            let done = sqlx::query(START_CHECKPOINT)
                .bind(projection)
                .bind(source as i64)
                .execute(&mut **tx)
                .await
                .on(shard)?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Moves the checkpoint from `from` to `to`; false when it was not at `from`
    /// (another runner moved it), and then nothing of this transaction may commit.
    pub async fn advance_checkpoint(
        &mut self,
        projection: &str,
        source: usize,
        from: i64,
        to: i64,
    ) -> Result<bool, StoreError> {
        let shard = self.shard;
        on_tx!(self, |tx, _Db| {
            let done = sqlx::query(ADVANCE_CHECKPOINT)
                .bind(to)
                .bind(projection)
                .bind(source as i64)
                .bind(from)
                .execute(&mut **tx)
                .await
                .on(shard)?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Board rows to add, one per flight, at its initial status; a row already there
    /// is left alone.
    pub async fn insert_board_flights(&mut self, generation: Generation, flights: &[Flight]) -> Result<(), StoreError> {
        let shard = self.shard;
        let table = generation.table("board_departures");
        for chunk in flights.chunks(ROWS_PER_STATEMENT) {
            on_tx!(self, |tx, Db| {
                let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                    "INSERT INTO {table} (flight_id, carrier, number, origin, destination, sched_dep, \
                     sched_arr, version, state, delay_minutes, updated_at) "
                ));
                q.push_values(chunk, |mut b, f| {
                    let initial = FlightStatus::initial();
                    b.push_bind(f.id.get())
                        .push_bind(f.carrier.as_str().to_owned())
                        .push_bind(f.number.get())
                        .push_bind(f.origin.as_str().to_owned())
                        .push_bind(f.destination.as_str().to_owned())
                        .push_bind(f.scheduled_departure.unix())
                        .push_bind(f.scheduled_arrival.unix())
                        .push_bind(initial.version)
                        .push_bind(initial.state.as_str())
                        .push_bind(initial.delay_minutes)
                        .push_bind(None::<i64>);
                });
                q.push(" ON CONFLICT (flight_id) DO NOTHING");
                q.build().persistent(false).execute(&mut **tx).await.on(shard)?;
            });
        }
        Ok(())
    }

    /// The board's current status of each flight in `ids` that has a row: one query
    /// per batch (PostgreSQL binds the ids as an array, SQLite as a JSON array it
    /// expands), not one round trip per flight.
    pub async fn board_statuses(
        &mut self,
        generation: Generation,
        ids: &[i64],
    ) -> Result<HashMap<i64, FlightStatus>, StoreError> {
        let shard = self.shard;
        let table = generation.table("board_departures");
        let columns = "flight_id, version, state, delay_minutes, updated_at";
        match &mut self.tx {
            Tx::Sqlite(tx) => {
                let sql = format!("SELECT {columns} FROM {table} WHERE flight_id IN (SELECT value FROM json_each($1))");
                // Cannot fail: a slice of integers.
                let ids = serde_json::to_string(ids).expect("serialisable");
                let rows = sqlx::query(AssertSqlSafe(sql)).bind(ids).fetch_all(&mut **tx).await.on(shard)?;
                rows.iter().map(|r| board_status(&SqlxCols::new(r, shard))).collect()
            }
            Tx::Postgres(tx) => {
                let sql = format!("SELECT {columns} FROM {table} WHERE flight_id = ANY($1)");
                let rows = sqlx::query(AssertSqlSafe(sql)).bind(ids).fetch_all(&mut **tx).await.on(shard)?;
                rows.iter().map(|r| board_status(&SqlxCols::new(r, shard))).collect()
            }
        }
    }

    /// Writes each flight's new board status where the row is still at the version the
    /// change was computed from; returns how many rows changed (fewer than asked means
    /// a row changed underneath, and the caller must not commit).
    pub async fn update_board(
        &mut self,
        generation: Generation,
        changes: &[(i64, i64, FlightStatus)],
    ) -> Result<u64, StoreError> {
        let shard = self.shard;
        let table = generation.table("board_departures");
        let mut changed = 0;
        for chunk in changes.chunks(ROWS_PER_STATEMENT) {
            on_tx!(self, |tx, Db| {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "WITH v (flight_id, expected, version, state, delay_minutes, updated_at) AS (",
                );
                q.push_values(chunk, |mut b, (id, expected, status)| {
                    b.push_bind(*id)
                        .push_bind(*expected)
                        .push_bind(status.version)
                        .push_bind(status.state.as_str())
                        .push_bind(status.delay_minutes)
                        .push_bind(status.updated_at.map(|t| t.unix()));
                });
                q.push(format!(
                    ") UPDATE {table} SET version = v.version, state = v.state, \
                     delay_minutes = v.delay_minutes, updated_at = v.updated_at FROM v \
                     WHERE {table}.flight_id = v.flight_id AND {table}.version = v.expected"
                ));
                changed += q.build().persistent(false).execute(&mut **tx).await.on(shard)?.rows_affected();
            });
        }
        Ok(changed)
    }

    /// Adds tallies to their rows, creating rows that do not exist. Each key must
    /// appear once (a statement cannot update one row twice).
    pub async fn add_tallies(
        &mut self,
        generation: Generation,
        tallies: &[(TallyKey<'_>, Tally)],
    ) -> Result<(), StoreError> {
        let shard = self.shard;
        let (hours, carriers): (Vec<_>, Vec<_>) =
            tallies.iter().partition(|(key, _)| matches!(key, TallyKey::AirportHour(..)));
        const SUMS: &str = "departed = {t}.departed + excluded.departed, on_time = {t}.on_time + excluded.on_time, \
             cancelled = {t}.cancelled + excluded.cancelled, delay_minutes = {t}.delay_minutes + excluded.delay_minutes, \
             reports = {t}.reports + excluded.reports";
        for (rows, base, key_columns) in
            [(hours, "airport_hour_stats", "airport, hour"), (carriers, "carrier_on_time", "carrier")]
        {
            let table = generation.table(base);
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                on_tx!(self, |tx, Db| {
                    let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                        "INSERT INTO {table} ({key_columns}, departed, on_time, cancelled, delay_minutes, reports) "
                    ));
                    q.push_values(chunk, |mut b, (key, t)| {
                        match *key {
                            TallyKey::AirportHour(airport, hour) => {
                                b.push_bind(airport.to_owned()).push_bind(hour);
                            }
                            TallyKey::Carrier(carrier) => {
                                b.push_bind(carrier.to_owned());
                            }
                        }
                        b.push_bind(t.departed)
                            .push_bind(t.on_time)
                            .push_bind(t.cancelled)
                            .push_bind(t.delay_minutes)
                            .push_bind(t.reports);
                    });
                    q.push(format!(" ON CONFLICT ({key_columns}) DO UPDATE SET {}", SUMS.replace("{t}", &table)));
                    q.build().persistent(false).execute(&mut **tx).await.on(shard)?;
                });
            }
        }
        Ok(())
    }

    /// Drops a previous rebuild's `<base>_next` (finished or killed) and its
    /// checkpoints `next_checkpoints`, and creates the table empty.
    pub async fn recreate_next(&mut self, base: &str, next_checkpoints: &str) -> Result<(), StoreError> {
        let shard = self.shard;
        let table = Generation::Next.table(base);
        // Index names outlive their table's rename, so each rebuild's are its own.
        let token = format!(
            "_{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
        );
        let ddl = super::schema::read_model_ddl(base, &table, &token);
        if ddl.is_empty() {
            return Err(StoreError::Config(format!("no read-model table {base}")));
        }
        on_tx!(self, |tx, _Db| {
            sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}"))).execute(&mut **tx).await.on(shard)?;
            for statement in &ddl {
                sqlx::query(AssertSqlSafe(statement.as_str())).execute(&mut **tx).await.on(shard)?;
            }
            sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
                .bind(next_checkpoints)
                .execute(&mut **tx)
                .await
                .on(shard)?;
        });
        Ok(())
    }

    /// BLAKE3 over a read-model table's rows in key order: equal digests, equal tables.
    pub async fn digest(&mut self, generation: Generation, base: &str) -> Result<(String, u64), StoreError> {
        let shard = self.shard;
        let (columns, key, kinds) =
            digest_layout(base).ok_or_else(|| StoreError::Config(format!("no read-model table {base}")))?;
        let sql = format!("SELECT {columns} FROM {} ORDER BY {key}", generation.table(base));
        let mut hasher = blake3::Hasher::new();
        let mut rows_read = 0;
        on_tx!(self, |tx, _Db| {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str())).fetch_all(&mut **tx).await.on(shard)?;
            for r in &rows {
                let c = SqlxCols::new(r, shard);
                for (i, kind) in kinds.iter().enumerate() {
                    match kind {
                        Kind::Int => hasher.update(&c.int(i)?.to_le_bytes()),
                        Kind::OptInt => hasher.update(&c.opt_int(i)?.map_or([0xff; 9], |v| {
                            let mut b = [0; 9];
                            b[1..].copy_from_slice(&v.to_le_bytes());
                            b
                        })),
                        Kind::Text => {
                            let text = c.text(i)?;
                            hasher.update(&(text.len() as u64).to_le_bytes()).update(text.as_bytes())
                        }
                    };
                }
                rows_read += 1;
            }
        });
        Ok((hasher.finalize().to_hex().to_string(), rows_read))
    }

    /// Puts the rebuilt `<base>_next` in place of `base`, and its checkpoints
    /// (`next_checkpoints`) in place of the live ones (`live_checkpoints`).
    pub async fn swap(&mut self, base: &str, live_checkpoints: &str, next_checkpoints: &str) -> Result<(), StoreError> {
        let shard = self.shard;
        if digest_layout(base).is_none() {
            return Err(StoreError::Config(format!("no read-model table {base}")));
        }
        let next = Generation::Next.table(base);
        on_tx!(self, |tx, _Db| {
            sqlx::query(AssertSqlSafe(format!("DROP TABLE {base}"))).execute(&mut **tx).await.on(shard)?;
            sqlx::query(AssertSqlSafe(format!("ALTER TABLE {next} RENAME TO {base}")))
                .execute(&mut **tx)
                .await
                .on(shard)?;
            sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
                .bind(live_checkpoints)
                .execute(&mut **tx)
                .await
                .on(shard)?;
            sqlx::query("UPDATE projection_checkpoints SET projection = $1 WHERE projection = $2")
                .bind(live_checkpoints)
                .bind(next_checkpoints)
                .execute(&mut **tx)
                .await
                .on(shard)?;
        });
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        let shard = self.shard;
        match self.tx {
            Tx::Sqlite(tx) => tx.commit().await.on(shard),
            Tx::Postgres(tx) => tx.commit().await.on(shard),
        }
    }
}
