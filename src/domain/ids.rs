//! Identifier newtypes. Each has a `parse` that is the only way to build one from
//! outside input, and each is tested below with tables of good and bad inputs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was rejected; the message names the bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("flight id {0:?} is not a positive integer")]
    FlightId(String),
    #[error("airport code {0:?} is not three uppercase letters (IATA, e.g. \"JFK\")")]
    Airport(String),
    #[error("carrier code {0:?} is not two uppercase letters or digits (IATA, e.g. \"BA\")")]
    Carrier(String),
    #[error("flight number {0} is outside 1..=9999")]
    FlightNumber(i64),
}

/// A flight's id: the shard key. Positive and below 2^53 so it survives JSON clients
/// that read numbers as doubles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct FlightId(i64);

impl FlightId {
    pub const MAX: i64 = (1 << 53) - 1;

    pub fn new(id: i64) -> Result<Self, IdError> {
        if (1..=Self::MAX).contains(&id) { Ok(Self(id)) } else { Err(IdError::FlightId(id.to_string())) }
    }

    pub fn parse(text: &str) -> Result<Self, IdError> {
        let bad = || IdError::FlightId(text.to_owned());
        // `i64::from_str` accepts a leading '+'; ids are plain digits only.
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        text.parse::<i64>().map_err(|_| bad()).and_then(|n| Self::new(n).map_err(|_| bad()))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for FlightId {
    type Error = IdError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<FlightId> for i64 {
    fn from(id: FlightId) -> Self {
        id.0
    }
}

impl fmt::Display for FlightId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Fixed-size ASCII code stored inline: no allocation to copy one around a hot path.
macro_rules! ascii_code {
    ($name:ident, $len:literal, $valid:expr, $err:path, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let bytes = text.as_bytes();
                let valid: fn(u8) -> bool = $valid;
                if bytes.len() != $len || !bytes.iter().all(|&b| valid(b)) {
                    return Err($err(text.to_owned()));
                }
                let mut code = [0u8; $len];
                code.copy_from_slice(bytes);
                Ok(Self(code))
            }

            pub fn as_str(&self) -> &str {
                // Cannot fail: `parse` admits ASCII bytes only.
                std::str::from_utf8(&self.0).expect("ASCII by construction")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

ascii_code!(
    AirportCode,
    3,
    |b| b.is_ascii_uppercase(),
    IdError::Airport,
    "An IATA airport code: exactly three ASCII uppercase letters."
);
ascii_code!(
    Carrier,
    2,
    |b| b.is_ascii_uppercase() || b.is_ascii_digit(),
    IdError::Carrier,
    "An IATA carrier code: two ASCII uppercase letters or digits (\"BA\", \"U2\")."
);

/// A flight number within its carrier, 1..=9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct FlightNumber(u16);

impl FlightNumber {
    pub fn new(n: i64) -> Result<Self, IdError> {
        if (1..=9999).contains(&n) { Ok(Self(n as u16)) } else { Err(IdError::FlightNumber(n)) }
    }

    pub fn get(self) -> i64 {
        i64::from(self.0)
    }
}

impl TryFrom<i64> for FlightNumber {
    type Error = IdError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<FlightNumber> for i64 {
    fn from(n: FlightNumber) -> Self {
        n.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flight_ids() {
        for good in ["1", "42", "9007199254740991"] {
            assert_eq!(FlightId::parse(good).unwrap().to_string(), good);
        }
        for bad in ["", "0", "-1", "+5", "1.0", " 1", "1 ", "abc", "9007199254740992", "1;DROP"] {
            assert_eq!(FlightId::parse(bad), Err(IdError::FlightId(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn airport_codes() {
        for good in ["JFK", "LHR", "AAA"] {
            assert_eq!(AirportCode::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "jfk", "JF", "JFKX", "J1K", "JF'", "ÄBC", "JF\0", "J K"] {
            assert!(AirportCode::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn carrier_codes() {
        for good in ["BA", "U2", "9W"] {
            assert_eq!(Carrier::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "B", "ba", "BAW", "B'", "B-"] {
            assert!(Carrier::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn flight_numbers() {
        assert_eq!(FlightNumber::new(1).unwrap().get(), 1);
        assert_eq!(FlightNumber::new(9999).unwrap().get(), 9999);
        assert!(FlightNumber::new(0).is_err());
        assert!(FlightNumber::new(10_000).is_err());
    }

    #[test]
    fn codes_round_trip_through_json_and_reject_bad_json() {
        let code: AirportCode = serde_json::from_str("\"SFO\"").unwrap();
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"SFO\"");
        assert!(serde_json::from_str::<AirportCode>("\"sfo\"").is_err());
        assert!(serde_json::from_str::<FlightId>("0").is_err());
    }

    proptest::proptest! {
        /// Any text: a value that prints as it was typed, or an error.
        #[test]
        fn ids_and_codes_round_trip_or_are_refused(text in "\\PC{0,24}|[0-9]{1,20}|[A-Z0-9]{2,3}") {
            if let Ok(id) = FlightId::parse(&text) {
                // Leading zeros are accepted ("007" is flight 7); the id prints without.
                proptest::prop_assert_eq!(id.to_string(), text.trim_start_matches('0'));
                proptest::prop_assert_eq!(FlightId::parse(&id.to_string()), Ok(id));
            }
            if let Ok(code) = AirportCode::parse(&text) {
                proptest::prop_assert_eq!(code.as_str(), text.as_str());
            }
            if let Ok(carrier) = Carrier::parse(&text) {
                proptest::prop_assert_eq!(carrier.as_str(), text.as_str());
            }
        }
    }
}
