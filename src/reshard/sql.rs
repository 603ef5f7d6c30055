//! The statements a reshard runs, one text for both databases: `$n` parameters
//! (SQLite numbers them in order of appearance), `ON CONFLICT` clauses and `CAST`,
//! which both accept.

use crate::store::row::{event_columns, flight_columns, status_columns};

/// A chunk of flight ids' rows, table by table, in flight order.
pub const FLIGHTS: &str = concat!("SELECT ", flight_columns!(), " FROM flights WHERE id >= $1 AND id < $2 ORDER BY id");
pub const STATUS: &str = concat!(
    "SELECT ",
    status_columns!(),
    " FROM flight_status WHERE flight_id >= $1 AND flight_id < $2 ORDER BY flight_id"
);
pub const EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM delay_events WHERE flight_id >= $1 AND flight_id < $2 ORDER BY flight_id, version"
);
/// [`EVENTS`] with the old shard's event number, which the copy keeps until
/// [`RENUMBER`].
pub const EVENTS_NUMBERED: &str = concat!(
    "SELECT ",
    event_columns!(),
    ", seq FROM delay_events WHERE flight_id >= $1 AND flight_id < $2 ORDER BY flight_id, version"
);
/// A flight's events after a version.
pub const EVENTS_AFTER: &str =
    concat!("SELECT ", event_columns!(), " FROM delay_events WHERE flight_id = $1 AND version > $2 ORDER BY version");
pub const INSERT_FLIGHT: &str =
    concat!("INSERT INTO flights (", flight_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)");
/// A status row, replacing the flight's.
pub const PUT_STATUS: &str = concat!(
    "INSERT INTO flight_status (",
    status_columns!(),
    ") VALUES ($1, $2, $3, $4, $5) ON CONFLICT (flight_id) DO UPDATE SET version = EXCLUDED.version, \
     state = EXCLUDED.state, delay_minutes = EXCLUDED.delay_minutes, updated_at = EXCLUDED.updated_at"
);
/// An event, numbered by the shard's sequencing trigger.
pub const INSERT_EVENT: &str =
    concat!("INSERT INTO delay_events (", event_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
/// An event with its old number, before the new shard has its trigger.
pub const INSERT_NUMBERED_EVENT: &str = concat!(
    "INSERT INTO delay_events (",
    event_columns!(),
    ", seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);
/// Numbers a copied shard's events from 1 in the order of their old numbers. A new
/// shard gathers flights from several old ones, whose numbers interleave, but each
/// flight's events come from one old shard in commit order, so every flight's events
/// keep their order, which is all the projections need. (`schema::NUMBER_EVENTS`
/// orders by event time, right for a seed; a written event's time is the request's,
/// which may be earlier than a generated event's of a lower version.) PostgreSQL's key
/// includes `flight_dep`, which the flight and version already fix.
pub const RENUMBER: &str = "UPDATE delay_events SET seq = n.seq \
     FROM (SELECT flight_id AS fid, version AS v, row_number() OVER (ORDER BY seq, flight_id, version) AS seq \
           FROM delay_events) AS n \
     WHERE delay_events.flight_id = n.fid AND delay_events.version = n.v";
/// The last event number a shard has handed out.
pub const SEQUENCE_HEAD: &str = "SELECT last FROM event_sequence WHERE id = 0";
/// The flights with events numbered in `($1, $2]`.
pub const TOUCHED: &str = "SELECT DISTINCT flight_id FROM delay_events WHERE seq > $1 AND seq <= $2";
/// A flight's version in the events (0 with none).
pub const EVENT_VERSION: &str =
    "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM delay_events WHERE flight_id = $1";
/// The newest audit record's time (0 with none).
pub const AUDIT_HEAD_TIME: &str = "SELECT CAST(COALESCE(MAX(at), 0) AS BIGINT) FROM audit_log";
/// Audit records from a time on, in `INSERT_AUDIT`'s column order.
pub const AUDIT_SINCE: &str = "SELECT chain, seq, at, request_id, actor, actor_key, role, action, target, \
     before_version, after_version, prev_hash, hash FROM audit_log WHERE at >= $1";
/// An audit record, unless its chain has it already.
pub const INSERT_AUDIT: &str = "INSERT INTO audit_log (chain, seq, at, request_id, actor, actor_key, role, action, \
     target, before_version, after_version, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (chain, seq) DO NOTHING";

/// A shard's outbox relay checkpoints (`relay:<exchange>`, `bus::relay`): name and
/// the last event number published.
pub const RELAY_CHECKPOINTS: &str =
    "SELECT projection, seq FROM projection_checkpoints WHERE projection LIKE 'relay:%' AND source_shard = $1";
/// The events numbered after `$1`, by flight and version.
pub const EVENTS_SINCE: &str = "SELECT flight_id, version FROM delay_events WHERE seq > $1 ORDER BY seq";
/// An event's number.
pub const EVENT_SEQ: &str = "SELECT seq FROM delay_events WHERE flight_id = $1 AND version = $2";
/// A checkpoint, set.
pub const PUT_CHECKPOINT: &str = "INSERT INTO projection_checkpoints (projection, source_shard, seq) \
     VALUES ($1, $2, $3) ON CONFLICT (projection, source_shard) DO UPDATE SET seq = EXCLUDED.seq";
