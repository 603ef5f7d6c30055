//! The seeded generator.
//!
//! Each flight draws from its own ChaCha8 stream (`seed` selects the key, the flight
//! id the stream), so flights can be generated in any order, on any thread, for any
//! shard layout, and come out byte-identical. ChaCha8 is used rather than `StdRng`
//! because its output is specified and stable across `rand` releases.

use super::reference::{AIRPORTS, CARRIERS, distance_km};
use crate::domain::{
    AirportCode, Carrier, DelayCode, DelayEvent, EventKind, Flight, FlightId, FlightNumber, FlightStatus, Reason,
    SCHEMA_VERSION, SubjectId, UtcTime,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};

/// The most flights a dataset may hold: ids must stay below 2^53 and the popularity
/// permutation works in u128, so the real bound is disk and patience.
pub const MAX_FLIGHTS: u64 = 100_000_000;
pub const MAX_DAYS: u32 = 3_660;

/// What to generate. Same spec, same data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSpec {
    pub seed: u64,
    pub flights: u64,
    pub days: u32,
    /// First day of the schedule (midnight UTC).
    pub start: UtcTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("--flights {0} is outside 1..={MAX_FLIGHTS}")]
    Flights(u64),
    #[error("--days {0} is outside 1..={MAX_DAYS}")]
    Days(u32),
    #[error("--start {0} is not midnight UTC")]
    Start(UtcTime),
}

impl DatasetSpec {
    pub fn new(seed: u64, flights: u64, days: u32, start: UtcTime) -> Result<Self, SpecError> {
        if !(1..=MAX_FLIGHTS).contains(&flights) {
            return Err(SpecError::Flights(flights));
        }
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(SpecError::Days(days));
        }
        if start.unix() % 86_400 != 0 {
            return Err(SpecError::Start(start));
        }
        Ok(Self { seed, flights, days, start })
    }

    /// The end of the schedule (exclusive).
    pub fn end(&self) -> UtcTime {
        self.start.plus_seconds(i64::from(self.days) * 86_400)
    }

    /// The event schema an event occurring at `at` was stored with. The simulated
    /// service moved to schema v2 half-way through the schedule, so a dataset holds the
    /// mix a long-running service does: older events v1 (no delay code, no reporter,
    /// upcast on read), recent ones v2. With one day the whole first half-day is v1.
    pub fn stored_schema_version(&self, at: UtcTime) -> u16 {
        let v2_since = self.start.plus_seconds(i64::from(self.days) * 86_400 / 2);
        if at < v2_since { 1 } else { SCHEMA_VERSION }
    }
}

/// How traffic is skewed: Zipf exponents, and the permutation from popularity rank to
/// flight id. Recorded in the manifest so the load generator can draw "hot" flights
/// without reading any shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Popularity {
    /// Zipf exponent × 100 over airports (busiest first) for choosing origins.
    pub airport_exponent_centi: u32,
    /// Zipf exponent × 100 over flight popularity ranks.
    pub flight_exponent_centi: u32,
    /// `id = (multiplier * rank + offset) mod flights + 1`: a bijection because the
    /// multiplier is coprime with the flight count.
    pub multiplier: u64,
    pub offset: u64,
}

impl Popularity {
    fn for_spec(spec: &DatasetSpec) -> Self {
        let n = spec.flights;
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(u64::MAX);
        let mut multiplier = rng.random_range(n / 3..=n.max(2) * 2 / 3).max(1) | 1;
        while gcd(multiplier, n) != 1 {
            multiplier += 2;
        }
        Popularity {
            airport_exponent_centi: 110,
            flight_exponent_centi: 100,
            multiplier,
            offset: rng.random_range(0..n),
        }
    }

    /// The flight at popularity `rank` (0 = hottest).
    pub fn flight_at_rank(&self, rank: u64, flights: u64) -> FlightId {
        let id =
            (u128::from(self.multiplier) * u128::from(rank % flights) + u128::from(self.offset)) % u128::from(flights);
        // Cannot fail: id < flights <= MAX_FLIGHTS, far below FlightId::MAX.
        FlightId::new(id as i64 + 1).expect("id within dataset")
    }
}

pub(super) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One generated flight: reference data, its event history and the status that
/// history folds to.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedFlight {
    pub flight: Flight,
    pub events: Vec<DelayEvent>,
    pub status: FlightStatus,
}

impl GeneratedFlight {
    /// Each event with the flight's version after it (1 for the first), as stored.
    pub fn versioned_events(&self) -> impl Iterator<Item = (i64, &DelayEvent)> {
        (1..).zip(&self.events)
    }
}

const REASONS: &[&str] = &[
    "late inbound aircraft",
    "weather at destination",
    "air traffic control restrictions",
    "crew availability",
    "technical inspection",
    "baggage loading",
    "de-icing",
    "captain's rest requirement",
    "",
];

/// Generates flights of one dataset.
pub struct Generator {
    spec: DatasetSpec,
    popularity: Popularity,
    airport_codes: Vec<AirportCode>,
    carriers: Vec<Carrier>,
    airports: Zipf<f64>,
    carrier_choice: Zipf<f64>,
    /// `multiplier⁻¹ mod flights`, to map an id back to its popularity rank.
    inverse_multiplier: u128,
}

impl Generator {
    pub fn new(spec: DatasetSpec) -> Self {
        let popularity = Popularity::for_spec(&spec);
        let exponent = f64::from(popularity.airport_exponent_centi) / 100.0;
        // Cannot fail: the reference tables are non-empty and the exponents positive.
        Self {
            spec,
            popularity,
            airport_codes: AIRPORTS.iter().map(|a| AirportCode::parse(a.code).expect("valid table")).collect(),
            carriers: CARRIERS.iter().map(|c| Carrier::parse(c).expect("valid table")).collect(),
            airports: Zipf::new(AIRPORTS.len() as f64, exponent).expect("valid Zipf"),
            carrier_choice: Zipf::new(CARRIERS.len() as f64, 0.8).expect("valid Zipf"),
            inverse_multiplier: mod_inverse(u128::from(popularity.multiplier), u128::from(spec.flights)),
        }
    }

    pub fn spec(&self) -> &DatasetSpec {
        &self.spec
    }

    pub fn popularity(&self) -> Popularity {
        self.popularity
    }

    /// Is this flight among the hottest tenth? Hot flights get more reports.
    fn is_hot(&self, id: FlightId) -> bool {
        // The inverse of `flight_at_rank`: rank = (id - 1 - offset) * multiplier⁻¹ mod n.
        let n = u128::from(self.spec.flights);
        let idx = (id.get() as u128 - 1 + n - u128::from(self.popularity.offset) % n) % n;
        let rank = idx * self.inverse_multiplier % n;
        rank < n.div_ceil(10)
    }

    /// Flight `id` (1-based) of the dataset.
    pub fn flight(&self, id: FlightId) -> GeneratedFlight {
        let mut rng = ChaCha8Rng::seed_from_u64(self.spec.seed);
        rng.set_stream(id.get() as u64);

        let origin_rank = self.airports.sample(&mut rng) as usize - 1;
        let mut dest_rank = self.airports.sample(&mut rng) as usize - 1;
        if dest_rank == origin_rank {
            dest_rank = (dest_rank + 1 + rng.random_range(0..AIRPORTS.len() - 1)) % AIRPORTS.len();
        }
        let carrier = self.carriers[self.carrier_choice.sample(&mut rng) as usize - 1];
        let number = FlightNumber::new(rng.random_range(1..=9999)).expect("in range");
        let slots = i64::from(self.spec.days) * 86_400 / 300;
        let departure = self.spec.start.plus_seconds(rng.random_range(0..slots) * 300);
        let km = distance_km(&AIRPORTS[origin_rank], &AIRPORTS[dest_rank]);
        let block_minutes = ((30.0 + km / 800.0 * 60.0) / 5.0).round() as i64 * 5;
        let flight = Flight {
            id,
            carrier,
            number,
            origin: self.airport_codes[origin_rank],
            destination: self.airport_codes[dest_rank],
            scheduled_departure: departure,
            scheduled_arrival: departure.plus_seconds(block_minutes * 60),
        };

        let extra = if self.is_hot(id) { 5 } else { 0 };
        let count = rng.random_range(0..=5) + extra;
        let events = self.history(&mut rng, carrier, departure, count);
        // Cannot fail: `history` only ends a stream with a terminal event.
        let status = FlightStatus::replay(&events).expect("generated histories are valid");
        GeneratedFlight { flight, events, status }
    }

    /// A plausible report history: a first report, revisions, and possibly a
    /// departure or cancellation at the end. Each event is as it reads back: its code
    /// is the one its reason classifies to (what the v1 → v2 upcaster gives an older
    /// event), and events stored as v2 name the carrier's operations desk as reporter.
    fn history(&self, rng: &mut ChaCha8Rng, carrier: Carrier, departure: UtcTime, count: usize) -> Vec<DelayEvent> {
        let mut at = departure.plus_seconds(-6 * 3_600);
        let mut delay = 0i64;
        let reason =
            |rng: &mut ChaCha8Rng| Reason::parse(REASONS[rng.random_range(0..REASONS.len())]).expect("valid table");
        (0..count)
            .map(|i| {
                at = at.plus_seconds(rng.random_range(1..=12) * 300);
                let last = i + 1 == count && count > 1;
                let kind = if i == 0 {
                    delay = 5 + (rng.random::<f64>().powi(3) * 240.0) as i64;
                    EventKind::Reported { delay_minutes: delay, reason: reason(rng) }
                } else if last && rng.random_bool(0.1) {
                    EventKind::Cancelled { reason: reason(rng) }
                } else if last && rng.random_bool(0.7) {
                    EventKind::Departed { delay_minutes: delay + rng.random_range(0..=10) }
                } else {
                    delay = (delay + rng.random_range(-30..=45)).max(0);
                    EventKind::Revised { delay_minutes: delay, reason: reason(rng) }
                };
                let cause = DelayCode::classify(kind.reason()).map(|c| DelayCode::parse(c).expect("valid table"));
                let reporter = (self.spec.stored_schema_version(at) >= 2)
                    .then(|| SubjectId::parse(&format!("ops-desk-{}", carrier.as_str())).expect("valid subject"));
                DelayEvent::new(at, kind).with_cause(cause).with_reporter(reporter)
            })
            .collect()
    }
}

/// The inverse of `a` modulo `n` (they are coprime by construction).
fn mod_inverse(a: u128, n: u128) -> u128 {
    if n == 1 {
        return 0;
    }
    let (mut old_r, mut r) = (a as i128, n as i128);
    let (mut old_s, mut s) = (1i128, 0i128);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    old_s.rem_euclid(n as i128) as u128
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn spec(seed: u64, flights: u64) -> DatasetSpec {
        DatasetSpec::new(seed, flights, 30, UtcTime::parse("2026-12-01").unwrap()).unwrap()
    }

    #[test]
    fn same_seed_same_flight_any_order() {
        let (a, b) = (Generator::new(spec(7, 1000)), Generator::new(spec(7, 1000)));
        let id = FlightId::new(500).unwrap();
        let first = a.flight(id);
        for other in 1..=20 {
            a.flight(FlightId::new(other).unwrap());
        }
        assert_eq!(a.flight(id), first);
        assert_eq!(b.flight(id), first);
        assert_ne!(Generator::new(spec(8, 1000)).flight(id), first);
    }

    #[test]
    fn flights_are_well_formed_and_histories_average_about_three_events() {
        let g = Generator::new(spec(1, 20_000));
        let mut events = 0;
        for id in 1..=20_000 {
            let f = g.flight(FlightId::new(id).unwrap());
            assert_ne!(f.flight.origin, f.flight.destination);
            assert!(f.flight.scheduled_arrival > f.flight.scheduled_departure);
            assert!(f.flight.scheduled_departure >= g.spec().start && f.flight.scheduled_departure < g.spec().end());
            assert_eq!(f.status.version as usize, f.events.len());
            assert!(f.events.windows(2).all(|w| w[0].occurred_at < w[1].occurred_at));
            f.events.iter().for_each(|e| e.kind.validate().unwrap());
            events += f.events.len();
        }
        let mean = events as f64 / 20_000.0;
        assert!((2.7..=3.3).contains(&mean), "mean events per flight {mean}");
    }

    #[test]
    fn airports_are_zipf_skewed_towards_hubs() {
        let g = Generator::new(spec(3, 20_000));
        let mut origins: HashMap<AirportCode, u32> = HashMap::new();
        for id in 1..=20_000 {
            *origins.entry(g.flight(FlightId::new(id).unwrap()).flight.origin).or_default() += 1;
        }
        let hub = origins[&AirportCode::parse("ATL").unwrap()];
        let small = origins.get(&AirportCode::parse("BRU").unwrap()).copied().unwrap_or(0);
        assert!(hub > 10 * small.max(1), "ATL {hub} vs BRU {small}");
    }

    #[test]
    fn popularity_permutation_is_a_bijection_and_hot_flights_match_it() {
        for n in [1u64, 2, 10, 997, 1000] {
            let g = Generator::new(spec(11, n));
            let p = g.popularity();
            let ids: HashSet<_> = (0..n).map(|r| p.flight_at_rank(r, n)).collect();
            assert_eq!(ids.len() as u64, n);
            assert!(ids.iter().all(|id| (1..=n as i64).contains(&id.get())));
            let hot = (0..n).filter(|&r| g.is_hot(p.flight_at_rank(r, n))).count() as u64;
            assert_eq!(hot, n.div_ceil(10), "n={n}");
            assert!(g.is_hot(p.flight_at_rank(0, n)));
        }
    }

    #[test]
    fn specs_validate() {
        let start = UtcTime::parse("2026-12-01").unwrap();
        assert_eq!(DatasetSpec::new(1, 0, 1, start), Err(SpecError::Flights(0)));
        assert_eq!(DatasetSpec::new(1, 1, 0, start), Err(SpecError::Days(0)));
        let noon = UtcTime::parse("2026-12-01T12:00:00Z").unwrap();
        assert_eq!(DatasetSpec::new(1, 1, 1, noon), Err(SpecError::Start(noon)));
    }
}
