//! Column extraction from sqlx rows, generic over SQLite and PostgreSQL rows so the
//! `prepared` and `adhoc` paths share it.

use crate::domain::{FlightStatus, FlightView, RecordedEvent};
use crate::store::StoreError;
use crate::store::decode::{self, EventColumns, FlightViewColumns};
use sqlx::{ColumnIndex, Database, Decode, Row, Type};

/// What a row type must decode for our columns.
pub(crate) trait FlightRow: Row
where
    usize: ColumnIndex<Self>,
{
    fn int(&self, shard: usize, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, shard: usize, i: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, shard: usize, i: usize) -> Result<&str, StoreError>;
}

impl<R> FlightRow for R
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    R::Database: Database,
{
    fn int(&self, shard: usize, i: usize) -> Result<i64, StoreError> {
        self.try_get::<i64, _>(i).map_err(|e| StoreError::database(shard, e))
    }
    fn opt_int(&self, shard: usize, i: usize) -> Result<Option<i64>, StoreError> {
        self.try_get::<Option<i64>, _>(i).map_err(|e| StoreError::database(shard, e))
    }
    fn text(&self, shard: usize, i: usize) -> Result<&str, StoreError> {
        self.try_get::<&str, _>(i).map_err(|e| StoreError::database(shard, e))
    }
}

pub(crate) fn flight_view<R: FlightRow>(shard: usize, r: &R) -> Result<FlightView, StoreError>
where
    usize: ColumnIndex<R>,
{
    decode::flight_view(
        shard,
        FlightViewColumns {
            id: r.int(shard, 0)?,
            carrier: r.text(shard, 1)?,
            number: r.int(shard, 2)?,
            origin: r.text(shard, 3)?,
            destination: r.text(shard, 4)?,
            sched_dep: r.int(shard, 5)?,
            sched_arr: r.int(shard, 6)?,
            version: r.int(shard, 7)?,
            state: r.text(shard, 8)?,
            delay_minutes: r.int(shard, 9)?,
            updated_at: r.opt_int(shard, 10)?,
        },
    )
}

pub(crate) fn recorded_event<R: FlightRow>(shard: usize, r: &R) -> Result<RecordedEvent, StoreError>
where
    usize: ColumnIndex<R>,
{
    decode::recorded_event(
        shard,
        EventColumns {
            flight_id: r.int(shard, 0)?,
            version: r.int(shard, 1)?,
            kind: r.text(shard, 2)?,
            delay_minutes: r.int(shard, 3)?,
            reason: r.text(shard, 4)?,
            occurred_at: r.int(shard, 5)?,
            schema_version: r.int(shard, 6)?,
        },
    )
}

/// A row of `sql::STATUS_FOR_APPEND`: the status and the flight's departure.
pub(crate) fn status_for_append<R: FlightRow>(shard: usize, r: &R) -> Result<(FlightStatus, i64), StoreError>
where
    usize: ColumnIndex<R>,
{
    let status = decode::status(shard, r.int(shard, 0)?, r.text(shard, 1)?, r.int(shard, 2)?, r.opt_int(shard, 3)?)?;
    Ok((status, r.int(shard, 4)?))
}

/// A row of `sql::DELAY_GROUPS`: (cancelled?, delay, count).
pub(crate) fn delay_group<R: FlightRow>(shard: usize, r: &R) -> Result<(bool, i64, u64), StoreError>
where
    usize: ColumnIndex<R>,
{
    let (cancelled, count) = decode::delay_group(shard, r.text(shard, 0)?, r.int(shard, 2)?)?;
    Ok((cancelled, r.int(shard, 1)?, count))
}

/// Is this sqlx error a unique-key violation (a concurrent append of the same version)?
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}
