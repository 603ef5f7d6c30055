//! Shard routing: which shard owns a flight.
//!
//! The flight id is the shard key; a flight, its events and its status projection
//! always live on the shard this function names, so every single-flight read or write
//! touches exactly one shard.
//!
//! # Why jump consistent hash
//! Jump consistent hash (Lamping & Veach, 2014, arXiv:1406.2294) needs no ring or
//! table, uses no memory, runs in O(ln n) multiply-adds (a few nanoseconds, see
//! `benches/routing.rs` once it lands), spreads keys evenly, and when the shard count
//! grows from n to n+1 it moves only the keys that land on the new shard, about
//! 1/(n+1) of them, never between two old shards. Its limitation, that shards can only
//! be added or removed at the end, fits numbered shard files and databases. A
//! rendezvous hash would allow removing any shard but costs O(n) per lookup; a ring
//! needs many virtual nodes to be as even. Keys are mixed with SplitMix64 first so
//! that sequential ids do not feed correlated seeds into the generator.

/// The most shards a dataset may have. Far above what one machine can use well; it
/// bounds file handles and per-shard pools.
pub const MAX_SHARDS: u32 = 256;

/// The shard (0-based) that owns `flight_id` when there are `shards` shards.
///
/// `shards` must be at least 1; `ShardCount` guarantees it at the edges.
#[inline]
pub fn shard_for(flight_id: i64, shards: u32) -> u32 {
    debug_assert!(shards >= 1, "shard count is validated to be >= 1");
    jump_consistent_hash(splitmix64(flight_id as u64), shards.max(1))
}

/// SplitMix64's finaliser: a bijective mix of all 64 bits.
#[inline]
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Jump consistent hash, transcribed from the paper's reference implementation.
#[inline]
fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// A validated shard count, 1..=`MAX_SHARDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ShardCount(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard count {0} is outside 1..={MAX_SHARDS}")]
pub struct ShardCountError(pub i64);

impl ShardCount {
    pub fn new(n: i64) -> Result<Self, ShardCountError> {
        if (1..=i64::from(MAX_SHARDS)).contains(&n) { Ok(Self(n as u32)) } else { Err(ShardCountError(n)) }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn shard_for(self, flight_id: i64) -> usize {
        shard_for(flight_id, self.0) as usize
    }

    /// The shard that owns a read-model row keyed by a name (an airport's departures
    /// board, a carrier's figures): the name's bytes folded by FNV-1a, then the same
    /// hash as flights.
    pub fn shard_for_name(self, name: &str) -> usize {
        let folded =
            name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        shard_for(folded as i64, self.0) as usize
    }
}

impl TryFrom<u32> for ShardCount {
    type Error = ShardCountError;
    fn try_from(n: u32) -> Result<Self, Self::Error> {
        Self::new(i64::from(n))
    }
}

impl From<ShardCount> for u32 {
    fn from(n: ShardCount) -> u32 {
        n.0
    }
}

impl std::str::FromStr for ShardCount {
    type Err = ShardCountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<i64>().map_err(|_| ShardCountError(-1)).and_then(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: i64 = 1_000_000;

    #[test]
    fn one_shard_owns_everything() {
        assert!((1..10_000).all(|id| shard_for(id, 1) == 0));
    }

    #[test]
    fn balanced_within_five_percent_over_a_million_ids() {
        for shards in [2u32, 3, 4, 8, 16, 17] {
            let mut counts = vec![0u64; shards as usize];
            for id in 1..=IDS {
                counts[shard_for(id, shards) as usize] += 1;
            }
            let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
            assert!(max as f64 / min as f64 <= 1.05, "{shards} shards: min {min} max {max}");
        }
    }

    #[test]
    fn growing_moves_about_one_over_n_plus_one_and_only_to_the_new_shard() {
        for shards in [1u32, 4, 8, 15] {
            let mut moved = 0u64;
            for id in 1..=IDS {
                let (before, after) = (shard_for(id, shards), shard_for(id, shards + 1));
                if before != after {
                    assert_eq!(after, shards, "id {id} moved between old shards {before} -> {after}");
                    moved += 1;
                }
            }
            let expected = IDS as f64 / f64::from(shards + 1);
            let ratio = moved as f64 / expected;
            assert!((0.97..=1.03).contains(&ratio), "{shards}->{}: moved {moved}, expected ~{expected}", shards + 1);
        }
    }

    #[test]
    fn stable_across_builds() {
        // Shard files on disk depend on these exact values: a change here is a
        // breaking change to every existing dataset.
        let got: Vec<u32> = (1..=8).map(|id| shard_for(id, 8)).collect();
        assert_eq!(got, STABLE_1_TO_8_ON_8);
    }

    const STABLE_1_TO_8_ON_8: [u32; 8] = [3, 0, 4, 7, 3, 5, 7, 5];

    #[test]
    fn shard_counts_validate() {
        assert!(ShardCount::new(0).is_err());
        assert!(ShardCount::new(257).is_err());
        assert_eq!("8".parse::<ShardCount>().unwrap().get(), 8);
        assert!("x".parse::<ShardCount>().is_err());
    }
}
