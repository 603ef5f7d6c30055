//! Table layout for both backends.
//!
//! The same three tables everywhere: `flights` (reference data), `delay_events` (the
//! append-only source of truth) and `flight_status` (the projection). Integers are
//! 64-bit in both databases (times are Unix seconds, see `domain::time`), so one set
//! of SQL serves both.
//!
//! PostgreSQL partitions `flights` by range on `sched_dep` and `delay_events` by range
//! on `flight_dep`, one partition per calendar month. `flight_dep` is the owning
//! flight's scheduled departure, copied onto each event: partitioning events by their
//! own time would make the `(flight_id, version)` uniqueness rule unenforceable,
//! because every unique constraint must include the partition key. With `flight_dep`
//! in the key, `(flight_id, version, flight_dep)` is unique exactly when
//! `(flight_id, version)` is, and a flight's events share a partition with it. The
//! optimistic-concurrency guard itself is the versioned update of `flight_status`
//! in the append transaction; the key is the second line of defence.
//!
//! Secondary indexes are created after the bulk load (faster than maintaining them
//! row by row).

use crate::dataset::DatasetSpec;
use crate::domain::UtcTime;
use time::{Month, OffsetDateTime};

pub const SQLITE_TABLES: &[&str] = &[
    "CREATE TABLE flights (
        id INTEGER PRIMARY KEY, carrier TEXT NOT NULL, number INTEGER NOT NULL,
        origin TEXT NOT NULL, destination TEXT NOT NULL,
        sched_dep INTEGER NOT NULL, sched_arr INTEGER NOT NULL) STRICT",
    "CREATE TABLE flight_status (
        flight_id INTEGER PRIMARY KEY, version INTEGER NOT NULL, state TEXT NOT NULL,
        delay_minutes INTEGER NOT NULL, updated_at INTEGER) STRICT",
    "CREATE TABLE delay_events (
        flight_id INTEGER NOT NULL, version INTEGER NOT NULL, flight_dep INTEGER NOT NULL,
        kind TEXT NOT NULL, delay_minutes INTEGER NOT NULL, reason TEXT NOT NULL,
        occurred_at INTEGER NOT NULL, schema_version INTEGER NOT NULL,
        cause TEXT, reported_by TEXT, seq INTEGER NOT NULL DEFAULT 0, data_key TEXT,
        PRIMARY KEY (flight_id, version)) STRICT, WITHOUT ROWID",
];

/// `(origin, sched_dep, id)` serves departures and delay statistics as a range scan
/// in result order, so `ORDER BY … LIMIT` stops early.
/// `data_key` finds a subject's sealed events for an export (`seal`); partial, so
/// clear rows (every seeded one) add nothing to it.
pub const INDEXES: &[&str] = &["CREATE INDEX flights_origin_dep ON flights (origin, sched_dep, id)", DATA_KEY_INDEX];

/// Added by format 4 (and by `events migrate` to older datasets).
pub const DATA_KEY_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS delay_events_data_key ON delay_events (data_key) WHERE data_key IS NOT NULL";

pub const POSTGRES_TABLES: &[&str] = &[
    "CREATE TABLE flights (
        id BIGINT NOT NULL, carrier TEXT NOT NULL, number BIGINT NOT NULL,
        origin TEXT NOT NULL, destination TEXT NOT NULL,
        sched_dep BIGINT NOT NULL, sched_arr BIGINT NOT NULL,
        PRIMARY KEY (id, sched_dep)) PARTITION BY RANGE (sched_dep)",
    "CREATE TABLE flight_status (
        flight_id BIGINT PRIMARY KEY, version BIGINT NOT NULL, state TEXT NOT NULL,
        delay_minutes BIGINT NOT NULL, updated_at BIGINT)",
    "CREATE TABLE delay_events (
        flight_id BIGINT NOT NULL, version BIGINT NOT NULL, flight_dep BIGINT NOT NULL,
        kind TEXT NOT NULL, delay_minutes BIGINT NOT NULL, reason TEXT NOT NULL,
        occurred_at BIGINT NOT NULL, schema_version BIGINT NOT NULL,
        cause TEXT, reported_by TEXT, seq BIGINT NOT NULL DEFAULT 0, data_key TEXT,
        PRIMARY KEY (flight_id, version, flight_dep)) PARTITION BY RANGE (flight_dep)",
];

pub const POSTGRES_DROP: &str = "DROP TABLE IF EXISTS flights, flight_status, delay_events, event_sequence, \
     projection_checkpoints, board_departures, airport_hour_stats, carrier_on_time, board_departures_next, \
     airport_hour_stats_next, carrier_on_time_next, audit_log CASCADE; \
     DROP FUNCTION IF EXISTS next_event_seq() CASCADE; DROP FUNCTION IF EXISTS audit_log_append_only() CASCADE";

/// Numbers the events already stored, oldest first, from 1: run once on a shard whose
/// events all have `seq` 0 (after a bulk load, or when a format-2 dataset is upgraded),
/// before [`SQLITE_SEQUENCING`] / [`POSTGRES_SEQUENCING`]. Both databases accept it.
pub const NUMBER_EVENTS: &str = "UPDATE delay_events SET seq = n.seq \
     FROM (SELECT flight_id AS fid, version AS v, flight_dep AS dep, \
           row_number() OVER (ORDER BY occurred_at, flight_id, version) AS seq FROM delay_events) AS n \
     WHERE delay_events.flight_id = n.fid AND delay_events.version = n.v AND delay_events.flight_dep = n.dep";

/// The per-shard commit sequence (`store::projection` explains why it never leaves a
/// gap): the counter, primed with the events already numbered, the trigger that gives
/// every inserted event the next number, and the index the projection runner reads by.
/// SQLite writers are serial (`BEGIN IMMEDIATE`), so an `AFTER INSERT` trigger that
/// bumps the counter and stamps the row is enough.
pub const SQLITE_SEQUENCING: &[&str] = &[
    "CREATE TABLE event_sequence (id INTEGER PRIMARY KEY CHECK (id = 0), last INTEGER NOT NULL) STRICT",
    "INSERT INTO event_sequence (id, last) SELECT 0, COALESCE(MAX(seq), 0) FROM delay_events",
    "CREATE UNIQUE INDEX delay_events_seq ON delay_events (seq)",
    "CREATE TRIGGER delay_events_sequence AFTER INSERT ON delay_events BEGIN
        UPDATE event_sequence SET last = last + 1 WHERE id = 0;
        UPDATE delay_events SET seq = (SELECT last FROM event_sequence WHERE id = 0)
         WHERE flight_id = NEW.flight_id AND version = NEW.version;
     END",
];

/// PostgreSQL: a `BEFORE INSERT` trigger takes the next number by updating the
/// counter row, whose lock it then holds until the transaction ends. A writer that
/// commits late therefore holds back every later number (no reader can see number
/// n+1 before n), and one that rolls back returns its number. An index, not a unique
/// one: a partitioned table's unique index must include the partition key; the
/// counter is what makes numbers unique.
pub const POSTGRES_SEQUENCING: &[&str] = &[
    "CREATE TABLE event_sequence (id INT PRIMARY KEY CHECK (id = 0), last BIGINT NOT NULL)",
    "INSERT INTO event_sequence (id, last) SELECT 0, COALESCE(MAX(seq), 0) FROM delay_events",
    "CREATE INDEX delay_events_seq ON delay_events (seq)",
    "CREATE FUNCTION next_event_seq() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
        UPDATE event_sequence SET last = last + 1 WHERE id = 0 RETURNING last INTO NEW.seq;
        RETURN NEW;
     END $$",
    "CREATE TRIGGER delay_events_sequence BEFORE INSERT ON delay_events
        FOR EACH ROW EXECUTE FUNCTION next_event_seq()",
];

pub use crate::audit::sql::{AUDIT_INDEX, AUDIT_TABLE, POSTGRES_AUDIT, SQLITE_AUDIT};

/// The async read models' checkpoints, on every shard (see `store::projection`).
pub const CHECKPOINTS_TABLE: &str = "CREATE TABLE projection_checkpoints (
        projection TEXT NOT NULL, source_shard BIGINT NOT NULL, seq BIGINT NOT NULL,
        PRIMARY KEY (projection, source_shard))";

/// The async read models' tables, on every shard (a row lives on the shard its key
/// hashes to; see `projection`), as templates: `{t}` is the table's name (a rebuild
/// builds `<name>_next` beside the live one, then renames it) and `{token}` makes its
/// index names unique, since an index keeps its name when its table is renamed. Plain
/// integer and text types both databases accept (SQLite reads `BIGINT` as INTEGER
/// affinity).
pub const READ_MODEL_TABLES: &[(&str, &[&str])] = &[
    (
        "board_departures",
        &[
            "CREATE TABLE {t} (
                flight_id BIGINT PRIMARY KEY, carrier TEXT NOT NULL, number BIGINT NOT NULL,
                origin TEXT NOT NULL, destination TEXT NOT NULL,
                sched_dep BIGINT NOT NULL, sched_arr BIGINT NOT NULL,
                version BIGINT NOT NULL, state TEXT NOT NULL, delay_minutes BIGINT NOT NULL, updated_at BIGINT)",
            "CREATE INDEX board_departures_origin{token} ON {t} (origin, sched_dep, flight_id)",
        ],
    ),
    (
        "airport_hour_stats",
        &["CREATE TABLE {t} (
            airport TEXT NOT NULL, hour BIGINT NOT NULL, departed BIGINT NOT NULL, on_time BIGINT NOT NULL,
            cancelled BIGINT NOT NULL, delay_minutes BIGINT NOT NULL, reports BIGINT NOT NULL,
            PRIMARY KEY (airport, hour))"],
    ),
    (
        "carrier_on_time",
        &["CREATE TABLE {t} (
            carrier TEXT PRIMARY KEY, departed BIGINT NOT NULL, on_time BIGINT NOT NULL,
            cancelled BIGINT NOT NULL, delay_minutes BIGINT NOT NULL, reports BIGINT NOT NULL)"],
    ),
];

/// One read model's DDL as `table` with the index-name `token`.
pub fn read_model_ddl(base: &str, table: &str, token: &str) -> Vec<String> {
    READ_MODEL_TABLES
        .iter()
        .filter(|(name, _)| *name == base)
        .flat_map(|(_, ddl)| ddl.iter().map(|d| d.replace("{t}", table).replace("{token}", token)))
        .collect()
}

/// The checkpoints and every read model's live table, as `seed` and the format-3
/// upgrade create them.
pub fn projection_tables() -> Vec<String> {
    let live = READ_MODEL_TABLES.iter().flat_map(|(name, _)| read_model_ddl(name, name, ""));
    std::iter::once(CHECKPOINTS_TABLE.to_owned()).chain(live).collect()
}

/// A calendar month as a half-open range of Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthRange {
    pub year: i32,
    pub month: u8,
    pub from: i64,
    pub to: i64,
}

/// The months the dataset's schedule touches, in order.
pub fn months_covering(spec: &DatasetSpec) -> Vec<MonthRange> {
    let first_of_month = |t: UtcTime| {
        // Cannot fail: UtcTime keeps instants inside the representable range.
        let d = OffsetDateTime::from_unix_timestamp(t.unix()).expect("in range").date();
        (d.year(), d.month())
    };
    let start_of = |year: i32, month: Month| {
        time::Date::from_calendar_date(year, month, 1).expect("valid date").midnight().assume_utc().unix_timestamp()
    };
    let last = spec.end().plus_seconds(-1);
    let (mut year, mut month) = first_of_month(spec.start);
    let mut months = Vec::new();
    loop {
        let (next_year, next_month) =
            if month == Month::December { (year + 1, Month::January) } else { (year, month.next()) };
        let range =
            MonthRange { year, month: month as u8, from: start_of(year, month), to: start_of(next_year, next_month) };
        months.push(range);
        if range.to > last.unix() {
            return months;
        }
        (year, month) = (next_year, next_month);
    }
}

/// Partition DDL for both partitioned tables.
pub fn postgres_partitions(spec: &DatasetSpec) -> Vec<String> {
    months_covering(spec)
        .iter()
        .flat_map(|m| {
            ["flights", "delay_events"].map(|table| {
                format!(
                    "CREATE TABLE {table}_y{:04}m{:02} PARTITION OF {table} FOR VALUES FROM ({}) TO ({})",
                    m.year, m.month, m.from, m.to
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_cover_the_schedule_exactly() {
        let spec = DatasetSpec::new(1, 1, 45, UtcTime::parse("2026-12-01").unwrap()).unwrap();
        let months = months_covering(&spec);
        let names: Vec<_> = months.iter().map(|m| (m.year, m.month)).collect();
        assert_eq!(names, [(2026, 12), (2027, 1)]);
        assert_eq!(months[0].from, spec.start.unix());
        assert_eq!(months[0].to, months[1].from);
        assert_eq!(months[1].to, UtcTime::parse("2027-02-01").unwrap().unix());

        let one_day = DatasetSpec::new(1, 1, 1, UtcTime::parse("2026-12-31").unwrap()).unwrap();
        assert_eq!(months_covering(&one_day).len(), 1);
        assert_eq!(postgres_partitions(&one_day).len(), 2);
    }
}
