//! A directory of development signing keys: what `flightbench keys` writes and
//! `flightbench token` signs with. Each key is `<kid>.key.pem` (PKCS#8, readable by
//! its owner only); `jwks.json` beside them is the public set, rewritten on every
//! change, which `serve --auth jwks --jwks <dir>/jwks.json` reads.

use super::keys::{KeyError, KeySet, SigningKey, pem, pkcs8_from_pem};
use super::token::Alg;
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".key.pem";
pub const JWKS_FILE: &str = "jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyDirError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path}: {cause}")]
    Key { path: PathBuf, cause: KeyError },
    #[error("{path}: not a PKCS#8 PEM private key ({problem})")]
    Pem { path: PathBuf, problem: String },
    #[error("kid {0:?} must be 1 to 64 letters, digits, '-', '_' or '.'")]
    BadKid(String),
    #[error("{dir} already has a key {kid:?}")]
    Exists { dir: PathBuf, kid: String },
    #[error("{dir} has no key {kid:?} (it has: {have})")]
    NoSuchKey { dir: PathBuf, kid: String, have: String },
    #[error("{0} has no signing key; make one with `flightbench keys new`")]
    Empty(PathBuf),
}

impl crate::failure::Classify for KeyDirError {
    fn failure(&self) -> crate::failure::Failure {
        match self {
            KeyDirError::BadKid(_) | KeyDirError::Key { cause: KeyError::NoGenerator(_), .. } => {
                crate::failure::Failure::Usage
            }
            KeyDirError::Io { cause, .. } => crate::failure::Classify::failure(cause),
            _ => crate::failure::Failure::BadInput,
        }
    }
}

/// Adds a key to `dir` (made if missing): generated for `alg`, or the PKCS#8 PEM
/// at `import`. Returns its file.
pub fn add(dir: &Path, alg: Alg, kid: &str, import: Option<&Path>) -> Result<PathBuf, KeyDirError> {
    check_kid(kid)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |cause| KeyDirError::Io { path, cause }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(format!("{kid}{SUFFIX}"));
    if path.exists() {
        return Err(KeyDirError::Exists { dir: dir.to_owned(), kid: kid.to_owned() });
    }
    let der = match import {
        Some(file) => {
            let text = std::fs::read(file).map_err(io(file))?;
            let der = pkcs8_from_pem(&text).map_err(|problem| KeyDirError::Pem { path: file.to_owned(), problem })?;
            SigningKey::from_pkcs8(kid, &der).map_err(|cause| KeyDirError::Key { path: file.to_owned(), cause })?;
            der
        }
        None => SigningKey::generate_pkcs8(alg).map_err(|cause| KeyDirError::Key { path: path.clone(), cause })?,
    };
    write_private(&path, pem("PRIVATE KEY", &der).as_bytes()).map_err(io(&path))?;
    write_jwks(dir)?;
    Ok(path)
}

/// Removes a key; tokens it signed stop verifying once a server reads the new set.
pub fn remove(dir: &Path, kid: &str) -> Result<(), KeyDirError> {
    check_kid(kid)?;
    let path = dir.join(format!("{kid}{SUFFIX}"));
    if !path.exists() {
        return Err(no_such_key(dir, kid));
    }
    std::fs::remove_file(&path).map_err(|cause| KeyDirError::Io { path, cause })?;
    write_jwks(dir)
}

/// Every key in `dir`, oldest first (by file time, then name).
pub fn keys(dir: &Path) -> Result<Vec<SigningKey>, KeyDirError> {
    let entries = std::fs::read_dir(dir).map_err(|cause| KeyDirError::Io { path: dir.to_owned(), cause })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|cause| KeyDirError::Io { path: dir.to_owned(), cause })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(kid) = name.strip_suffix(SUFFIX) else { continue };
        let path = entry.path();
        let modified = entry.metadata().and_then(|m| m.modified()).ok();
        let text = std::fs::read(&path).map_err(|cause| KeyDirError::Io { path: path.clone(), cause })?;
        let der = pkcs8_from_pem(&text).map_err(|problem| KeyDirError::Pem { path: path.clone(), problem })?;
        let key = SigningKey::from_pkcs8(kid, &der).map_err(|cause| KeyDirError::Key { path, cause })?;
        found.push((modified, key));
    }
    found.sort_by(|(a, ka), (b, kb)| a.cmp(b).then_with(|| ka.kid.cmp(&kb.kid)));
    Ok(found.into_iter().map(|(_, key)| key).collect())
}

/// The key named `kid`, or the newest.
pub fn signing_key(dir: &Path, kid: Option<&str>) -> Result<SigningKey, KeyDirError> {
    let mut all = keys(dir)?;
    match kid {
        Some(kid) => match all.iter().position(|k| k.kid == kid) {
            Some(i) => Ok(all.swap_remove(i)),
            None => Err(no_such_key(dir, kid)),
        },
        None => all.pop().ok_or_else(|| KeyDirError::Empty(dir.to_owned())),
    }
}

fn no_such_key(dir: &Path, kid: &str) -> KeyDirError {
    let have = keys(dir).map(|k| k.iter().map(|k| k.kid.clone()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    KeyDirError::NoSuchKey { dir: dir.to_owned(), kid: kid.to_owned(), have }
}

fn write_jwks(dir: &Path) -> Result<(), KeyDirError> {
    let keys = keys(dir)?.iter().filter_map(|k| Some((Some(k.kid.clone()), k.public()?))).collect();
    let jwks = KeySet { keys, skipped: Vec::new() }.to_jwks();
    let path = dir.join(JWKS_FILE);
    // Written whole and renamed, so a server refreshing from it never reads half.
    let temporary = dir.join(format!(".{JWKS_FILE}.tmp"));
    let text = serde_json::to_string_pretty(&jwks).unwrap_or_default();
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|cause| KeyDirError::Io { path, cause })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

fn check_kid(kid: &str) -> Result<(), KeyDirError> {
    let ok = (1..=64).contains(&kid.len())
        && kid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !kid.starts_with('.');
    if ok { Ok(()) } else { Err(KeyDirError::BadKid(kid.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_added_listed_published_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        add(dir.path(), Alg::Es256, "one", None).unwrap();
        add(dir.path(), Alg::EdDsa, "two", None).unwrap();
        add(dir.path(), Alg::Rs256, "three", Some(Path::new("src/auth/testdata/rsa-a.pem"))).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("one.key.pem")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let published = KeySet::from_jwks(&std::fs::read(dir.path().join(JWKS_FILE)).unwrap()).unwrap();
        let kids: Vec<_> = published.keys.iter().map(|(k, key)| (k.clone().unwrap(), key.alg())).collect();
        assert_eq!(kids.len(), 3);
        assert!(kids.contains(&("three".into(), Alg::Rs256)) && kids.contains(&("two".into(), Alg::EdDsa)));
        assert_eq!(signing_key(dir.path(), Some("two")).unwrap().alg(), Alg::EdDsa);
        assert!(matches!(add(dir.path(), Alg::Es256, "one", None), Err(KeyDirError::Exists { .. })));
        assert!(matches!(add(dir.path(), Alg::Rs256, "four", None), Err(KeyDirError::Key { .. })));
        assert!(matches!(add(dir.path(), Alg::Es256, "../x", None), Err(KeyDirError::BadKid(_))));
        remove(dir.path(), "two").unwrap();
        let published = KeySet::from_jwks(&std::fs::read(dir.path().join(JWKS_FILE)).unwrap()).unwrap();
        assert!(published.find(Some("two"), Alg::EdDsa).is_none() && published.keys.len() == 2);
        let missing = signing_key(dir.path(), Some("two")).err().unwrap().to_string();
        assert!(missing.contains("no key \"two\"") && missing.contains("one"), "{missing}");
        assert!(matches!(signing_key(&dir.path().join("none"), None), Err(KeyDirError::Io { .. })));
    }
}
