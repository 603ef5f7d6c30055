//! The messages on the bus: typed, versioned contracts, never the store's rows.
//!
//! One message per delay event, built from the event as every reader sees it
//! (upcast) and its flight's reference data, so a consumer needs no store: the
//! notification service matches subscriptions by airport from the message alone.
//!
//! **No personal fields.** The free-text reason and the reporter's subject id are left
//! out: the store encrypts them per subject and erases them by destroying the key
//! (`seal`), and a copy in a broker's queue, an error queue or a consumer's log could
//! never be erased that way. Consumers that need them ask the query service.
//!
//! **Versions.** `contract` names this message's shape (`delay-event.v1`); a change
//! that a v1 reader could misread gets a new name and routing-key prefix, published
//! beside the old until its consumers have moved. `event_schema_version` is the stored
//! event's own schema version (`domain::event`), which travels with it.

use crate::domain::{AirportCode, Carrier, DelayCode, FlightId, FlightNumber, UtcTime};
use crate::store::SequencedEvent;
use serde::{Deserialize, Serialize};

/// This message's shape; also its AMQP `type` property.
pub const CONTRACT: &str = "delay-event.v1";

/// The exchange every delay event is published to (topic, durable).
pub const EXCHANGE: &str = "flightbench.events";

/// One delay event, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayEventMessage {
    pub contract: String,
    pub event_schema_version: u16,
    /// Where it was written: the source shard and its commit sequence number there.
    pub shard: usize,
    pub seq: i64,
    pub flight_id: FlightId,
    /// The flight's version after this event: with `flight_id`, the event's identity.
    pub version: i64,
    pub carrier: Carrier,
    pub number: FlightNumber,
    pub origin: AirportCode,
    pub destination: AirportCode,
    pub scheduled_departure: UtcTime,
    /// `reported`, `revised`, `cancelled` or `departed`.
    pub kind: String,
    pub delay_minutes: i64,
    pub cause: Option<DelayCode>,
    pub occurred_at: UtcTime,
}

impl DelayEventMessage {
    /// The message for one stored event.
    pub fn of(shard: usize, event: &SequencedEvent) -> Self {
        let (flight, recorded) = (&event.flight, &event.recorded);
        Self {
            contract: CONTRACT.to_owned(),
            event_schema_version: recorded.event.schema_version,
            shard,
            seq: event.seq,
            flight_id: recorded.flight_id,
            version: recorded.version,
            carrier: flight.carrier,
            number: flight.number,
            origin: flight.origin,
            destination: flight.destination,
            scheduled_departure: flight.scheduled_departure,
            kind: recorded.event.kind.name().to_owned(),
            delay_minutes: recorded.event.kind.delay_minutes(),
            cause: recorded.event.cause,
            occurred_at: recorded.event.occurred_at,
        }
    }

    /// `delay-event.v1.<kind>.<origin>.<destination>`: a consumer binds what it wants
    /// (`delay-event.v1.#`, or `delay-event.v1.*.FRA.*` for departures from FRA).
    pub fn routing_key(&self) -> String {
        format!("{CONTRACT}.{}.{}.{}", self.kind, self.origin, self.destination)
    }

    /// `<flight id>/<version>`: the AMQP `message_id`, the same on every republish, by
    /// which consumers deduplicate.
    pub fn message_id(&self) -> String {
        format!("{}/{}", self.flight_id, self.version)
    }

    /// The message from a delivery's body; anything else (another contract, a body
    /// that does not parse) is a poison message, with the reason.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let message: Self = serde_json::from_slice(body).map_err(|e| format!("not a {CONTRACT} message: {e}"))?;
        if message.contract != CONTRACT {
            return Err(format!("contract {:?}, this consumer reads {CONTRACT}", message.contract));
        }
        Ok(message)
    }
}
