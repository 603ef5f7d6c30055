//! Appends: optimistic concurrency (two writers with the same expected version:
//! exactly one wins), every path sees every path's writes, and the status projection
//! always equals a replay of the event stream.

use crate::helpers::{Kind, TestDataset, dataset, spec};
use flightbench::domain::{DelayEvent, EventKind, FlightId, FlightStatus, Reason, UtcTime};
use flightbench::store::{QueryPath, StoreError};
use std::sync::Arc;

fn revise(minutes: i64) -> DelayEvent {
    DelayEvent::new(
        UtcTime::parse("2026-12-02T10:00:00Z").unwrap().plus_seconds(minutes),
        EventKind::Revised { delay_minutes: minutes, reason: Reason::parse("race").unwrap() },
    )
}

/// Flights still open to events (not departed or cancelled).
fn open_flights(ds: &TestDataset, n: usize) -> Vec<(FlightId, i64)> {
    ds.all_expected()
        .into_iter()
        .filter(|v| !v.status.state.is_terminal())
        .take(n)
        .map(|v| (v.flight.id, v.status.version))
        .collect()
}

async fn assert_projection_matches_replay(ds: &TestDataset, id: FlightId) {
    for &path in QueryPath::ALL {
        let events = ds.store.events(path, id).await.unwrap();
        let replayed = FlightStatus::replay(events.iter().map(|e| &e.event)).unwrap();
        let stored = ds.store.flight(path, id).await.unwrap().status;
        assert_eq!(stored, replayed, "{path}: projection of flight {id} differs from its replay");
        let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=events.len() as i64).collect::<Vec<_>>(), "{path}: gap or duplicate in versions");
    }
}

async fn racing_writers_exactly_one_wins(kind: Kind) {
    let ds = Arc::new(dataset(kind, spec(3, 800, 10), 2).await);
    let flights = open_flights(&ds, 24);
    assert_eq!(flights.len(), 24);
    for (round, &(id, version)) in flights.iter().enumerate() {
        // Every ordered pair of paths races at least once.
        let (a, b) = (QueryPath::ALL[round % 4], QueryPath::ALL[(round / 4 + round) % 4]);
        let (da, db) = (ds.clone(), ds.clone());
        let first = tokio::spawn(async move { da.store.append(a, id, version, &revise(11)).await });
        let second = tokio::spawn(async move { db.store.append(b, id, version, &revise(22)).await });
        let results = [first.await.unwrap(), second.await.unwrap()];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{kind:?} {a} vs {b} on flight {id}: {results:?}");
        for r in &results {
            match r {
                Ok(outcome) => assert_eq!(outcome.status.version, version + 1),
                Err(StoreError::Conflict { flight, expected, .. }) => {
                    assert_eq!((*flight, *expected), (id, version));
                }
                Err(other) => panic!("{kind:?} {a} vs {b}: loser got {other}, not a conflict"),
            }
        }
        assert_projection_matches_replay(&ds, id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_racing_writers_exactly_one_wins() {
    racing_writers_exactly_one_wins(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_racing_writers_exactly_one_wins() {
    racing_writers_exactly_one_wins(Kind::Postgres).await;
}

async fn every_path_reads_every_paths_writes(kind: Kind) {
    let ds = dataset(kind, spec(4, 500, 10), 3).await;
    let (id, mut version) = open_flights(&ds, 1)[0];
    for (i, writer) in QueryPath::ALL.iter().copied().enumerate() {
        let event = revise(30 + i as i64);
        let outcome = ds.store.append(writer, id, version, &event).await.unwrap();
        version += 1;
        assert_eq!(outcome.status.version, version);
        for &reader in QueryPath::ALL {
            let view = ds.store.flight(reader, id).await.unwrap();
            assert_eq!(view.status, outcome.status, "{kind:?}: {reader} after {writer} wrote");
            let last = ds.store.events(reader, id).await.unwrap().pop().unwrap();
            assert_eq!((last.version, &last.event), (version, &event), "{kind:?}: {reader} events after {writer}");
        }
    }
    // A stale version, an unknown flight and an illegal transition are typed errors.
    for &path in QueryPath::ALL {
        let stale = ds.store.append(path, id, version - 1, &revise(1)).await.unwrap_err();
        assert!(
            matches!(stale, StoreError::Conflict { current: Some(v), .. } if v == version),
            "{kind:?} {path}: {stale}"
        );
        let missing = FlightId::new(ds.flight_count() + 1).unwrap();
        let err = ds.store.append(path, missing, 0, &revise(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::FlightNotFound(f) if f == missing), "{kind:?} {path}: {err}");
    }
    let departed =
        DelayEvent::new(UtcTime::parse("2026-12-02T12:00:00Z").unwrap(), EventKind::Departed { delay_minutes: 3 });
    ds.store.append(QueryPath::Raw, id, version, &departed).await.unwrap();
    for &path in QueryPath::ALL {
        let err = ds.store.append(path, id, version + 1, &revise(5)).await.unwrap_err();
        assert!(matches!(err, StoreError::Transition { .. }), "{kind:?} {path}: {err}");
    }
    assert_projection_matches_replay(&ds, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_path_reads_every_paths_writes() {
    every_path_reads_every_paths_writes(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_path_reads_every_paths_writes() {
    every_path_reads_every_paths_writes(Kind::Postgres).await;
}
