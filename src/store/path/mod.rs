//! The four query paths, behind one dispatcher per operation.
//!
//! Each path module implements the same five per-shard operations with its own
//! library; decoding (`store::decode`), rows (`store::row`) and the append itself
//! (`append`, its rules in `plan_append`) are shared, so paths differ only in how SQL
//! reaches the database. Dispatch is a `match` on a
//! `Copy` enum, not a trait object: no boxing or vtable on the hot path.

/// Opens an append's transaction on the shard's sqlx pool (SQLite: `BEGIN IMMEDIATE`,
/// see `append::AppendTx`) and expands `$body` once per backend with `$tx` bound to it.
macro_rules! with_write_tx {
    ($shard:expr, |$tx:ident| $body:expr) => {
        match &$shard.conn {
            ShardConn::Sqlite(s) => {
                let $tx = s.pool.begin_with("BEGIN IMMEDIATE").await.on($shard)?;
                $body
            }
            ShardConn::Postgres(p) => {
                let $tx = p.pool.begin().await.on($shard)?;
                $body
            }
        }
    };
}

mod adhoc;
mod append;
pub(crate) use append::{AuditPlan, Head};
mod entities;
mod literal;
mod orm;
mod prepared;
mod raw;
pub(crate) use raw::{PgCols, sqlite as sqlite_rows};
pub(crate) mod sqlx_rows;

use super::{QueryPath, Shard, StoreError};
use crate::domain::{
    AirportCode, AppendOutcome, DelayEvent, DelayHistogram, Departure, FlightId, FlightStatus, FlightView, Limit,
    RecordedEvent, TimeWindow,
};

pub(crate) async fn flight(path: QueryPath, shard: &Shard, id: FlightId) -> Result<Option<FlightView>, StoreError> {
    match path {
        QueryPath::Prepared => prepared::flight(shard, id).await,
        QueryPath::Adhoc => adhoc::flight(shard, id).await,
        QueryPath::Orm => orm::flight(shard, id).await,
        QueryPath::Raw => raw::flight(shard, id).await,
    }
}

pub(crate) async fn departures(
    path: QueryPath,
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
    limit: Limit,
) -> Result<Vec<Departure>, StoreError> {
    match path {
        QueryPath::Prepared => prepared::departures(shard, airport, window, limit).await,
        QueryPath::Adhoc => adhoc::departures(shard, airport, window, limit).await,
        QueryPath::Orm => orm::departures(shard, airport, window, limit).await,
        QueryPath::Raw => raw::departures(shard, airport, window, limit).await,
    }
}

pub(crate) async fn events(path: QueryPath, shard: &Shard, id: FlightId) -> Result<Vec<RecordedEvent>, StoreError> {
    match path {
        QueryPath::Prepared => prepared::events(shard, id).await,
        QueryPath::Adhoc => adhoc::events(shard, id).await,
        QueryPath::Orm => orm::events(shard, id).await,
        QueryPath::Raw => raw::events(shard, id).await,
    }
}

pub(crate) async fn delay_histogram(
    path: QueryPath,
    shard: &Shard,
    airport: AirportCode,
    window: TimeWindow,
) -> Result<DelayHistogram, StoreError> {
    match path {
        QueryPath::Prepared => prepared::delay_histogram(shard, airport, window).await,
        QueryPath::Adhoc => adhoc::delay_histogram(shard, airport, window).await,
        QueryPath::Orm => orm::delay_histogram(shard, airport, window).await,
        QueryPath::Raw => raw::delay_histogram(shard, airport, window).await,
    }
}

pub(crate) async fn append(
    path: QueryPath,
    shard: &Shard,
    id: FlightId,
    expected: i64,
    event: &DelayEvent,
    audit: Option<&AuditPlan>,
) -> Result<AppendOutcome, StoreError> {
    let next = match path {
        QueryPath::Prepared => prepared::append(shard, id, expected, event, audit).await,
        QueryPath::Adhoc => adhoc::append(shard, id, expected, event, audit).await,
        QueryPath::Orm => orm::append(shard, id, expected, event, audit).await,
        QueryPath::Raw => raw::append(shard, id, expected, event, audit).await,
    }?;
    Ok(AppendOutcome { flight_id: id, status: next })
}

/// The append rule every path applies inside its transaction, between reading the
/// current status and writing: the expected version must match, and the event must
/// be a legal transition. Returns the new status to write.
pub(crate) fn plan_append(
    id: FlightId,
    expected: i64,
    current: &FlightStatus,
    event: &DelayEvent,
) -> Result<FlightStatus, StoreError> {
    if current.version != expected {
        return Err(StoreError::Conflict { flight: id, expected, current: Some(current.version) });
    }
    current.apply(event).map_err(|rule| StoreError::Transition { flight: id, rule })
}

/// `.on(shard)`: a driver error, attributed to the shard it came from (a `&Shard`, or
/// its index where the shard itself cannot travel, as onto a blocking thread).
pub(crate) trait OnShard<T> {
    fn on(self, shard: impl ShardIndex) -> Result<T, StoreError>;
}

impl<T, E: Into<super::DriverError>> OnShard<T> for Result<T, E> {
    fn on(self, shard: impl ShardIndex) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::database(shard.index(), e))
    }
}

pub(crate) trait ShardIndex {
    fn index(&self) -> usize;
}

impl ShardIndex for &Shard {
    fn index(&self) -> usize {
        self.index
    }
}

impl ShardIndex for usize {
    fn index(&self) -> usize {
        *self
    }
}
