//! `adhoc`: SQL text built per call with the values rendered as literals, sent
//! unprepared: the "no compiled query" baseline.
//!
//! Every call formats a fresh string (`literal` does the escaping) and sends it with
//! `sqlx::raw_sql`: PostgreSQL's simple query protocol (parse, plan and execute every
//! time, no statement kept), and on SQLite a fresh `sqlite3_prepare` per call with no
//! statement cache. sqlx 0.9 only runs run-time SQL wrapped in `AssertSqlSafe`, which
//! marks each such string for review: all of them are built in this file from typed,
//! validated values.

use super::OnShard;
use super::append::{self, AppendTx, AuditPlan, Inserted};
use super::literal::{push_int, push_opt_int, push_opt_text, push_text};
use super::sqlx_rows::{self, SqlxCols, SqlxTx};
use crate::domain::{
    AirportCode, DelayEvent, DelayHistogram, Departure, FlightId, FlightStatus, FlightView, Limit, RecordedEvent,
    TimeWindow, UtcTime,
};
use crate::store::decode;
use crate::store::row::{EventRow, StatusRow, event_columns};
use crate::store::sql::{flight_view_columns, flight_view_from};
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

fn update_status_sql(next: &StatusRow<'_>, expected: i64) -> Result<String, StoreError> {
    let mut sql = String::from("UPDATE flight_status SET version = ");
    push_int(&mut sql, next.version);
    sql.push_str(", state = ");
    push_text(&mut sql, next.state)?;
    sql.push_str(", delay_minutes = ");
    push_int(&mut sql, next.delay_minutes);
    sql.push_str(", updated_at = ");
    push_opt_int(&mut sql, next.updated_at);
    sql.push_str(" WHERE flight_id = ");
    push_int(&mut sql, next.flight_id);
    sql.push_str(" AND version = ");
    push_int(&mut sql, expected);
    Ok(sql)
}

fn insert_event_sql(row: &EventRow<'_>) -> Result<String, StoreError> {
    let mut sql = String::from(concat!("INSERT INTO delay_events (", event_columns!(), ") VALUES ("));
    push_int(&mut sql, row.flight_id);
    sql.push_str(", ");
    push_int(&mut sql, row.version);
    sql.push_str(", ");
    push_int(&mut sql, row.flight_dep);
    sql.push_str(", ");
    push_text(&mut sql, row.kind)?;
    sql.push_str(", ");
    push_int(&mut sql, row.delay_minutes);
    sql.push_str(", ");
    push_text(&mut sql, row.reason)?;
    sql.push_str(", ");
    push_int(&mut sql, row.occurred_at);
    sql.push_str(", ");
    push_int(&mut sql, row.schema_version);
    sql.push_str(", ");
    push_opt_text(&mut sql, row.cause)?;
    sql.push_str(", ");
    push_opt_text(&mut sql, row.reported_by)?;
    sql.push_str(", ");
    push_opt_text(&mut sql, row.data_key)?;
    sql.push(')');
    Ok(sql)
}

pub(crate) async fn flight(shard: &Shard, id: FlightId) -> Result<Option<FlightView>, StoreError> {
    with_pool!(shard, |pool| {
        let row = raw_sql(AssertSqlSafe(flight_sql(id))).fetch_optional(pool).await.on(shard)?;
        row.map(|r| decode::flight_view(&SqlxCols::new(&r, shard.index))).transpose()
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
        rows.iter().map(|r| decode::flight_view(&SqlxCols::new(r, shard.index))).collect()
    })
}

pub(crate) async fn events(shard: &Shard, id: FlightId) -> Result<Vec<RecordedEvent>, StoreError> {
    with_pool!(shard, |pool| {
        let rows = raw_sql(AssertSqlSafe(events_sql(id))).fetch_all(pool).await.on(shard)?;
        rows.iter().map(|r| decode::recorded_event(&SqlxCols::new(r, shard.index))).collect()
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
            let (cancelled, delay, count) = decode::delay_group(&SqlxCols::new(row, shard.index))?;
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
    audit: Option<&AuditPlan>,
) -> Result<FlightStatus, StoreError> {
    with_write_tx!(shard, |tx| append::append(SqlxTx::<_, Literal>::new(tx, shard), id, expected, event, audit).await)
}

/// How `adhoc` sends an append's statements: SQL text with literals, unprepared.
pub(crate) struct Literal;

/// Implements [`AppendTx`] for one sqlx backend (see `prepared_append_tx!`).
macro_rules! adhoc_append_tx {
    ($db:ty) => {
        impl AppendTx for SqlxTx<'_, '_, $db, Literal> {
            async fn status(&mut self, id: FlightId) -> Result<Option<(FlightStatus, UtcTime)>, StoreError> {
                let row = raw_sql(AssertSqlSafe(status_for_append_sql(id)))
                    .fetch_optional(&mut *self.tx)
                    .await
                    .on(self.shard)?;
                row.map(|r| decode::status_for_append(&SqlxCols::new(&r, self.shard.index))).transpose()
            }

            async fn update_status(&mut self, next: &StatusRow<'_>, expected: i64) -> Result<u64, StoreError> {
                let sql = AssertSqlSafe(update_status_sql(next, expected)?);
                Ok(raw_sql(sql).execute(&mut *self.tx).await.on(self.shard)?.rows_affected())
            }

            async fn insert_event(&mut self, row: &EventRow<'_>) -> Result<Inserted, StoreError> {
                let done = raw_sql(AssertSqlSafe(insert_event_sql(row)?)).execute(&mut *self.tx).await;
                sqlx_rows::inserted(done, self.shard)
            }

            async fn commit(self) -> Result<(), StoreError> {
                self.tx.commit().await.on(self.shard)
            }
        }
    };
}
adhoc_append_tx!(sqlx::Sqlite);
adhoc_append_tx!(sqlx::Postgres);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKind, Reason, SubjectId, UtcTime};

    #[test]
    fn hostile_reason_stays_inside_one_literal() {
        let event = DelayEvent::new(
            UtcTime::from_unix(1_800_000_000).unwrap(),
            EventKind::Cancelled { reason: Reason::parse("x'); DELETE FROM flights; --").unwrap() },
        )
        .with_reporter(Some(SubjectId::parse("o'brien").unwrap()));
        let row = EventRow::new(FlightId::new(7).unwrap(), 2, UtcTime::from_unix(1_800_000_000).unwrap(), &event);
        let sql = insert_event_sql(&row).unwrap();
        assert!(sql.ends_with("'x''); DELETE FROM flights; --', 1800000000, 2, NULL, 'o''brien', NULL)"), "{sql}");
    }
}
