//! The workload planner's tests.

use super::*;
use rand::SeedableRng;

fn shape() -> DatasetShape {
    DatasetShape {
        writable: None,
        flights: 1_000,
        popularity: Popularity { airport_exponent_centi: 110, flight_exponent_centi: 100, multiplier: 7, offset: 3 },
        airports: vec!["ATL".into(), "DXB".into(), "LHR".into()],
        start_unix: 1_796_083_200,
        days: 10,
    }
}

#[test]
fn mixes_parse_and_reject_nonsense() {
    let mix = Mix::parse("read=80, departures=15,write=5").unwrap();
    assert_eq!(mix.total(), 100);
    for bad in ["", "read", "read=x", "fly=3", "read=1,read=2", "read=0"] {
        assert!(Mix::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(Skew::parse("zipf").unwrap(), Skew::Zipf { exponent: 1.0 });
    assert_eq!(Skew::parse("1.2").unwrap(), Skew::Zipf { exponent: 1.2 });
    assert_eq!(Skew::parse("uniform").unwrap(), Skew::Uniform);
    assert!(Skew::parse("-1").is_err() && Skew::parse("steep").is_err());
}

#[test]
fn draws_follow_the_mix_and_stay_in_the_dataset() {
    let mut planner =
        Planner::new(Mix::parse("read=80,departures=15,write=5").unwrap(), shape(), Skew::Uniform).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut counts: HashMap<RequestKind, u32> = HashMap::new();
    for _ in 0..20_000 {
        let p = planner.next(&mut rng);
        *counts.entry(p.kind).or_default() += 1;
        if p.kind == RequestKind::Read {
            let id: i64 = p.path.trim_start_matches("/flights/").parse().unwrap();
            assert!((1..=1_000).contains(&id));
        }
        if p.kind == RequestKind::Departures {
            assert!(p.path.contains("from=2026-12-") && p.path.ends_with("&limit=50"), "{}", p.path);
        }
    }
    let share = |k| f64::from(counts[&k]) / 20_000.0;
    assert!((share(RequestKind::Read) - 0.80).abs() < 0.02);
    assert!((share(RequestKind::Departures) - 0.15).abs() < 0.02);
    assert!((share(RequestKind::Write) - 0.05).abs() < 0.01);
}

#[test]
fn writes_go_to_the_writable_pool_from_its_versions_then_from_what_they_learned() {
    let pool: Vec<(FlightId, i64)> = [(3, 2), (9, 0)].map(|(id, v)| (FlightId::new(id).unwrap(), v)).to_vec();
    let shape = DatasetShape { writable: Some(pool.clone().into()), ..shape() };
    let mut planner = Planner::new(Mix::parse("write=1").unwrap(), shape, Skew::Zipf { exponent: 1.0 }).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let Planned { write: Some((id, version, _)), .. } = planner.next(&mut rng) else { panic!("not a write") };
        assert!(pool.contains(&(id, version)), "{id} at {version}");
        seen.insert(id);
    }
    assert_eq!(seen.len(), 2, "both pool flights drawn");
    planner.learn(FlightId::new(3).unwrap(), 7);
    let drawn: Vec<_> = (0..50).filter_map(|_| planner.next(&mut rng).write).filter(|w| w.0.get() == 3).collect();
    assert!(!drawn.is_empty() && drawn.iter().all(|w| w.1 == 7), "a learned version wins");
}

#[test]
fn zipf_concentrates_on_the_dataset_hot_flights_and_writes_use_learned_versions() {
    let mut planner = Planner::new(Mix::parse("write=1").unwrap(), shape(), Skew::Zipf { exponent: 1.0 }).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let hottest = shape().popularity.flight_at_rank(0, 1_000);
    let mut hot = 0;
    for _ in 0..5_000 {
        let Planned { write: Some((id, version, _)), .. } = planner.next(&mut rng) else { panic!("not a write") };
        if id == hottest {
            assert!(version == 0 || version == 41);
            hot += 1;
            planner.learn(id, 41);
        }
    }
    // Zipf(1) over 1,000 ranks gives rank 0 about 13% of draws; uniform, 0.1%.
    assert!(hot > 400, "hottest flight drawn {hot} times in 5,000");
}

proptest::proptest! {
    /// Mixes and skews print as they parse; anything else is an error, never a panic.
    #[test]
    fn mixes_round_trip_or_are_refused(text in "[a-z=,0-9 ]{0,60}") {
        if let Ok(mix) = Mix::parse(&text) {
            proptest::prop_assert_eq!(Mix::parse(&mix.to_string()), Ok(mix.clone()));
            let total: u64 = mix.weights().iter().map(|(_, w)| u64::from(*w)).sum();
            proptest::prop_assert!(total > 0 && total <= u64::from(u32::MAX));
        }
    }

    #[test]
    fn skews_round_trip_or_are_refused(text in "(zipf:)?[0-9.eE+-]{0,12}|uniform|zipf|\\PC{0,12}") {
        if let Ok(skew) = Skew::parse(&text) {
            proptest::prop_assert_eq!(Skew::parse(&skew.to_string()), Ok(skew));
            if let Skew::Zipf { exponent } = skew {
                proptest::prop_assert!(exponent > 0.0 && exponent <= 10.0);
            }
        }
    }

    /// Any weights draw only the kinds they name.
    #[test]
    fn draws_stay_inside_the_mix(read in 0u32..=Mix::MAX_WEIGHT, write in 0u32..=Mix::MAX_WEIGHT, seed: u64) {
        let Ok(mix) = Mix::parse(&format!("read={read},write={write}")) else { return Ok(()) };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..50 {
            let kind = mix.pick(&mut rng);
            proptest::prop_assert!(mix.weights().iter().any(|(k, w)| *k == kind && *w > 0));
        }
    }
}
