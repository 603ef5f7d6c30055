//! The four query paths return identical results, and those results are the right
//! ones: each is compared with an oracle computed from the generator, over many
//! random inputs (property-style, seeded so failures reproduce).

use crate::helpers::{Kind, TestDataset, dataset, spec};
use flightbench::dataset::AIRPORTS;
use flightbench::domain::{AirportCode, DelayHistogram, Departure, FlightId, Limit, TimeWindow, UtcTime};
use flightbench::store::{QueryPath, StoreError};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROUNDS: usize = 60;

fn random_airport(rng: &mut ChaCha8Rng) -> AirportCode {
    // Mostly real airports, sometimes a valid code with no flights.
    if rng.random_bool(0.1) {
        AirportCode::parse("ZZZ").unwrap()
    } else {
        AirportCode::parse(AIRPORTS[rng.random_range(0..AIRPORTS.len())].code).unwrap()
    }
}

fn random_window(rng: &mut ChaCha8Rng, ds: &TestDataset) -> TimeWindow {
    let span = ds.spec.end().unix() - ds.spec.start.unix();
    let from = ds.spec.start.unix() - 86_400 + rng.random_range(0..span + 2 * 86_400);
    let len = rng.random_range(3_600..=5 * 86_400);
    TimeWindow::new(UtcTime::from_unix(from).unwrap(), UtcTime::from_unix(from + len).unwrap()).unwrap()
}

fn expected_departures(ds: &TestDataset, airport: AirportCode, window: TimeWindow, limit: Limit) -> Vec<Departure> {
    let mut rows: Vec<Departure> = ds
        .all_expected()
        .into_iter()
        .filter(|v| v.flight.origin == airport && window.contains(v.flight.scheduled_departure))
        .collect();
    rows.sort_by_key(|v| (v.flight.scheduled_departure, v.flight.id));
    rows.truncate(limit.get());
    rows
}

fn expected_histogram(ds: &TestDataset, airport: AirportCode, window: TimeWindow) -> DelayHistogram {
    let mut h = DelayHistogram::default();
    for v in ds.all_expected() {
        if v.flight.origin == airport && window.contains(v.flight.scheduled_departure) {
            h.add_group(v.status.state == flightbench::domain::FlightState::Cancelled, v.status.delay_minutes, 1);
        }
    }
    h
}

async fn all_paths_match_the_oracle(kind: Kind) {
    let ds = dataset(kind, spec(7, 1_500, 20), 4).await;
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut non_empty_departures = 0;
    for _ in 0..ROUNDS {
        // Point read and event stream, including ids past the end of the dataset.
        let id = FlightId::new(rng.random_range(1..=ds.flight_count() + 20)).unwrap();
        let expected = ds.expected_flight(id.get());
        for &path in QueryPath::ALL {
            match (ds.store.flight(path, id).await, &expected) {
                (Ok(got), Some(want)) => assert_eq!(&got, want, "{kind:?} {path} flight {id}"),
                (Err(StoreError::FlightNotFound(missing)), None) => assert_eq!(missing, id),
                (got, want) => panic!("{kind:?} {path} flight {id}: got {got:?}, want {want:?}"),
            }
            match (ds.store.events(path, id).await, &expected) {
                (Ok(got), Some(_)) => assert_eq!(got, ds.expected_events(id.get()), "{kind:?} {path} events {id}"),
                (Err(StoreError::FlightNotFound(_)), None) => {}
                (got, _) => panic!("{kind:?} {path} events {id}: got {got:?}"),
            }
        }

        // Scatter-gather queries.
        let airport = random_airport(&mut rng);
        let window = random_window(&mut rng, &ds);
        let limit = Limit::new(if rng.random_bool(0.1) { 1_000 } else { rng.random_range(1..=120) }).unwrap();
        let want = expected_departures(&ds, airport, window, limit);
        non_empty_departures += usize::from(!want.is_empty());
        let want_stats = expected_histogram(&ds, airport, window).into_stats(airport, window);
        for &path in QueryPath::ALL {
            let got = ds.store.departures(path, airport, window, limit).await.unwrap();
            assert_eq!(got, want, "{kind:?} {path} departures {airport} {window:?} {limit:?}");
            let stats = ds.store.delay_stats(path, airport, window).await.unwrap();
            assert_eq!(stats, want_stats, "{kind:?} {path} delays {airport} {window:?}");
        }
    }
    // The random inputs must actually exercise the merge, not just empty results.
    assert!(non_empty_departures > ROUNDS / 3, "only {non_empty_departures} rounds had departures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_paths_return_identical_correct_results() {
    all_paths_match_the_oracle(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_paths_return_identical_correct_results() {
    all_paths_match_the_oracle(Kind::Postgres).await;
}
