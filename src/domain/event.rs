//! Delay events: the source of truth for everything the service says about a flight.
//!
//! Events carry a `schema_version` so that stored streams stay readable when the event
//! format grows. Version 2 added the IATA delay code (`cause`) and the reporter's
//! subject id (`reported_by`); version-1 events stay in the data and are upcast on read
//! (`domain::upcast`). In the database an event's payload is five columns (`kind`,
//! `delay_minutes`, `reason`, `cause`, `reported_by`); [`DelayEvent::from_stored`] is
//! the single place that maps a current-version payload back, so the four query paths
//! cannot disagree on decoding.

use super::reporting::{DelayCode, ReportingError, SubjectId};
use super::time::UtcTime;
use super::upcast::StoredEvent;
use serde::{Deserialize, Serialize};

/// The event format version written by this build. Older stored versions are upcast on
/// read (`domain::upcast`); newer ones are refused by name.
pub const SCHEMA_VERSION: u16 = 2;

/// The most delay a report may carry: two days. Anything longer is a data-entry error.
pub const MAX_DELAY_MINUTES: i64 = 2_880;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventKindError {
    #[error("unknown event kind {0:?} (expected reported, revised, cancelled or departed)")]
    UnknownKind(String),
    #[error("delay of {minutes} minutes is outside {min}..={max} for a {kind} event")]
    DelayOutOfRange { kind: &'static str, minutes: i64, min: i64, max: i64 },
    #[error(transparent)]
    Reason(#[from] ReasonError),
    #[error(transparent)]
    Reporting(#[from] ReportingError),
    #[error("schema version {found} is newer than this build understands ({known}): upgrade flightbench to read it")]
    NewerSchema { found: i64, known: i64 },
    #[error("schema version {from} has no upcaster to version {known}")]
    NoUpcaster { from: i64, known: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReasonError {
    #[error("reason is {0} characters long; the maximum is {max}", max = Reason::MAX_CHARS)]
    TooLong(usize),
    #[error("reason contains a control character (U+{0:04X}); only printable text is accepted")]
    ControlCharacter(u32),
}

/// Free text a person typed about a delay. Printable text only (no NUL or other control
/// characters, which PostgreSQL cannot store and terminals mis-render) and bounded in
/// length; quotes, semicolons and any Unicode are fine and are stored verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Reason(String);

impl Reason {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(text: &str) -> Result<Self, ReasonError> {
        let chars = text.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(ReasonError::TooLong(chars));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(ReasonError::ControlCharacter(c as u32));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What happened to the flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventKind {
    /// A first delay estimate.
    Reported {
        delay_minutes: i64,
        #[serde(default)]
        reason: Reason,
    },
    /// A changed estimate; zero clears the delay.
    Revised {
        delay_minutes: i64,
        #[serde(default)]
        reason: Reason,
    },
    Cancelled {
        #[serde(default)]
        reason: Reason,
    },
    /// Off-block, with the final delay.
    Departed { delay_minutes: i64 },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Reported { .. } => "reported",
            EventKind::Revised { .. } => "revised",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::Departed { .. } => "departed",
        }
    }

    /// The `delay_minutes` column: zero for a cancellation.
    pub fn delay_minutes(&self) -> i64 {
        match self {
            EventKind::Reported { delay_minutes, .. }
            | EventKind::Revised { delay_minutes, .. }
            | EventKind::Departed { delay_minutes } => *delay_minutes,
            EventKind::Cancelled { .. } => 0,
        }
    }

    /// The `reason` column: empty where the kind has none.
    pub fn reason(&self) -> &str {
        match self {
            EventKind::Reported { reason, .. }
            | EventKind::Revised { reason, .. }
            | EventKind::Cancelled { reason } => reason.as_str(),
            EventKind::Departed { .. } => "",
        }
    }

    /// Replaces the reason, where the kind has one (opening or erasing a sealed event).
    pub fn set_reason(&mut self, new: Reason) {
        match self {
            EventKind::Reported { reason, .. }
            | EventKind::Revised { reason, .. }
            | EventKind::Cancelled { reason } => *reason = new,
            EventKind::Departed { .. } => {}
        }
    }

    /// Checks the delay bounds; reasons were checked when parsed.
    pub fn validate(&self) -> Result<(), EventKindError> {
        let (min, minutes) = match self {
            EventKind::Reported { delay_minutes, .. } => (1, *delay_minutes),
            EventKind::Revised { delay_minutes, .. } | EventKind::Departed { delay_minutes } => (0, *delay_minutes),
            EventKind::Cancelled { .. } => return Ok(()),
        };
        if (min..=MAX_DELAY_MINUTES).contains(&minutes) {
            Ok(())
        } else {
            Err(EventKindError::DelayOutOfRange { kind: self.name(), minutes, min, max: MAX_DELAY_MINUTES })
        }
    }

    /// Rebuilds an event from its stored columns, rejecting anything this build could
    /// not have written.
    pub fn from_columns(kind: &str, delay_minutes: i64, reason: &str) -> Result<Self, EventKindError> {
        let reason = || Reason::parse(reason);
        let event = match kind {
            "reported" => EventKind::Reported { delay_minutes, reason: reason()? },
            "revised" => EventKind::Revised { delay_minutes, reason: reason()? },
            "cancelled" => EventKind::Cancelled { reason: reason()? },
            "departed" => EventKind::Departed { delay_minutes },
            other => return Err(EventKindError::UnknownKind(other.to_owned())),
        };
        event.validate()?;
        Ok(event)
    }
}

/// One event as appended: when it happened, what, and (since v2) why by IATA code and
/// who said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayEvent {
    #[serde(default = "current_schema_version")]
    pub schema_version: u16,
    pub occurred_at: UtcTime,
    #[serde(flatten)]
    pub kind: EventKind,
    /// The IATA delay code, when the reporter gave one (or, for a v1 event, when its
    /// reason text names a known cause).
    #[serde(default)]
    pub cause: Option<DelayCode>,
    /// The reporter's subject id from a verified token; `None` when nobody was
    /// authenticated (every v1 event, and writes with `--auth off`).
    #[serde(default)]
    pub reported_by: Option<SubjectId>,
    /// Whether the personal fields above (`reason`, `reported_by`) are here in clear.
    /// Only the store sets it: a request body can never claim an event is erased.
    #[serde(default, skip_deserializing, skip_serializing_if = "Personal::is_clear", rename = "personal_data")]
    pub personal: Personal,
}

/// Where an event's personal fields (the reporter's subject id and the free-text
/// reason) are. Stored encrypted (`seal`), an event reads as `Sealed` until the store
/// opens it with its data key; once that key has been destroyed (erasure), as
/// `Erased`, with an empty reason and no reporter, and it still folds: delay minutes,
/// kind, code and times are never sealed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Personal {
    /// In clear (never sealed, or opened).
    #[default]
    Clear,
    /// Encrypted under a data key, not opened yet.
    Sealed(Sealed),
    /// Its data key was destroyed: nobody can read these fields any more.
    Erased,
}

/// A sealed event's stored form: the data key's id and the ciphertext (`seal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub data_key: String,
    pub ciphertext: String,
}

impl Personal {
    pub fn is_clear(&self) -> bool {
        matches!(self, Personal::Clear)
    }
}

impl Serialize for Personal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Personal::Clear => "clear",
            Personal::Sealed(_) => "sealed",
            Personal::Erased => "erased",
        })
    }
}

fn current_schema_version() -> u16 {
    SCHEMA_VERSION
}

impl DelayEvent {
    pub fn new(occurred_at: UtcTime, kind: EventKind) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            occurred_at,
            kind,
            cause: None,
            reported_by: None,
            personal: Personal::Clear,
        }
    }

    pub fn with_cause(self, cause: Option<DelayCode>) -> Self {
        Self { cause, ..self }
    }

    pub fn with_reporter(self, reported_by: Option<SubjectId>) -> Self {
        Self { reported_by, ..self }
    }

    /// Decodes a stored payload that `upcast::upcast` has brought to this build's
    /// version, rejecting anything this build could not have written.
    pub fn from_stored(occurred_at: UtcTime, stored: &StoredEvent<'_>) -> Result<Self, EventKindError> {
        if stored.schema_version != i64::from(SCHEMA_VERSION) {
            return Err(EventKindError::NoUpcaster { from: stored.schema_version, known: SCHEMA_VERSION.into() });
        }
        let kind = EventKind::from_columns(&stored.kind, stored.delay_minutes, &stored.reason)?;
        let cause = stored.cause.as_deref().map(DelayCode::parse).transpose()?;
        let reported_by = stored.reported_by.as_deref().map(SubjectId::parse).transpose()?;
        Ok(Self { schema_version: SCHEMA_VERSION, occurred_at, kind, cause, reported_by, personal: Personal::Clear })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        for good in ["", "crew", "it's \"late\"; -- DROP TABLE flights", "Verspätung ✈ 遅延"] {
            assert_eq!(Reason::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(Reason::parse("a\0b"), Err(ReasonError::ControlCharacter(0)));
        assert_eq!(Reason::parse("a\nb"), Err(ReasonError::ControlCharacter(10)));
        assert_eq!(Reason::parse(&"x".repeat(201)), Err(ReasonError::TooLong(201)));
        assert!(Reason::parse(&"é".repeat(200)).is_ok(), "limit counts characters, not bytes");
    }

    #[test]
    fn columns_round_trip() {
        let events = [
            EventKind::Reported { delay_minutes: 25, reason: Reason::parse("weather").unwrap() },
            EventKind::Revised { delay_minutes: 0, reason: Reason::default() },
            EventKind::Cancelled { reason: Reason::parse("crew").unwrap() },
            EventKind::Departed { delay_minutes: 12 },
        ];
        for e in events {
            let back = EventKind::from_columns(e.name(), e.delay_minutes(), e.reason()).unwrap();
            assert_eq!(back, e);
        }
        assert!(matches!(EventKind::from_columns("exploded", 0, ""), Err(EventKindError::UnknownKind(_))));
        assert!(matches!(EventKind::from_columns("reported", 0, ""), Err(EventKindError::DelayOutOfRange { .. })));
        assert!(matches!(EventKind::from_columns("departed", 9_999, ""), Err(EventKindError::DelayOutOfRange { .. })));
    }

    #[test]
    fn json_shape() {
        let json = r#"{"occurred_at":"2026-12-01T06:00:00Z","kind":"reported","delay_minutes":30,"reason":"fog"}"#;
        let event: DelayEvent = serde_json::from_str(json).unwrap();
        assert_eq!(event.schema_version, SCHEMA_VERSION);
        assert_eq!(event.kind, EventKind::Reported { delay_minutes: 30, reason: Reason::parse("fog").unwrap() });
        let bad = r#"{"occurred_at":"2026-12-01T06:00:00Z","kind":"reported","delay_minutes":30,"reason":"a\u0000b"}"#;
        assert!(serde_json::from_str::<DelayEvent>(bad).is_err());
        let unknown = r#"{"occurred_at":"2026-12-01T06:00:00Z","kind":"departed","delay_minutes":3,"gate":"B4"}"#;
        assert!(serde_json::from_str::<DelayEvent>(unknown).is_err());
    }

    #[test]
    fn stored_payloads_decode_only_at_the_current_version() {
        let at = UtcTime::from_unix(1_800_000_000).unwrap();
        let stored = StoredEvent {
            schema_version: 2,
            kind: "revised".into(),
            delay_minutes: 15,
            reason: "de-icing".into(),
            cause: Some("75".into()),
            reported_by: Some("ops-7".into()),
        };
        let event = DelayEvent::from_stored(at, &stored).unwrap();
        assert_eq!(event.cause, Some(DelayCode::parse("75").unwrap()));
        assert_eq!(event.reported_by.as_ref().map(SubjectId::as_str), Some("ops-7"));
        let v1 = StoredEvent { schema_version: 1, ..stored.clone() };
        assert_eq!(DelayEvent::from_stored(at, &v1), Err(EventKindError::NoUpcaster { from: 1, known: 2 }));
        let bad_code = StoredEvent { cause: Some("7".into()), ..stored.clone() };
        assert!(matches!(DelayEvent::from_stored(at, &bad_code), Err(EventKindError::Reporting(_))));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!((json["cause"].as_str(), json["reported_by"].as_str()), (Some("75"), Some("ops-7")));
        assert_eq!(json["schema_version"], 2);
    }
}
