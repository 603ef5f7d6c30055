//! Encryption at rest and erasure, end to end on both backends: reports sealed on the
//! way in (no reason or reporter anywhere in the shards' bytes), opened on the way out,
//! refused when a sealed field is moved to another event, shredded by
//! `DELETE /admin/subjects/{sub}` while the events still fold, exported, and still
//! readable after a key-encryption key rotation through the running server.

use crate::app;
use crate::client::{Proto, Reply, Transport, current_version, get, post_delay, send, with_bearer};
use crate::helpers::{HS256_SECRET, Kind, TestDataset, dataset, hs256_server, hs256_token, spec};
use flightbench::auth::Role;
use flightbench::domain::FlightId;
use flightbench::seal::kek::{self, KekSource};
use flightbench::seal::{DEFAULT_KEY_STORE, Sealer};
use flightbench::store::{QueryPath, Store, StoreConfig, StoreError};
use http::StatusCode;
use http_body_util::Full;
use std::sync::Arc;

const ALICE_REASON: &str = "crew rest; call alice on +44 20 7946 0000";

async fn call(addr: std::net::SocketAddr, request: http::Request<Full<bytes::Bytes>>, token: &str) -> Reply {
    send(addr, Transport::Plain(Proto::H1), with_bearer(request, token)).await
}

/// Flights that take a report, distinct.
fn open_flights(ds: &TestDataset, n: usize) -> Vec<i64> {
    ds.all_expected().into_iter().filter(|v| !v.status.state.is_terminal()).map(|v| v.flight.id.get()).take(n).collect()
}

async fn report(addr: std::net::SocketAddr, id: i64, reason: &str, sub: &str) -> Reply {
    let version = current_version(addr, Transport::Plain(Proto::H1), id).await;
    let body = serde_json::json!({"kind": "reported", "delay_minutes": 17, "reason": reason}).to_string();
    call(addr, post_delay(id, Some(&format!("\"{version}\"")), &body), &hs256_token(sub, &[Role::Reporter])).await
}

async fn last_event(addr: std::net::SocketAddr, id: i64) -> serde_json::Value {
    let reply =
        send(addr, Transport::Plain(Proto::H1), get(&format!("/flights/{id}/events")).body(Full::default()).unwrap())
            .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    reply.json().as_array().unwrap().last().unwrap().clone()
}

/// A SQLite shard file (not its WAL, not the key store).
fn is_shard_file(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "sqlite3")
}

/// Every stored sealed row's (flight, version, reason, reported_by) as the database has them.
async fn sealed_rows(ds: &TestDataset) -> Vec<(i64, i64, String, Option<String>)> {
    let sql = "SELECT flight_id, version, reason, reported_by FROM delay_events WHERE data_key IS NOT NULL ORDER BY flight_id, version";
    let mut rows = Vec::new();
    match &ds.pg {
        None => {
            for entry in std::fs::read_dir(ds.dir()).unwrap() {
                let path = entry.unwrap().path();
                if is_shard_file(&path) {
                    let conn = rusqlite::Connection::open(&path).unwrap();
                    let mut stmt = conn.prepare(sql).unwrap();
                    let found = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
                    rows.extend(found.map(Result::unwrap));
                }
            }
        }
        Some(pg) => {
            for url in pg.shard_urls() {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                for r in client.query(sql, &[]).await.unwrap() {
                    rows.push((r.get(0), r.get(1), r.get(2), r.get(3)));
                }
            }
        }
    }
    rows
}

/// Writes `reason` (a sealed row's ciphertext) over another sealed row's, as someone
/// with access to the shards, and checks it landed.
async fn overwrite_reason(ds: &TestDataset, flight: i64, version: i64, reason: &str) {
    assert!(reason.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)), "base64url: {reason}");
    let sql = format!("UPDATE delay_events SET reason = '{reason}' WHERE flight_id = {flight} AND version = {version}");
    ds.on_shards(&sql).await.unwrap();
    let rows = sealed_rows(ds).await;
    assert_eq!(rows.iter().filter(|r| (r.0, r.1, r.2.as_str()) == (flight, version, reason)).count(), 1);
}

async fn sealed_reports_open_and_erasure_shreds_them(kind: Kind) {
    let ds = dataset(kind, spec(71, 600, 10), 2).await;
    let keys = tempfile::tempdir().unwrap();
    let kek_file = keys.path().join("kek");
    kek::add_to_file(&kek_file).unwrap();
    let sealer = Sealer::load(KekSource::File(kek_file.clone()), &ds.dir().join(DEFAULT_KEY_STORE)).unwrap();
    ds.store.seal_with(Arc::new(sealer));
    let server = app::spawn_app(&ds, hs256_server(), None).await;
    let addr = server.addr;
    let flights = open_flights(&ds, 3);
    let (a, b, c) = (flights[0], flights[1], flights[2]);

    for (id, reason, sub) in [(a, ALICE_REASON, "alice"), (b, "fuel", "bob"), (c, "wx", "alice")] {
        assert_eq!(report(addr, id, reason, sub).await.status, StatusCode::CREATED, "{kind:?}");
    }
    let read = last_event(addr, a).await;
    assert_eq!((read["reason"].as_str(), read["reported_by"].as_str()), (Some(ALICE_REASON), Some("alice")));
    assert!(read.get("personal_data").is_none(), "opened events are plain: {read}");

    // At rest: ciphertext only, no reporter, and the bytes of the shards hold neither.
    let rows = sealed_rows(&ds).await;
    assert_eq!(rows.len(), 3, "{kind:?}: {rows:?}");
    for (_, _, reason, reported_by) in &rows {
        assert!(!reason.contains("alice") && !reason.contains("fuel") && reported_by.is_none(), "{rows:?}");
    }
    if ds.pg.is_none() {
        for entry in std::fs::read_dir(ds.dir()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("shard") {
                let bytes = std::fs::read(&path).unwrap();
                for secret in [ALICE_REASON.as_bytes(), b"+44 20 7946"] {
                    assert!(!bytes.windows(secret.len()).any(|w| w == secret), "{name} holds a reason in clear");
                }
            }
        }
    }

    // A sealed field moved onto another event does not open: a 500, not bob's words.
    let (b_row, c_row) = (rows.iter().find(|r| r.0 == b).unwrap(), rows.iter().find(|r| r.0 == c).unwrap());
    overwrite_reason(&ds, c, c_row.1, &b_row.2).await;
    let moved =
        send(addr, Transport::Plain(Proto::H1), get(&format!("/flights/{c}/events")).body(Full::default()).unwrap())
            .await;
    assert_eq!(moved.status, StatusCode::INTERNAL_SERVER_ERROR, "{kind:?}");
    assert!(!String::from_utf8_lossy(&moved.body).contains("fuel"));
    overwrite_reason(&ds, c, c_row.1, &c_row.2).await;
    assert_eq!(last_event(addr, c).await["reason"], "wx");

    // A store opened without the KEK refuses to show sealed events rather than blanks.
    let blind = Store::open(ds.dir(), &StoreConfig::default()).await.unwrap();
    let refused = blind.events(QueryPath::Prepared, FlightId::new(a).unwrap()).await.unwrap_err();
    assert!(matches!(refused, StoreError::NoKek { .. }), "{refused}");
    blind.close().await;

    // Only an admin erases; an export returns everything, opened.
    let erase = || http::Request::delete("/admin/subjects/alice").body(Full::default()).unwrap();
    assert_eq!(call(addr, erase(), &hs256_token("mallory", &[Role::Reporter])).await.status, StatusCode::FORBIDDEN);
    let export = |sub: &str| get(&format!("/admin/subjects/{sub}/export")).body(Full::default()).unwrap();
    let before = call(addr, export("alice"), &hs256_token("root", &[Role::Admin])).await.json();
    assert_eq!(before["events"].as_array().unwrap().len(), 2, "{before}");
    assert!(before["events"].as_array().unwrap().iter().any(|e| e["reason"] == ALICE_REASON));
    let erased = call(addr, erase(), &hs256_token("root", &[Role::Admin])).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", String::from_utf8_lossy(&erased.body));
    let erased = erased.json();
    assert!(erased["erased_key"].as_str().unwrap().starts_with("dk-"), "{erased}");
    assert_eq!(erased["still_in_clear"], 0);

    // Erased everywhere, and the events still fold: the delay is intact.
    let gone = last_event(addr, a).await;
    assert_eq!(gone["personal_data"], "erased", "{gone}");
    assert!(gone["reason"] == "" && gone["reported_by"].is_null(), "{gone}");
    assert_eq!(gone["delay_minutes"], 17);
    let status =
        send(addr, Transport::Plain(Proto::H1), get(&format!("/flights/{a}")).body(Full::default()).unwrap()).await;
    assert_eq!(status.json()["status"]["delay_minutes"], 17, "{:?}", status.json());
    // Nothing links alice to her events any more: the export finds none.
    let after = call(addr, export("alice"), &hs256_token("root", &[Role::Admin])).await.json();
    assert_eq!((after["data_key"].is_null(), after["events"].as_array().unwrap().len()), (true, 0), "{after}");
    assert_eq!(last_event(addr, b).await["reason"], "fuel", "bob is untouched");

    // The admin API answers alike over h2c and TLS (HTTP/1.1 and h2 by ALPN).
    let tls = crate::helpers::test_tls();
    let secure = app::spawn_app(&ds, hs256_server(), Some(tls.acceptor.clone())).await;
    for (at, transport, name) in [
        (addr, Transport::Plain(Proto::H2c), "h2c"),
        (secure.addr, Transport::tls(&tls.cert_pem, Proto::H1), "tls h1"),
        (secure.addr, Transport::tls(&tls.cert_pem, Proto::H2c), "tls h2"),
    ] {
        let request = with_bearer(export("bob"), &hs256_token("root", &[Role::Admin]));
        let reply = send(at, transport.clone(), request).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}");
        assert_eq!(reply.json()["events"][0]["reason"], "fuel", "{name}");
        let request = with_bearer(export("bob"), &hs256_token("bob", &[Role::Reporter]));
        assert_eq!(send(at, transport, request).await.status, StatusCode::FORBIDDEN, "{name}");
    }
    // Kept running to the end: a server that stops closes the store it shares with
    // `server`.

    // A KEK rotation through the running server; the old key can then go.
    kek::add_to_file(&kek_file).unwrap();
    let rotate = http::Request::post("/admin/keys/rotate").body(Full::default()).unwrap();
    let rotation = call(addr, rotate, &hs256_token("root", &[Role::Admin])).await;
    assert_eq!(rotation.status, StatusCode::OK, "{}", String::from_utf8_lossy(&rotation.body));
    assert_eq!(rotation.json()["rewrapped"], 1, "bob's key; alice's is gone: {:?}", rotation.json());
    assert_eq!(rotation.json()["still_under"].as_array().unwrap().len(), 0);
    assert_eq!(last_event(addr, b).await["reason"], "fuel");
    server.shutdown().await;
    drop(secure);
}

#[tokio::test]
async fn sealed_reports_open_and_erasure_shreds_them_on_sqlite() {
    sealed_reports_open_and_erasure_shreds_them(Kind::Sqlite).await;
}

#[tokio::test]
async fn sealed_reports_open_and_erasure_shreds_them_on_postgres() {
    sealed_reports_open_and_erasure_shreds_them(Kind::Postgres).await;
}

#[tokio::test]
async fn the_admin_api_needs_auth_and_a_kek() {
    let ds = dataset(Kind::Sqlite, spec(72, 200, 5), 1).await;
    let open = app::spawn_app(&ds, flightbench::http::ServerConfig::default(), None).await;
    let erase = http::Request::delete("/admin/subjects/alice").body(Full::default()).unwrap();
    let reply = send(open.addr, Transport::Plain(Proto::H1), erase).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.json()["detail"].as_str().unwrap().contains("needs --auth"), "{:?}", reply.json());
    let unsealed = app::spawn_app(&ds, hs256_server(), None).await;
    let erase = http::Request::delete("/admin/subjects/alice").body(Full::default()).unwrap();
    let reply = call(unsealed.addr, erase, &hs256_token("root", &[Role::Admin])).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.json()["detail"].as_str().unwrap().contains("no --kek-file"), "{:?}", reply.json());
    let bad = http::Request::delete("/admin/subjects/%FF").body(Full::default()).unwrap();
    assert_eq!(call(unsealed.addr, bad, &hs256_token("root", &[Role::Admin])).await.status, StatusCode::BAD_REQUEST);
}

fn flightbench(args: &[&str], dir: &std::path::Path, kek: Option<&std::path::Path>) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flightbench"));
    command.args(args).arg("--dir").arg(dir).env_remove("FLIGHTBENCH_KEK").env_remove("FLIGHTBENCH_KEK_FILE");
    if let Some(kek) = kek {
        command.arg("--kek-file").arg(kek);
    }
    command.output().unwrap()
}

/// The offline commands: `gdpr export` and `gdpr erase` on a stopped server's
/// dataset, `keys kek-new` and `keys rotate`; refused, with the way out, without the
/// KEK or while a server holds the key store.
#[tokio::test]
async fn gdpr_and_keys_commands_work_on_a_stopped_servers_dataset() {
    let ds = dataset(Kind::Sqlite, spec(73, 300, 5), 2).await;
    let keys = tempfile::tempdir().unwrap();
    let (kek_file, secret) = (keys.path().join("kek"), keys.path().join("secret"));
    kek::add_to_file(&kek_file).unwrap();
    std::fs::write(&secret, HS256_SECRET).unwrap();
    let id = open_flights(&ds, 1)[0];
    let (kek, secret_arg) = (kek_file.to_str().unwrap(), secret.to_str().unwrap());
    let args = [
        "--no-admin",
        "--auth",
        "jwks",
        "--jwt-secret-file",
        secret_arg,
        "--oidc-issuer",
        "https://issuer.test",
        "--audience",
        "flightbench",
        "--kek-file",
        kek,
    ];
    let mut server = app::ServeProcess::start(ds.dir(), &[], &args, false).await;
    assert_eq!(report(server.api, id, ALICE_REASON, "alice").await.status, StatusCode::CREATED);
    // While the server holds the key store, the offline commands are refused by name.
    let busy = flightbench(&["gdpr", "erase", "alice"], ds.dir(), Some(&kek_file));
    assert_eq!(busy.status.code(), Some(69), "{}", String::from_utf8_lossy(&busy.stderr));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another flightbench process"));
    // `audit verify` only reads: it runs beside the server.
    let verified = flightbench(&["audit", "verify"], ds.dir(), Some(&kek_file));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("1 records in 1 chains verified"), "{verified:?}");
    server.child.kill().await.unwrap();
    server.child.wait().await.unwrap();

    let no_kek = flightbench(&["gdpr", "erase", "alice"], ds.dir(), None);
    assert_eq!(no_kek.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&no_kek.stderr).contains("--kek-file or FLIGHTBENCH_KEK"));
    let export = || {
        let out = flightbench(&["gdpr", "export", "alice"], ds.dir(), Some(&kek_file));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let opened = |json: serde_json::Value| {
        let events = json["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{json}");
        assert_eq!((events[0]["flight_id"].as_i64(), events[0]["reason"].as_str()), (Some(id), Some(ALICE_REASON)));
    };
    opened(export());

    // A new KEK, then every data key re-wrapped under it.
    let added = std::process::Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["keys", "kek-new", "--kek-file", kek])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&added.stdout).contains("the primary from now on"), "{added:?}");
    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_flightbench"))
        .args(["keys", "rotate", "--kek-file", kek, "--dataset"])
        .arg(ds.dir())
        .output()
        .unwrap();
    // alice's key and the audit log's.
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("re-wrapped 2 data key(s)"), "{rotated:?}");
    opened(export());

    let erased = flightbench(&["gdpr", "erase", "alice"], ds.dir(), Some(&kek_file));
    assert!(String::from_utf8_lossy(&erased.stdout).contains("erased data key dk-"), "{erased:?}");
    // Nothing links alice to anything any more: no key, no event of hers to find.
    let after = export();
    assert_eq!((after["data_key"].is_null(), after["events"].as_array().unwrap().len()), (true, 0), "{after}");
    let again = flightbench(&["gdpr", "erase", "alice"], ds.dir(), Some(&kek_file));
    assert!(String::from_utf8_lossy(&again.stdout).contains("has no data key"), "{again:?}");
    let verified = flightbench(&["audit", "verify"], ds.dir(), Some(&kek_file));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("4 records in 2 chains verified"), "{verified:?}");
}
