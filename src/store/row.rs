//! Domain values ↔ table rows, once for every writer and reader.
//!
//! An event becomes the eight columns of `delay_events` in [`EventRow::new`] (and a
//! stored row becomes an event again in `decode::recorded_event`), a status the
//! columns of `flight_status` in [`StatusRow::new`], a flight those of `flights` in
//! [`FlightRow::new`]. The four query paths' appends and both seeders write these rows
//! and nothing else. Each driver binds a row in one place of its own
//! (`sqlite_params` and `pg_params` here, the sqlx binds in `path::prepared`, the
//! literals in `path::adhoc`, the active model in `path::orm`), so a new column (event
//! schema v2, say) is added here and in each binding, not in every writer.

use crate::domain::upcast::StoredEvent;
use crate::domain::{DelayEvent, Flight, FlightId, FlightStatus, Personal, Sealed, UtcTime};
use std::borrow::Cow;

/// `delay_events`' columns in the order every writer binds them and every reader reads
/// them (the fields of [`EventRow`]; a test checks they agree).
macro_rules! event_columns {
    () => {
        "flight_id, version, flight_dep, kind, delay_minutes, reason, occurred_at, schema_version, cause, reported_by, data_key"
    };
}
pub(crate) use event_columns;

/// `flights`' columns in the order seeding binds them (the fields of [`FlightRow`]).
macro_rules! flight_columns {
    () => {
        "id, carrier, number, origin, destination, sched_dep, sched_arr"
    };
}
pub(crate) use flight_columns;

/// `flight_status`' columns in the order seeding binds them (the fields of [`StatusRow`]).
macro_rules! status_columns {
    () => {
        "flight_id, version, state, delay_minutes, updated_at"
    };
}
pub(crate) use status_columns;

/// A row type's bindings for the two bare drivers, its fields in column order, and
/// `FIELDS`, those fields' names, which the tests compare with the column lists.
macro_rules! driver_params {
    ($n:literal; $first:ident $(, $field:ident)*) => {
        /// The field names in column order.
        #[cfg(test)]
        const FIELDS: &'static str = concat!(stringify!($first) $(, ", ", stringify!($field))*);

        /// The row as rusqlite parameters, in column order.
        pub fn sqlite_params(&self) -> [&dyn rusqlite::ToSql; $n] {
            [&self.$first $(, &self.$field)*]
        }

        /// The row as tokio-postgres parameters, in column order (for binary `COPY`, the
        /// types are the row's `*_PG_TYPES`).
        pub fn pg_params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); $n] {
            [&self.$first $(, &self.$field)*]
        }
    };
}

/// One row of `delay_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRow<'a> {
    pub flight_id: i64,
    /// The flight's version after this event: 1 for its first.
    pub version: i64,
    /// The flight's scheduled departure, the events' partition key on PostgreSQL (see
    /// `store::schema`).
    pub flight_dep: i64,
    pub kind: &'a str,
    pub delay_minutes: i64,
    pub reason: &'a str,
    pub occurred_at: i64,
    pub schema_version: i64,
    /// v2: the IATA delay code; NULL in v1 rows.
    pub cause: Option<&'a str>,
    /// v2: the reporter's subject id; NULL in v1 rows and unauthenticated writes.
    pub reported_by: Option<&'a str>,
    /// Format 4: the id of the data key that sealed this row's personal fields (then
    /// `reason` holds their ciphertext and `reported_by` is NULL); NULL in clear rows.
    pub data_key: Option<&'a str>,
}

impl<'a> EventRow<'a> {
    /// An event sealed by the store (`Personal::Sealed`) becomes its sealed row.
    pub fn new(flight: FlightId, version: i64, flight_dep: UtcTime, event: &'a DelayEvent) -> Self {
        let row = Self {
            flight_id: flight.get(),
            version,
            flight_dep: flight_dep.unix(),
            kind: event.kind.name(),
            delay_minutes: event.kind.delay_minutes(),
            reason: event.kind.reason(),
            occurred_at: event.occurred_at.unix(),
            schema_version: i64::from(event.schema_version),
            cause: event.cause.as_ref().map(|c| c.as_str()),
            reported_by: event.reported_by.as_ref().map(|s| s.as_str()),
            data_key: None,
        };
        match &event.personal {
            Personal::Sealed(sealed) => row.sealed(sealed),
            Personal::Clear | Personal::Erased => row,
        }
    }

    /// The row with its personal fields replaced by their sealed form (`seal`): the
    /// ciphertext in `reason`, no reporter in clear, and the data key's id.
    pub fn sealed(self, sealed: &'a Sealed) -> Self {
        Self { reason: &sealed.ciphertext, reported_by: None, data_key: Some(&sealed.data_key), ..self }
    }

    /// The row a build before schema v2 wrote for this event: no code, no reporter,
    /// version 1. Only seeding (a dataset's older history) and tests write these; the
    /// service always writes the current version.
    pub fn as_version_1(self) -> Self {
        Self { schema_version: 1, cause: None, reported_by: None, ..self }
    }

    /// The versioned payload, borrowed, for `domain::upcast`.
    pub fn stored(&self) -> StoredEvent<'a> {
        StoredEvent {
            schema_version: self.schema_version,
            kind: Cow::Borrowed(self.kind),
            delay_minutes: self.delay_minutes,
            reason: Cow::Borrowed(self.reason),
            cause: self.cause.map(Cow::Borrowed),
            reported_by: self.reported_by.map(Cow::Borrowed),
        }
    }

    driver_params!(11; flight_id, version, flight_dep, kind, delay_minutes, reason, occurred_at, schema_version, cause, reported_by, data_key);
}

/// PostgreSQL types of [`EventRow::pg_params`], for binary `COPY`.
pub const EVENT_PG_TYPES: [tokio_postgres::types::Type; 11] = {
    use tokio_postgres::types::Type;
    [
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
    ]
};

/// One row of `flights` (reference data, written only by seeding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlightRow<'a> {
    pub id: i64,
    pub carrier: &'a str,
    pub number: i64,
    pub origin: &'a str,
    pub destination: &'a str,
    pub sched_dep: i64,
    pub sched_arr: i64,
}

impl<'a> FlightRow<'a> {
    pub fn new(flight: &'a Flight) -> Self {
        Self {
            id: flight.id.get(),
            carrier: flight.carrier.as_str(),
            number: flight.number.get(),
            origin: flight.origin.as_str(),
            destination: flight.destination.as_str(),
            sched_dep: flight.scheduled_departure.unix(),
            sched_arr: flight.scheduled_arrival.unix(),
        }
    }

    driver_params!(7; id, carrier, number, origin, destination, sched_dep, sched_arr);
}

/// PostgreSQL types of [`FlightRow::pg_params`], for binary `COPY`.
pub const FLIGHT_PG_TYPES: [tokio_postgres::types::Type; 7] = {
    use tokio_postgres::types::Type;
    [Type::INT8, Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT, Type::INT8, Type::INT8]
};

/// One row of `flight_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRow<'a> {
    pub flight_id: i64,
    pub version: i64,
    pub state: &'a str,
    pub delay_minutes: i64,
    pub updated_at: Option<i64>,
}

impl StatusRow<'_> {
    pub fn new(flight: FlightId, status: &FlightStatus) -> Self {
        Self {
            flight_id: flight.get(),
            version: status.version,
            state: status.state.as_str(),
            delay_minutes: status.delay_minutes,
            updated_at: status.updated_at.map(UtcTime::unix),
        }
    }

    driver_params!(5; flight_id, version, state, delay_minutes, updated_at);
}

/// PostgreSQL types of [`StatusRow::pg_params`], for binary `COPY`.
pub const STATUS_PG_TYPES: [tokio_postgres::types::Type; 5] = {
    use tokio_postgres::types::Type;
    [Type::INT8, Type::INT8, Type::TEXT, Type::INT8, Type::INT8]
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKind, Reason};

    #[test]
    fn an_event_becomes_its_columns() {
        let at = UtcTime::from_unix(1_800_000_000).unwrap();
        let event = DelayEvent::new(at, EventKind::Cancelled { reason: Reason::parse("it's crew; --").unwrap() });
        let row = EventRow::new(FlightId::new(7).unwrap(), 3, UtcTime::from_unix(1_799_990_000).unwrap(), &event);
        assert_eq!(
            row,
            EventRow {
                flight_id: 7,
                version: 3,
                flight_dep: 1_799_990_000,
                kind: "cancelled",
                delay_minutes: 0,
                reason: "it's crew; --",
                occurred_at: 1_800_000_000,
                schema_version: i64::from(crate::domain::SCHEMA_VERSION),
                cause: None,
                reported_by: None,
                data_key: None,
            }
        );
        let sealed = Sealed { data_key: "k1".into(), ciphertext: "c1".into() };
        let with_reporter = EventRow { reported_by: Some("ops-7"), ..row };
        let row_sealed = with_reporter.sealed(&sealed);
        assert_eq!((row_sealed.reason, row_sealed.reported_by, row_sealed.data_key), ("c1", None, Some("k1")));
        let v1 = row.as_version_1();
        assert_eq!((v1.schema_version, v1.cause, v1.reported_by, v1.reason), (1, None, None, "it's crew; --"));
        assert_eq!(EventRow::FIELDS, event_columns!());
        assert_eq!(row.pg_params().len(), EVENT_PG_TYPES.len());
    }

    #[test]
    fn a_status_becomes_its_columns() {
        let status = FlightStatus {
            version: 2,
            state: crate::domain::FlightState::Delayed,
            delay_minutes: 40,
            updated_at: Some(UtcTime::from_unix(10).unwrap()),
        };
        let row = StatusRow::new(FlightId::new(9).unwrap(), &status);
        assert_eq!(
            (row.flight_id, row.version, row.state, row.delay_minutes, row.updated_at),
            (9, 2, "delayed", 40, Some(10))
        );
        assert_eq!(StatusRow::FIELDS, status_columns!());
        assert_eq!(row.pg_params().len(), STATUS_PG_TYPES.len());
        assert_eq!(FlightRow::FIELDS, flight_columns!());
        assert_eq!(FLIGHT_PG_TYPES.len(), 7);
    }
}
