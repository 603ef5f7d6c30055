//! `adhoc`: SQL text built per call with the values rendered as literals, sent
//! unprepared: the "no compiled query" baseline.
//!
//! Every call formats a fresh string (`literal` does the escaping) and sends it with
//! `sqlx::raw_sql`: PostgreSQL's simple query protocol (parse, plan and execute every
//! time, no statement kept), and on SQLite a fresh `sqlite3_prepare` per call with no
//! statement cache. sqlx 0.9 only runs run-time SQL wrapped in `AssertSqlSafe`, which
//! marks each such string for review: all of them are built in this file from typed,
//! validated values.

use super::literal::{push_int, push_opt_int, push_text};
use super::sqlx_rows::{self, is_unique_violation};
use super::{OnShard, lost_race, plan_append};
use crate::domain::{
    AirportCode, DelayEvent, DelayHistogram, Departure, FlightId, FlightStatus, FlightView, Limit, RecordedEvent,
    TimeWindow,
};
use crate::store::sql::{event_columns, flight_view_columns, flight_view_from};
use crate::store::{Shard, ShardConn, StoreError};
use sqlx::{AssertSqlSafe, raw_sql};

fn flight_sql(id: FlightId) -> String {
    let mut sql = String::from(concat!("SELECT ", flight_view_columns!(), flight_view_from!(), "WHERE f.id = "));
    push_int(&mut sql, id.get());
    sql
}

fn departures_sql(airport: AirportCode, window: TimeWindow, limit: Limit) -> Result<String, StoreError> {
    let mut sql = String::from(concat!("SELECT ", flight_view_columns!(), flight_view_from!(), "WHERE f.origin = "));
    push_text(&mut sql, airport.as_str())?;
    sql.push_str(" AND f.sched_dep >= ");
    push_int(&mut sql, window.from.unix());
    sql.push_str(" AND f.sched_dep < ");
    push_int(&mut sql, window.to.unix());
    sql.push_str(" ORDER BY f.sched_dep, f.id LIMIT ");
    push_int(&mut sql, limit.get() as i64);
    Ok(sql)
}

fn events_sql(id: FlightId) -> String {
    let mut sql = String::from(concat!("SELECT ", event_columns!(), " FROM delay_events WHERE flight_id = "));
    push_int(&mut sql, id.get());
    sql.push_str(" ORDER BY version");
    sql
}

fn delay_groups_sql(airport: AirportCode, window: TimeWindow) -> Result<String, StoreError> {
    let mut sql = String::from(
        "SELECT s.state, s.delay_minutes, COUNT(*) FROM flights f JOIN flight_status s ON s.flight_id = f.id \
         WHERE f.origin = ",
    );
    push_text(&mut sql, airport.as_str())?;
    sql.push_str(" AND f.sched_dep >= ");
    push_int(&mut sql, window.from.unix());
    sql.push_str(" AND f.sched_dep < ");
    push_int(&mut sql, window.to.unix());
    sql.push_str(" GROUP BY s.state, s.delay_minutes");
    Ok(sql)
}

fn status_for_append_sql(id: FlightId) -> String {
    let mut sql = String::from(
        "SELECT s.version, s.state, s.delay_minutes, s.updated_at, f.sched_dep \
         FROM flight_status s JOIN flights f ON f.id = s.flight_id WHERE s.flight_id = ",
    );
    push_int(&mut sql, id.get());
    sql
}

fn update_status_sql(id: FlightId, expected: i64, next: &FlightStatus) -> Result<String, StoreError> {
    let mut sql = String::from("UPDATE flight_status SET version = ");
    push_int(&mut sql, next.version);
    sql.push_str(", state = ");
    push_text(&mut sql, next.state.as_str())?;
    sql.push_str(", delay_minutes = ");
    push_int(&mut sql, next.delay_minutes);
    sql.push_str(", updated_at = ");
    push_opt_int(&mut sql, next.updated_at.map(|t| t.unix()));
    sql.push_str(" WHERE flight_id = ");
    push_int(&mut sql, id.get());
    sql.push_str(" AND version = ");
    push_int(&mut sql, expected);
    Ok(sql)
}

fn insert_event_sql(id: FlightId, version: i64, flight_dep: i64, event: &DelayEvent) -> Result<String, StoreError> {
    let mut sql = String::from(
        "INSERT INTO delay_events \
         (flight_id, version, flight_dep, kind, delay_minutes, reason, occurred_at, schema_version) VALUES (",
    );
    push_int(&mut sql, id.get());
    sql.push_str(", ");
    push_int(&mut sql, version);
    sql.push_str(", ");
    push_int(&mut sql, flight_dep);
    sql.push_str(", ");
    push_text(&mut sql, event.kind.name())?;
    sql.push_str(", ");
    push_int(&mut sql, event.kind.delay_minutes());
    sql.push_str(", ");
    push_text(&mut sql, event.kind.reason())?;
    sql.push_str(", ");
    push_int(&mut sql, event.occurred_at.unix());
    sql.push_str(", ");
    push_int(&mut sql, i64::from(event.schema_version));
    sql.push(')');
    Ok(sql)
}

pub(crate) async fn flight(shard: &Shard, id: FlightId) -> Result<Option<FlightView>, StoreError> {
    with_pool!(shard, |pool| {
        let row = raw_sql(AssertSqlSafe(flight_sql(id))).fetch_optional(pool).await.on(shard)?;
        row.map(|r| sqlx_rows::flight_view(shard.index, &r)).transpose()
    })
}

pub(crate) async fn departures(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
    limit: Limit,
) -> Result<Vec<Departure>, StoreError> {
    let sql = departures_sql(airport, window, limit)?;
    with_pool!(shard, |pool| {
        let rows = raw_sql(AssertSqlSafe(sql)).fetch_all(pool).await.on(shard)?;
        rows.iter().map(|r| sqlx_rows::flight_view(shard.index, r)).collect()
    })
}

pub(crate) async fn events(shard: &Shard, id: FlightId) -> Result<Vec<RecordedEvent>, StoreError> {
    with_pool!(shard, |pool| {
        let rows = raw_sql(AssertSqlSafe(events_sql(id))).fetch_all(pool).await.on(shard)?;
        rows.iter().map(|r| sqlx_rows::recorded_event(shard.index, r)).collect()
    })
}

pub(crate) async fn delay_histogram(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
) -> Result<DelayHistogram, StoreError> {
    let sql = delay_groups_sql(airport, window)?;
    with_pool!(shard, |pool| {
        let rows = raw_sql(AssertSqlSafe(sql)).fetch_all(pool).await.on(shard)?;
        let mut histogram = DelayHistogram::default();
        for row in &rows {
            let (cancelled, delay, count) = sqlx_rows::delay_group(shard.index, row)?;
            histogram.add_group(cancelled, delay, count);
        }
        Ok(histogram)
    })
}

pub(crate) async fn append(
    shard: &Shard,
    id: FlightId,
    expected: i64,
    event: &DelayEvent,
) -> Result<FlightStatus, StoreError> {
    macro_rules! append_in {
        ($tx:ident) => {{
            let row = raw_sql(AssertSqlSafe(status_for_append_sql(id)))
                .fetch_optional(&mut *$tx)
                .await
                .on(shard)?
                .ok_or(StoreError::FlightNotFound(id))?;
            let (current, flight_dep) = sqlx_rows::status_for_append(shard.index, &row)?;
            let next = plan_append(id, expected, &current, event)?;
            let updated =
                raw_sql(AssertSqlSafe(update_status_sql(id, expected, &next)?)).execute(&mut *$tx).await.on(shard)?;
            if updated.rows_affected() != 1 {
                return Err(lost_race(id, expected));
            }
            raw_sql(AssertSqlSafe(insert_event_sql(id, next.version, flight_dep, event)?))
                .execute(&mut *$tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) { lost_race(id, expected) } else { StoreError::database(shard.index, e) }
                })?;
            $tx.commit().await.on(shard)?;
            Ok(next)
        }};
    }
    match &shard.conn {
        ShardConn::Sqlite(s) => {
            let mut tx = s.pool.begin_with("BEGIN IMMEDIATE").await.on(shard)?;
            append_in!(tx)
        }
        ShardConn::Postgres(p) => {
            let mut tx = p.pool.begin().await.on(shard)?;
            append_in!(tx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKind, Reason, UtcTime};

    #[test]
    fn hostile_reason_stays_inside_one_literal() {
        let event = DelayEvent::new(
            UtcTime::from_unix(1_800_000_000).unwrap(),
            EventKind::Cancelled { reason: Reason::parse("x'); DELETE FROM flights; --").unwrap() },
        );
        let sql = insert_event_sql(FlightId::new(7).unwrap(), 2, 1_800_000_000, &event).unwrap();
        assert!(sql.ends_with("'x''); DELETE FROM flights; --', 1800000000, 1)"), "{sql}");
    }
}
