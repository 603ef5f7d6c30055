//! `prepared`: sqlx with persistent prepared statements and bound parameters.
//!
//! sqlx caches each statement per connection (100 by default), so after the first
//! call on a connection a query is only bound and executed. SQLite writes begin with
//! `BEGIN IMMEDIATE` so a writer takes the shard's write lock before reading the
//! version it will check (a deferred transaction that read first could not upgrade
//! while another writer held the lock).

use super::sqlx_rows::{self, is_unique_violation};
use super::{OnShard, lost_race, plan_append};
use crate::domain::{
    AirportCode, DelayEvent, DelayHistogram, Departure, FlightId, FlightStatus, FlightView, Limit, RecordedEvent,
    TimeWindow,
};
use crate::store::{Shard, ShardConn, StoreError, sql};

pub(crate) async fn flight(shard: &Shard, id: FlightId) -> Result<Option<FlightView>, StoreError> {
    with_pool!(shard, |pool| {
        let row = sqlx::query(sql::FLIGHT_BY_ID).bind(id.get()).fetch_optional(pool).await.on(shard)?;
        row.map(|r| sqlx_rows::flight_view(shard.index, &r)).transpose()
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
        rows.iter().map(|r| sqlx_rows::flight_view(shard.index, r)).collect()
    })
}

pub(crate) async fn events(shard: &Shard, id: FlightId) -> Result<Vec<RecordedEvent>, StoreError> {
    with_pool!(shard, |pool| {
        let rows = sqlx::query(sql::EVENTS).bind(id.get()).fetch_all(pool).await.on(shard)?;
        rows.iter().map(|r| sqlx_rows::recorded_event(shard.index, r)).collect()
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
            let row = sqlx::query(sql::STATUS_FOR_APPEND)
                .bind(id.get())
                .fetch_optional(&mut *$tx)
                .await
                .on(shard)?
                .ok_or(StoreError::FlightNotFound(id))?;
            let (current, flight_dep) = sqlx_rows::status_for_append(shard.index, &row)?;
            let next = plan_append(id, expected, &current, event)?;
            let updated = sqlx::query(sql::UPDATE_STATUS)
                .bind(next.version)
                .bind(next.state.as_str())
                .bind(next.delay_minutes)
                .bind(next.updated_at.map(|t| t.unix()))
                .bind(id.get())
                .bind(expected)
                .execute(&mut *$tx)
                .await
                .on(shard)?;
            if updated.rows_affected() != 1 {
                return Err(lost_race(id, expected));
            }
            sqlx::query(sql::INSERT_EVENT)
                .bind(id.get())
                .bind(next.version)
                .bind(flight_dep)
                .bind(event.kind.name())
                .bind(event.kind.delay_minutes())
                .bind(event.kind.reason())
                .bind(event.occurred_at.unix())
                .bind(i64::from(event.schema_version))
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
