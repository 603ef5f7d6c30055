//! UTC instants and half-open time windows.
//!
//! Times are whole seconds since the Unix epoch. The store keeps them as 64-bit integers
//! in both SQLite and PostgreSQL: every query path then decodes the same column type
//! the same way (no timezone or driver-specific timestamp decoding to disagree on),
//! comparisons are integer comparisons, and PostgreSQL range partitions still prune on
//! them. People see RFC 3339 (`2026-12-01T06:30:00Z`) in JSON and on the command line.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("time {0:?} is neither RFC 3339 (2026-12-01T06:30:00Z) nor a date (2026-12-01)")]
    Unparseable(String),
    #[error("time {0} is outside the supported range (years 1970..=9999)")]
    OutOfRange(i64),
    #[error("time window is empty or inverted: from {from} is not before to {to}")]
    Inverted { from: UtcTime, to: UtcTime },
    #[error("time window from {from} to {to} is longer than the {max_days}-day maximum")]
    TooLong { from: UtcTime, to: UtcTime, max_days: i64 },
}

/// An instant in UTC with one-second resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime(i64);

impl UtcTime {
    /// 9999-12-31T23:59:59Z: the last instant RFC 3339 can write with four-digit years.
    const MAX_SECONDS: i64 = 253_402_300_799;

    pub fn from_unix(seconds: i64) -> Result<Self, TimeError> {
        if (0..=Self::MAX_SECONDS).contains(&seconds) { Ok(Self(seconds)) } else { Err(TimeError::OutOfRange(seconds)) }
    }

    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Accepts RFC 3339 with any offset (normalised to UTC) or a bare `YYYY-MM-DD`,
    /// meaning midnight UTC.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let unparseable = || TimeError::Unparseable(text.to_owned());
        let instant = match OffsetDateTime::parse(text, &Rfc3339) {
            Ok(t) => t,
            Err(_) => {
                let date = time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
                    .map_err(|_| unparseable())?;
                date.midnight().assume_utc()
            }
        };
        Self::from_unix(instant.unix_timestamp())
    }

    pub fn unix(self) -> i64 {
        self.0
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds).clamp(0, Self::MAX_SECONDS))
    }
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cannot fail: the constructor keeps the value inside RFC 3339's range.
        let t = OffsetDateTime::from_unix_timestamp(self.0).expect("in range by construction");
        let text = t.format(&Rfc3339).expect("RFC 3339 formats any in-range instant");
        f.write_str(&text)
    }
}

impl Serialize for UtcTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UtcTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A half-open window `[from, to)`, non-empty and at most `MAX_DAYS` long, so that a
/// typo cannot turn an airport query into a scan of the whole dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeWindow {
    pub from: UtcTime,
    pub to: UtcTime,
}

impl TimeWindow {
    pub const MAX_DAYS: i64 = 366;

    pub fn new(from: UtcTime, to: UtcTime) -> Result<Self, TimeError> {
        if from >= to {
            return Err(TimeError::Inverted { from, to });
        }
        if to.0 - from.0 > Self::MAX_DAYS * 86_400 {
            return Err(TimeError::TooLong { from, to, max_days: Self::MAX_DAYS });
        }
        Ok(Self { from, to })
    }

    pub fn contains(&self, t: UtcTime) -> bool {
        self.from <= t && t < self.to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_dates() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-12-01T06:30:00Z", 1_796_106_600),
            ("2026-12-01T07:30:00+01:00", 1_796_106_600),
            ("2026-12-01", 1_796_083_200),
        ];
        for (text, unix) in cases {
            assert_eq!(UtcTime::parse(text).unwrap().unix(), unix, "{text}");
        }
        assert_eq!(UtcTime::from_unix(1_796_106_600).unwrap().to_string(), "2026-12-01T06:30:00Z");
    }

    #[test]
    fn rejects_bad_times() {
        for bad in ["", "yesterday", "2026-13-01", "2026-12-01T25:00:00Z", "1796106600", "1969-12-31T23:59:59Z"] {
            assert!(UtcTime::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(UtcTime::from_unix(-1).is_err());
    }

    #[test]
    fn windows_must_be_ordered_and_bounded() {
        let t = |s| UtcTime::parse(s).unwrap();
        assert!(TimeWindow::new(t("2026-12-01"), t("2026-12-02")).is_ok());
        assert!(matches!(TimeWindow::new(t("2026-12-02"), t("2026-12-01")), Err(TimeError::Inverted { .. })));
        assert!(matches!(TimeWindow::new(t("2026-12-01"), t("2026-12-01")), Err(TimeError::Inverted { .. })));
        assert!(matches!(TimeWindow::new(t("2026-01-01"), t("2027-06-01")), Err(TimeError::TooLong { .. })));
        let w = TimeWindow::new(t("2026-12-01"), t("2026-12-02")).unwrap();
        assert!(w.contains(t("2026-12-01")));
        assert!(!w.contains(t("2026-12-02")));
    }
}
