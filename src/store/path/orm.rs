//! `orm`: sea-orm entities and its query builder, over the same sqlx pools as
//! `prepared` (sea-orm wraps them), so the difference measured is the ORM's own work:
//! building the query, rendering it, and mapping rows to models.

use super::entities::{delay_events, flight_status, flights};
use super::{OnShard, lost_race, plan_append};
use crate::domain::{
    AirportCode, DelayEvent, DelayHistogram, Departure, FlightId, FlightStatus, FlightView, Limit, RecordedEvent,
    TimeWindow,
};
use crate::store::decode::{self, EventColumns, FlightViewColumns};
use crate::store::{Shard, ShardConn, StoreError};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait,
    Set, SqlErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

fn db(shard: &Shard) -> &DatabaseConnection {
    match &shard.conn {
        ShardConn::Sqlite(s) => &s.orm,
        ShardConn::Postgres(p) => &p.orm,
    }
}

fn view(shard: usize, f: flights::Model, s: Option<flight_status::Model>) -> Result<FlightView, StoreError> {
    let s = s.ok_or_else(|| StoreError::corrupt(shard, format!("flight {} has no status row", f.id)))?;
    decode::flight_view(
        shard,
        FlightViewColumns {
            id: f.id,
            carrier: &f.carrier,
            number: f.number,
            origin: &f.origin,
            destination: &f.destination,
            sched_dep: f.sched_dep,
            sched_arr: f.sched_arr,
            version: s.version,
            state: &s.state,
            delay_minutes: s.delay_minutes,
            updated_at: s.updated_at,
        },
    )
}

pub(crate) async fn flight(shard: &Shard, id: FlightId) -> Result<Option<FlightView>, StoreError> {
    let found = flights::Entity::find_by_id(id.get())
        .find_also_related(flight_status::Entity)
        .one(db(shard))
        .await
        .on(shard)?;
    found.map(|(f, s)| view(shard.index, f, s)).transpose()
}

pub(crate) async fn departures(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
    limit: Limit,
) -> Result<Vec<Departure>, StoreError> {
    let rows = flights::Entity::find()
        .filter(flights::Column::Origin.eq(airport.as_str()))
        .filter(flights::Column::SchedDep.gte(window.from.unix()))
        .filter(flights::Column::SchedDep.lt(window.to.unix()))
        .order_by_asc(flights::Column::SchedDep)
        .order_by_asc(flights::Column::Id)
        .limit(limit.get() as u64)
        .find_also_related(flight_status::Entity)
        .all(db(shard))
        .await
        .on(shard)?;
    rows.into_iter().map(|(f, s)| view(shard.index, f, s)).collect()
}

pub(crate) async fn events(shard: &Shard, id: FlightId) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = delay_events::Entity::find()
        .filter(delay_events::Column::FlightId.eq(id.get()))
        .order_by_asc(delay_events::Column::Version)
        .all(db(shard))
        .await
        .on(shard)?;
    rows.iter()
        .map(|e| {
            decode::recorded_event(
                shard.index,
                EventColumns {
                    flight_id: e.flight_id,
                    version: e.version,
                    kind: &e.kind,
                    delay_minutes: e.delay_minutes,
                    reason: &e.reason,
                    occurred_at: e.occurred_at,
                    schema_version: e.schema_version,
                },
            )
        })
        .collect()
}

pub(crate) async fn delay_histogram(
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
) -> Result<DelayHistogram, StoreError> {
    let groups: Vec<(String, i64, i64)> = flights::Entity::find()
        .select_only()
        .column(flight_status::Column::State)
        .column(flight_status::Column::DelayMinutes)
        .column_as(flights::Column::Id.count(), "flights")
        .join(JoinType::InnerJoin, flights::Relation::FlightStatus.def())
        .filter(flights::Column::Origin.eq(airport.as_str()))
        .filter(flights::Column::SchedDep.gte(window.from.unix()))
        .filter(flights::Column::SchedDep.lt(window.to.unix()))
        .group_by(flight_status::Column::State)
        .group_by(flight_status::Column::DelayMinutes)
        .into_tuple()
        .all(db(shard))
        .await
        .on(shard)?;
    let mut histogram = DelayHistogram::default();
    for (state, delay, count) in &groups {
        let (cancelled, count) = decode::delay_group(shard.index, state, *count)?;
        histogram.add_group(cancelled, *delay, count);
    }
    Ok(histogram)
}

fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

pub(crate) async fn append(
    shard: &Shard,
    id: FlightId,
    expected: i64,
    event: &DelayEvent,
) -> Result<FlightStatus, StoreError> {
    // Immediate on SQLite for the same reason as `prepared`; ignored by PostgreSQL.
    let options = TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    };
    let txn = db(shard).begin_with_options(options).await.on(shard)?;
    let (status, flight) = flight_status::Entity::find_by_id(id.get())
        .find_also_related(flights::Entity)
        .one(&txn)
        .await
        .on(shard)?
        .ok_or(StoreError::FlightNotFound(id))?;
    let flight =
        flight.ok_or_else(|| StoreError::corrupt(shard.index, format!("status of flight {id} has no flight")))?;
    let current = decode::status(shard.index, status.version, &status.state, status.delay_minutes, status.updated_at)?;
    let next = plan_append(id, expected, &current, event)?;
    let updated = flight_status::Entity::update_many()
        .col_expr(flight_status::Column::Version, Expr::value(next.version))
        .col_expr(flight_status::Column::State, Expr::value(next.state.as_str()))
        .col_expr(flight_status::Column::DelayMinutes, Expr::value(next.delay_minutes))
        .col_expr(flight_status::Column::UpdatedAt, Expr::value(next.updated_at.map(|t| t.unix())))
        .filter(flight_status::Column::FlightId.eq(id.get()))
        .filter(flight_status::Column::Version.eq(expected))
        .exec(&txn)
        .await
        .on(shard)?;
    if updated.rows_affected != 1 {
        return Err(lost_race(id, expected));
    }
    let row = delay_events::ActiveModel {
        flight_id: Set(id.get()),
        version: Set(next.version),
        flight_dep: Set(flight.sched_dep),
        kind: Set(event.kind.name().to_owned()),
        delay_minutes: Set(event.kind.delay_minutes()),
        reason: Set(event.kind.reason().to_owned()),
        occurred_at: Set(event.occurred_at.unix()),
        schema_version: Set(i64::from(event.schema_version)),
    };
    delay_events::Entity::insert(row).exec_without_returning(&txn).await.map_err(|e| {
        if is_unique_violation(&e) { lost_race(id, expected) } else { StoreError::database(shard.index, e) }
    })?;
    txn.commit().await.on(shard)?;
    Ok(next)
}
