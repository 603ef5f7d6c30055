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

/// Windows that stress the scatter plan: every departure that ties with another at
/// the same airport (one window per tied minute), and runs of consecutive departures
/// at one airport that all live on one shard (the others hold none of the window).
fn plan_stressing_windows(ds: &TestDataset, shards: u32) -> Vec<(AirportCode, TimeWindow)> {
    let mut rows = ds.all_expected();
    rows.sort_by_key(|v| (v.flight.origin, v.flight.scheduled_departure, v.flight.id));
    let window = |from: UtcTime, last: UtcTime| TimeWindow::new(from, last.plus_seconds(1)).unwrap();
    let shard = |v: &Departure| flightbench::routing::shard_for(v.flight.id.get(), shards);
    let mut windows = Vec::new();
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0].flight, &pair[1].flight);
        if a.origin == b.origin && a.scheduled_departure == b.scheduled_departure {
            windows.push((a.origin, window(a.scheduled_departure, a.scheduled_departure)));
        }
    }
    let ties = windows.len();
    for run in rows.chunk_by(|a, b| a.flight.origin == b.flight.origin && shard(a) == shard(b)) {
        if run.len() >= 2 {
            let (first, last) = (&run[0].flight, &run[run.len() - 1].flight);
            windows.push((first.origin, window(first.scheduled_departure, last.scheduled_departure)));
        }
    }
    assert!(ties >= 5 && windows.len() - ties >= 5, "{ties} tie windows, {} one-shard runs", windows.len() - ties);
    windows
}

/// Every first-round size gives the oracle's page on every path: one row per shard
/// (a top-up wherever a shard holds more), two, the default share, and the whole page
/// (the plan before), on many shards, over random windows and the stressing ones.
async fn every_scatter_plan_matches_the_oracle(kind: Kind, shards: u32) {
    use flightbench::store::ScatterPlan;
    let ds = dataset(kind, spec(11, 1_500, 10), shards).await;
    let mut rng = ChaCha8Rng::seed_from_u64(2_020);
    let mut inputs: Vec<(AirportCode, TimeWindow)> =
        (0..ROUNDS).map(|_| (random_airport(&mut rng), random_window(&mut rng, &ds))).collect();
    inputs.extend(plan_stressing_windows(&ds, shards).into_iter().step_by(3).take(40));
    let mut topped_up = 0;
    for (airport, window) in inputs {
        let limit = Limit::new(rng.random_range(1..=60)).unwrap();
        let want = expected_departures(&ds, airport, window, limit);
        let plans = [1, 2].map(|rows| ScatterPlan::first_round(rows, limit));
        for plan in plans.into_iter().chain([ScatterPlan::bounded(limit, shards as usize), ScatterPlan::full(limit)]) {
            for &path in QueryPath::ALL {
                let got = ds.store.departures_planned(path, airport, window, limit, plan).await.unwrap();
                assert_eq!(got, want, "{kind:?} {path} {plan:?} {airport} {window:?} {limit:?}");
            }
        }
        // A first round of one row must have been topped up wherever a shard holds
        // two or more rows of the page.
        let mut per_shard = vec![0; shards as usize];
        want.iter().for_each(|v| per_shard[flightbench::routing::shard_for(v.flight.id.get(), shards) as usize] += 1);
        topped_up += usize::from(per_shard.iter().any(|&n| n >= 2));
    }
    assert!(topped_up >= 20, "only {topped_up} inputs needed a top-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scatter_plans_return_the_oracles_page() {
    every_scatter_plan_matches_the_oracle(Kind::Sqlite, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scatter_plans_return_the_oracles_page() {
    every_scatter_plan_matches_the_oracle(Kind::Postgres, 8).await;
}
