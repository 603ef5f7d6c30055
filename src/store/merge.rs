//! Gathering scatter results: the k-way merge of per-shard departures.

use crate::domain::Departure;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Merges per-shard lists, each sorted by (scheduled departure, id), into the first
/// `limit` rows overall. A heap of one cursor per shard: O(limit · log shards), and
/// no row beyond the limit is touched.
pub fn merge_departures(per_shard: Vec<Vec<Departure>>, limit: usize) -> Vec<Departure> {
    let key = |d: &Departure| (d.flight.scheduled_departure, d.flight.id);
    let mut cursors: Vec<std::vec::IntoIter<Departure>> = per_shard.into_iter().map(Vec::into_iter).collect();
    let mut heads: Vec<Option<Departure>> = cursors.iter_mut().map(Iterator::next).collect();
    let mut heap: BinaryHeap<Reverse<(_, usize)>> =
        heads.iter().enumerate().filter_map(|(i, h)| h.as_ref().map(|d| Reverse((key(d), i)))).collect();
    let mut merged = Vec::with_capacity(limit.min(heads.iter().flatten().count() * 8));
    while merged.len() < limit {
        let Some(Reverse((_, shard))) = heap.pop() else { break };
        // Cannot fail: a shard is in the heap only while its head is Some.
        let row = heads[shard].take().expect("head present while queued");
        heads[shard] = cursors[shard].next();
        if let Some(next) = &heads[shard] {
            heap.push(Reverse((key(next), shard)));
        }
        merged.push(row);
    }
    merged
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::*;

    pub(in crate::store) const START: i64 = 1_800_000_000;

    /// A departure `minute`s after a fixed instant (the scatter plan's tests share it).
    pub(in crate::store) fn dep(id: i64, minute: i64) -> Departure {
        let at = UtcTime::from_unix(START + minute * 60).unwrap();
        FlightView {
            flight: Flight {
                id: FlightId::new(id).unwrap(),
                carrier: Carrier::parse("BA").unwrap(),
                number: FlightNumber::new(1).unwrap(),
                origin: AirportCode::parse("LHR").unwrap(),
                destination: AirportCode::parse("JFK").unwrap(),
                scheduled_departure: at,
                scheduled_arrival: at.plus_seconds(3600),
            },
            status: FlightStatus::initial(),
        }
    }

    fn ids(rows: &[Departure]) -> Vec<i64> {
        rows.iter().map(|d| d.flight.id.get()).collect()
    }

    #[test]
    fn merges_in_time_then_id_order_and_stops_at_the_limit() {
        let shards = vec![vec![dep(1, 0), dep(4, 10), dep(7, 30)], vec![], vec![dep(2, 0), dep(3, 5), dep(9, 30)]];
        assert_eq!(ids(&merge_departures(shards.clone(), 10)), [1, 2, 3, 4, 7, 9]);
        assert_eq!(ids(&merge_departures(shards, 4)), [1, 2, 3, 4]);
        assert!(merge_departures(vec![vec![], vec![]], 5).is_empty());
    }

    #[test]
    fn matches_a_full_sort_on_many_random_inputs() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut next_id = 1;
        for _ in 0..200 {
            let shards: Vec<Vec<Departure>> = (0..rng.random_range(1..9))
                .map(|_| {
                    let mut rows: Vec<_> = (0..rng.random_range(0..20))
                        .map(|_| {
                            next_id += 1;
                            dep(next_id, rng.random_range(0..50))
                        })
                        .collect();
                    rows.sort_by_key(|d| (d.flight.scheduled_departure, d.flight.id));
                    rows
                })
                .collect();
            let limit = rng.random_range(1..40);
            let mut all: Vec<_> = shards.iter().flatten().cloned().collect();
            all.sort_by_key(|d| (d.flight.scheduled_departure, d.flight.id));
            all.truncate(limit);
            assert_eq!(merge_departures(shards, limit), all);
        }
    }
}
