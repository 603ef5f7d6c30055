//! Closed sets of named values: query paths, protocols, codecs, the parts of a run.
//!
//! One declaration ([`choices!`]) gives an enum its names, its one `Display`, a
//! `FromStr` whose error lists what is accepted, serde as those names, and the names
//! and help texts the command line offers. The CLI builds its value parsers from [`Choice`], so nothing
//! below `cli` depends on clap, and a value is spelled the same in flags, JSON,
//! reports and error messages.

use std::fmt::Display;
use std::str::FromStr;

/// A closed set of named values.
pub trait Choice: Copy + Eq + 'static {
    /// What one value is called in messages ("query path").
    const WHAT: &'static str;
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The value's name, as typed and printed.
    fn name(self) -> &'static str;
    /// One line on what the value means (its doc comment).
    fn help(self) -> &'static str;
}

/// A name that is not in the set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?} (expected {expected})")]
pub struct UnknownChoice {
    pub what: &'static str,
    pub given: String,
    pub expected: String,
}

/// The value named `text`.
pub fn parse<T: Choice>(text: &str) -> Result<T, UnknownChoice> {
    T::ALL.iter().copied().find(|v| v.name() == text).ok_or_else(|| UnknownChoice {
        what: T::WHAT,
        given: text.to_owned(),
        expected: expected::<T>(),
    })
}

/// "a, b or c": every name of the set, for messages.
pub fn expected<T: Choice>() -> String {
    let names: Vec<&str> = T::ALL.iter().map(|v| v.name()).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Declares an enum whose variants are named values (see [`Choice`]). Each variant's
/// doc comment is its help text (variants take no other attributes); `, default V`
/// after the set's name implements `Default`.
///
/// ```ignore
/// choices! {
///     /// How log lines are written.
///     #[derive(Debug)]
///     pub enum LogFormat as "log format" {
///         /// Human-readable lines.
///         Text = "text",
///         /// One JSON object per line.
///         Json = "json",
///     }
/// }
/// ```
#[macro_export]
macro_rules! choices {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $what:literal $(, default $default:ident)? {
            $( $(#[doc = $doc:literal])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[doc = $doc])* $variant ),+
        }

        impl $crate::choice::Choice for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            fn help(self) -> &'static str {
                match self { $($name::$variant => concat!("" $(, $doc)*).trim()),+ }
            }
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = <$name as $crate::choice::Choice>::ALL;

            /// The value's name, as typed and printed.
            pub fn as_str(self) -> &'static str {
                $crate::choice::Choice::name(self)
            }
        }

        $(
            impl Default for $name {
                fn default() -> Self {
                    $name::$default
                }
            }
        )?

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::choice::UnknownChoice;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $crate::choice::parse(text)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::choice::as_text::deserialize(d)
            }
        }
    };
}

/// Serde as text through `Display` and `FromStr`, for values such as a request mix or
/// a skew that JSON should hold as the string a person types:
/// `#[serde(with = "crate::choice::as_text")]`.
pub mod as_text {
    use super::*;

    pub fn serialize<T: Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: serde::Deserializer<'de>,
    {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::choices! {
        /// A test set.
        #[derive(Debug)]
        enum Fruit as "fruit", default Pear {
            /// Red or green,
            /// and crisp.
            Apple = "apple",
            Pear = "pear",
            /// Long.
            Banana = "banana",
        }
    }

    #[test]
    fn names_parse_and_print_alike() {
        for &fruit in Fruit::ALL {
            assert_eq!(fruit.to_string().parse::<Fruit>(), Ok(fruit));
        }
        assert_eq!(Fruit::Apple.help(), "Red or green, and crisp.");
        assert_eq!(Fruit::Pear.help(), "");
        let error = "kiwi".parse::<Fruit>().unwrap_err();
        assert_eq!(error.to_string(), "unknown fruit \"kiwi\" (expected apple, pear or banana)");
        assert!("Apple".parse::<Fruit>().is_err(), "names are exact");
        assert_eq!(Fruit::default(), Fruit::Pear);
        assert_eq!(serde_json::to_string(&Fruit::Banana).unwrap(), "\"banana\"");
        assert_eq!(serde_json::from_str::<Fruit>("\"apple\"").unwrap(), Fruit::Apple);
        assert!(serde_json::from_str::<Fruit>("\"kiwi\"").is_err());
    }
}
