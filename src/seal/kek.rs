//! Key-encryption keys (KEKs): the keys that wrap every data key, kept outside the
//! dataset, in a file or an environment variable.
//!
//! The text is one key per line, `<id> <base64url of 32 bytes>`, `#` comments allowed.
//! The last line is the primary: new data keys are wrapped under it, and
//! `keys rotate` re-wraps older ones under it. Older lines stay until no data key is
//! wrapped under them (rotation says which are still in use).

use super::cipher::{self, KEY_LEN, Key};
use std::path::{Path, PathBuf};

/// The environment variable that may hold the key text instead of a file.
pub const KEK_ENV: &str = "FLIGHTBENCH_KEK";

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{source_name} line {line}: {problem}")]
    Parse { source_name: String, line: usize, problem: String },
    #[error("{0} holds no key-encryption key; add one with `flightbench keys kek-new`")]
    Empty(String),
    #[error(
        "{source_name} is readable by others (mode {mode:o}); a key file must be readable by its owner only (chmod 600)"
    )]
    Exposed { source_name: String, mode: u32 },
    #[error("the system's random number generator failed")]
    Random,
}

impl crate::failure::Classify for KekError {
    fn failure(&self) -> crate::failure::Failure {
        match self {
            KekError::Io { cause, .. } => crate::failure::Classify::failure(cause),
            KekError::Random => crate::failure::Failure::Internal,
            _ => crate::failure::Failure::BadInput,
        }
    }
}

/// Where the key text comes from; rotation re-reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    File(PathBuf),
    /// The text itself, from [`KEK_ENV`].
    Env(String),
}

impl KekSource {
    fn name(&self) -> String {
        match self {
            KekSource::File(path) => path.display().to_string(),
            KekSource::Env(_) => KEK_ENV.to_owned(),
        }
    }
}

/// The loaded keys, oldest first.
pub struct KekRing {
    keys: Vec<(String, Key)>,
}

impl std::fmt::Debug for KekRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(id, _)| id)).finish()
    }
}

impl KekRing {
    pub fn load(source: &KekSource) -> Result<Self, KekError> {
        let text = match source {
            KekSource::Env(text) => text.clone(),
            KekSource::File(path) => {
                check_private(path)?;
                std::fs::read_to_string(path).map_err(|cause| KekError::Io { path: path.clone(), cause })?
            }
        };
        Self::parse(&source.name(), &text)
    }

    pub fn parse(source_name: &str, text: &str) -> Result<Self, KekError> {
        let mut keys: Vec<(String, Key)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |problem: String| KekError::Parse { source_name: source_name.to_owned(), line: n + 1, problem };
            let (id, key) = line.split_once(char::is_whitespace).ok_or_else(|| bad("expected `<id> <key>`".into()))?;
            if !valid_id(id) {
                return Err(bad(format!("key id {id:?} must be 1 to 64 letters, digits, '-', '_' or '.'")));
            }
            if keys.iter().any(|(seen, _)| seen == id) {
                return Err(bad(format!("key id {id:?} appears twice")));
            }
            let bytes: [u8; KEY_LEN] = cipher::decode(key.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad(format!("the key must be {KEY_LEN} bytes in unpadded base64url")))?;
            keys.push((id.to_owned(), Key::from_bytes(&bytes)));
        }
        if keys.is_empty() {
            return Err(KekError::Empty(source_name.to_owned()));
        }
        Ok(Self { keys })
    }

    /// The key new data keys are wrapped under: the last one.
    pub fn primary(&self) -> (&str, &Key) {
        let (id, key) = self.keys.last().expect("a ring is never empty");
        (id, key)
    }

    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|(have, _)| have == id).map(|(_, key)| key)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Appends a freshly generated key, the new primary, to `path` (made, owner-only, if
/// missing); returns its id.
pub fn add_to_file(path: &Path) -> Result<String, KekError> {
    use std::io::Write;
    let io = |cause| KekError::Io { path: path.to_owned(), cause };
    let existing = if path.exists() {
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(io)?;
        Some(KekRing::parse(&path.display().to_string(), &text).or_else(|e| match e {
            KekError::Empty(_) => Ok(KekRing { keys: Vec::new() }),
            e => Err(e),
        })?)
    } else {
        None
    };
    let bytes = cipher::random::<KEY_LEN>().map_err(|_| KekError::Random)?;
    let suffix = cipher::random::<4>().map_err(|_| KekError::Random)?;
    let id = format!(
        "kek-{}-{}",
        crate::machine::unix_seconds(),
        suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut file = private_append(path).map_err(io)?;
    if existing.is_none() {
        writeln!(file, "# flightbench key-encryption keys: `<id> <base64url key>`, the last line is the primary.")
            .map_err(io)?;
        writeln!(file, "# Keep this file away from the dataset and its backups; without it no sealed field opens.")
            .map_err(io)?;
    }
    writeln!(file, "{id} {}", cipher::encode(&bytes)).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(id)
}

#[cfg(unix)]
fn private_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn private_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// Refuses a key file others can read, as ssh does.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KekError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|cause| KekError::Io { path: path.to_owned(), cause })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KekError::Exposed { source_name: path.display().to_string(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), KekError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rings_and_refuses_bad_lines() {
        let a = cipher::encode(&[1; KEY_LEN]);
        let b = cipher::encode(&[2; KEY_LEN]);
        let ring = KekRing::parse("t", &format!("# comment\nold {a}\n\nnew {b}\n")).unwrap();
        assert_eq!(ring.primary().0, "new");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["old", "new"]);
        assert!(ring.get("old").is_some() && ring.get("gone").is_none());
        let err = |text: &str| KekRing::parse("t", text).unwrap_err().to_string();
        assert_eq!(err("# nothing\n"), "t holds no key-encryption key; add one with `flightbench keys kek-new`");
        assert!(err(&format!("a {a}\na {b}")).contains("line 2: key id \"a\" appears twice"));
        assert!(err("a c2hvcnQ").contains("line 1: the key must be 32 bytes"));
        assert!(err(&format!("bad/id {a}")).contains("line 1: key id \"bad/id\""));
        assert!(err("lonely").contains("expected `<id> <key>`"));
    }

    #[test]
    fn a_file_grows_one_primary_at_a_time_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let first = add_to_file(&path).unwrap();
        let second = add_to_file(&path).unwrap();
        let ring = KekRing::load(&KekSource::File(path.clone())).unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), [first.as_str(), second.as_str()]);
        assert_eq!(ring.primary().0, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(KekRing::load(&KekSource::File(path)), Err(KekError::Exposed { mode: 0o644, .. })));
        }
    }
}
