//! Encryption at rest of the personal data in delay reports: the reporter's subject id
//! and the free-text reason, sealed per data subject (envelope encryption).
//!
//! Each subject has a data key (AES-256-GCM), made on their first report and stored
//! wrapped under a key-encryption key in the key store (`keystore`), apart from the
//! shards. An event's two personal fields are sealed together under the reporter's
//! key, with the event's identity (flight, version, key id) as associated data, and
//! stored as the row's `reason` with the key's id in `data_key` (`store::row`). Delay
//! minutes, kind, code and times stay in clear: every projection and query reads
//! them, and none needs the reason. Events nobody signed (`--auth off`) are sealed
//! under one shared key for the anonymous subject, so with a KEK configured no reason
//! is ever stored in clear.
//!
//! Erasure (crypto-shredding) destroys a subject's data key: every field sealed under
//! it is unreadable from then on, in the shards and in every copy of them, and reads
//! as [`Opened::Erased`]. The store keeps a tombstone of the key's id, so an id it has
//! never seen (a key store from another dataset) is an error, never "erased".
//!
//! Unwrapped keys are cached in memory after first use: a seal or an open is then one
//! AES-GCM operation on a few hundred bytes (about 1 µs, `benches/tokens.rs`).

pub mod cipher;
pub mod kek;
pub mod keystore;

use crate::audit::{Draft, Record};
use crate::domain::{DelayEvent, FlightId, Reason, Sealed, SubjectId};
use cipher::{CipherError, Key};
use kek::{KekError, KekRing, KekSource};
use keystore::{KeyStore, KeyStoreError, Rotation, Stored};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// The key store's file name inside a dataset directory, when none is given.
pub const DEFAULT_KEY_STORE: &str = "data-keys.sqlite";

/// The subject whose key seals events nobody signed. `SubjectId` is never empty.
const ANONYMOUS: &str = "";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    #[error(
        "event {version} of flight {flight}: the sealed fields do not open under data key {key_id}: altered, or moved from another event"
    )]
    Tampered { flight: FlightId, version: i64, key_id: String },
    #[error(
        "event {version} of flight {flight} is sealed under data key {key_id}, which this key store has never held: is it this dataset's key store?"
    )]
    UnknownKey { flight: FlightId, version: i64, key_id: String },
    #[error("an audit record's actor does not open under data key {key_id}: the record was altered")]
    ActorTampered { key_id: String },
    #[error("an audit record's actor is sealed under data key {key_id}, which this key store has never held")]
    UnknownActorKey { key_id: String },
    #[error(transparent)]
    Cipher(#[from] CipherError),
    #[error("the key store's worker thread failed: {0}")]
    Worker(String),
}

impl crate::failure::Classify for SealError {
    fn failure(&self) -> crate::failure::Failure {
        match self {
            SealError::Kek(e) => e.failure(),
            SealError::KeyStore(e) => e.failure(),
            SealError::Tampered { .. }
            | SealError::UnknownKey { .. }
            | SealError::ActorTampered { .. }
            | SealError::UnknownActorKey { .. } => crate::failure::Failure::BadInput,
            SealError::Cipher(_) | SealError::Worker(_) => crate::failure::Failure::Internal,
        }
    }
}

/// An event's personal fields, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Clear { reported_by: Option<SubjectId>, reason: Reason },
    Erased,
}

/// What the cache knows of a key id.
#[derive(Clone)]
enum Slot {
    Live(Arc<Key>),
    Erased,
}

/// Keys in memory. One lock over both maps and the erasure count, so an erasure
/// cannot interleave with a look-up that read the store before it: such a look-up
/// sees the count changed and does not cache what it read.
#[derive(Default)]
struct Cache {
    by_subject: HashMap<String, (String, Arc<Key>)>,
    by_id: HashMap<String, Slot>,
    erasures: u64,
}

/// Seals and opens events' personal fields; shared by the store and the admin API.
pub struct Sealer {
    source: KekSource,
    ring: RwLock<Arc<KekRing>>,
    store: Arc<Mutex<KeyStore>>,
    cache: RwLock<Cache>,
    /// The audit log's MAC key, once read (`KeyStore::audit_key`).
    audit_key: std::sync::OnceLock<[u8; 32]>,
    /// Opened to read only (`load_read_only`): never makes a key.
    read_only: bool,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("store", &self.store).finish()
    }
}

impl Sealer {
    /// Loads the key ring and opens (taking the lock of) the key store.
    pub fn load(source: KekSource, key_store: &Path) -> Result<Self, SealError> {
        Self::over(source, KeyStore::open, key_store, false)
    }

    /// Opens the key store to read only, without its lock: `audit verify` beside a
    /// running server.
    pub fn load_read_only(source: KekSource, key_store: &Path) -> Result<Self, SealError> {
        Self::over(source, KeyStore::open_read_only, key_store, true)
    }

    fn over(
        source: KekSource,
        open: fn(&Path) -> Result<KeyStore, KeyStoreError>,
        key_store: &Path,
        read_only: bool,
    ) -> Result<Self, SealError> {
        let ring = KekRing::load(&source)?;
        let store = open(key_store)?;
        Ok(Self {
            source,
            ring: RwLock::new(Arc::new(ring)),
            store: Arc::new(Mutex::new(store)),
            cache: Default::default(),
            audit_key: Default::default(),
            read_only,
        })
    }

    /// The audit log's MAC key (made on first use, unless read-only).
    pub async fn audit_key(&self) -> Result<[u8; 32], SealError> {
        if let Some(key) = self.audit_key.get() {
            return Ok(*key);
        }
        let (ring, create) = (self.ring(), !self.read_only);
        let key = self.on_store(move |store| store.audit_key(&ring, create)).await?;
        Ok(*self.audit_key.get_or_init(|| key))
    }

    /// The key store's own audit records from `since` (microseconds).
    pub async fn audit_records(&self, since: i64) -> Result<Vec<Record>, SealError> {
        self.on_store(move |store| store.audit_records(since)).await
    }

    /// The actor of an audit record of `action` answering `request_id`, sealed under
    /// their own data key and bound to both: the record's (actor, actor key) fields,
    /// both `None` when nobody signed.
    pub async fn seal_actor(
        &self,
        actor: Option<&SubjectId>,
        request_id: &str,
        action: &str,
    ) -> Result<(Option<String>, Option<String>), SealError> {
        let Some(actor) = actor else { return Ok((None, None)) };
        let (key_id, key) = self.subject_key(actor.as_str()).await?;
        let sealed = key.seal(&actor_aad(request_id, action, &key_id), actor.as_str().as_bytes())?;
        Ok((Some(cipher::encode(&sealed)), Some(key_id)))
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn cache_mut(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    fn ring(&self) -> Arc<KekRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `work` on the key store on the blocking pool (a SQLite call, synced when
    /// it writes).
    async fn on_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut KeyStore) -> Result<T, KeyStoreError> + Send + 'static,
    ) -> Result<T, SealError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&mut store.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|e| SealError::Worker(e.to_string()))?
            .map_err(SealError::from)
    }

    /// The event's personal fields sealed under its reporter's data key (made on the
    /// reporter's first event), bound to this flight and version.
    pub async fn seal(&self, flight: FlightId, version: i64, event: &DelayEvent) -> Result<Sealed, SealError> {
        let subject = event.reported_by.as_ref().map_or(ANONYMOUS, SubjectId::as_str);
        let (key_id, key) = self.subject_key(subject).await?;
        let plain = fields(event.reported_by.as_ref(), event.kind.reason());
        let sealed = key.seal(&event_aad(flight, version, &key_id), &plain)?;
        Ok(Sealed { data_key: key_id, ciphertext: cipher::encode(&sealed) })
    }

    /// The subject's data key (made on their first use), from memory when it can.
    async fn subject_key(&self, subject: &str) -> Result<(String, Arc<Key>), SealError> {
        let (cached, erasures) = {
            let cache = self.cache();
            (cache.by_subject.get(subject).cloned(), cache.erasures)
        };
        let (key_id, key) = match cached {
            Some(hit) => hit,
            None => {
                let (ring, owned) = (self.ring(), subject.to_owned());
                let made = self.on_store(move |store| store.key_for(&owned, &ring)).await?;
                let entry = (made.id, Arc::new(made.key));
                let mut cache = self.cache_mut();
                if cache.erasures == erasures {
                    cache.by_id.insert(entry.0.clone(), Slot::Live(entry.1.clone()));
                    cache.by_subject.insert(subject.to_owned(), entry.clone());
                }
                entry
            }
        };
        Ok((key_id, key))
    }

    /// Opens the sealed actor of an audit record of `action` answering `request_id`:
    /// their subject id, or `None` once their key was erased.
    pub async fn open_actor(
        &self,
        sealed: &str,
        key_id: &str,
        request_id: &str,
        action: &str,
    ) -> Result<Option<SubjectId>, SealError> {
        let slot = self.slot(key_id).await?;
        let slot = slot.ok_or_else(|| SealError::UnknownActorKey { key_id: key_id.to_owned() })?;
        let Slot::Live(key) = slot else { return Ok(None) };
        let tampered = || SealError::ActorTampered { key_id: key_id.to_owned() };
        let aad = actor_aad(request_id, action, key_id);
        let plain = cipher::decode(sealed).and_then(|c| key.open(&aad, &c)).map_err(|_| tampered())?;
        let text = String::from_utf8(plain).map_err(|_| tampered())?;
        SubjectId::parse(&text).map(Some).map_err(|_| tampered())
    }

    /// Opens an event's sealed fields: in clear, or erased.
    pub async fn open(&self, flight: FlightId, version: i64, sealed: &Sealed) -> Result<Opened, SealError> {
        let slot = self.slot(&sealed.data_key).await?;
        let slot = slot.ok_or_else(|| SealError::UnknownKey { flight, version, key_id: sealed.data_key.clone() })?;
        let key = match slot {
            Slot::Erased => return Ok(Opened::Erased),
            Slot::Live(key) => key,
        };
        let tampered = || SealError::Tampered { flight, version, key_id: sealed.data_key.clone() };
        let plain = cipher::decode(&sealed.ciphertext)
            .and_then(|c| key.open(&event_aad(flight, version, &sealed.data_key), &c))
            .map_err(|_| tampered())?;
        let (reported_by, reason) = parse_fields(&plain).ok_or_else(tampered)?;
        Ok(Opened::Clear { reported_by, reason })
    }

    /// What a key id is: from memory, or else fetched from the store into the cache;
    /// `None` when the store has never held it (its caller names what needed it). A
    /// KEK id the ring does not hold makes it re-read its source once: a rotation may
    /// have added it.
    async fn slot(&self, key_id: &str) -> Result<Option<Slot>, SealError> {
        if let Some(slot) = self.cache().by_id.get(key_id).cloned() {
            return Ok(Some(slot));
        }
        let owned = key_id.to_owned();
        let erasures = self.cache().erasures;
        let stored = self.on_store(move |store| store.lookup(&owned)).await?;
        let slot = match stored {
            Stored::Erased => Slot::Erased,
            Stored::Unknown => return Ok(None),
            Stored::Live { kek_id, wrapped } => {
                let mut ring = self.ring();
                if ring.get(&kek_id).is_none() {
                    ring = self.reload_ring()?;
                }
                Slot::Live(Arc::new(keystore::unwrap(key_id, &kek_id, &wrapped, &ring)?))
            }
        };
        let mut cache = self.cache_mut();
        if cache.erasures == erasures {
            cache.by_id.insert(key_id.to_owned(), slot.clone());
        }
        Ok(Some(slot))
    }

    fn reload_ring(&self) -> Result<Arc<KekRing>, SealError> {
        let ring = Arc::new(KekRing::load(&self.source)?);
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = ring.clone();
        Ok(ring)
    }

    /// `audit` with the key that links it into the key store's chain.
    async fn keyed(&self, audit: Option<Draft>) -> Result<Option<(Draft, [u8; 32])>, SealError> {
        Ok(match audit {
            Some(draft) => Some((draft, self.audit_key().await?)),
            None => None,
        })
    }

    /// Destroys the subject's data key and forgets it here; with `audit`, records the
    /// erasure in the key store's chain in the same transaction. Returns the destroyed
    /// key's id, or `None` when the subject had no key (never reported, or erased
    /// before).
    pub async fn erase(&self, subject: &SubjectId, audit: Option<Draft>) -> Result<Option<String>, SealError> {
        let owned = subject.as_str().to_owned();
        let audit = self.keyed(audit).await?;
        let key_id = self.on_store(move |store| store.erase(&owned, audit)).await?;
        let mut cache = self.cache_mut();
        cache.erasures += 1;
        cache.by_subject.remove(subject.as_str());
        if let Some(id) = &key_id {
            cache.by_id.insert(id.clone(), Slot::Erased);
        }
        Ok(key_id)
    }

    /// The id of the subject's data key, if they have one.
    pub async fn key_id_for(&self, subject: &SubjectId) -> Result<Option<String>, SealError> {
        let owned = subject.as_str().to_owned();
        self.on_store(move |store| store.key_id_for(&owned)).await
    }

    /// Re-reads the key ring (a new KEK may have been added to its file) and re-wraps
    /// every data key under its primary. Nothing sealed changes, and seals and opens
    /// go on meanwhile: keys in memory are already unwrapped, and a look-up waits
    /// for at most one batch of re-wraps.
    pub async fn rotate(&self, audit: Option<Draft>) -> Result<Rotation, SealError> {
        let ring = self.reload_ring()?;
        let audit = self.keyed(audit).await?;
        self.on_store(move |store| store.rotate(&ring, audit)).await
    }
}

/// The associated data binding a sealed actor to its audit record: the record's
/// request id and action (the target of an erasure is not known until the key store's
/// transaction).
fn actor_aad(request_id: &str, action: &str, key_id: &str) -> Vec<u8> {
    format!("flightbench/audit-actor/v1|{request_id}|{action}|{key_id}").into_bytes()
}

/// The associated data binding a sealed payload to its event.
fn event_aad(flight: FlightId, version: i64, key_id: &str) -> Vec<u8> {
    format!("flightbench/event/v1|{flight}|{version}|{key_id}").into_bytes()
}

/// The plaintext: a presence byte, the reporter's id with its length (two bytes, big
/// endian; a subject id is at most 255 characters), then the reason.
fn fields(reported_by: Option<&SubjectId>, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + reason.len() + reported_by.map_or(0, |s| s.as_str().len()));
    match reported_by {
        None => out.extend_from_slice(&[0, 0, 0]),
        Some(s) => {
            out.push(1);
            out.extend_from_slice(&(s.as_str().len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_str().as_bytes());
        }
    }
    out.extend_from_slice(reason.as_bytes());
    out
}

fn parse_fields(plain: &[u8]) -> Option<(Option<SubjectId>, Reason)> {
    let (&present, rest) = plain.split_first()?;
    let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let rest = rest.get(2..)?;
    let (subject, reason) = (rest.get(..len)?, rest.get(len..)?);
    let reported_by = match present {
        0 if len == 0 => None,
        1 => Some(SubjectId::parse(std::str::from_utf8(subject).ok()?).ok()?),
        _ => return None,
    };
    Some((reported_by, Reason::parse(std::str::from_utf8(reason).ok()?).ok()?))
}

#[cfg(test)]
mod tests;
