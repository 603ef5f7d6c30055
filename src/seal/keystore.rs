//! The key store: every data subject's data key, wrapped under a key-encryption key,
//! in a SQLite file of its own, apart from the shards. A copy of the shards holds
//! ciphertext and key ids only; a copy of the key store holds wrapped keys only;
//! neither opens a field without the KEK.
//!
//! One process at a time: the server (or an offline `gdpr erase`, `keys rotate`)
//! holds an exclusive lock on `<store>.lock` for as long as it runs. An erasure made
//! behind a running server's back would leave the key in that server's memory, so a
//! second opener is refused and told to go through the server instead.
//!
//! Commits are synced (`synchronous = FULL`): a data key the store lost would make
//! every event sealed under it unreadable, and a key is written once per subject, so
//! the sync costs nothing on the write path after a subject's first report.

use super::cipher::{self, CipherError, KEY_LEN, Key};
use super::kek::KekRing;
use crate::audit::{self, Draft, KEYS_CHAIN, Record};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS data_keys (
        subject TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, kek_id TEXT NOT NULL,
        wrapped TEXT NOT NULL, created_at INTEGER NOT NULL) STRICT;
    CREATE TABLE IF NOT EXISTS erased_keys (key_id TEXT PRIMARY KEY, erased_at INTEGER NOT NULL) STRICT;";

/// Re-wrapped keys per transaction during a rotation: short transactions, so the
/// server's key look-ups wait at most one batch.
const REWRAP_BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key store {path}: {cause}")]
    Db { path: PathBuf, cause: rusqlite::Error },
    #[error("key store {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(
        "key store {0} is in use by another flightbench process (a running server?): erase and rotate through \
         it (`--url`), or stop it first"
    )]
    InUse(PathBuf),
    #[error("data key {key_id} is wrapped under key-encryption key {kek_id}, which is not in the key ring")]
    UnknownKek { key_id: String, kek_id: String },
    #[error("data key {0} does not unwrap: it was altered, or the key ring holds a different key under its id")]
    Unwrap(String),
    #[error(transparent)]
    Cipher(#[from] CipherError),
    #[error("key store {0} holds no audit key: nothing has been audited with it")]
    NoAuditKey(PathBuf),
}

impl crate::failure::Classify for KeyStoreError {
    fn failure(&self) -> crate::failure::Failure {
        match self {
            KeyStoreError::InUse(_) => crate::failure::Failure::Unreachable,
            KeyStoreError::Io { cause, .. } => crate::failure::Classify::failure(cause),
            KeyStoreError::Cipher(_) | KeyStoreError::Db { .. } => crate::failure::Failure::Internal,
            _ => crate::failure::Failure::BadInput,
        }
    }
}

/// What the store holds under a key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Live {
        kek_id: String,
        wrapped: String,
    },
    Erased,
    /// Neither live nor erased: not this dataset's key store, or a damaged one.
    Unknown,
}

/// A data key, unwrapped.
#[derive(Debug)]
pub struct DataKey {
    pub id: String,
    pub key: Key,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    /// The KEK every data key should now be wrapped under.
    pub primary: String,
    pub rewrapped: u64,
    /// Data keys still wrapped under each older KEK (none once a rotation completes,
    /// unless a key was created under the old one while it ran): the KEKs that may
    /// now be removed from the ring are those absent here.
    pub still_under: Vec<(String, u64)>,
}

pub struct KeyStore {
    path: PathBuf,
    conn: Connection,
    _lock: std::fs::File,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("path", &self.path).finish()
    }
}

fn aad(key_id: &str) -> Vec<u8> {
    format!("flightbench/data-key/v1|{key_id}").into_bytes()
}

impl KeyStore {
    /// Opens an existing store to read it, without its lock (for `audit verify`
    /// beside a running server: it writes nothing).
    pub fn open_read_only(path: &Path) -> Result<Self, KeyStoreError> {
        let db = |cause| KeyStoreError::Db { path: path.to_owned(), cause };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
        let lock = std::fs::File::open(path).map_err(|cause| KeyStoreError::Io { path: path.to_owned(), cause })?;
        Ok(Self { path: path.to_owned(), conn, _lock: lock })
    }

    /// Opens (creating if missing) the store at `path`, taking its lock.
    pub fn open(path: &Path) -> Result<Self, KeyStoreError> {
        let io = |cause| KeyStoreError::Io { path: path.to_owned(), cause };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let lock_path = path.with_extension("lock");
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(KeyStoreError::InUse(path.to_owned())),
            Err(std::fs::TryLockError::Error(cause)) => return Err(io(cause)),
        }
        let db = |cause| KeyStoreError::Db { path: path.to_owned(), cause };
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        for ddl in crate::audit::sql::SQLITE_AUDIT {
            conn.execute_batch(ddl).map_err(db)?;
        }
        Ok(Self { path: path.to_owned(), conn, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> KeyStoreError + '_ {
        |cause| KeyStoreError::Db { path: self.path.clone(), cause }
    }

    /// The subject's data key, made and stored under the ring's primary KEK if it has
    /// none. Two writers racing for a new subject's first key both end up with the one
    /// that was stored first.
    pub fn key_for(&self, subject: &str, ring: &KekRing) -> Result<DataKey, KeyStoreError> {
        let (id, bytes) = self.raw_key_for(subject, ring)?;
        Ok(DataKey { id, key: Key::from_bytes(&bytes) })
    }

    /// The audit log's MAC key (`audit::mac_key`), from a data key of a subject no
    /// token can name (`SubjectId` has no control characters), so no erasure reaches
    /// it; made on first use unless `create` is false.
    pub fn audit_key(&self, ring: &KekRing, create: bool) -> Result<[u8; 32], KeyStoreError> {
        const AUDIT_SUBJECT: &str = "\u{1}audit";
        let bytes = if create {
            self.raw_key_for(AUDIT_SUBJECT, ring)?.1
        } else {
            self.existing_raw(AUDIT_SUBJECT, ring)?.ok_or_else(|| KeyStoreError::NoAuditKey(self.path.clone()))?.1
        };
        Ok(audit::mac_key(&bytes))
    }

    fn existing_raw(&self, subject: &str, ring: &KekRing) -> Result<Option<(String, [u8; KEY_LEN])>, KeyStoreError> {
        let row: Option<(String, String, String)> = self
            .conn
            .prepare_cached("SELECT key_id, kek_id, wrapped FROM data_keys WHERE subject = ?1")
            .and_then(|mut s| s.query_row([subject], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
            .map_err(self.db())?;
        row.map(|(id, kek_id, wrapped)| {
            let bytes = unwrap_bytes(&id, &kek_id, &wrapped, ring)?;
            Ok((id, bytes))
        })
        .transpose()
    }

    fn raw_key_for(&self, subject: &str, ring: &KekRing) -> Result<(String, [u8; KEY_LEN]), KeyStoreError> {
        if let Some(key) = self.existing_raw(subject, ring)? {
            return Ok(key);
        }
        let bytes = cipher::random::<KEY_LEN>()?;
        let id = format!("dk-{}", cipher::random::<12>()?.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let (kek_id, kek) = ring.primary();
        let wrapped = cipher::encode(&kek.seal(&aad(&id), &bytes)?);
        self.conn
            .execute(
                "INSERT INTO data_keys (subject, key_id, kek_id, wrapped, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (subject) DO NOTHING",
                params![subject, id, kek_id, wrapped, crate::machine::unix_seconds()],
            )
            .map_err(self.db())?;
        self.existing_raw(subject, ring)?.ok_or_else(|| KeyStoreError::Unwrap(id))
    }

    /// The subject's data key, if it has one.
    pub fn existing_key_for(&self, subject: &str, ring: &KekRing) -> Result<Option<DataKey>, KeyStoreError> {
        Ok(self.existing_raw(subject, ring)?.map(|(id, bytes)| DataKey { id, key: Key::from_bytes(&bytes) }))
    }

    /// The id of the subject's data key, without unwrapping it.
    pub fn key_id_for(&self, subject: &str) -> Result<Option<String>, KeyStoreError> {
        self.conn
            .prepare_cached("SELECT key_id FROM data_keys WHERE subject = ?1")
            .and_then(|mut s| s.query_row([subject], |r| r.get(0)).optional())
            .map_err(self.db())
    }

    pub fn lookup(&self, key_id: &str) -> Result<Stored, KeyStoreError> {
        let live: Option<(String, String)> = self
            .conn
            .prepare_cached("SELECT kek_id, wrapped FROM data_keys WHERE key_id = ?1")
            .and_then(|mut s| s.query_row([key_id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(self.db())?;
        if let Some((kek_id, wrapped)) = live {
            return Ok(Stored::Live { kek_id, wrapped });
        }
        let erased: Option<i64> = self
            .conn
            .prepare_cached("SELECT erased_at FROM erased_keys WHERE key_id = ?1")
            .and_then(|mut s| s.query_row([key_id], |r| r.get(0)).optional())
            .map_err(self.db())?;
        Ok(if erased.is_some() { Stored::Erased } else { Stored::Unknown })
    }

    /// Destroys the subject's data key, leaving only a record that its id was erased
    /// (the id is random: it says nothing about the subject), and audits it in the same
    /// transaction when `audit` is given (its target becomes the key's id). Returns the
    /// id, or `None` when the subject had no key.
    pub fn erase(&mut self, subject: &str, audit: Option<(Draft, [u8; 32])>) -> Result<Option<String>, KeyStoreError> {
        let path = self.path.clone();
        let db = move |cause| KeyStoreError::Db { path: path.clone(), cause };
        let tx = self.conn.transaction().map_err(&db)?;
        let key_id: Option<String> = tx
            .query_row("DELETE FROM data_keys WHERE subject = ?1 RETURNING key_id", [subject], |r| r.get(0))
            .optional()
            .map_err(&db)?;
        if let Some(id) = &key_id {
            tx.execute(
                "INSERT INTO erased_keys (key_id, erased_at) VALUES (?1, ?2)",
                params![id, crate::machine::unix_seconds()],
            )
            .map_err(&db)?;
        }
        if let Some((draft, key)) = audit {
            let target = key_id.clone().unwrap_or_else(|| "none".into());
            append_audit(&tx, Draft { target, ..draft }, &key).map_err(&db)?;
        }
        tx.commit().map_err(&db)?;
        // The deleted row's bytes may linger in free pages and the WAL until they are
        // reused: overwrite them now, so the wrapped key is gone from the file too.
        self.conn.execute_batch("PRAGMA secure_delete = ON; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);").map_err(&db)?;
        Ok(key_id)
    }

    /// Re-wraps every data key not under `ring`'s primary KEK (the data keys
    /// themselves do not change, so nothing sealed is touched), in short batches.
    pub fn rotate(&mut self, ring: &KekRing, audit: Option<(Draft, [u8; 32])>) -> Result<Rotation, KeyStoreError> {
        let (primary_id, primary) = ring.primary();
        let path = self.path.clone();
        let db = move |cause| KeyStoreError::Db { path: path.clone(), cause };
        let mut rewrapped = 0;
        loop {
            let tx = self.conn.transaction().map_err(&db)?;
            let batch: Vec<(String, String, String)> = tx
                .prepare("SELECT key_id, kek_id, wrapped FROM data_keys WHERE kek_id <> ?1 LIMIT ?2")
                .and_then(|mut s| {
                    s.query_map(params![primary_id, REWRAP_BATCH as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                })
                .map_err(&db)?;
            if batch.is_empty() {
                break;
            }
            for (id, kek_id, wrapped) in &batch {
                let key = unwrap_bytes(id, kek_id, wrapped, ring)?;
                let again = cipher::encode(&primary.seal(&aad(id), &key)?);
                tx.execute(
                    "UPDATE data_keys SET kek_id = ?1, wrapped = ?2 WHERE key_id = ?3",
                    params![primary_id, again, id],
                )
                .map_err(&db)?;
            }
            tx.commit().map_err(&db)?;
            rewrapped += batch.len() as u64;
        }
        let still_under = self
            .conn
            .prepare("SELECT kek_id, COUNT(*) FROM data_keys WHERE kek_id <> ?1 GROUP BY kek_id ORDER BY kek_id")
            .and_then(|mut s| s.query_map([primary_id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?.collect())
            .map_err(&db)?;
        if let Some((draft, key)) = audit {
            // After the batches: a rotation is audited once it is complete.
            let tx = self.conn.transaction().map_err(&db)?;
            append_audit(&tx, Draft { target: primary_id.to_owned(), ..draft }, &key).map_err(&db)?;
            tx.commit().map_err(&db)?;
        }
        Ok(Rotation { primary: primary_id.to_owned(), rewrapped, still_under })
    }

    /// Live data keys, by KEK id.
    pub fn counts(&self) -> Result<Vec<(String, u64)>, KeyStoreError> {
        self.conn
            .prepare("SELECT kek_id, COUNT(*) FROM data_keys GROUP BY kek_id ORDER BY kek_id")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?.collect())
            .map_err(self.db())
    }
}

fn unwrap_bytes(id: &str, kek_id: &str, wrapped: &str, ring: &KekRing) -> Result<[u8; KEY_LEN], KeyStoreError> {
    let kek = ring
        .get(kek_id)
        .ok_or_else(|| KeyStoreError::UnknownKek { key_id: id.to_owned(), kek_id: kek_id.to_owned() })?;
    let bytes =
        cipher::decode(wrapped).and_then(|w| kek.open(&aad(id), &w)).map_err(|_| KeyStoreError::Unwrap(id.into()))?;
    bytes.try_into().map_err(|_| KeyStoreError::Unwrap(id.to_owned()))
}

/// Appends `draft` to the key store's own chain, in `tx`.
fn append_audit(tx: &rusqlite::Transaction<'_>, draft: Draft, key: &[u8; 32]) -> rusqlite::Result<()> {
    let head: Option<(i64, String)> =
        tx.query_row(crate::audit::sql::AUDIT_HEAD, [KEYS_CHAIN], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    let record = draft.link(KEYS_CHAIN, head, key);
    tx.execute(crate::audit::sql::INSERT_AUDIT, &record.sqlite_params()[..])?;
    Ok(())
}

impl KeyStore {
    /// The key store's own audit records (`since`: microseconds), in chain order.
    pub fn audit_records(&self, since: i64) -> Result<Vec<Record>, KeyStoreError> {
        let has_log: bool = self
            .conn
            .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'audit_log'", [], |r| r.get(0))
            .map_err(self.db())?;
        if !has_log {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(crate::audit::sql::AUDIT_RECORDS).map_err(self.db())?;
        let rows = stmt
            .query_map([since], |r| {
                Ok(Record {
                    chain: r.get(0)?,
                    seq: r.get(1)?,
                    draft: Draft {
                        at: r.get(2)?,
                        request_id: r.get(3)?,
                        actor: r.get(4)?,
                        actor_key: r.get(5)?,
                        role: r.get(6)?,
                        action: r.get(7)?,
                        target: r.get(8)?,
                        before_version: r.get(9)?,
                        after_version: r.get(10)?,
                    },
                    prev_hash: r.get(11)?,
                    hash: r.get(12)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }
}

/// A stored data key, unwrapped under the ring.
pub fn unwrap(id: &str, kek_id: &str, wrapped: &str, ring: &KekRing) -> Result<Key, KeyStoreError> {
    Ok(Key::from_bytes(&unwrap_bytes(id, kek_id, wrapped, ring)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(text: &[(&str, u8)]) -> KekRing {
        let lines: Vec<String> =
            text.iter().map(|(id, b)| format!("{id} {}", cipher::encode(&[*b; KEY_LEN]))).collect();
        KekRing::parse("test", &lines.join("\n")).unwrap()
    }

    #[test]
    fn keys_are_made_once_per_subject_erased_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.sqlite");
        let old = ring(&[("a", 1)]);
        let mut store = KeyStore::open(&path).unwrap();
        assert!(matches!(KeyStore::open(&path), Err(KeyStoreError::InUse(_))), "one opener at a time");
        let alice = store.key_for("alice", &old).unwrap();
        assert_eq!(store.key_for("alice", &old).unwrap().id, alice.id, "one key per subject");
        let bob = store.key_for("bob", &old).unwrap();
        assert_ne!(alice.id, bob.id);
        let sealed = alice.key.seal(b"x", b"crew").unwrap();

        // Rotation re-wraps; the data key itself is the same.
        let new = ring(&[("a", 1), ("b", 2)]);
        let rotation = store.rotate(&new, None).unwrap();
        assert_eq!((rotation.primary.as_str(), rotation.rewrapped, rotation.still_under.len()), ("b", 2, 0));
        let only_new = ring(&[("b", 2)]);
        let again = store.existing_key_for("alice", &only_new).unwrap().unwrap();
        assert_eq!(again.key.open(b"x", &sealed).unwrap(), b"crew");
        assert_eq!(store.rotate(&new, None).unwrap().rewrapped, 0, "nothing left to re-wrap");
        assert!(matches!(store.existing_key_for("alice", &old), Err(KeyStoreError::UnknownKek { .. })));
        let forged = ring(&[("b", 3)]);
        assert!(matches!(store.existing_key_for("alice", &forged), Err(KeyStoreError::Unwrap(_))));

        // Erasure leaves only the id's tombstone, and the wrapped key's bytes are gone
        // from the file.
        let wrapped_of = |subject: &str| -> String {
            store.conn.query_row("SELECT wrapped FROM data_keys WHERE subject = ?1", [subject], |r| r.get(0)).unwrap()
        };
        let (wrapped, bobs) = (wrapped_of("alice"), wrapped_of("bob"));
        assert_eq!(store.erase("alice", None).unwrap(), Some(alice.id.clone()));
        let on_disk = |name: &str| std::fs::read(dir.path().join(name)).unwrap_or_default();
        let holds = |file: &str, text: &str| on_disk(file).windows(text.len()).any(|w| w == text.as_bytes());
        for file in ["keys.sqlite", "keys.sqlite-wal"] {
            assert!(!holds(file, &wrapped), "{file} still holds the erased key");
        }
        assert!(holds("keys.sqlite", &bobs) || holds("keys.sqlite-wal", &bobs), "the files looked at are the store's");
        assert_eq!(store.lookup(&alice.id).unwrap(), Stored::Erased);
        assert!(matches!(store.lookup(&bob.id).unwrap(), Stored::Live { .. }));
        assert_eq!(store.lookup("dk-never").unwrap(), Stored::Unknown);
        assert_eq!(store.erase("alice", None).unwrap(), None);
        assert_ne!(store.key_for("alice", &new).unwrap().id, alice.id, "a returning subject gets a new key");
        drop(store);
        KeyStore::open(&path).expect("the lock goes with the store");
    }
}
