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
        cause TEXT, reported_by TEXT,
        PRIMARY KEY (flight_id, version)) STRICT, WITHOUT ROWID",
];

/// `(origin, sched_dep, id)` serves departures and delay statistics as a range scan
/// in result order, so `ORDER BY … LIMIT` stops early.
pub const INDEXES: &[&str] = &["CREATE INDEX flights_origin_dep ON flights (origin, sched_dep, id)"];

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
        cause TEXT, reported_by TEXT,
        PRIMARY KEY (flight_id, version, flight_dep)) PARTITION BY RANGE (flight_dep)",
];

pub const POSTGRES_DROP: &str = "DROP TABLE IF EXISTS flights, flight_status, delay_events CASCADE";

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
