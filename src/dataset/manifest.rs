//! `shards/manifest.json`: what a seeded dataset is, written last by `seed` (so a
//! dataset without one is incomplete) and read first by every other command.

use super::generator::{DatasetSpec, Popularity};
use crate::routing::ShardCount;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "manifest.json";
/// Bumped when the manifest or the table layout changes incompatibly. Format 2: event
/// schema v2 (`delay_events.cause`, `delay_events.reported_by`). Format 3: the
/// per-shard event sequence (`delay_events.seq`, `event_sequence`) and the async read
/// models' tables. Format 4: `delay_events.data_key`, the id of the key that sealed an
/// event's personal fields (`seal`), and the audit log (`audit`). `events migrate` upgrades formats 1 to 3 in place.
pub const MANIFEST_FORMAT: u32 = 4;

crate::choices! {
    /// Where a dataset's shards live.
    #[derive(Debug)]
    pub enum Backend as "backend" {
        /// SQLite files under the shard directory (the embedded default).
        Sqlite = "sqlite",
        /// One PostgreSQL database per shard, partitioned tables inside.
        Postgres = "postgres",
    }
}

/// Row counts written by `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub flights: u64,
    pub events: u64,
}

/// SQLite settings the dataset was written with; reports quote them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqliteSettings {
    pub journal_mode: String,
    pub synchronous: String,
    /// Shard files relative to the manifest, in shard order.
    pub files: Vec<String>,
}

/// Where the PostgreSQL shards are. URLs are stored without passwords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresLayout {
    pub shard_urls: Vec<String>,
    /// Range partitions are one calendar month each.
    pub partition_interval: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub generator_version: String,
    pub backend: Backend,
    pub shards: ShardCount,
    pub dataset: DatasetSpec,
    pub counts: Counts,
    pub popularity: Popularity,
    /// Airport codes, busiest first: the load generator's airport key space.
    pub airports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresLayout>,
    /// The shard layout's generation: 1 as seeded, one more after each `reshard`. A
    /// server compares it to follow a reshard without a restart; a dataset written
    /// before resharding existed has none and is at 1.
    #[serde(default = "first_layout")]
    pub layout: u32,
}

/// A seeded dataset's layout generation.
pub const FIRST_LAYOUT: u32 = 1;

fn first_layout() -> u32 {
    FIRST_LAYOUT
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("no dataset at {0}: run `flightbench seed` first")]
    Missing(PathBuf),
    #[error("cannot read {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path} is not a valid manifest: {cause}")]
    Invalid { path: PathBuf, cause: serde_json::Error },
    #[error("{path} has format {found}; this build reads format {MANIFEST_FORMAT}: {}", upgrade_hint(*.found))]
    Format { path: PathBuf, found: u32 },
    #[error("{path} is inconsistent: {problem}")]
    Inconsistent { path: PathBuf, problem: String },
}

/// How to get from a manifest format to this build's.
fn upgrade_hint(found: u32) -> &'static str {
    match found {
        1..=3 => "upgrade it in place with `flightbench events migrate` (or re-seed with `flightbench seed --force`)",
        _ => "re-seed with `flightbench seed --force`",
    }
}

impl Manifest {
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    pub fn exists_in(dir: &Path) -> bool {
        Self::path_in(dir).exists()
    }

    /// Reads and checks the manifest in `dir`.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        Self::load_format(dir, MANIFEST_FORMAT)
    }

    /// Reads and checks a manifest of an older `format` whose fields this build still
    /// reads (1 and 2: only the tables differ), for the command that
    /// upgrades it (`events migrate`). The manifest comes back with `format` as found.
    pub fn load_format(dir: &Path, expected: u32) -> Result<Self, ManifestError> {
        let path = Self::path_in(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ManifestError::Missing(path)),
            Err(cause) => return Err(ManifestError::Io { path, cause }),
        };
        // Check the format first so an old manifest gets the "re-seed" message rather
        // than a field-by-field parse error.
        let format = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|cause| ManifestError::Invalid { path: path.clone(), cause })?
            .get("format")
            .and_then(|f| f.as_u64())
            .unwrap_or(0) as u32;
        if format != expected {
            return Err(ManifestError::Format { path, found: format });
        }
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|cause| ManifestError::Invalid { path: path.clone(), cause })?;
        manifest.check().map_err(|problem| ManifestError::Inconsistent { path, problem })?;
        Ok(manifest)
    }

    /// What serde cannot check: the values hang together, so no reader of the manifest
    /// (the load generator draws ids and airports from it) meets a value it cannot use.
    fn check(&self) -> Result<(), String> {
        let d = &self.dataset;
        DatasetSpec::new(d.seed, d.flights, d.days, d.start).map_err(|e| format!("dataset: {e}"))?;
        if self.counts.flights != d.flights {
            return Err(format!("counts.flights {} differs from dataset.flights {}", self.counts.flights, d.flights));
        }
        let p = &self.popularity;
        if p.multiplier == 0 || super::generator::gcd(p.multiplier, d.flights) != 1 || p.offset >= d.flights {
            return Err(format!(
                "popularity multiplier {} and offset {} do not map ranks onto {} flights one to one",
                p.multiplier, p.offset, d.flights
            ));
        }
        if self.airports.is_empty() {
            return Err("no airports".into());
        }
        if let Some(bad) = self.airports.iter().find(|a| crate::domain::AirportCode::parse(a).is_err()) {
            return Err(format!("airport {bad:?} is not an IATA code"));
        }
        let shards = self.shards.get() as usize;
        match (self.backend, &self.sqlite, &self.postgres) {
            (Backend::Sqlite, Some(s), None) if s.files.len() == shards => Ok(()),
            (Backend::Sqlite, Some(s), None) => {
                Err(format!("{} shard files listed for {shards} shards", s.files.len()))
            }
            (Backend::Postgres, None, Some(p)) if p.shard_urls.len() == shards => Ok(()),
            (Backend::Postgres, None, Some(p)) => {
                Err(format!("{} shard URLs listed for {shards} shards", p.shard_urls.len()))
            }
            (backend, _, _) => Err(format!("backend {} without its own settings section", backend.as_str())),
        }
    }

    /// Writes atomically (temp file + rename), so a crash never leaves half a manifest.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let path = Self::path_in(dir);
        let tmp = dir.join(format!(".{MANIFEST_FILE}.tmp"));
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

impl crate::failure::Classify for ManifestError {
    fn failure(&self) -> crate::failure::Failure {
        crate::failure::Failure::BadInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Generator;
    use crate::domain::UtcTime;
    use proptest::strategy::Strategy as _;

    fn sample() -> Manifest {
        let spec = DatasetSpec::new(1, 10, 2, UtcTime::parse("2026-12-01").unwrap()).unwrap();
        Manifest {
            format: MANIFEST_FORMAT,
            generator_version: "test".into(),
            backend: Backend::Sqlite,
            shards: ShardCount::new(2).unwrap(),
            dataset: spec,
            counts: Counts { flights: 10, events: 30 },
            popularity: Generator::new(spec).popularity(),
            airports: vec!["ATL".into()],
            sqlite: Some(SqliteSettings {
                journal_mode: "wal".into(),
                synchronous: "normal".into(),
                files: vec!["a".into(), "b".into()],
            }),
            postgres: None,
            layout: FIRST_LAYOUT,
        }
    }

    #[test]
    fn round_trips_and_reports_problems_by_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Manifest::load(dir.path()), Err(ManifestError::Missing(_))));
        let m = sample();
        m.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);

        let mut wrong = m.clone();
        wrong.sqlite.as_mut().unwrap().files.pop();
        wrong.save(dir.path()).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("1 shard files listed for 2 shards"), "{err}");

        let mut old = m.clone();
        old.format = 0;
        old.save(dir.path()).unwrap();
        assert!(matches!(Manifest::load(dir.path()), Err(ManifestError::Format { found: 0, .. })));

        std::fs::write(Manifest::path_in(dir.path()), "{ not json").unwrap();
        assert!(matches!(Manifest::load(dir.path()), Err(ManifestError::Invalid { .. })));
    }

    proptest::proptest! {
        /// A manifest edited by hand (any field set to any number or string) loads as a
        /// consistent manifest or gives an error: never a panic, never a manifest whose
        /// values a reader cannot use.
        #[test]
        fn edited_manifests_load_consistently_or_are_refused(
            field in proptest::sample::select(vec![
                "/shards", "/dataset/flights", "/dataset/days", "/dataset/start", "/counts/flights",
                "/popularity/multiplier", "/popularity/offset", "/airports/0", "/sqlite/files", "/backend", "/format",
            ]),
            number in proptest::prop_oneof![proptest::num::i64::ANY.prop_map(serde_json::Value::from), proptest::num::u64::ANY.prop_map(serde_json::Value::from)],
            text in "\\PC{0,12}",
            use_text: bool,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut json = serde_json::to_value(sample()).unwrap();
            if let Some(slot) = json.pointer_mut(field) {
                *slot = if use_text { serde_json::Value::from(text.clone()) } else { number.clone() };
            }
            std::fs::write(Manifest::path_in(dir.path()), json.to_string()).unwrap();
            if let Ok(m) = Manifest::load(dir.path()) {
                proptest::prop_assert!(m.check().is_ok());
                let ranks = [0, 1, m.counts.flights - 1, u64::MAX];
                for rank in ranks {
                    let id = m.popularity.flight_at_rank(rank, m.counts.flights);
                    proptest::prop_assert!((1..=m.counts.flights as i64).contains(&id.get()));
                }
            }
        }
    }
}
