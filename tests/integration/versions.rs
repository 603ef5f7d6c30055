//! Event schema versions: a seeded dataset holds v1 and v2 events and every path on
//! both backends reads them as v2; a version newer than the build is a named error;
//! `events migrate` rewrites old events in place, verified, under concurrent writes,
//! after a SIGKILL, and upgrades a format-1 dataset's tables.

use crate::helpers::{Kind, TestDataset, dataset, spec};
use flightbench::dataset::{MANIFEST_FORMAT, Manifest};
use flightbench::domain::{DelayCode, DelayEvent, EventKind, FlightId, Reason, RecordedEvent, SCHEMA_VERSION, UtcTime};
use flightbench::store::{QueryPath, Store, StoreConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn shard_files(dir: &Path) -> Vec<PathBuf> {
    Manifest::load_format(dir, MANIFEST_FORMAT)
        .or_else(|_| Manifest::load_format(dir, 1))
        .unwrap()
        .sqlite
        .unwrap()
        .files
        .iter()
        .map(|f| dir.join(f))
        .collect()
}

/// Every flight's events as the raw path reads them.
async fn all_events(store: &Store, flights: i64) -> BTreeMap<i64, Vec<RecordedEvent>> {
    let mut all = BTreeMap::new();
    for id in 1..=flights {
        all.insert(id, store.events(QueryPath::Raw, FlightId::new(id).unwrap()).await.unwrap());
    }
    all
}

/// Marks the dataset in `dir` as seeded by a build before event schema v2.
fn mark_format_1(dir: &Path) {
    let path = Manifest::path_in(dir);
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["format"] = 1.into();
    std::fs::write(&path, manifest.to_string()).unwrap();
}

fn migrate(dir: &Path, batch: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["events", "migrate", "--quiet", "--batch", batch, "--dir"])
        .arg(dir)
        .output()
        .unwrap()
}

/// Both versions are stored, and what every path reads is the upcast v2: v1 events
/// with the code their reason classifies to and no reporter, v2 events as written.
async fn both_versions_read_as_current(ds: &TestDataset) {
    let old: u64 = ds.store.old_event_counts().await.unwrap().iter().sum();
    let total = ds.store.manifest().counts.events;
    assert!(old > total / 5 && old < total * 4 / 5, "a realistic mix: {old} of {total} events are v1");
    let (mut v1_seen, mut v2_seen) = (0, 0);
    for id in 1..=200 {
        let expected = ds.expected_events(id);
        for &path in QueryPath::ALL {
            let got = ds.store.events(path, FlightId::new(id).unwrap()).await.unwrap();
            assert_eq!(got, expected, "{path} flight {id}");
        }
        for e in &expected {
            assert_eq!(e.event.schema_version, SCHEMA_VERSION);
            let code = DelayCode::classify(e.event.kind.reason()).map(|c| DelayCode::parse(c).unwrap());
            if matches!(e.event.kind, EventKind::Departed { .. }) {
                assert_eq!(e.event.cause, None);
            } else {
                assert_eq!(e.event.cause, code, "flight {id} v{}", e.version);
            }
            if ds.spec.stored_schema_version(e.event.occurred_at) == 1 {
                assert_eq!(e.event.reported_by, None, "a v1 event has no reporter");
                v1_seen += 1;
            } else {
                assert!(e.event.reported_by.as_ref().unwrap().as_str().starts_with("ops-desk-"));
                v2_seen += 1;
            }
        }
    }
    assert!(v1_seen > 0 && v2_seen > 0, "{v1_seen} v1 and {v2_seen} v2 events checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_path_reads_v1_and_v2_events_as_v2() {
    both_versions_read_as_current(&dataset(Kind::Sqlite, spec(61, 1_500, 10), 2).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_path_reads_v1_and_v2_events_as_v2() {
    both_versions_read_as_current(&dataset(Kind::Postgres, spec(61, 1_500, 10), 2).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_newer_than_the_build_is_an_error_that_names_it() {
    let ds = dataset(Kind::Sqlite, spec(62, 300, 4), 1).await;
    let id = (1..=300).find(|&id| ds.expected_events(id).len() >= 2).unwrap();
    let conn = rusqlite::Connection::open(&shard_files(ds.dir())[0]).unwrap();
    let changed = conn.execute("UPDATE delay_events SET schema_version = 3 WHERE flight_id = ?1 AND version = 2", [id]);
    assert_eq!(changed.unwrap(), 1);
    for &path in QueryPath::ALL {
        let err = ds.store.events(path, FlightId::new(id).unwrap()).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("event 2 of flight {id}"))
                && err.contains("schema version 3 is newer than this build understands (2)"),
            "{path}: {err}"
        );
    }
    // `events migrate` refuses a stream it cannot read rather than pass over the row:
    // a newer event, then a malformed old one.
    let out = migrate(ds.dir(), "1000");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "bad input: {stderr}");
    assert!(stderr.contains(&format!("event 2 of flight {id}: schema version 3 is newer")), "{stderr}");
    conn.execute(
        "UPDATE delay_events SET schema_version = 1, kind = 'exploded' WHERE flight_id = ?1 AND version = 2",
        [id],
    )
    .unwrap();
    let out = migrate(ds.dir(), "1000");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("event 2 of flight {id}: unknown event kind \"exploded\"")), "{stderr}");
    let events = ds.store.events(QueryPath::Raw, FlightId::new(id).unwrap()).await.unwrap_err().to_string();
    assert!(events.contains("unknown event kind"), "{events}");
}

/// `events migrate` runs while writers append, is SIGKILLed part-way, and is run again:
/// no event is lost or changed, every acknowledged append is there, and nothing old is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_under_writes_survives_sigkill_and_resumes() {
    let ds = dataset(Kind::Sqlite, spec(63, 6_000, 10), 2).await;
    let flights = ds.flight_count();
    let before = all_events(&ds.store, flights).await;
    let old_before: u64 = ds.store.old_event_counts().await.unwrap().iter().sum();
    assert!(old_before > 1_000, "{old_before}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["events", "migrate", "--quiet", "--batch", "1", "--dir"])
        .arg(ds.dir())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Append to flights while the migration runs; keep every acknowledged event.
    let mut acked: BTreeMap<i64, Vec<RecordedEvent>> = BTreeMap::new();
    let at = UtcTime::parse("2026-12-20T12:00:00Z").unwrap();
    let mut killed_with_left = None;
    for round in 0..2_000i64 {
        let id = 1 + (round * 37) % flights;
        let flight = ds.store.flight(QueryPath::Raw, FlightId::new(id).unwrap()).await.unwrap();
        if flight.status.state.as_str() != "scheduled" && flight.status.state.as_str() != "delayed" {
            continue;
        }
        let event = DelayEvent::new(at, EventKind::Revised { delay_minutes: 5, reason: Reason::parse("fog").unwrap() });
        let status =
            ds.store.append(QueryPath::Prepared, FlightId::new(id).unwrap(), flight.status.version, &event).await;
        let status = status.unwrap_or_else(|e| panic!("append during migration: {e}"));
        acked.entry(id).or_default().push(RecordedEvent {
            flight_id: FlightId::new(id).unwrap(),
            version: status.status.version,
            event,
        });
        let left: u64 = ds.store.old_event_counts().await.unwrap().iter().sum();
        if acked.len() >= 10 && left < old_before {
            killed_with_left = Some(left);
            break;
        }
    }
    let _ = child.kill();
    let ended = child.wait().unwrap();
    let left = killed_with_left.expect("the migration made progress while writes went on");
    assert!(!ended.success(), "SIGKILLed before it finished ({left} old events were left)");
    let left_after_kill: u64 = ds.store.old_event_counts().await.unwrap().iter().sum();
    assert!(left_after_kill > 0, "killed part-way ({left} then {left_after_kill} old events left)");

    let out = migrate(ds.dir(), "500");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("migrated {left_after_kill} of {left_after_kill} older events")), "{stdout}");
    for line in stdout.lines().filter(|l| l.starts_with("shard ")) {
        let (before_digest, after_digest) = line.split_once(" = after ").unwrap();
        assert_eq!(before_digest.rsplit(' ').next(), Some(after_digest), "{line}");
    }
    assert_eq!(ds.store.old_event_counts().await.unwrap(), vec![0, 0]);

    let after = all_events(&ds.store, flights).await;
    for id in 1..=flights {
        let mut expected = before[&id].clone();
        expected.extend(acked.get(&id).cloned().unwrap_or_default());
        assert_eq!(after[&id], expected, "flight {id}");
    }
    let again = migrate(ds.dir(), "500");
    assert!(String::from_utf8_lossy(&again.stdout).contains("migrated 0 of 0 older events"));
}

/// A dataset seeded before schema v2 (manifest format 1, no v2 columns, every event
/// v1) is refused with the way out, then upgraded in place by `events migrate`.
async fn format_1_upgrades_in_place(ds: &TestDataset, downgrade: impl AsyncFnOnce()) {
    downgrade().await;
    mark_format_1(ds.dir());
    let refused = Store::open(ds.dir(), &StoreConfig::default()).await.err().unwrap().to_string();
    assert!(refused.contains("format 1") && refused.contains("flightbench events migrate"), "{refused}");

    let out = migrate(ds.dir(), "200");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("manifest format 1 → {MANIFEST_FORMAT}")));
    let total = ds.store.manifest().counts.events;
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("migrated {total} of {total}")));

    let store = Store::open(ds.dir(), &StoreConfig::default()).await.unwrap();
    assert_eq!(store.manifest().format, MANIFEST_FORMAT);
    // The stored events were numbered 1..=n per shard, and new appends continue there.
    let mut numbered = 0;
    for shard in 0..store.shard_count() {
        let head = store.event_head(shard).await.unwrap();
        let seqs: Vec<i64> = store.events_after(shard, 0, i64::MAX).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "shard {shard}");
        numbered += head as u64;
    }
    assert_eq!(numbered, total);
    for id in 1..=ds.flight_count() {
        // Written before reporters existed: the same events, none with a reporter.
        let expected: Vec<_> = ds
            .expected_events(id)
            .into_iter()
            .map(|e| RecordedEvent { event: e.event.with_reporter(None), ..e })
            .collect();
        for &path in QueryPath::ALL {
            assert_eq!(store.events(path, FlightId::new(id).unwrap()).await.unwrap(), expected, "{path} {id}");
        }
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_format_1_dataset_is_upgraded_in_place() {
    let ds = dataset(Kind::Sqlite, spec(64, 400, 6), 2).await;
    let files = shard_files(ds.dir());
    format_1_upgrades_in_place(&ds, async || {
        for file in &files {
            let conn = rusqlite::Connection::open(file).unwrap();
            conn.execute_batch(
                "UPDATE delay_events SET schema_version = 1, cause = NULL, reported_by = NULL;
                 ALTER TABLE delay_events DROP COLUMN cause; ALTER TABLE delay_events DROP COLUMN reported_by;
                 DROP TRIGGER delay_events_sequence; DROP INDEX delay_events_seq;
                 ALTER TABLE delay_events DROP COLUMN seq; DROP TABLE event_sequence;
                 DROP INDEX delay_events_data_key; ALTER TABLE delay_events DROP COLUMN data_key;
                 DROP TABLE projection_checkpoints; DROP TABLE board_departures;
                 DROP TABLE airport_hour_stats; DROP TABLE carrier_on_time;",
            )
            .unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_format_1_dataset_is_upgraded_in_place() {
    let ds = dataset(Kind::Postgres, spec(64, 400, 6), 2).await;
    let urls = ds.store.manifest().postgres.as_ref().unwrap().shard_urls.clone();
    format_1_upgrades_in_place(&ds, async || {
        for url in &urls {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client
                .batch_execute(
                    "UPDATE delay_events SET schema_version = 1, cause = NULL, reported_by = NULL;
                     ALTER TABLE delay_events DROP COLUMN cause, DROP COLUMN reported_by, DROP COLUMN seq,
                         DROP COLUMN data_key;
                     DROP TABLE event_sequence, projection_checkpoints, board_departures, airport_hour_stats,
                         carrier_on_time;
                     DROP FUNCTION next_event_seq() CASCADE;",
                )
                .await
                .unwrap();
        }
    })
    .await;
}

/// `flightbench run`'s own dataset directories, seeded by an older build, are re-seeded
/// rather than refused, so the README's `cargo run --release -- run` keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workbench_reseeds_its_own_format_1_dataset() {
    let ds = dataset(Kind::Sqlite, spec(65, 200, 3), 2).await;
    mark_format_1(ds.dir());
    let reseeded = flightbench::workbench::ensure_dataset(ds.dir(), &ds.spec, 2, &|_| {}).await.unwrap();
    assert_eq!(reseeded.format, MANIFEST_FORMAT);
    assert_eq!(Manifest::load(ds.dir()).unwrap(), reseeded);
}
