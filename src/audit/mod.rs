//! The tamper-evident audit log: one record per change, written in the change's own
//! transaction, each linked to the one before it in its chain by a keyed BLAKE3 hash.
//!
//! A record's `hash` is BLAKE3 keyed with the audit key over every field but its
//! position (`seq`) and its own hash, the previous record's hash included. The key is a
//! data key of the key store (`seal`), wrapped like the others, so someone who can
//! write the database but holds no KEK cannot forge a record or re-link a chain around
//! one they removed. `verify` walks a chain in stored order and names the first record
//! that was altered (its hash no longer matches, its neighbours still link to it),
//! deleted (a gap, or a link to a record that is not there), inserted (a record the
//! chain skips over) or reordered (a record that links to one stored after it).
//!
//! The actor is never stored in clear: it is sealed under the actor's own data key
//! (`seal::Sealer::seal_actor`), so an erasure shreds it with their reports while the
//! chain, which hashes the ciphertext, still verifies.

pub mod sql;

use serde::Serialize;

/// What a change did.
pub mod action {
    pub const REPORT: &str = "report_delay";
    pub const ERASE: &str = "erase_subject";
    pub const ROTATE: &str = "rotate_keys";
}

crate::choices! {
    /// Which records a chain links. Every write appends to one chain, so the scope is
    /// how much writing a chain serialises (`results/security.md` measures them).
    #[derive(Debug, Hash)]
    pub enum ChainScope as "audit chain", default Flight {
        /// One chain per flight, next to its events: the flight's status row lock,
        /// which every append takes anyway, is the chain's lock.
        Flight = "flight",
        /// One chain per shard: every write on the shard takes the chain's head in turn
        /// (SQLite's writer lock already does; PostgreSQL takes an advisory lock).
        Shard = "shard",
        /// One chain for everything: every write of the process, on any shard, waits
        /// for the one before it to commit. For measuring what that costs: it holds
        /// the head in the server's memory, so only one process may write.
        Global = "global",
    }
}

/// The chain the key store's own changes (erasures, rotations) go to.
pub const KEYS_CHAIN: &str = "keys";

/// A record before it is placed in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draft {
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub request_id: String,
    /// The actor's subject id sealed under their data key (`None`: nobody signed).
    pub actor: Option<String>,
    /// The data key sealing `actor`.
    pub actor_key: Option<String>,
    pub role: String,
    pub action: String,
    /// What changed: `flight/<id>`, a data key's id, a KEK's id. Never a subject.
    pub target: String,
    pub before_version: Option<i64>,
    pub after_version: Option<i64>,
}

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub chain: String,
    pub seq: i64,
    #[serde(flatten)]
    pub draft: Draft,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of a chain's first record's predecessor.
pub const GENESIS: &str = "";

/// Derives the audit MAC key from a 32-byte data key (`seal` keeps the data key).
pub fn mac_key(data_key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("flightbench audit chain v1", data_key)
}

impl Draft {
    /// A record of `action` on `target`, made now in answer to `request_id` by someone
    /// in `role`; `actor` is (the actor sealed, the sealing key's id), both `None` when
    /// nobody signed (`seal::Sealer::seal_actor`). Versions are the append's to fill in.
    pub fn new(
        request_id: &str,
        role: &str,
        action: &str,
        target: String,
        (actor, actor_key): (Option<String>, Option<String>),
    ) -> Self {
        Self {
            at: crate::machine::unix_micros(),
            request_id: request_id.to_owned(),
            actor,
            actor_key,
            role: role.to_owned(),
            action: action.to_owned(),
            target,
            before_version: None,
            after_version: None,
        }
    }

    /// Places the draft after `prev` (`None`: first in its chain).
    pub fn link(self, chain: &str, prev: Option<(i64, String)>, key: &[u8; 32]) -> Record {
        let (seq, prev_hash) = match prev {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS.to_owned()),
        };
        let hash = hash_of(chain, &self, &prev_hash, key);
        Record { chain: chain.to_owned(), seq, draft: self, prev_hash, hash }
    }
}

/// The keyed hash over a record's content and its link (not its position).
fn hash_of(chain: &str, d: &Draft, prev_hash: &str, key: &[u8; 32]) -> String {
    let mut h = blake3::Hasher::new_keyed(key);
    let mut field = |bytes: Option<&[u8]>| {
        match bytes {
            None => h.update(&[0]),
            Some(b) => h.update(&[1]).update(&(b.len() as u64).to_le_bytes()).update(b),
        };
    };
    field(Some(chain.as_bytes()));
    field(Some(&d.at.to_le_bytes()));
    field(Some(d.request_id.as_bytes()));
    field(d.actor.as_deref().map(str::as_bytes));
    field(d.actor_key.as_deref().map(str::as_bytes));
    field(Some(d.role.as_bytes()));
    field(Some(d.action.as_bytes()));
    field(Some(d.target.as_bytes()));
    field(d.before_version.map(i64::to_le_bytes).as_ref().map(|b| &b[..]));
    field(d.after_version.map(i64::to_le_bytes).as_ref().map(|b| &b[..]));
    field(Some(prev_hash.as_bytes()));
    h.finalize().to_hex().to_string()
}

/// The first thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "tampering", rename_all = "snake_case")]
pub enum Tamper {
    #[error("chain {chain}: record {seq} was altered (its hash does not match its content)")]
    Altered { chain: String, seq: i64 },
    #[error("chain {chain}: a record before record {seq} was deleted")]
    Deleted { chain: String, seq: i64 },
    #[error("chain {chain}: record {seq} was inserted (the chain links around it)")]
    Inserted { chain: String, seq: i64 },
    #[error("chain {chain}: record {seq} is out of order (it follows a record stored after it)")]
    Reordered { chain: String, seq: i64 },
}

/// Checks one chain's records, in stored (`seq`) order; returns how many verified. A
/// forged record added at the very end reads as altered: nothing after it tells the
/// two apart.
pub fn verify(records: &[Record], key: &[u8; 32]) -> Result<usize, Tamper> {
    let ok = |r: &Record| hash_of(&r.chain, &r.draft, &r.prev_hash, key) == r.hash;
    let links_to = |r: &Record, prev: Option<&Record>| r.prev_hash == prev.map_or(GENESIS, |p| p.hash.as_str());
    for (i, r) in records.iter().enumerate() {
        let (chain, seq) = (r.chain.clone(), r.seq);
        let prev = i.checked_sub(1).map(|p| &records[p]);
        let next = records.get(i + 1);
        if !ok(r) {
            // Its neighbours still link to it: its content changed. The chain skips
            // it (the next links to the previous): it was never written by us.
            return Err(match next {
                Some(n) if n.prev_hash == r.hash => Tamper::Altered { chain, seq },
                Some(n) if links_to(n, prev) => Tamper::Inserted { chain, seq },
                None if !links_to(r, prev) => Tamper::Inserted { chain, seq },
                _ => Tamper::Altered { chain, seq },
            });
        }
        // Where the next record belongs: a record missing here was deleted.
        let expected = prev.map_or(1, |p| p.seq + 1);
        if !links_to(r, prev) {
            if records[i + 1..].iter().any(|later| later.hash == r.prev_hash) {
                return Err(Tamper::Reordered { chain, seq });
            }
            return Err(Tamper::Deleted { chain, seq: expected });
        }
        if seq != expected {
            // Linked, yet a position is skipped: the numbering was edited.
            return Err(Tamper::Deleted { chain, seq: expected });
        }
    }
    Ok(records.len())
}

#[cfg(test)]
mod tests;
