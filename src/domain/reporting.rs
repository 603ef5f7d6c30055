//! Who reported a delay and why, as event schema v2 records them: an IATA delay code
//! ([`DelayCode`]) and the reporter's subject id ([`SubjectId`]).
//!
//! Version-1 events carried only the free-text reason. [`DelayCode::classify`] is the
//! one rule that turns such a text into a code; the v1 → v2 upcaster and the dataset
//! generator both use it, so an event read back through the upcaster and the same
//! event written as v2 agree.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportingError {
    #[error("delay code {0:?} is not an IATA delay code: two digits 01–99, e.g. \"93\"")]
    DelayCode(String),
    #[error("subject id {0:?} must be 1–255 printable characters")]
    Subject(String),
}

/// An IATA standard delay code (AHM 730): two digits, `01`–`99`. Kept as its text
/// because that is how every system exchanges it (`"09"`, not `9`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DelayCode([u8; 2]);

impl DelayCode {
    pub fn parse(text: &str) -> Result<Self, ReportingError> {
        match text.as_bytes() {
            &[a, b] if a.is_ascii_digit() && b.is_ascii_digit() && (a, b) != (b'0', b'0') => Ok(Self([a, b])),
            _ => Err(ReportingError::DelayCode(text.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Cannot fail: both bytes are ASCII digits (checked in `parse`).
        std::str::from_utf8(&self.0).expect("ASCII digits")
    }

    /// The code a free-text reason describes, by keyword, or `None` when the text names
    /// no cause this table knows (an empty reason, say): the upcaster then records no
    /// code rather than guessing "99, other". First match wins, so the more specific
    /// rules (de-icing before weather, destination weather before weather) come first.
    pub fn classify(reason: &str) -> Option<&'static str> {
        /// (keyword in the lower-cased reason, AHM 730 code).
        const RULES: &[(&str, &str)] = &[
            ("inbound", "93"),         // RA: aircraft rotation, late arrival from another flight
            ("rotation", "93"),        //
            ("de-ic", "75"),           // WS: de-icing of aircraft
            ("snow", "75"),            //
            ("weather at dest", "72"), // WT: weather at destination
            ("weather", "71"),         // WO: weather at departure station
            ("air traffic", "81"),     // AT: ATFM, en-route demand and capacity
            ("atc", "81"),             //
            ("crew", "64"),            // FS: flight deck crew shortage, rest requirements
            ("captain", "64"),         //
            ("technical", "41"),       // TD: aircraft defects
            ("defect", "41"),          //
            ("baggage", "18"),         // PB: baggage processing
        ];
        let lower = reason.to_lowercase();
        RULES.iter().find(|(keyword, _)| lower.contains(keyword)).map(|&(_, code)| code)
    }
}

impl TryFrom<String> for DelayCode {
    type Error = ReportingError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<DelayCode> for String {
    fn from(code: DelayCode) -> Self {
        code.as_str().to_owned()
    }
}

impl fmt::Display for DelayCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who reported an event: an OpenID Connect subject (`sub`), opaque to us. The token
/// work fills it from the caller's verified token; a client can never set it in the
/// body. OIDC Core §2 bounds `sub` at 255 ASCII characters; we accept printable text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectId(String);

impl SubjectId {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(text: &str) -> Result<Self, ReportingError> {
        let chars = text.chars().count();
        if (1..=Self::MAX_CHARS).contains(&chars) && !text.chars().any(char::is_control) {
            Ok(Self(text.to_owned()))
        } else {
            Err(ReportingError::Subject(text.chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SubjectId {
    type Error = ReportingError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SubjectId> for String {
    fn from(id: SubjectId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_codes() {
        for good in ["01", "09", "41", "93", "99"] {
            assert_eq!(DelayCode::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "0", "00", "100", "9", "a1", "١٢", " 9"] {
            assert_eq!(DelayCode::parse(bad), Err(ReportingError::DelayCode(bad.to_owned())), "{bad:?}");
        }
        let json: DelayCode = serde_json::from_str("\"72\"").unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), "\"72\"");
        assert!(serde_json::from_str::<DelayCode>("72").is_err(), "a number is not a code");
    }

    #[test]
    fn reasons_classify_to_codes() {
        let table = [
            ("late inbound aircraft", Some("93")),
            ("weather at destination", Some("72")),
            ("Weather", Some("71")),
            ("air traffic control restrictions", Some("81")),
            ("crew availability", Some("64")),
            ("technical inspection", Some("41")),
            ("baggage loading", Some("18")),
            ("de-icing", Some("75")),
            ("captain's rest requirement", Some("64")),
            ("", None),
            ("unspecified", None),
        ];
        for (reason, code) in table {
            assert_eq!(DelayCode::classify(reason), code, "{reason:?}");
            if let Some(code) = code {
                assert!(DelayCode::parse(code).is_ok(), "the table holds valid codes");
            }
        }
    }

    #[test]
    fn subjects() {
        assert_eq!(SubjectId::parse("248289761001").unwrap().as_str(), "248289761001");
        assert!(SubjectId::parse("ops desk LHR ✈").is_ok());
        assert!(SubjectId::parse(&"s".repeat(255)).is_ok());
        for bad in [String::new(), "s".repeat(256), "a\nb".to_owned(), "\0".to_owned()] {
            assert!(matches!(SubjectId::parse(&bad), Err(ReportingError::Subject(_))), "{bad:?}");
        }
    }
}
