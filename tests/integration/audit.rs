//! The audit log, end to end on both backends: every report, erasure and rotation
//! recorded with no personal data in clear; the database itself refusing UPDATE and
//! DELETE; and each kind of tampering (altered, deleted, inserted, reordered) done for
//! real to the stored rows and named at exactly the record it touched, by the store's
//! verification and by `flightbench audit verify`.

use crate::app;
use crate::client::{Proto, Transport, current_version, get, post_delay, send, with_bearer};
use crate::helpers::{Kind, TestDataset, dataset, hs256_server, hs256_token, spec};
use flightbench::audit::{ChainScope, Tamper};
use flightbench::auth::Role;
use flightbench::seal::kek::{self, KekSource};
use flightbench::seal::{DEFAULT_KEY_STORE, Sealer};
use http::StatusCode;
use http_body_util::Full;
use std::sync::Arc;

async fn tampering(ds: &TestDataset) -> Option<Tamper> {
    ds.store.verify_audit().await.unwrap().tampering
}

fn cli_verify(ds: &TestDataset, kek_file: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["audit", "verify", "--dir"])
        .arg(ds.dir())
        .arg("--kek-file")
        .arg(kek_file)
        .output()
        .unwrap()
}

async fn every_change_is_audited_and_every_tampering_named(kind: Kind) {
    let ds = dataset(kind, spec(81, 400, 6), 2).await;
    let keys = tempfile::tempdir().unwrap();
    let kek_file = keys.path().join("kek");
    kek::add_to_file(&kek_file).unwrap();
    let sealer = Sealer::load(KekSource::File(kek_file.clone()), &ds.dir().join(DEFAULT_KEY_STORE)).unwrap();
    ds.store.seal_with(Arc::new(sealer));
    ds.store.audit_with(ChainScope::Flight).await.unwrap();
    let server = app::spawn_app(&ds, hs256_server(), None).await;
    let addr = server.addr;
    let transport = || Transport::Plain(Proto::H1);
    let open: Vec<i64> = ds
        .all_expected()
        .into_iter()
        .filter(|v| !v.status.state.is_terminal())
        .map(|v| v.flight.id.get())
        .take(2)
        .collect();
    let (a, b) = (open[0], open[1]);

    for (id, minutes) in [(a, 5), (a, 10), (a, 15), (b, 20)] {
        let version = current_version(addr, transport(), id).await;
        let body = format!(r#"{{"kind":"revised","delay_minutes":{minutes},"reason":"alice's crew"}}"#);
        let mut request = with_bearer(
            post_delay(id, Some(&format!("\"{version}\"")), &body),
            &hs256_token("alice", &[Role::Reporter]),
        );
        request
            .headers_mut()
            .insert("x-request-id", http::HeaderValue::from_str(&format!("req-{id}-{minutes}")).unwrap());
        let reply = send(addr, transport(), request).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.header("x-request-id"), Some(format!("req-{id}-{minutes}").as_str()));
    }
    let admin = hs256_token("root", &[Role::Admin]);
    let erase = with_bearer(http::Request::delete("/admin/subjects/alice").body(Full::default()).unwrap(), &admin);
    assert_eq!(send(addr, transport(), erase).await.status, StatusCode::OK);

    // The export: every change, attributed, nobody in clear.
    let reader = send(
        addr,
        transport(),
        with_bearer(get("/admin/audit").body(Full::default()).unwrap(), &hs256_token("r", &[Role::Reader])),
    )
    .await;
    assert_eq!(reader.status, StatusCode::FORBIDDEN);
    let export = send(
        addr,
        transport(),
        with_bearer(get("/admin/audit?since=2000-01-01T00:00:00Z").body(Full::default()).unwrap(), &admin),
    )
    .await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(export.header("content-type"), Some("application/jsonl"));
    let text = String::from_utf8(export.body.to_vec()).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 5, "{text}");
    assert!(!text.contains("alice") && !text.contains("root"), "no subject in clear: {text}");
    let on_a: Vec<_> = records.iter().filter(|r| r["chain"] == format!("flight-{a}")).collect();
    assert_eq!(on_a.iter().map(|r| r["seq"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        (on_a[1]["request_id"].as_str(), on_a[1]["role"].as_str()),
        (Some(&*format!("req-{a}-10")), Some("reporter"))
    );
    assert_eq!(on_a[1]["before_version"].as_i64().unwrap() + 1, on_a[1]["after_version"].as_i64().unwrap());
    assert!(on_a[1]["actor"].is_string() && on_a[1]["actor_key"].as_str().unwrap().starts_with("dk-"));
    let erasure = records.iter().find(|r| r["chain"] == "keys").unwrap();
    assert_eq!((erasure["action"].as_str(), erasure["role"].as_str()), (Some("erase_subject"), Some("admin")));
    assert!(erasure["target"].as_str().unwrap().starts_with("dk-"));
    let none = send(
        addr,
        transport(),
        with_bearer(get("/admin/audit?since=4102444800").body(Full::default()).unwrap(), &admin),
    )
    .await;
    assert!(none.body.is_empty(), "nothing after 2100");
    // An admin may open the actors: alice's are erased with her key, root's is not.
    let admin_get = |path: &str| with_bearer(get(path).body(Full::default()).unwrap(), &admin);
    let opened = send(addr, transport(), admin_get("/admin/audit?actors=open")).await;
    let opened: Vec<serde_json::Value> =
        String::from_utf8(opened.body.to_vec()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let subjects: Vec<(&str, &str)> =
        opened.iter().map(|r| (r["action"].as_str().unwrap(), r["actor_subject"].as_str().unwrap())).collect();
    assert_eq!(subjects.iter().filter(|s| **s == ("report_delay", "erased")).count(), 4, "{subjects:?}");
    assert!(subjects.contains(&("erase_subject", "root")), "{subjects:?}");
    assert!(records.iter().all(|r| r.get("actor_subject").is_none()), "sealed unless asked");
    let bad = send(addr, transport(), admin_get("/admin/audit?actors=maybe")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Intact after the erasure shredded the actor: the chain hashes the ciphertext.
    let report = ds.store.verify_audit().await.unwrap();
    assert_eq!((report.chains, report.records, report.tampering), (3, 5, None));
    let out = cli_verify(&ds, &kek_file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 records in 3 chains verified"));

    // The database refuses to change or remove a record.
    let chain = format!("flight-{a}");
    for sql in [
        format!("UPDATE audit_log SET role = 'admin' WHERE chain = '{chain}'"),
        format!("DELETE FROM audit_log WHERE chain = '{chain}'"),
    ] {
        let refused = ds.on_shards(&sql).await.unwrap_err();
        assert!(refused.contains("append-only"), "{kind:?}: {refused}");
    }

    // Someone who owns the database drops the guard and tampers: each kind is named
    // at the record it touched, and undoing it makes the chain verify again.
    let (disable, enable) = match kind {
        Kind::Sqlite => (
            "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;".to_owned(),
            flightbench::store::schema::SQLITE_AUDIT.join(";\n"),
        ),
        Kind::Postgres => (
            "ALTER TABLE audit_log DISABLE TRIGGER USER".to_owned(),
            "ALTER TABLE audit_log ENABLE TRIGGER USER".to_owned(),
        ),
    };
    ds.on_shards(&disable).await.unwrap();
    let c = &chain;
    let cases: [(&str, String, String, Tamper); 4] = [
        (
            "altered",
            format!("UPDATE audit_log SET target = 'flight/999999' WHERE chain = '{c}' AND seq = 2"),
            format!("UPDATE audit_log SET target = 'flight/{a}' WHERE chain = '{c}' AND seq = 2"),
            Tamper::Altered { chain: c.clone(), seq: 2 },
        ),
        (
            "deleted",
            format!(
                "CREATE TABLE saved AS SELECT * FROM audit_log WHERE chain = '{c}' AND seq = 2; DELETE FROM audit_log WHERE chain = '{c}' AND seq = 2"
            ),
            "INSERT INTO audit_log SELECT * FROM saved; DROP TABLE saved".to_owned(),
            Tamper::Deleted { chain: c.clone(), seq: 2 },
        ),
        (
            "reordered",
            format!(
                "UPDATE audit_log SET seq = 100 WHERE chain = '{c}' AND seq = 2; UPDATE audit_log SET seq = 2 WHERE chain = '{c}' AND seq = 3; UPDATE audit_log SET seq = 3 WHERE chain = '{c}' AND seq = 100"
            ),
            format!(
                "UPDATE audit_log SET seq = 100 WHERE chain = '{c}' AND seq = 2; UPDATE audit_log SET seq = 2 WHERE chain = '{c}' AND seq = 3; UPDATE audit_log SET seq = 3 WHERE chain = '{c}' AND seq = 100"
            ),
            Tamper::Reordered { chain: c.clone(), seq: 2 },
        ),
        (
            "inserted",
            format!(
                "UPDATE audit_log SET seq = seq + 1000 WHERE chain = '{c}' AND seq >= 2; \
                 UPDATE audit_log SET seq = seq - 999 WHERE chain = '{c}' AND seq >= 1000; \
                 INSERT INTO audit_log SELECT chain, 2, at, request_id, actor, actor_key, role, action, 'flight/999999', \
                    before_version, after_version, prev_hash, 'forged' FROM audit_log WHERE chain = '{c}' AND seq = 3"
            ),
            format!(
                "DELETE FROM audit_log WHERE chain = '{c}' AND seq = 2; \
                 UPDATE audit_log SET seq = seq + 1000 WHERE chain = '{c}' AND seq >= 3; \
                 UPDATE audit_log SET seq = seq - 1001 WHERE chain = '{c}' AND seq >= 1000"
            ),
            Tamper::Inserted { chain: c.clone(), seq: 2 },
        ),
    ];
    for (name, tamper, undo, expected) in cases {
        ds.on_shards(&tamper).await.unwrap_or_else(|e| panic!("{kind:?} {name}: {e}"));
        assert_eq!(tampering(&ds).await, Some(expected.clone()), "{kind:?} {name}");
        let out = cli_verify(&ds, &kek_file);
        assert_eq!(out.status.code(), Some(65), "{kind:?} {name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&expected.to_string()),
            "{kind:?} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ds.on_shards(&undo).await.unwrap_or_else(|e| panic!("{kind:?} undo {name}: {e}"));
        assert_eq!(tampering(&ds).await, None, "{kind:?} {name} undone");
    }
    ds.on_shards(&enable).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn every_change_is_audited_and_every_tampering_named_on_sqlite() {
    every_change_is_audited_and_every_tampering_named(Kind::Sqlite).await;
}

#[tokio::test]
async fn every_change_is_audited_and_every_tampering_named_on_postgres() {
    every_change_is_audited_and_every_tampering_named(Kind::Postgres).await;
}

/// Writes to different flights at once, audited in one chain per shard (PostgreSQL's
/// advisory lock) or one global chain (the store's lock): every write commits, the
/// chain has no gap or fork, and a global chain's records, spread over the shards,
/// verify in one sequence.
async fn concurrent_writers_keep_one_chain(kind: Kind, scope: ChainScope) {
    use flightbench::domain::{DelayEvent, EventKind, FlightId, Reason, SubjectId, UtcTime};
    use flightbench::store::{Change, QueryPath};
    let ds = dataset(kind, spec(82, 400, 6), 2).await;
    let keys = tempfile::tempdir().unwrap();
    let kek_file = keys.path().join("kek");
    kek::add_to_file(&kek_file).unwrap();
    let sealer = Sealer::load(KekSource::File(kek_file), &ds.dir().join(DEFAULT_KEY_STORE)).unwrap();
    ds.store.seal_with(Arc::new(sealer));
    ds.store.audit_with(scope).await.unwrap();
    let flights: Vec<_> = ds.all_expected().into_iter().filter(|v| !v.status.state.is_terminal()).take(12).collect();
    let writes = flights.iter().map(|view| {
        let store = ds.store.clone();
        let (id, version) = (view.flight.id, view.status.version);
        async move {
            let kind = EventKind::Revised { delay_minutes: 9, reason: Reason::parse("crew").unwrap() };
            let event = DelayEvent::new(UtcTime::from_unix(1_800_000_000).unwrap(), kind)
                .with_reporter(Some(SubjectId::parse("ops").unwrap()));
            let change = Change { request_id: format!("r{id}"), role: "reporter".into() };
            store.append_as(QueryPath::Prepared, FlightId::new(id.get()).unwrap(), version, &event, &change).await
        }
    });
    let results = futures_util::future::join_all(writes).await;
    assert!(results.iter().all(Result::is_ok), "{kind:?} {scope}: {results:?}");
    let records = ds.store.audit_records(i64::MIN).await.unwrap();
    assert_eq!(records.len(), flights.len(), "{kind:?} {scope}");
    let report = ds.store.verify_audit().await.unwrap();
    let chains = match scope {
        ChainScope::Global => 1,
        ChainScope::Shard => 2,
        ChainScope::Flight => flights.len(),
    };
    assert_eq!((report.chains, report.records, report.tampering), (chains, flights.len(), None), "{kind:?} {scope}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_one_chain_per_shard_on_postgres() {
    concurrent_writers_keep_one_chain(Kind::Postgres, ChainScope::Shard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_one_global_chain_across_shards() {
    concurrent_writers_keep_one_chain(Kind::Sqlite, ChainScope::Global).await;
    concurrent_writers_keep_one_chain(Kind::Postgres, ChainScope::Global).await;
}
