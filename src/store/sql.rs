//! The SQL every text-based path runs, written once.
//!
//! `prepared` binds these texts; `raw` prepares and caches them through rusqlite or
//! tokio-postgres. Both databases accept the same text: numbered `$N` parameters
//! (SQLite reads `$1` as the named parameter "$1", and rusqlite binds positionally
//! in order of first appearance, so parameters must first appear in ascending order;
//! a test checks that) and 64-bit integer columns. `adhoc` renders the same shapes
//! with literals in `adhoc.rs`.

/// Columns of a `FlightView` row, in the order `decode::flight_view` reads them.
macro_rules! flight_view_columns {
    () => {
        "f.id, f.carrier, f.number, f.origin, f.destination, f.sched_dep, f.sched_arr, \
         s.version, s.state, s.delay_minutes, s.updated_at"
    };
}
pub(crate) use flight_view_columns;

macro_rules! flight_view_from {
    () => {
        " FROM flights f JOIN flight_status s ON s.flight_id = f.id "
    };
}
pub(crate) use flight_view_from;

pub const FLIGHT_BY_ID: &str = concat!("SELECT ", flight_view_columns!(), flight_view_from!(), "WHERE f.id = $1");

macro_rules! departures_in_order {
    () => {
        concat!(
            "SELECT ",
            flight_view_columns!(),
            flight_view_from!(),
            "WHERE f.origin = $1 AND f.sched_dep >= $2 AND f.sched_dep < $3 ",
            "ORDER BY f.sched_dep, f.id"
        )
    };
}

pub const DEPARTURES: &str = concat!(departures_in_order!(), " LIMIT $4");

/// [`DEPARTURES`] without its `LIMIT`, for the raw SQLite path, which steps at most the
/// limit's rows and resets. SQLite re-prepares a statement on every execution whose
/// `LIMIT` is a bound parameter (the planner reads its value): 15 µs of parsing and
/// planning on each shard query, where the query itself took 7 (4 rows; rusqlite,
/// `sqlite3_stmt_status` counting a re-prepare per run; results/shards.md). The index
/// yields rows in `ORDER BY` order, so stopping early reads no row past the page.
pub const DEPARTURES_STEPPED: &str = departures_in_order!();

pub const EVENTS: &str =
    concat!("SELECT ", crate::store::row::event_columns!(), " FROM delay_events WHERE flight_id = $1 ORDER BY version");

/// One row per (state, delay) group; `DelayHistogram` merges them across shards.
pub const DELAY_GROUPS: &str = "SELECT s.state, s.delay_minutes, COUNT(*) \
     FROM flights f JOIN flight_status s ON s.flight_id = f.id \
     WHERE f.origin = $1 AND f.sched_dep >= $2 AND f.sched_dep < $3 \
     GROUP BY s.state, s.delay_minutes";

/// The current status and the flight's departure (the events' partition key), read
/// inside the append transaction.
pub const STATUS_FOR_APPEND: &str = "SELECT s.version, s.state, s.delay_minutes, s.updated_at, f.sched_dep \
     FROM flight_status s JOIN flights f ON f.id = s.flight_id WHERE s.flight_id = $1";

/// Guarded by the expected version: zero rows changed means another writer won.
pub const UPDATE_STATUS: &str = "UPDATE flight_status SET version = $1, state = $2, delay_minutes = $3, updated_at = $4 \
     WHERE flight_id = $5 AND version = $6";

pub const INSERT_EVENT: &str = concat!(
    "INSERT INTO delay_events (",
    crate::store::row::event_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
);

pub use crate::audit::sql::{AUDIT_HEAD, AUDIT_LOCK, AUDIT_RECORDS, INSERT_AUDIT};

pub const ALL: &[&str] = &[
    FLIGHT_BY_ID,
    DEPARTURES,
    DEPARTURES_STEPPED,
    EVENTS,
    DELAY_GROUPS,
    STATUS_FOR_APPEND,
    UPDATE_STATUS,
    INSERT_EVENT,
];

#[cfg(test)]
mod tests {
    /// `$N` parameters must first appear in the order 1, 2, 3, … (see module doc).
    #[test]
    fn parameters_first_appear_in_ascending_order() {
        for sql in super::ALL {
            let mut next = 1;
            let bytes = sql.as_bytes();
            for (i, _) in sql.match_indices('$') {
                let digits: String =
                    bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
                let n: usize = digits.parse().unwrap();
                assert!(n <= next, "{sql}: ${n} appears before ${next}");
                if n == next {
                    next += 1;
                }
            }
            assert!(next > 1, "{sql} has no parameters");
        }
    }
}
