//! `raw`: the driver floor. rusqlite with cached statements on SQLite, tokio-postgres
//! with cached prepared statements on PostgreSQL. It shows how much of the other
//! paths' cost is the library rather than the database.
//!
//! SQLite reads run inline on the calling thread (see `RawSqlitePool` for the
//! measurements behind that); the append runs on tokio's blocking pool because it may
//! wait up to the busy timeout for the shard's write lock, which must not stall a
//! runtime worker.

use super::{OnShard, lost_race, plan_append};
use crate::domain::{
    AirportCode, DelayEvent, DelayHistogram, Departure, FlightId, FlightStatus, FlightView, Limit, RecordedEvent,
    TimeWindow,
};
use crate::store::decode::{self, EventColumns, FlightViewColumns};
use crate::store::{Shard, ShardConn, StoreError, sql};
use rusqlite::{OptionalExtension, TransactionBehavior};
use tokio_postgres::error::SqlState;

// ---- column access, one pair of helpers per driver ----

fn text<'a>(row: &'a rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'a str> {
    row.get_ref(i)?
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

fn sqlite_flight_view(shard: usize, r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<FlightView, StoreError>> {
    Ok(decode::flight_view(
        shard,
        FlightViewColumns {
            id: r.get(0)?,
            carrier: text(r, 1)?,
            number: r.get(2)?,
            origin: text(r, 3)?,
            destination: text(r, 4)?,
            sched_dep: r.get(5)?,
            sched_arr: r.get(6)?,
            version: r.get(7)?,
            state: text(r, 8)?,
            delay_minutes: r.get(9)?,
            updated_at: r.get(10)?,
        },
    ))
}

fn sqlite_event(shard: usize, r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RecordedEvent, StoreError>> {
    Ok(decode::recorded_event(
        shard,
        EventColumns {
            flight_id: r.get(0)?,
            version: r.get(1)?,
            kind: text(r, 2)?,
            delay_minutes: r.get(3)?,
            reason: text(r, 4)?,
            occurred_at: r.get(5)?,
            schema_version: r.get(6)?,
        },
    ))
}

fn pg_flight_view(shard: usize, r: &tokio_postgres::Row) -> Result<FlightView, StoreError> {
    let e = |e: tokio_postgres::Error| StoreError::database(shard, e);
    decode::flight_view(
        shard,
        FlightViewColumns {
            id: r.try_get(0).map_err(e)?,
            carrier: r.try_get(1).map_err(e)?,
            number: r.try_get(2).map_err(e)?,
            origin: r.try_get(3).map_err(e)?,
            destination: r.try_get(4).map_err(e)?,
            sched_dep: r.try_get(5).map_err(e)?,
            sched_arr: r.try_get(6).map_err(e)?,
            version: r.try_get(7).map_err(e)?,
            state: r.try_get(8).map_err(e)?,
            delay_minutes: r.try_get(9).map_err(e)?,
            updated_at: r.try_get(10).map_err(e)?,
        },
    )
}

fn pg_event(shard: usize, r: &tokio_postgres::Row) -> Result<RecordedEvent, StoreError> {
    let e = |e: tokio_postgres::Error| StoreError::database(shard, e);
    decode::recorded_event(
        shard,
        EventColumns {
            flight_id: r.try_get(0).map_err(e)?,
            version: r.try_get(1).map_err(e)?,
            kind: r.try_get(2).map_err(e)?,
            delay_minutes: r.try_get(3).map_err(e)?,
            reason: r.try_get(4).map_err(e)?,
            occurred_at: r.try_get(5).map_err(e)?,
            schema_version: r.try_get(6).map_err(e)?,
        },
    )
}

// ---- operations ----

pub(crate) async fn flight(shard: &Shard, id: FlightId) -> Result<Option<FlightView>, StoreError> {
    match &shard.conn {
        ShardConn::Sqlite(s) => s
            .raw
            .with(|c| {
                let mut stmt = c.prepare_cached(sql::FLIGHT_BY_ID)?;
                stmt.query_row([id.get()], |r| sqlite_flight_view(shard.index, r)).optional()
            })
            .on(shard)?
            .transpose(),
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.on(shard)?;
            let stmt = client.prepare_cached(sql::FLIGHT_BY_ID).await.on(shard)?;
            let row = client.query_opt(&stmt, &[&id.get()]).await.on(shard)?;
            row.map(|r| pg_flight_view(shard.index, &r)).transpose()
        }
    }
}

pub(crate) async fn departures(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
    limit: Limit,
) -> Result<Vec<Departure>, StoreError> {
    let (from, to, limit) = (window.from.unix(), window.to.unix(), limit.get() as i64);
    match &shard.conn {
        ShardConn::Sqlite(s) => s
            .raw
            .with(|c| {
                let mut stmt = c.prepare_cached(sql::DEPARTURES)?;
                let rows = stmt.query_map(rusqlite::params![airport.as_str(), from, to, limit], |r| {
                    sqlite_flight_view(shard.index, r)
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .on(shard)?
            .into_iter()
            .collect(),
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.on(shard)?;
            let stmt = client.prepare_cached(sql::DEPARTURES).await.on(shard)?;
            let rows = client.query(&stmt, &[&airport.as_str(), &from, &to, &limit]).await.on(shard)?;
            rows.iter().map(|r| pg_flight_view(shard.index, r)).collect()
        }
    }
}

pub(crate) async fn events(shard: &Shard, id: FlightId) -> Result<Vec<RecordedEvent>, StoreError> {
    match &shard.conn {
        ShardConn::Sqlite(s) => s
            .raw
            .with(|c| {
                let mut stmt = c.prepare_cached(sql::EVENTS)?;
                let rows = stmt.query_map([id.get()], |r| sqlite_event(shard.index, r))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .on(shard)?
            .into_iter()
            .collect(),
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.on(shard)?;
            let stmt = client.prepare_cached(sql::EVENTS).await.on(shard)?;
            let rows = client.query(&stmt, &[&id.get()]).await.on(shard)?;
            rows.iter().map(|r| pg_event(shard.index, r)).collect()
        }
    }
}

pub(crate) async fn delay_histogram(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
) -> Result<DelayHistogram, StoreError> {
    let (from, to) = (window.from.unix(), window.to.unix());
    let mut histogram = DelayHistogram::default();
    match &shard.conn {
        ShardConn::Sqlite(s) => {
            let groups = s
                .raw
                .with(|c| {
                    let mut stmt = c.prepare_cached(sql::DELAY_GROUPS)?;
                    let rows = stmt.query_map(rusqlite::params![airport.as_str(), from, to], |r| {
                        Ok(decode::delay_group(shard.index, text(r, 0)?, r.get(2)?).map(|g| (g, r.get::<_, i64>(1))))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .on(shard)?;
            for group in groups {
                let ((cancelled, count), delay) = group?;
                histogram.add_group(cancelled, delay.on(shard)?, count);
            }
        }
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.on(shard)?;
            let stmt = client.prepare_cached(sql::DELAY_GROUPS).await.on(shard)?;
            let rows = client.query(&stmt, &[&airport.as_str(), &from, &to]).await.on(shard)?;
            for r in &rows {
                let (cancelled, count) =
                    decode::delay_group(shard.index, r.try_get(0).on(shard)?, r.try_get(2).on(shard)?)?;
                histogram.add_group(cancelled, r.try_get(1).on(shard)?, count);
            }
        }
    }
    Ok(histogram)
}

pub(crate) async fn append(
    shard: &Shard,
    id: FlightId,
    expected: i64,
    event: &DelayEvent,
) -> Result<FlightStatus, StoreError> {
    match &shard.conn {
        ShardConn::Sqlite(s) => {
            let (raw, event, index) = (s.raw.clone(), event.clone(), shard.index);
            tokio::task::spawn_blocking(move || sqlite_append(&raw, index, id, expected, &event)).await.on(shard)?
        }
        ShardConn::Postgres(p) => {
            let mut client = p.raw.get().await.on(shard)?;
            let tx = client.transaction().await.on(shard)?;
            let read = tx.prepare_cached(sql::STATUS_FOR_APPEND).await.on(shard)?;
            let row = tx.query_opt(&read, &[&id.get()]).await.on(shard)?.ok_or(StoreError::FlightNotFound(id))?;
            let current = decode::status(
                shard.index,
                row.try_get(0).on(shard)?,
                row.try_get(1).on(shard)?,
                row.try_get(2).on(shard)?,
                row.try_get(3).on(shard)?,
            )?;
            let flight_dep: i64 = row.try_get(4).on(shard)?;
            let next = plan_append(id, expected, &current, event)?;
            let update = tx.prepare_cached(sql::UPDATE_STATUS).await.on(shard)?;
            let updated_at = next.updated_at.map(|t| t.unix());
            let changed = tx
                .execute(
                    &update,
                    &[&next.version, &next.state.as_str(), &next.delay_minutes, &updated_at, &id.get(), &expected],
                )
                .await
                .on(shard)?;
            if changed != 1 {
                return Err(lost_race(id, expected));
            }
            let insert = tx.prepare_cached(sql::INSERT_EVENT).await.on(shard)?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &id.get(),
                &next.version,
                &flight_dep,
                &event.kind.name(),
                &event.kind.delay_minutes(),
                &event.kind.reason(),
                &event.occurred_at.unix(),
                &i64::from(event.schema_version),
            ];
            tx.execute(&insert, &params).await.map_err(|e| {
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    lost_race(id, expected)
                } else {
                    StoreError::database(shard.index, e)
                }
            })?;
            tx.commit().await.on(shard)?;
            Ok(next)
        }
    }
}

fn sqlite_append(
    raw: &crate::store::sqlite::RawSqlitePool,
    shard: usize,
    id: FlightId,
    expected: i64,
    event: &DelayEvent,
) -> Result<FlightStatus, StoreError> {
    let db = |e: rusqlite::Error| StoreError::database(shard, e);
    raw.with(|c| {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let read = tx
            .prepare_cached(sql::STATUS_FOR_APPEND)?
            .query_row([id.get()], |r| {
                Ok(decode::status(shard, r.get(0)?, text(r, 1)?, r.get(2)?, r.get(3)?).map(|s| (s, r.get::<_, i64>(4))))
            })
            .optional()?;
        let outcome = (|| {
            let (current, flight_dep) = read.ok_or(StoreError::FlightNotFound(id))??;
            let flight_dep = flight_dep.map_err(db)?;
            let next = plan_append(id, expected, &current, event)?;
            let changed = tx
                .prepare_cached(sql::UPDATE_STATUS)
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        next.version,
                        next.state.as_str(),
                        next.delay_minutes,
                        next.updated_at.map(|t| t.unix()),
                        id.get(),
                        expected
                    ])
                })
                .map_err(db)?;
            if changed != 1 {
                return Err(lost_race(id, expected));
            }
            tx.prepare_cached(sql::INSERT_EVENT)
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        id.get(),
                        next.version,
                        flight_dep,
                        event.kind.name(),
                        event.kind.delay_minutes(),
                        event.kind.reason(),
                        event.occurred_at.unix(),
                        i64::from(event.schema_version)
                    ])
                })
                .map_err(|e| match e.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::ConstraintViolation) => lost_race(id, expected),
                    _ => db(e),
                })?;
            Ok(next)
        })();
        match outcome {
            Ok(next) => tx.commit().map(|()| Ok(next)),
            // Dropping `tx` rolls back.
            Err(e) => Ok(Err(e)),
        }
    })
    .map_err(db)?
}
