//! The async read models: after seeding, after writes, under concurrent writers with
//! 409 conflicts, rolled-back and late-committing transactions, and after the runner
//! is SIGKILLed mid-batch, each equals a replay of the events; bad stored state is a
//! named error, never a skipped event.

use crate::helpers::{Kind, TestDataset, dataset, spec};
use flightbench::domain::{
    AirportCode, Carrier, DelayEvent, EventKind, FlightId, FlightStatus, Limit, Reason, Tally, TimeWindow, UtcTime,
};
use flightbench::projection::model::hour_of;
use flightbench::projection::{Projector, ProjectorConfig};
use flightbench::store::{QueryPath, Store, StoreError};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn whole(ds: &TestDataset) -> TimeWindow {
    TimeWindow::new(ds.spec.start, ds.spec.end()).unwrap()
}

/// Replays every flight's events (as the store reads them) into the three read models
/// and compares them with what the runner built: each airport's board row for row
/// against the scatter-gather departures, and every tally.
async fn assert_read_models_equal_replay(ds: &TestDataset) {
    let store = &ds.store;
    let window = whole(ds);
    let mut hours: BTreeMap<(String, i64), Tally> = BTreeMap::new();
    let mut carriers: BTreeMap<String, Tally> = BTreeMap::new();
    for id in 1..=ds.flight_count() {
        let id = FlightId::new(id).unwrap();
        let flight = store.flight(QueryPath::Raw, id).await.unwrap().flight;
        let events = store.events(QueryPath::Raw, id).await.unwrap();
        let replayed = FlightStatus::replay(events.iter().map(|e| &e.event)).unwrap();
        assert_eq!(store.flight(QueryPath::Raw, id).await.unwrap().status, replayed, "inline status of {id}");
        for e in &events {
            let key = (flight.origin.as_str().to_owned(), hour_of(flight.scheduled_departure.unix()));
            hours.entry(key).or_default().add(&e.event);
            carriers.entry(flight.carrier.as_str().to_owned()).or_default().add(&e.event);
        }
    }
    let airports: Vec<String> = store.manifest().airports.clone();
    for airport in &airports {
        let code = AirportCode::parse(airport).unwrap();
        let limit = Limit::new(1_000).unwrap();
        let scattered = store.departures(QueryPath::Raw, code, window, limit).await.unwrap();
        assert!(scattered.len() < 1_000, "the window holds every departure of {airport}");
        assert_eq!(store.board(code, window, limit).await.unwrap(), scattered, "board of {airport}");
        let got: BTreeMap<(String, i64), Tally> = store
            .airport_hours(code, window)
            .await
            .unwrap()
            .into_iter()
            .map(|(hour, t)| ((airport.clone(), hour.unix()), t))
            .collect();
        let expected: BTreeMap<(String, i64), Tally> =
            hours.iter().filter(|((a, _), _)| a == airport).map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(got, expected, "hourly tallies of {airport}");
    }
    for (carrier, expected) in &carriers {
        let got = store.carrier_on_time(Carrier::parse(carrier).unwrap()).await.unwrap();
        assert_eq!(&got, expected, "tally of {carrier}");
    }
}

/// Every shard's event numbers are 1..=n with none missing or repeated, and the
/// counter agrees.
async fn assert_sequences_contiguous(ds: &TestDataset) {
    for shard in 0..ds.store.shard_count() {
        let head = ds.store.event_head(shard).await.unwrap();
        let all = ds.store.events_after(shard, 0, i64::MAX).await.unwrap();
        let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "shard {shard}");
    }
}

/// Waits (at most a minute) until a running runner has every shard's newest event in
/// every read model.
async fn wait_caught_up(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut behind = 0;
        for name in flightbench::projection::ASYNC_NAMES {
            for (head, low) in store.projection_positions(name).await.unwrap() {
                behind += head - low.unwrap_or(0);
            }
        }
        if behind == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the runner did not catch up: {behind} events behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn catch_up(store: &Arc<Store>) {
    Projector::new(store.clone(), ProjectorConfig::default()).catch_up(&|_| {}).await.unwrap();
}

/// Appends one event to flight `id` through `path` if it still takes events.
async fn append_one(store: &Store, path: QueryPath, id: i64, kind: EventKind) -> Result<bool, StoreError> {
    let id = FlightId::new(id).unwrap();
    let current = store.flight(path, id).await?.status;
    if current.state.is_terminal() {
        return Ok(false);
    }
    let at = UtcTime::parse("2026-12-20T12:00:00Z").unwrap();
    store.append(path, id, current.version, &DelayEvent::new(at, kind)).await.map(|_| true)
}

fn kind_for(i: i64) -> EventKind {
    let reason = Reason::parse("late inbound aircraft").unwrap();
    match i % 7 {
        0 => EventKind::Departed { delay_minutes: i % 40 },
        1 => EventKind::Cancelled { reason },
        _ => EventKind::Revised { delay_minutes: i % 90, reason },
    }
}

async fn seeded_then_written(kind: Kind) {
    let ds = dataset(kind, spec(71, 1_200, 10), 3).await;
    assert_read_models_equal_replay(&ds).await;
    let paths = QueryPath::ALL;
    for i in 0..300i64 {
        append_one(&ds.store, paths[i as usize % paths.len()], 1 + (i * 13) % ds.flight_count(), kind_for(i))
            .await
            .unwrap();
    }
    catch_up(&ds.store).await;
    assert_read_models_equal_replay(&ds).await;
    assert_sequences_contiguous(&ds).await;
    // A second catch-up finds nothing to do and changes nothing.
    let again = Projector::new(ds.store.clone(), ProjectorConfig::default()).catch_up(&|_| {}).await.unwrap();
    assert!(again.applied.iter().all(|(_, n)| *n == 0), "{again:?}");
    assert_read_models_equal_replay(&ds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_read_models_equal_a_replay_after_seed_and_writes() {
    seeded_then_written(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_models_equal_a_replay_after_seed_and_writes() {
    seeded_then_written(Kind::Postgres).await;
}

/// A writer that takes its event number and then holds its transaction open: it
/// updates the status and inserts the event as an append does, waits `hold`, then
/// commits or rolls back. Returns whether it wrote (the flight may be finished).
async fn slow_writer(ds: &TestDataset, id: i64, hold: Duration, commit: bool) -> bool {
    let flight_id = FlightId::new(id).unwrap();
    let view = ds.store.flight(QueryPath::Raw, flight_id).await.unwrap();
    let event = DelayEvent::new(
        UtcTime::parse("2026-12-21T08:00:00Z").unwrap(),
        EventKind::Revised { delay_minutes: 7, reason: Reason::parse("slow writer").unwrap() },
    );
    let Ok(next) = view.status.apply(&event) else { return false };
    let shard = ds.store.shards().shard_for(id);
    let (old, dep) = (view.status.version, view.flight.scheduled_departure.unix());
    let updated_at = next.updated_at.map(|t| t.unix());
    let insert = "INSERT INTO delay_events (flight_id, version, flight_dep, kind, delay_minutes, reason, \
                  occurred_at, schema_version) VALUES ($1, $2, $3, 'revised', 7, 'slow writer', $4, 2)";
    let update = "UPDATE flight_status SET version = $1, state = 'delayed', delay_minutes = 7, updated_at = $2 \
                  WHERE flight_id = $3 AND version = $4";
    let occurred = event.occurred_at.unix();
    match &ds.pg {
        None => {
            let file = ds.dir().join(&ds.store.manifest().sqlite.as_ref().unwrap().files[shard]);
            tokio::task::spawn_blocking(move || {
                let mut conn = rusqlite::Connection::open(file).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
                if tx.execute(update, rusqlite::params![old + 1, updated_at, id, old]).unwrap() != 1 {
                    return false;
                }
                tx.execute(insert, rusqlite::params![id, old + 1, dep, occurred]).unwrap();
                std::thread::sleep(hold);
                if commit {
                    tx.commit().unwrap()
                } else {
                    tx.rollback().unwrap()
                }
                true
            })
            .await
            .unwrap()
        }
        Some(pg) => {
            let url = format!("{}_{shard}", pg.base_url());
            let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let tx = client.transaction().await.unwrap();
            if tx.execute(update, &[&(old + 1), &updated_at, &id, &old]).await.unwrap() != 1 {
                return false;
            }
            tx.execute(insert, &[&id, &(old + 1), &dep, &occurred]).await.unwrap();
            tokio::time::sleep(hold).await;
            if commit {
                tx.commit().await.unwrap()
            } else {
                tx.rollback().await.unwrap()
            }
            true
        }
    }
}

/// The runner follows while four writers append to a small set of flights (so some
/// appends lose with 409) and two slow writers hold their event numbers: one rolls
/// back, one commits late. Nothing is skipped: every read model equals the replay.
async fn never_skips(kind: Kind) {
    let ds = dataset(kind, spec(72, 600, 6), 2).await;
    let projector =
        Projector::new(ds.store.clone(), ProjectorConfig { poll: Duration::from_millis(20), ..Default::default() });
    let stats = projector.stats();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move { projector.run(stopped).await });
    let conflicts = AtomicU64::new(0);
    let writers = (0..4i64).map(|w| {
        let (store, conflicts) = (&ds.store, &conflicts);
        async move {
            for i in 0..120i64 {
                let id = 1 + (i * 7 + w) % 40;
                match append_one(store, QueryPath::ALL[w as usize], id, kind_for(i + w)).await {
                    Ok(_) => {}
                    Err(StoreError::Conflict { .. }) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("append: {e}"),
                }
            }
        }
    });
    let slow = async {
        let mut rolled_back = 0;
        let mut late = 0;
        for id in 100..400 {
            if rolled_back < 3 && slow_writer(&ds, id, Duration::from_millis(150), false).await {
                rolled_back += 1;
            } else if late < 3 && slow_writer(&ds, id, Duration::from_millis(150), true).await {
                late += 1;
            }
            if rolled_back == 3 && late == 3 {
                break;
            }
        }
        assert_eq!((rolled_back, late), (3, 3));
    };
    futures_util::future::join(futures_util::future::join_all(writers), slow).await;
    assert!(conflicts.load(Ordering::Relaxed) > 0, "the writers raced for the same flights");

    wait_caught_up(&ds.store).await;
    stop.send(true).unwrap();
    running.await.unwrap();
    assert!(stats.errors().is_empty(), "{:?}", stats.errors());
    let gaps: u64 = stats.followers.iter().map(|(_, _, f)| f.gaps.load(Ordering::Relaxed)).sum();
    assert_eq!(gaps, 0, "a rolled-back writer leaves no hole in the sequence");
    assert_sequences_contiguous(&ds).await;
    assert_read_models_equal_replay(&ds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runner_never_skips_under_conflicts_rollbacks_and_late_commits() {
    never_skips(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runner_never_skips_under_conflicts_rollbacks_and_late_commits() {
    never_skips(Kind::Postgres).await;
}

/// Empties the read models and their checkpoints on every SQLite shard, as before the
/// runner first ran.
fn reset_read_models(ds: &TestDataset) {
    for file in &ds.store.manifest().sqlite.as_ref().unwrap().files {
        let conn = rusqlite::Connection::open(ds.dir().join(file)).unwrap();
        conn.execute_batch(
            "DELETE FROM projection_checkpoints; DELETE FROM board_departures;
             DELETE FROM airport_hour_stats; DELETE FROM carrier_on_time;",
        )
        .unwrap();
    }
}

fn project(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["project", "--quiet", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// `flightbench project` is SIGKILLed part-way through building the read models from
/// nothing (small batches, so it dies mid-run), then run again: the tallies count
/// every event exactly once and the board equals the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_killed_mid_batch_resumes_with_exactly_once_effect() {
    let ds = dataset(Kind::Sqlite, spec(73, 3_000, 10), 2).await;
    reset_read_models(&ds);
    let mut child = Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["project", "--quiet", "--batch", "3", "--dir"])
        .arg(ds.dir())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let total: i64 = {
        let mut sum = 0;
        for s in 0..ds.store.shard_count() {
            sum += ds.store.event_head(s).await.unwrap();
        }
        sum
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed_at = loop {
        let mut done = 0;
        for name in flightbench::projection::ASYNC_NAMES {
            for (_, low) in ds.store.projection_positions(name).await.unwrap() {
                done += low.unwrap_or(0);
            }
        }
        if done > 0 {
            child.kill().unwrap();
            break done;
        }
        assert!(Instant::now() < deadline, "the runner made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(!child.wait().unwrap().success());
    assert!(killed_at < total * 3, "killed part-way: {killed_at} of {} model-events done", total * 3);
    let out = project(ds.dir(), &["--once"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("caught up"));
    assert_read_models_equal_replay(&ds).await;
}

/// A checkpoint ahead of the events and a board row edited by hand are named errors
/// that say how to recover; neither is skipped over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stored_state_is_a_named_error() {
    let ds = dataset(Kind::Sqlite, spec(74, 400, 6), 2).await;
    let files: Vec<_> = ds.store.manifest().sqlite.as_ref().unwrap().files.iter().map(|f| ds.dir().join(f)).collect();

    // A board row moved by hand: the next event for that flight does not fit it.
    let id = (1..=400).find(|&id| !ds.expected_flight(id).unwrap().status.state.is_terminal()).unwrap();
    let board_shard = ds.store.shards().shard_for_name(ds.expected_flight(id).unwrap().flight.origin.as_str());
    let conn = rusqlite::Connection::open(&files[board_shard]).unwrap();
    assert_eq!(
        conn.execute("UPDATE board_departures SET version = version + 5 WHERE flight_id = ?1", [id]).unwrap(),
        1
    );
    assert!(append_one(&ds.store, QueryPath::Raw, id, kind_for(2)).await.unwrap());
    let out = project(ds.dir(), &["--once", "--models", "departures_board"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains(&format!("flight {id}'s board row is at version")) && stderr.contains("rebuild"),
        "{stderr}"
    );
    // The other models are not held back by the board.
    let out = project(ds.dir(), &["--once", "--models", "airport_hours,carrier_on_time"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A checkpoint past the shard's newest event.
    conn.execute("UPDATE projection_checkpoints SET seq = seq + 1000000 WHERE projection = 'carrier_on_time'", [])
        .unwrap();
    let out = project(ds.dir(), &["--once", "--models", "carrier_on_time"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("newest event is") && stderr.contains("rebuild the read model"), "{stderr}");
}

/// `serve` runs the runner in-process: a delay posted through the API reaches the
/// airport's board (one shard's query) and the carrier's tally; `/readyz` and
/// `/metrics` report the lag. With the read models emptied and `--projector external`,
/// nobody keeps them, and `/readyz` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_the_read_models_and_reports_their_lag() {
    use crate::app::ServeProcess;
    use crate::client::{PROTOS, get, post_delay, send};
    use http_body_util::Full;
    let ds = dataset(Kind::Sqlite, spec(75, 800, 6), 2).await;
    let server = ServeProcess::start(ds.dir(), &[], &["--no-admin"], false).await;
    let ready = send(server.api, PROTOS[0], get("/readyz").body(Full::default()).unwrap()).await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    let probe = &ready.json()["probes"]["async_projections"];
    assert_eq!(probe["ready"], true);
    assert_eq!(probe["lags"].as_array().unwrap().len(), 3 * 2, "{probe}");

    let id = (1..=800).find(|&id| !ds.expected_flight(id).unwrap().status.state.is_terminal()).unwrap();
    let view = ds.expected_flight(id).unwrap();
    let (origin, carrier) = (view.flight.origin.as_str().to_owned(), view.flight.carrier.as_str().to_owned());
    let before =
        send(server.api, PROTOS[0], get(&format!("/carriers/{carrier}/on-time")).body(Full::default()).unwrap()).await;
    assert_eq!(before.status, 200);
    let etag = format!("\"{}\"", view.status.version);
    let posted =
        send(server.api, PROTOS[1], post_delay(id, Some(&etag), r#"{"kind":"departed","delay_minutes":21}"#)).await;
    assert_eq!(posted.status, 201, "{:?}", posted.body);
    let posted_at = Instant::now();
    let board_uri = format!("/airports/{origin}/board?from={}&to={}&limit=1000", ds.spec.start, ds.spec.end());
    loop {
        let board = send(server.api, PROTOS[0], get(&board_uri).body(Full::default()).unwrap()).await;
        assert_eq!(board.status, 200, "{:?}", board.body);
        let row = board.json().as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap();
        if row["status"]["state"] == "departed" {
            assert_eq!(row["status"]["delay_minutes"], 21);
            assert_eq!(row["status"]["version"], view.status.version + 1);
            break;
        }
        assert!(posted_at.elapsed() < Duration::from_secs(10), "the board never showed the departure: {row}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after =
        send(server.api, PROTOS[0], get(&format!("/carriers/{carrier}/on-time")).body(Full::default()).unwrap()).await;
    let (before, after) = (before.json(), after.json());
    assert_eq!(after["departed"], before["departed"].as_i64().unwrap() + 1, "{before} → {after}");
    assert_eq!(after["on_time"], before["on_time"], "21 minutes late is not on time");
    assert_eq!(after["delay_minutes"], before["delay_minutes"].as_i64().unwrap() + 21);
    let metrics = send(server.api, PROTOS[0], get("/metrics").body(Full::default()).unwrap()).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"flightbench_async_projection_lag_events{projection="departures_board",shard="0"}"#),
        "{text}"
    );
    assert!(text.contains(r#"flightbench_projection_events_applied_total{projection="carrier_on_time","#), "{text}");
    drop(server);

    reset_read_models(&ds);
    let external = ServeProcess::start(ds.dir(), &[], &["--no-admin", "--projector", "external"], false).await;
    let ready = send(external.api, PROTOS[0], get("/readyz").body(Full::default()).unwrap()).await;
    assert_eq!(ready.status, 503);
    let probe = &ready.json()["probes"]["async_projections"];
    assert_eq!(probe["ready"], false, "{probe}");
    assert!(probe["lags"].as_array().unwrap().iter().all(|l| l["started"] == false), "{probe}");
    let out = project(ds.dir(), &["--once"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ready = send(external.api, PROTOS[0], get("/readyz").body(Full::default()).unwrap()).await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    assert_read_models_equal_replay(&ds).await;
}

/// A rebuild while the live runner follows and writers append: every shard's rebuilt
/// table equals the live one at the same checkpoints, and after the swap the live
/// runner carries on from the new checkpoints.
async fn rebuild_under_writes(kind: Kind) {
    use flightbench::projection::ReadModel;
    use flightbench::projection::rebuild::rebuild;
    let ds = dataset(kind, spec(76, 1_500, 8), 3).await;
    let projector =
        Projector::new(ds.store.clone(), ProjectorConfig { poll: Duration::from_millis(20), ..Default::default() });
    let stats = projector.stats();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move { projector.run(stopped).await });
    let writing = {
        let store = ds.store.clone();
        let flights = ds.flight_count();
        tokio::spawn(async move {
            for i in 0..400i64 {
                let _ = append_one(&store, QueryPath::Prepared, 1 + (i * 11) % flights, kind_for(i)).await;
            }
        })
    };
    for model in ReadModel::ALL {
        let done = rebuild(&ds.store, *model, 50, false, &|_| {}, &|_| {}).await.unwrap();
        assert_eq!(done.shards.len(), 3);
        assert!(done.shards.iter().all(|s| s.matches_live()), "{:?}", done.shards);
        assert!(done.replayed > 0);
    }
    writing.await.unwrap();
    wait_caught_up(&ds.store).await;
    stop.send(true).unwrap();
    running.await.unwrap();
    assert!(stats.errors().is_empty(), "{:?}", stats.errors());
    assert_read_models_equal_replay(&ds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rebuild_under_writes_equals_the_live_model() {
    rebuild_under_writes(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rebuild_under_writes_equals_the_live_model() {
    rebuild_under_writes(Kind::Postgres).await;
}

fn rebuild_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["projections", "rebuild"])
        .args(args)
        .args(["--quiet", "--dir"])
        .arg(dir)
        .output()
        .unwrap()
}

/// A rebuild SIGKILLed mid-replay leaves the live model serving unchanged; the next
/// rebuild starts over cleanly and swaps in a model equal to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_killed_mid_replay_leaves_the_live_model_and_starts_over() {
    let ds = dataset(Kind::Sqlite, spec(77, 3_000, 10), 2).await;
    let files: Vec<_> = ds.store.manifest().sqlite.as_ref().unwrap().files.iter().map(|f| ds.dir().join(f)).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["projections", "rebuild", "departures_board", "--quiet", "--batch", "3", "--dir"])
        .arg(ds.dir())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = files.iter().any(|f| {
            let conn = rusqlite::Connection::open(f).unwrap();
            conn.query_row(
                "SELECT COUNT(*) FROM projection_checkpoints WHERE projection = 'departures_board@next' AND seq > 0",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
                > 0
        });
        if started {
            child.kill().unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "the rebuild made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!child.wait().unwrap().success());
    let conn = rusqlite::Connection::open(&files[0]).unwrap();
    let leftover: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'board_departures_next'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(leftover, 1, "killed before its swap");
    assert_read_models_equal_replay(&ds).await;

    let out = rebuild_cli(ds.dir(), &["departures_board"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("equal to the live table").count(), 2, "{stdout}");
    assert!(stdout.contains("rebuilt departures_board from "), "{stdout}");
    assert_read_models_equal_replay(&ds).await;
}

/// A live tally edited by hand: the rebuild's digest check refuses the swap and
/// changes nothing; `--force` replaces it with the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_refuses_a_live_model_changed_by_hand_unless_forced() {
    let ds = dataset(Kind::Sqlite, spec(78, 600, 6), 2).await;
    let carrier = ds.expected_flight(1).unwrap().flight.carrier;
    let shard = ds.store.shards().shard_for_name(carrier.as_str());
    let file = ds.dir().join(&ds.store.manifest().sqlite.as_ref().unwrap().files[shard]);
    let conn = rusqlite::Connection::open(file).unwrap();
    let edited =
        conn.execute("UPDATE carrier_on_time SET departed = departed + 1 WHERE carrier = ?1", [carrier.as_str()]);
    assert_eq!(edited.unwrap(), 1);
    let before = ds.store.carrier_on_time(carrier).await.unwrap();

    let out = rebuild_cli(ds.dir(), &["carrier_on_time"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("differs from the rebuilt") && stderr.contains("--force"), "{stderr}");
    assert_eq!(ds.store.carrier_on_time(carrier).await.unwrap(), before, "nothing swapped");

    let out = rebuild_cli(ds.dir(), &["carrier_on_time", "--force"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("differs from the live table") && stdout.contains("replaced"), "{stdout}");
    assert_eq!(ds.store.carrier_on_time(carrier).await.unwrap().departed, before.departed - 1);
    assert_read_models_equal_replay(&ds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_read_models_hold_every_write_before_it_is_answered() {
    use crate::app::ServeProcess;
    use crate::client::{PROTOS, get, post_delay, send};
    use http_body_util::Full;
    let ds = dataset(Kind::Sqlite, spec(77, 800, 6), 3).await;
    // Without this process's runner, nobody would apply the writes it waits for.
    let refused = Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["serve", "--addr", "127.0.0.1:0", "--projector", "external", "--read-models", "inline", "--dir"])
        .arg(ds.dir())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(64), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--read-models inline needs --projector in-process"));
    let unknown = Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["serve", "--read-models", "departures_board,nonsense", "--dir"])
        .arg(ds.dir())
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(64), "{unknown:?}");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("nonsense") && stderr.contains("expected async, inline or read models"), "{stderr}");

    let server = ServeProcess::start(ds.dir(), &[], &["--no-admin", "--read-models", "inline"], false).await;
    let open: Vec<_> = (1..=800)
        .map(|id| ds.expected_flight(id).unwrap())
        .filter(|v| !v.status.state.is_terminal())
        .take(20)
        .collect();
    assert_eq!(open.len(), 20);
    let read = |uri: String| async move {
        let reply = send(server.api, PROTOS[0], get(&uri).body(Full::default()).unwrap()).await;
        assert_eq!(reply.status, 200, "{uri}: {:?}", reply.body);
        reply.json()
    };
    for (i, view) in open.iter().enumerate() {
        let (id, carrier) = (view.flight.id.get(), view.flight.carrier.as_str());
        let before = read(format!("/carriers/{carrier}/on-time")).await;
        let body = format!(r#"{{"kind":"departed","delay_minutes":{}}}"#, 5 + i);
        let etag = format!("\"{}\"", view.status.version);
        let posted = send(server.api, PROTOS[i % 2], post_delay(id, Some(&etag), &body)).await;
        assert_eq!(posted.status, 201, "{:?}", posted.body);
        // No waiting: once answered, the write is in every read model.
        let after = read(format!("/carriers/{carrier}/on-time")).await;
        assert_eq!(after["departed"], before["departed"].as_i64().unwrap() + 1, "flight {id}: {before} → {after}");
        let origin = view.flight.origin.as_str();
        let board =
            read(format!("/airports/{origin}/board?from={}&to={}&limit=1000", ds.spec.start, ds.spec.end())).await;
        let row = board.as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap();
        assert_eq!(row["status"]["state"], "departed", "flight {id}: {row}");
        assert_eq!(row["status"]["delay_minutes"], 5 + i as i64);
    }
    drop(server);

    // One model inline: its writes are there once answered, whatever the others do.
    let server = ServeProcess::start(ds.dir(), &[], &["--no-admin", "--read-models", "carrier_on_time"], false).await;
    let read = |uri: String| async move {
        let reply = send(server.api, PROTOS[0], get(&uri).body(Full::default()).unwrap()).await;
        assert_eq!(reply.status, 200, "{uri}: {:?}", reply.body);
        reply.json()
    };
    let more: Vec<_> = (1..=800)
        .map(|id| ds.expected_flight(id).unwrap())
        .filter(|v| !v.status.state.is_terminal())
        .skip(20)
        .take(5)
        .collect();
    for view in &more {
        let carrier = view.flight.carrier.as_str();
        let before = read(format!("/carriers/{carrier}/on-time")).await;
        let etag = format!("\"{}\"", view.status.version);
        let posted = send(
            server.api,
            PROTOS[0],
            post_delay(view.flight.id.get(), Some(&etag), r#"{"kind":"departed","delay_minutes":3}"#),
        )
        .await;
        assert_eq!(posted.status, 201, "{:?}", posted.body);
        let after = read(format!("/carriers/{carrier}/on-time")).await;
        assert_eq!(after["departed"], before["departed"].as_i64().unwrap() + 1, "{before} → {after}");
        assert_eq!(after["on_time"], before["on_time"].as_i64().unwrap() + 1, "3 minutes late is on time");
    }
}
