//! Rows → domain values, once for all paths.
//!
//! Each driver gives positional access to its rows ([`Columns`]) and the readers here
//! do the rest, so every arm of a benchmark does the same decoding work and a stored
//! value the domain rejects is reported the same way (as corruption on a named shard)
//! whichever path read it. The ORM, which reads models rather than positions, hands
//! its fields to the `*_of` functions.

use super::error::{CorruptOnShard, StoreError};
use super::row::{EventRow, FlightRow, StatusRow};
use crate::domain::upcast::upcast;
use crate::domain::{
    AirportCode, Carrier, DelayEvent, EventKindError, Flight, FlightId, FlightNumber, FlightState, FlightStatus,
    FlightView, Personal, RecordedEvent, SCHEMA_VERSION, Sealed, UtcTime,
};

/// One result row's columns by position, whatever the driver. Each driver implements
/// it once (`path::raw` for rusqlite and tokio-postgres, `path::sqlx_rows` for sqlx),
/// and the readers below turn positions into rows and rows into domain values.
pub(crate) trait Columns {
    /// The shard the row came from, named in errors.
    fn shard(&self) -> usize;
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, i: usize) -> Result<&str, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<&str>, StoreError>;
}

/// A row of `sql::flight_view_columns!`.
pub(crate) fn flight_view(c: &impl Columns) -> Result<FlightView, StoreError> {
    let flight = flight(c)?;
    let status = StatusRow {
        flight_id: flight.id.get(),
        version: c.int(7)?,
        state: c.text(8)?,
        delay_minutes: c.int(9)?,
        updated_at: c.opt_int(10)?,
    };
    Ok(FlightView { status: status_of(c.shard(), status)?, flight })
}

/// A flight and its status as the domain's view.
pub(crate) fn flight_view_of(shard: usize, f: FlightRow<'_>, s: StatusRow<'_>) -> Result<FlightView, StoreError> {
    Ok(FlightView { flight: flight_of(shard, f)?, status: status_of(shard, s)? })
}

/// The first seven columns of `sql::flight_view_columns!` (a `flights` row).
pub(crate) fn flight(c: &impl Columns) -> Result<Flight, StoreError> {
    let row = FlightRow {
        id: c.int(0)?,
        carrier: c.text(1)?,
        number: c.int(2)?,
        origin: c.text(3)?,
        destination: c.text(4)?,
        sched_dep: c.int(5)?,
        sched_arr: c.int(6)?,
    };
    flight_of(c.shard(), row)
}

fn flight_of(shard: usize, f: FlightRow<'_>) -> Result<Flight, StoreError> {
    Ok(Flight {
        id: FlightId::new(f.id).on_shard(shard)?,
        carrier: Carrier::parse(f.carrier).on_shard(shard)?,
        number: FlightNumber::new(f.number).on_shard(shard)?,
        origin: AirportCode::parse(f.origin).on_shard(shard)?,
        destination: AirportCode::parse(f.destination).on_shard(shard)?,
        scheduled_departure: UtcTime::from_unix(f.sched_dep).on_shard(shard)?,
        scheduled_arrival: UtcTime::from_unix(f.sched_arr).on_shard(shard)?,
    })
}

/// A row's columns from `offset` on, as if they were the whole row: a reader of one
/// column list applied to a row that joins two.
pub(crate) struct Offset<'c, C>(pub &'c C, pub usize);

impl<C: Columns> Columns for Offset<'_, C> {
    fn shard(&self) -> usize {
        self.0.shard()
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.0.int(self.1 + i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.0.opt_int(self.1 + i)
    }
    fn text(&self, i: usize) -> Result<&str, StoreError> {
        self.0.text(self.1 + i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        self.0.opt_text(self.1 + i)
    }
}

/// A status row as the domain's status.
pub(crate) fn status_of(shard: usize, s: StatusRow<'_>) -> Result<FlightStatus, StoreError> {
    let state = FlightState::parse(s.state)
        .ok_or_else(|| StoreError::corrupt(shard, format!("unknown state {:?}", s.state)))?;
    let updated_at = s.updated_at.map(UtcTime::from_unix).transpose().on_shard(shard)?;
    Ok(FlightStatus { version: s.version, state, delay_minutes: s.delay_minutes, updated_at })
}

/// A row of `sql::STATUS_FOR_APPEND`: the status and the flight's departure.
pub(crate) fn status_for_append(c: &impl Columns) -> Result<(FlightStatus, UtcTime), StoreError> {
    let status = StatusRow {
        flight_id: 0,
        version: c.int(0)?,
        state: c.text(1)?,
        delay_minutes: c.int(2)?,
        updated_at: c.opt_int(3)?,
    };
    Ok((status_of(c.shard(), status)?, time(c.shard(), c.int(4)?)?))
}

/// A stored Unix time.
pub(crate) fn time(shard: usize, unix: i64) -> Result<UtcTime, StoreError> {
    UtcTime::from_unix(unix).on_shard(shard)
}

/// A row of `row::event_columns!`.
pub(crate) fn recorded_event(c: &impl Columns) -> Result<RecordedEvent, StoreError> {
    let row = EventRow {
        flight_id: c.int(0)?,
        version: c.int(1)?,
        flight_dep: c.int(2)?,
        kind: c.text(3)?,
        delay_minutes: c.int(4)?,
        reason: c.text(5)?,
        occurred_at: c.int(6)?,
        schema_version: c.int(7)?,
        cause: c.opt_text(8)?,
        reported_by: c.opt_text(9)?,
        data_key: c.opt_text(10)?,
    };
    recorded_event_of(c.shard(), row)
}

/// A stored event, of any schema version this build knows, as the domain's current
/// event: upcast (`domain::upcast`), then decoded. An event the build cannot read (a
/// newer version, a value it would never write) is reported with its flight and
/// version, never skipped or misread.
pub(crate) fn recorded_event_of(shard: usize, c: EventRow<'_>) -> Result<RecordedEvent, StoreError> {
    let named = |e: EventKindError| {
        StoreError::corrupt(shard, format_args!("event {} of flight {}: {e}", c.version, c.flight_id))
    };
    let occurred_at = UtcTime::from_unix(c.occurred_at).on_shard(shard)?;
    // A sealed row's `reason` is ciphertext: decode the rest with no reason, and keep
    // the ciphertext for the store to open (`seal`). Only this build seals, and always
    // at the current schema version, so there is nothing to upcast.
    let (row, personal) = match c.data_key {
        None => (c, Personal::Clear),
        Some(_) if c.schema_version != i64::from(SCHEMA_VERSION) => {
            return Err(StoreError::corrupt(
                shard,
                format_args!(
                    "event {} of flight {}: sealed at schema version {}",
                    c.version, c.flight_id, c.schema_version
                ),
            ));
        }
        Some(key) => {
            let sealed = Sealed { data_key: key.to_owned(), ciphertext: c.reason.to_owned() };
            (EventRow { reason: "", reported_by: None, data_key: None, ..c }, Personal::Sealed(sealed))
        }
    };
    let mut event =
        upcast(row.stored()).and_then(|current| DelayEvent::from_stored(occurred_at, &current)).map_err(named)?;
    event.personal = personal;
    Ok(RecordedEvent { flight_id: FlightId::new(c.flight_id).on_shard(shard)?, version: c.version, event })
}

/// A row of `sql::DELAY_GROUPS`: (cancelled?, delay minutes, flights).
pub(crate) fn delay_group(c: &impl Columns) -> Result<(bool, i64, u64), StoreError> {
    let (cancelled, count) = delay_group_of(c.shard(), c.text(0)?, c.int(2)?)?;
    Ok((cancelled, c.int(1)?, count))
}

/// A `(state, count)` of a delay group: is it the cancelled state, and how many
/// flights (counts are never negative).
pub(crate) fn delay_group_of(shard: usize, state: &str, count: i64) -> Result<(bool, u64), StoreError> {
    let state =
        FlightState::parse(state).ok_or_else(|| StoreError::corrupt(shard, format!("unknown state {state:?}")))?;
    let count = u64::try_from(count).map_err(|_| StoreError::corrupt(shard, "negative group count"))?;
    Ok((state == FlightState::Cancelled, count))
}
