//! `/readyz` runs real probes: it turns 503 when a SQLite shard file becomes unreadable,
//! when a shard's projection lags its event log, and when a PostgreSQL shard stops
//! accepting connections, names the failing probe and shard, and returns to 200 when
//! the shard does.

use crate::app::spawn_app;
use crate::client::{Proto, Reply, get, send};
use crate::helpers::{Kind, dataset, pg_base, spec};
use crate::metrics::{samples, scrape};
use flightbench::dataset::Manifest;
use flightbench::http::ServerConfig;
use flightbench::store::ProbeConfig;
use http::StatusCode;
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::Duration;

async fn readyz(addr: SocketAddr) -> Reply {
    send(addr, Proto::H1, get("/readyz").body(Full::default()).unwrap()).await
}

/// Polls `/readyz` until it answers `status` (a pool may take a moment to notice).
async fn readyz_becomes(addr: SocketAddr, status: StatusCode) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = readyz(addr).await;
        if reply.status == status {
            return reply.json();
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz stayed {}: {}", reply.status, reply.json());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An event for a flight the shard has no status for: the projection lags by one.
fn write_around_the_server(shard: &rusqlite::Connection) {
    shard
        .execute(
            "INSERT INTO delay_events (flight_id, version, flight_dep, kind, delay_minutes, reason, occurred_at, schema_version) \
             VALUES (987654321, 1, 0, 'reported', 10, 'probe test', 0, 1)",
            [],
        )
        .unwrap();
}

fn config() -> ServerConfig {
    ServerConfig {
        // The lag read on every call, so the test sees each change at once.
        probes: ProbeConfig {
            deadline: Duration::from_secs(1),
            max_projection_lag: 0,
            projection_every: Duration::ZERO,
            ..ProbeConfig::default()
        },
        ..ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shards_that_lag_or_become_unreadable_are_not_ready() {
    let ds = dataset(Kind::Sqlite, spec(51, 2_000, 10), 2).await;
    let app = spawn_app(&ds, config(), None).await;
    let addr = app.addr;
    let ready = readyz(addr).await;
    assert_eq!(ready.status, StatusCode::OK);
    let body = ready.json();
    assert_eq!(
        (body["probes"]["shard_query"]["ready"].as_bool(), body["probes"]["projection_lag"]["ready"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(body["shards"].as_array().unwrap().len(), 2);
    assert!(body["shards"].as_array().unwrap().iter().all(|s| s["projection_lag_events"] == 0), "{body}");

    let manifest = Manifest::load(ds.dir()).unwrap();
    let files = &manifest.sqlite.as_ref().unwrap().files;
    let shard0 = ds.dir().join(&files[0]);

    // An event written around the server: the projection lags by one.
    let orphan = rusqlite::Connection::open(&shard0).unwrap();
    write_around_the_server(&orphan);
    let lagging = readyz_becomes(addr, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(lagging["ready"], false);
    assert_eq!(lagging["probes"]["shard_query"]["ready"], true, "{lagging}");
    assert_eq!(lagging["probes"]["projection_lag"]["ready"], false);
    assert_eq!(lagging["probes"]["projection_lag"]["lagging_shards"], serde_json::json!([0]));
    assert_eq!(lagging["shards"][0]["projection_lag_events"], 1);
    assert_eq!(
        (lagging["shards"][0]["ready"].as_bool(), lagging["shards"][1]["ready"].as_bool()),
        (Some(false), Some(true))
    );
    orphan.execute("DELETE FROM delay_events WHERE flight_id = 987654321", []).unwrap();
    drop(orphan);
    readyz_becomes(addr, StatusCode::OK).await;

    // The shard file disappears from its path: the pools still hold the old file
    // open, but the probe's fresh connection cannot read it.
    let shard1 = ds.dir().join(&files[1]);
    let moved = shard1.with_extension("moved");
    std::fs::rename(&shard1, &moved).unwrap();
    let gone = readyz_becomes(addr, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(gone["probes"]["shard_query"]["ready"], false, "{gone}");
    assert_eq!(gone["probes"]["shard_query"]["failed_shards"], serde_json::json!([1]));
    let error = gone["shards"][1]["error"].as_str().unwrap();
    assert!(error.contains(&files[1]), "the error names the file: {error}");
    let metrics = samples(&scrape(addr).await);
    assert_eq!(metrics[r#"flightbench_shard_ready{shard="1"}"#], 0.0, "/metrics agrees");
    assert_eq!(metrics[r#"flightbench_shard_ready{shard="0"}"#], 1.0);
    std::fs::rename(&moved, &shard1).unwrap();
    readyz_becomes(addr, StatusCode::OK).await;

    // The lag is re-read only every `projection_every`: in between, the last reading
    // is reported with its age, while the cheap probes still run on every call.
    let ds2 = dataset(Kind::Sqlite, spec(53, 500, 10), 1).await;
    let hourly = ServerConfig {
        probes: ProbeConfig { projection_every: Duration::from_secs(3_600), ..config().probes },
        ..ServerConfig::default()
    };
    let hourly_app = spawn_app(&ds2, hourly, None).await;
    let cached_addr = hourly_app.addr;
    let first_asked = std::time::Instant::now();
    assert_eq!(readyz(cached_addr).await.json()["shards"][0]["projection_lag_events"], 0);
    // The reading is at most as old as the first call and at least as old as the gap
    // between the first answer and the second call.
    let first_answered = std::time::Instant::now();
    let file = ds2.dir().join(&Manifest::load(ds2.dir()).unwrap().sqlite.unwrap().files[0]);
    write_around_the_server(&rusqlite::Connection::open(&file).unwrap());
    let gap = first_answered.elapsed();
    let cached = readyz(cached_addr).await;
    let since_first = first_asked.elapsed();
    assert_eq!(cached.status, StatusCode::OK, "the lag is not re-read within the hour");
    let shard = &cached.json()["shards"][0];
    assert_eq!(shard["projection_lag_events"], 0);
    let age = shard["projection_checked_ms_ago"].as_u64().unwrap() as u128;
    assert!(age >= gap.as_millis() && age <= since_first.as_millis(), "{shard}, gap {gap:?}, since {since_first:?}");
    let moved = file.with_extension("moved");
    std::fs::rename(&file, &moved).unwrap();
    assert_eq!(readyz(cached_addr).await.status, StatusCode::SERVICE_UNAVAILABLE, "the file is probed every call");
    std::fs::rename(&moved, &file).unwrap();

    // Without read permission (root reads anything, so only as another user).
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shard1, std::fs::Permissions::from_mode(0o000)).unwrap();
        let unreadable = readyz_becomes(addr, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(unreadable["probes"]["shard_query"]["failed_shards"], serde_json::json!([1]));
        std::fs::set_permissions(&shard1, std::fs::Permissions::from_mode(0o644)).unwrap();
        readyz_becomes(addr, StatusCode::OK).await;
    }
}

async fn admin(sql: &str) {
    let (client, conn) =
        tokio_postgres::connect(&format!("{}/postgres", pg_base()), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_shard_is_not_ready_until_it_returns() {
    let ds = dataset(Kind::Postgres, spec(52, 1_000, 10), 2).await;
    let database = format!("{}_1", ds.pg.as_ref().unwrap().name);
    let app = spawn_app(&ds, config(), None).await;
    let addr = app.addr;
    assert_eq!(readyz(addr).await.status, StatusCode::OK);

    // The shard's database refuses new connections and its open ones are cut.
    admin(&format!(
        "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    ))
    .await;
    let down = readyz_becomes(addr, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(down["probes"]["shard_query"]["failed_shards"], serde_json::json!([1]), "{down}");
    assert_eq!(down["shards"][0]["ready"], true);
    assert!(down["shards"][1]["error"].as_str().is_some_and(|e| !e.is_empty()));

    admin(&format!("ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true")).await;
    let back = readyz_becomes(addr, StatusCode::OK).await;
    assert_eq!(back["shards"][1]["projection_lag_events"], 0);
}
