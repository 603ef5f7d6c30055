//! A read-through cache of `GET /flights/{id}` response bodies, for the Zipf-hot
//! flights a real departures board is asked about again and again.
//!
//! What is cached is the serialised identity body and its version (the `ETag`), so a
//! hit costs a lock, a hash lookup and a reference-count increment: no query, no
//! decoding, no serialisation. Point-read bodies are below the compression threshold,
//! so the identity bytes are what goes out.
//!
//! **Correctness.** A read after a successful write must never return the old status.
//! The writer invalidates after its commit, but a reader that queried the store
//! *before* the commit could still be on its way to insert the old body afterwards.
//! Each stripe therefore counts its invalidations: a reader takes a [`Ticket`] (the
//! stripe's count) before it queries, and [`FlightCache::fill`] inserts only if no
//! invalidation happened in that stripe since. Checking and inserting happen under the
//! stripe's lock, as do bumping and removing, so the two cannot interleave. A fill
//! that loses this race is simply skipped (one more miss later).
//!
//! A monolith's cache only sees writes made through it; with other writers (another
//! server on the same PostgreSQL shards, a script) run it with `--cache off`. A query
//! service (`serve --role query`) instead follows every write's event on the bus and
//! invalidates from it, and clears itself whenever its consumer (re)subscribes,
//! since invalidations sent while it was away are lost; reads are then stale for at
//! most the time from a commit to its event's arrival.
//!
//! Eviction is quick_cache's S3-FIFO per stripe, which keeps the hot set and resists
//! scans (a departures board sweep touching many cold flights once).

use crate::domain::FlightId;
use bytes::Bytes;
use http::HeaderValue;
use std::sync::{Mutex, MutexGuard};

/// Stripes: enough that two cores rarely contend for one lock.
const STRIPES: usize = 64;

/// One cached point read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFlight {
    /// The `GET /flights/{id}` JSON body, uncompressed.
    pub body: Bytes,
    /// The flight's version.
    pub version: i64,
    /// `"<version>"`, built once with the entry: a hit clones it (a reference count)
    /// instead of formatting a header per response.
    pub etag: HeaderValue,
}

impl CachedFlight {
    pub fn new(body: Bytes, version: i64) -> Self {
        Self { body, version, etag: super::response::etag(version) }
    }
}

/// Proof that a reader looked before querying the store; see the module doc.
#[derive(Debug)]
pub struct Ticket {
    stripe: usize,
    invalidations: u64,
}

struct Stripe {
    invalidations: u64,
    entries: quick_cache::unsync::Cache<i64, CachedFlight>,
    hits: u64,
    misses: u64,
}

/// Hit and miss counts since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

pub struct FlightCache {
    stripes: Box<[Mutex<Stripe>]>,
}

impl FlightCache {
    /// A cache holding about `capacity` flights (at least one per stripe).
    pub fn new(capacity: usize) -> Self {
        let per_stripe = capacity.div_ceil(STRIPES).max(1);
        let stripes = (0..STRIPES)
            .map(|_| {
                Mutex::new(Stripe {
                    invalidations: 0,
                    entries: quick_cache::unsync::Cache::new(per_stripe),
                    hits: 0,
                    misses: 0,
                })
            })
            .collect();
        Self { stripes }
    }

    fn stripe_of(id: FlightId) -> usize {
        // Fibonacci hashing: consecutive ids land in different stripes.
        ((id.get() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % STRIPES
    }

    fn lock(&self, stripe: usize) -> MutexGuard<'_, Stripe> {
        // Nothing inside the lock can leave a stripe half-updated (quick_cache's
        // operations complete or panic before mutating), so a poisoned lock is usable.
        self.stripes[stripe].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached body, or on a miss the ticket to [`fill`](Self::fill) with after
    /// querying the store.
    pub fn get(&self, id: FlightId) -> Result<CachedFlight, Ticket> {
        let stripe = Self::stripe_of(id);
        let mut guard = self.lock(stripe);
        match guard.entries.get(&id.get()).cloned() {
            Some(hit) => {
                guard.hits += 1;
                Ok(hit)
            }
            None => {
                guard.misses += 1;
                Err(Ticket { stripe, invalidations: guard.invalidations })
            }
        }
    }

    /// Inserts a body read from the store, unless the flight's stripe saw an
    /// invalidation since `ticket` was taken (the body may then be older than a write).
    pub fn fill(&self, id: FlightId, ticket: Ticket, value: CachedFlight) {
        debug_assert_eq!(ticket.stripe, Self::stripe_of(id), "ticket from another flight's stripe");
        let mut guard = self.lock(ticket.stripe);
        if guard.invalidations == ticket.invalidations {
            guard.entries.insert(id.get(), value);
        }
    }

    /// Drops the flight's entry and fences off fills by readers that queried before
    /// now. Call after every write attempt on the flight has finished, whatever its
    /// outcome (a failed commit may still have committed).
    pub fn invalidate(&self, id: FlightId) {
        let mut guard = self.lock(Self::stripe_of(id));
        guard.invalidations += 1;
        guard.entries.remove(&id.get());
    }

    /// Drops every entry and fences off every fill under way: for a cache that may
    /// have missed invalidations (its bus consumer was disconnected for a while).
    pub fn clear(&self) {
        for stripe in 0..STRIPES {
            let mut guard = self.lock(stripe);
            guard.invalidations += 1;
            guard.entries.clear();
        }
    }

    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        for stripe in 0..STRIPES {
            let guard = self.lock(stripe);
            stats.hits += guard.hits;
            stats.misses += guard.misses;
            stats.entries += guard.entries.len();
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> FlightId {
        FlightId::new(n).unwrap()
    }

    fn cached(version: i64) -> CachedFlight {
        CachedFlight::new(Bytes::from(format!("{{\"version\":{version}}}")), version)
    }

    #[test]
    fn miss_fill_hit_invalidate() {
        let cache = FlightCache::new(1_000);
        let ticket = cache.get(id(7)).unwrap_err();
        cache.fill(id(7), ticket, cached(1));
        assert_eq!(cache.get(id(7)).unwrap(), cached(1));
        cache.invalidate(id(7));
        assert!(cache.get(id(7)).is_err());
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 2, entries: 0 });
    }

    /// The race the ticket exists for: a reader queries (old status), a writer commits
    /// and invalidates, then the reader tries to fill. The old body must not land.
    #[test]
    fn a_fill_from_before_a_write_is_refused() {
        let cache = FlightCache::new(1_000);
        let reader = cache.get(id(42)).unwrap_err();
        // ... the reader's query returns version 1; meanwhile a write commits v2:
        cache.invalidate(id(42));
        cache.fill(id(42), reader, cached(1));
        assert!(cache.get(id(42)).is_err(), "stale body was cached");
        // A reader that starts after the write fills normally.
        let after = cache.get(id(42)).unwrap_err();
        cache.fill(id(42), after, cached(2));
        assert_eq!(cache.get(id(42)).unwrap().version, 2);
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = FlightCache::new(640);
        for n in 1..=10_000 {
            if let Err(ticket) = cache.get(id(n)) {
                cache.fill(id(n), ticket, cached(0));
            }
        }
        let entries = cache.stats().entries;
        assert!(entries > 0 && entries <= 640, "{entries} entries");
    }
}
