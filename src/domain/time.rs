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

/// RFC 3339 in UTC, `2026-12-01T06:30:00Z`, its 20 bytes written on the stack and
/// handed to the formatter once: a 1,000-row departures board writes 2,000 of these.
/// The `time` crate's formatter built a `String` for each; `write!` with six padded
/// integers cost about 1,600 instructions each (`scripts/measure-hot-path.sh`).
impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, seconds) = (self.0.div_euclid(86_400), self.0.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        let mut text = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, value: u32, digits: usize| {
            let mut value = value;
            for i in (at..at + digits).rev() {
                text[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        // The year is 1970..=9999: `UtcTime` holds nothing else.
        put(0, year as u32, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, (seconds / 3_600) as u32, 2);
        put(14, (seconds % 3_600 / 60) as u32, 2);
        put(17, (seconds % 60) as u32, 2);
        // Cannot fail: every byte written is an ASCII digit or one of `-T:Z`.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact for every day `UtcTime` can hold).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

    /// The formatter agrees with the `time` crate's RFC 3339 on every kind of date:
    /// the epoch, leap days, centuries, the last representable second, and a sweep.
    #[test]
    fn display_matches_the_time_crates_rfc3339() {
        let reference = |t: i64| OffsetDateTime::from_unix_timestamp(t).unwrap().format(&Rfc3339).unwrap();
        let mut cases =
            vec![0, 59, 86_399, 86_400, 951_782_400, 951_868_799, 4_107_542_400, 1_796_106_600, UtcTime::MAX_SECONDS];
        cases.extend((0..20_000).map(|i| i * 12_680_000_007 % UtcTime::MAX_SECONDS));
        for t in cases {
            assert_eq!(UtcTime::from_unix(t).unwrap().to_string(), reference(t), "{t}");
        }
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

    proptest::proptest! {
        /// Every instant prints as RFC 3339 and parses back to itself.
        #[test]
        fn instants_round_trip(seconds in 0i64..=UtcTime::MAX_SECONDS) {
            let t = UtcTime::from_unix(seconds).unwrap();
            proptest::prop_assert_eq!(UtcTime::parse(&t.to_string()), Ok(t));
        }

        #[test]
        fn arbitrary_time_text_never_panics(text in "[0-9T:Z+.-]{0,32}|\\PC{0,32}") {
            if let Ok(t) = UtcTime::parse(&text) {
                proptest::prop_assert!((0..=UtcTime::MAX_SECONDS).contains(&t.unix()));
            }
        }
    }
}
