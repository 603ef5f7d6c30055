//! `prepared`: sqlx with persistent prepared statements and bound parameters.
//!
//! sqlx caches each statement per connection (100 by default), so after the first
//! call on a connection a query is only bound and executed. SQLite writes begin with
//! `BEGIN IMMEDIATE` so a writer takes the shard's write lock before reading the
//! version it will check (a deferred transaction that read first could not upgrade
//! while another writer held the lock).

use super::OnShard;
use super::append::{self, AppendTx, AuditPlan, Inserted};
use super::sqlx_rows::{self, SqlxCols, SqlxTx};
use crate::domain::{
    AirportCode, DelayEvent, DelayHistogram, Departure, FlightId, FlightStatus, FlightView, Limit, RecordedEvent,
    TimeWindow, UtcTime,
};
use crate::store::decode;
use crate::store::row::{EventRow, StatusRow};
use crate::store::{Shard, ShardConn, StoreError, sql};

pub(crate) async fn flight(shard: &Shard, id: FlightId) -> Result<Option<FlightView>, StoreError> {
    with_pool!(shard, |pool| {
        let row = sqlx::query(sql::FLIGHT_BY_ID).bind(id.get()).fetch_optional(pool).await.on(shard)?;
        row.map(|r| decode::flight_view(&SqlxCols::new(&r, shard.index))).transpose()
    })
}

pub(crate) async fn departures(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
    limit: Limit,
) -> Result<Vec<Departure>, StoreError> {
    with_pool!(shard, |pool| {
        let rows = sqlx::query(sql::DEPARTURES)
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

pub(crate) async fn events(shard: &Shard, id: FlightId) -> Result<Vec<RecordedEvent>, StoreError> {
    with_pool!(shard, |pool| {
        let rows = sqlx::query(sql::EVENTS).bind(id.get()).fetch_all(pool).await.on(shard)?;
        rows.iter().map(|r| decode::recorded_event(&SqlxCols::new(r, shard.index))).collect()
    })
}

pub(crate) async fn delay_histogram(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
) -> Result<DelayHistogram, StoreError> {
    with_pool!(shard, |pool| {
        let rows = sqlx::query(sql::DELAY_GROUPS)
            .bind(airport.as_str())
            .bind(window.from.unix())
            .bind(window.to.unix())
            .fetch_all(pool)
            .await
            .on(shard)?;
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
    with_write_tx!(shard, |tx| append::append(SqlxTx::<_, Bound>::new(tx, shard), id, expected, event, audit).await)
}

/// How `prepared` sends an append's statements: bound parameters, through sqlx's
/// statement cache.
pub(crate) struct Bound;

/// Implements [`AppendTx`] for one sqlx backend; expanded for both, so the same code
/// is type-checked against each driver.
macro_rules! prepared_append_tx {
    ($db:ty) => {
        impl AppendTx for SqlxTx<'_, '_, $db, Bound> {
            async fn status(&mut self, id: FlightId) -> Result<Option<(FlightStatus, UtcTime)>, StoreError> {
                let row = sqlx::query(sql::STATUS_FOR_APPEND)
                    .bind(id.get())
                    .fetch_optional(&mut *self.tx)
                    .await
                    .on(self.shard)?;
                row.map(|r| decode::status_for_append(&SqlxCols::new(&r, self.shard.index))).transpose()
            }

            async fn update_status(&mut self, next: &StatusRow<'_>, expected: i64) -> Result<u64, StoreError> {
                let done = sqlx::query(sql::UPDATE_STATUS)
                    .bind(next.version)
                    .bind(next.state)
                    .bind(next.delay_minutes)
                    .bind(next.updated_at)
                    .bind(next.flight_id)
                    .bind(expected)
                    .execute(&mut *self.tx)
                    .await
                    .on(self.shard)?;
                Ok(done.rows_affected())
            }

            async fn insert_event(&mut self, row: &EventRow<'_>) -> Result<Inserted, StoreError> {
                let done = sqlx::query(sql::INSERT_EVENT)
                    .bind(row.flight_id)
                    .bind(row.version)
                    .bind(row.flight_dep)
                    .bind(row.kind)
                    .bind(row.delay_minutes)
                    .bind(row.reason)
                    .bind(row.occurred_at)
                    .bind(row.schema_version)
                    .bind(row.cause)
                    .bind(row.reported_by)
                    .bind(row.data_key)
                    .execute(&mut *self.tx)
                    .await;
                sqlx_rows::inserted(done, self.shard)
            }

            async fn commit(self) -> Result<(), StoreError> {
                self.tx.commit().await.on(self.shard)
            }
        }
    };
}
prepared_append_tx!(sqlx::Sqlite);
prepared_append_tx!(sqlx::Postgres);
