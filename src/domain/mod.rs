//! The flight-delay domain: validated identifiers, UTC times, delay events and the
//! flight-status projection they fold into.
//!
//! Everything here is pure: no I/O, no database types. Values are parsed once at the
//! edge (`parse`) and are valid from then on, so the store and the ad-hoc SQL path can
//! rely on an `AirportCode` being three ASCII capitals and a `Reason` holding no NUL.

mod event;
mod ids;
mod performance;
mod reporting;
mod status;
mod time;
pub mod upcast;
mod views;

pub use event::{DelayEvent, EventKind, EventKindError, Personal, Reason, ReasonError, SCHEMA_VERSION, Sealed};
pub use ids::{AirportCode, Carrier, FlightId, FlightNumber, IdError};
pub use performance::{ON_TIME_MINUTES, Tally};
pub use reporting::{DelayCode, ReportingError, SubjectId};
pub use status::{FlightState, FlightStatus, TransitionError};
pub use time::{TimeError, TimeWindow, UtcTime};
pub use views::{
    AppendOutcome, DelayHistogram, DelayStats, Departure, Flight, FlightView, Limit, LimitError, RecordedEvent,
};
