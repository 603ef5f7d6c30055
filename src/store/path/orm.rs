//! `orm`: sea-orm entities and its query builder, over the same sqlx pools as
//! `prepared` (sea-orm wraps them), so the difference measured is the ORM's own work:
//! building the query, rendering it, and mapping rows to models.

use super::OnShard;
use super::append::{self, AppendTx, AuditPlan, AuditTx, Inserted};
use super::entities::{delay_events, flight_status, flights};
use crate::audit::Record;
use crate::domain::{
    AirportCode, DelayEvent, DelayHistogram, Departure, FlightId, FlightStatus, FlightView, Limit, RecordedEvent,
    TimeWindow, UtcTime,
};
use crate::store::decode;
use crate::store::row::{EventRow, FlightRow, StatusRow};
use crate::store::sql;
use crate::store::{Shard, ShardConn, StoreError};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationTrait, Set, SqlErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm::{ConnectionTrait, Statement};

fn db(shard: &Shard) -> &DatabaseConnection {
    match &shard.conn {
        ShardConn::Sqlite(s) => &s.orm,
        ShardConn::Postgres(p) => &p.orm,
    }
}

fn view(shard: usize, f: flights::Model, s: Option<flight_status::Model>) -> Result<FlightView, StoreError> {
    let s = s.ok_or_else(|| StoreError::corrupt(shard, format!("flight {} has no status row", f.id)))?;
    decode::flight_view_of(
        shard,
        FlightRow {
            id: f.id,
            carrier: &f.carrier,
            number: f.number,
            origin: &f.origin,
            destination: &f.destination,
            sched_dep: f.sched_dep,
            sched_arr: f.sched_arr,
        },
        StatusRow {
            flight_id: s.flight_id,
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
            decode::recorded_event_of(
                shard.index,
                EventRow {
                    flight_id: e.flight_id,
                    version: e.version,
                    flight_dep: e.flight_dep,
                    kind: &e.kind,
                    delay_minutes: e.delay_minutes,
                    reason: &e.reason,
                    occurred_at: e.occurred_at,
                    schema_version: e.schema_version,
                    cause: e.cause.as_deref(),
                    reported_by: e.reported_by.as_deref(),
                    data_key: e.data_key.as_deref(),
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
        let (cancelled, count) = decode::delay_group_of(shard.index, state, *count)?;
        histogram.add_group(cancelled, *delay, count);
    }
    Ok(histogram)
}

pub(crate) async fn append(
    shard: &Shard,
    id: FlightId,
    expected: i64,
    event: &DelayEvent,
    audit: Option<&AuditPlan>,
) -> Result<FlightStatus, StoreError> {
    // Immediate on SQLite for the same reason as `prepared`; ignored by PostgreSQL.
    let options = TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    };
    let txn = db(shard).begin_with_options(options).await.on(shard)?;
    append::append(OrmTx { txn, shard }, id, expected, event, audit).await
}

/// An append's statements through sea-orm's entities and query builder.
struct OrmTx<'s> {
    txn: DatabaseTransaction,
    shard: &'s Shard,
}

/// The audit record through sea-orm's raw statements: the log has no entity, and is
/// not what the paths are compared on.
impl AuditTx for OrmTx<'_> {
    async fn audit_head(&mut self, chain: &str, lock: bool) -> Result<Option<(i64, String)>, StoreError> {
        let backend = self.txn.get_database_backend();
        if lock && backend == sea_orm::DbBackend::Postgres {
            let stmt = Statement::from_sql_and_values(backend, sql::AUDIT_LOCK, [chain.into()]);
            self.txn.query_one_raw(stmt).await.on(self.shard)?;
        }
        let stmt = Statement::from_sql_and_values(backend, sql::AUDIT_HEAD, [chain.into()]);
        let row = self.txn.query_one_raw(stmt).await.on(self.shard)?;
        row.map(|r| Ok((r.try_get_by_index::<i64>(0).on(self.shard)?, r.try_get_by_index::<String>(1).on(self.shard)?)))
            .transpose()
    }

    async fn insert_audit(&mut self, r: &Record) -> Result<(), StoreError> {
        let d = &r.draft;
        let values: [sea_orm::Value; 13] = [
            r.chain.clone().into(),
            r.seq.into(),
            d.at.into(),
            d.request_id.clone().into(),
            d.actor.clone().into(),
            d.actor_key.clone().into(),
            d.role.clone().into(),
            d.action.clone().into(),
            d.target.clone().into(),
            d.before_version.into(),
            d.after_version.into(),
            r.prev_hash.clone().into(),
            r.hash.clone().into(),
        ];
        let stmt = Statement::from_sql_and_values(self.txn.get_database_backend(), sql::INSERT_AUDIT, values);
        self.txn.execute_raw(stmt).await.on(self.shard)?;
        Ok(())
    }
}

impl AppendTx for OrmTx<'_> {
    async fn status(&mut self, id: FlightId) -> Result<Option<(FlightStatus, UtcTime)>, StoreError> {
        let found = flight_status::Entity::find_by_id(id.get())
            .find_also_related(flights::Entity)
            .one(&self.txn)
            .await
            .on(self.shard)?;
        let Some((status, flight)) = found else { return Ok(None) };
        let index = self.shard.index;
        let flight =
            flight.ok_or_else(|| StoreError::corrupt(index, format!("status of flight {id} has no flight")))?;
        let current = decode::status_of(
            index,
            StatusRow {
                flight_id: status.flight_id,
                version: status.version,
                state: &status.state,
                delay_minutes: status.delay_minutes,
                updated_at: status.updated_at,
            },
        )?;
        Ok(Some((current, decode::time(index, flight.sched_dep)?)))
    }

    async fn update_status(&mut self, next: &StatusRow<'_>, expected: i64) -> Result<u64, StoreError> {
        let updated = flight_status::Entity::update_many()
            .col_expr(flight_status::Column::Version, Expr::value(next.version))
            .col_expr(flight_status::Column::State, Expr::value(next.state))
            .col_expr(flight_status::Column::DelayMinutes, Expr::value(next.delay_minutes))
            .col_expr(flight_status::Column::UpdatedAt, Expr::value(next.updated_at))
            .filter(flight_status::Column::FlightId.eq(next.flight_id))
            .filter(flight_status::Column::Version.eq(expected))
            .exec(&self.txn)
            .await
            .on(self.shard)?;
        Ok(updated.rows_affected)
    }

    async fn insert_event(&mut self, row: &EventRow<'_>) -> Result<Inserted, StoreError> {
        let model = delay_events::ActiveModel {
            flight_id: Set(row.flight_id),
            version: Set(row.version),
            flight_dep: Set(row.flight_dep),
            kind: Set(row.kind.to_owned()),
            delay_minutes: Set(row.delay_minutes),
            reason: Set(row.reason.to_owned()),
            occurred_at: Set(row.occurred_at),
            schema_version: Set(row.schema_version),
            cause: Set(row.cause.map(str::to_owned)),
            reported_by: Set(row.reported_by.map(str::to_owned)),
            data_key: Set(row.data_key.map(str::to_owned)),
        };
        match delay_events::Entity::insert(model).exec_without_returning(&self.txn).await {
            Ok(_) => Ok(Inserted::Row),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(Inserted::Duplicate),
            Err(e) => Err(StoreError::database(self.shard.index, e)),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.txn.commit().await.on(self.shard)
    }
}
