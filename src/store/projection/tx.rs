//! `ProjectionTx`: one read-model transaction on one target shard, and everything it
//! writes (checkpoints, board rows, tallies) or compares and swaps for a rebuild.

use super::{CHECKPOINTS, Generation, TallyKey};
use crate::domain::{Flight, FlightStatus, Tally};
use crate::store::StoreError;
use crate::store::decode::{self, Columns};
use crate::store::path::OnShard;
use crate::store::path::sqlx_rows::SqlxCols;
use sqlx::AssertSqlSafe;
use std::collections::HashMap;

const CHECKPOINTS_FOR_UPDATE: &str =
    "SELECT source_shard, seq FROM projection_checkpoints WHERE projection = $1 FOR UPDATE";

const START_CHECKPOINT: &str = "INSERT INTO projection_checkpoints (projection, source_shard, seq) \
     VALUES ($1, $2, 0) ON CONFLICT (projection, source_shard) DO NOTHING";

const ADVANCE_CHECKPOINT: &str = "UPDATE projection_checkpoints SET seq = $1 \
     WHERE projection = $2 AND source_shard = $3 AND seq = $4";

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

/// A board row's flight and status (`board_statuses`' columns).
fn board_status(c: &impl Columns) -> Result<(i64, FlightStatus), StoreError> {
    let row = crate::store::row::StatusRow {
        flight_id: c.int(0)?,
        version: c.int(1)?,
        state: c.text(2)?,
        delay_minutes: c.int(3)?,
        updated_at: c.opt_int(4)?,
    };
    Ok((row.flight_id, decode::status_of(c.shard(), row)?))
}

pub(super) enum Tx<'s> {
    Sqlite(sqlx::Transaction<'s, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'s, sqlx::Postgres>),
}

/// One read-model transaction on one target shard. Dropped without `commit`, it rolls
/// back.
pub struct ProjectionTx<'s> {
    tx: Tx<'s>,
    shard: usize,
}

impl<'s> ProjectionTx<'s> {
    pub(super) fn new(tx: Tx<'s>, shard: usize) -> Self {
        Self { tx, shard }
    }

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
        let ddl = crate::store::schema::read_model_ddl(base, &table, &token);
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
