//! Rows → domain values, once for all paths.
//!
//! Each path pulls plain columns out of its driver's row type and hands them here, so
//! every arm of a benchmark does the same decoding work and a stored value the domain
//! rejects is reported the same way (as corruption on a named shard) whichever path
//! read it.

use super::error::{CorruptOnShard, StoreError};
use crate::domain::{
    AirportCode, Carrier, DelayEvent, EventKind, Flight, FlightId, FlightNumber, FlightState, FlightStatus, FlightView,
    RecordedEvent, UtcTime,
};

/// The columns of `sql::flight_view_columns!`, in order.
pub(crate) struct FlightViewColumns<'a> {
    pub id: i64,
    pub carrier: &'a str,
    pub number: i64,
    pub origin: &'a str,
    pub destination: &'a str,
    pub sched_dep: i64,
    pub sched_arr: i64,
    pub version: i64,
    pub state: &'a str,
    pub delay_minutes: i64,
    pub updated_at: Option<i64>,
}

pub(crate) fn flight_view(shard: usize, c: FlightViewColumns<'_>) -> Result<FlightView, StoreError> {
    Ok(FlightView {
        flight: Flight {
            id: FlightId::new(c.id).on_shard(shard)?,
            carrier: Carrier::parse(c.carrier).on_shard(shard)?,
            number: FlightNumber::new(c.number).on_shard(shard)?,
            origin: AirportCode::parse(c.origin).on_shard(shard)?,
            destination: AirportCode::parse(c.destination).on_shard(shard)?,
            scheduled_departure: UtcTime::from_unix(c.sched_dep).on_shard(shard)?,
            scheduled_arrival: UtcTime::from_unix(c.sched_arr).on_shard(shard)?,
        },
        status: status(shard, c.version, c.state, c.delay_minutes, c.updated_at)?,
    })
}

pub(crate) fn status(
    shard: usize,
    version: i64,
    state: &str,
    delay_minutes: i64,
    updated_at: Option<i64>,
) -> Result<FlightStatus, StoreError> {
    let state =
        FlightState::parse(state).ok_or_else(|| StoreError::corrupt(shard, format!("unknown state {state:?}")))?;
    let updated_at = updated_at.map(UtcTime::from_unix).transpose().on_shard(shard)?;
    Ok(FlightStatus { version, state, delay_minutes, updated_at })
}

/// The columns of `sql::event_columns!`, in order.
pub(crate) struct EventColumns<'a> {
    pub flight_id: i64,
    pub version: i64,
    pub kind: &'a str,
    pub delay_minutes: i64,
    pub reason: &'a str,
    pub occurred_at: i64,
    pub schema_version: i64,
}

pub(crate) fn recorded_event(shard: usize, c: EventColumns<'_>) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        flight_id: FlightId::new(c.flight_id).on_shard(shard)?,
        version: c.version,
        event: DelayEvent {
            schema_version: DelayEvent::schema_version_from_column(c.schema_version).on_shard(shard)?,
            occurred_at: UtcTime::from_unix(c.occurred_at).on_shard(shard)?,
            kind: EventKind::from_columns(c.kind, c.delay_minutes, c.reason).on_shard(shard)?,
        },
    })
}

/// A `(state, delay, count)` group of `sql::DELAY_GROUPS`: is it the cancelled state,
/// and how many flights (counts are never negative).
pub(crate) fn delay_group(shard: usize, state: &str, count: i64) -> Result<(bool, u64), StoreError> {
    let state =
        FlightState::parse(state).ok_or_else(|| StoreError::corrupt(shard, format!("unknown state {state:?}")))?;
    let count = u64::try_from(count).map_err(|_| StoreError::corrupt(shard, "negative group count"))?;
    Ok((state == FlightState::Cancelled, count))
}
