//! The configurations `flightbench profile` compares, and the file names it gives
//! their profiles.

use super::super::serve::Switch;
use crate::cli::{Refuse, ensure_usage, usage};
use crate::failure::Failure;
use crate::load::conn::Protocol;
use crate::load::workload::Mix;
use crate::store::QueryPath;

/// One profiled configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Variant {
    pub(super) path: QueryPath,
    pub(super) protocol: Protocol,
    /// `None`: no Accept-Encoding header (identity).
    pub(super) encoding: Option<String>,
    pub(super) cache: Switch,
}

/// What `--compare` may vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    Path,
    Protocol,
    Encoding,
    Cache,
}

impl Variant {
    /// This variant with `key=value` applied.
    pub(super) fn with(&self, spec: &str) -> anyhow::Result<(Key, Variant)> {
        let (key, value) =
            spec.split_once('=').refused(Failure::Usage, || format!("--compare {spec:?} is not KEY=VALUE"))?;
        let mut other = self.clone();
        let key = match key.trim() {
            "path" => {
                other.path = value.parse().refused(Failure::Usage, || format!("--compare path={value}"))?;
                Key::Path
            }
            "protocol" => {
                other.protocol = match value {
                    "h1" => Protocol::H1,
                    "h2" => Protocol::H2,
                    _ => return Err(usage!("--compare protocol={value}: use h1 or h2")),
                };
                Key::Protocol
            }
            "encoding" => {
                other.encoding = match value {
                    "identity" => None,
                    "br" | "zstd" | "gzip" | "deflate" => Some(value.to_owned()),
                    _ => return Err(usage!("--compare encoding={value}: use identity, br, zstd, gzip or deflate")),
                };
                Key::Encoding
            }
            "cache" => {
                other.cache = match value {
                    "on" => Switch::On,
                    "off" => Switch::Off,
                    _ => return Err(usage!("--compare cache={value}: use on or off")),
                };
                Key::Cache
            }
            other => return Err(usage!("--compare {other}=…: the keys are path, protocol, encoding and cache")),
        };
        ensure_usage!(other != *self, "--compare {spec}: that is the configuration already profiled");
        Ok((key, other))
    }

    /// The name of each setting, in file-name order.
    pub(super) fn parts(&self) -> [(Key, String); 4] {
        [
            (Key::Path, self.path.as_str().to_owned()),
            (Key::Protocol, protocol_name(self.protocol).to_owned()),
            (Key::Encoding, self.encoding.clone().unwrap_or_else(|| "identity".to_owned())),
            (
                Key::Cache,
                match self.cache {
                    Switch::On => "cache".to_owned(),
                    Switch::Off => "nocache".to_owned(),
                },
            ),
        ]
    }

    pub(super) fn describe(&self) -> String {
        let parts = self.parts().map(|(_, p)| p);
        format!("path {}, {}, {}, {}", parts[0], parts[1], parts[2], parts[3])
    }
}

pub(super) fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::H1 => "h1",
        Protocol::H2 => "h2",
    }
}

/// File names: `<stem>-<settings>`; for the differential, the compared setting reads
/// `<a>-vs-<b>`.
pub(super) struct Names {
    stem: String,
    custom: bool,
}

impl Names {
    pub(super) fn new(label: Option<&str>, mix: &Mix) -> anyhow::Result<Self> {
        if let Some(label) = label {
            ensure_usage!(
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "--label {label:?}: use letters, digits, '-', '_' and '.'"
            );
            return Ok(Self { stem: label.to_owned(), custom: true });
        }
        let stem = match mix.weights() {
            [(kind, _)] => kind.to_string(),
            _ => "mix".to_owned(),
        };
        Ok(Self { stem, custom: false })
    }

    pub(super) fn single(&self, variant: &Variant, compared: Option<Key>) -> String {
        match (self.custom, compared) {
            (true, None) => self.stem.clone(),
            (true, Some(key)) => {
                format!("{}-{}", self.stem, variant.parts().into_iter().find(|p| p.0 == key).unwrap().1)
            }
            (false, _) => {
                std::iter::once(self.stem.clone()).chain(variant.parts().map(|p| p.1)).collect::<Vec<_>>().join("-")
            }
        }
    }

    pub(super) fn differential(&self, a: &Variant, b: &Variant, key: Key) -> String {
        let (a_parts, b_parts) = (a.parts(), b.parts());
        let value = |parts: &[(Key, String); 4]| parts.iter().find(|p| p.0 == key).unwrap().1.clone();
        let versus = format!("{}-vs-{}", value(&a_parts), value(&b_parts));
        if self.custom {
            return format!("{}-{versus}-diff", self.stem);
        }
        let settings = a_parts.iter().map(|(k, v)| if *k == key { versus.clone() } else { v.clone() });
        std::iter::once(self.stem.clone()).chain(settings).chain(["diff".to_owned()]).collect::<Vec<_>>().join("-")
    }
}
