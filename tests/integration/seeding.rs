//! `seed`: the same seed and sizes give identical data (per-shard digests), on either
//! backend; a different seed gives different data; an existing dataset is replaced
//! only with `force`.

use crate::helpers::{Kind, dataset, spec};
use flightbench::dataset::{Backend, Manifest};
use flightbench::routing::ShardCount;
use flightbench::seed::{SeedConfig, SeedError, SeedTarget, seed};
use flightbench::store::{Durability, Store, StoreConfig, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_digests_on_both_backends_and_different_seed_differs() {
    let a = dataset(Kind::Sqlite, spec(11, 2_000, 15), 4).await;
    let b = dataset(Kind::Sqlite, spec(11, 2_000, 15), 4).await;
    let pg = dataset(Kind::Postgres, spec(11, 2_000, 15), 4).await;
    let other = dataset(Kind::Sqlite, spec(12, 2_000, 15), 4).await;

    let digests = a.store.shard_digests().await.unwrap();
    assert_eq!(digests.len(), 4);
    assert_eq!(digests, b.store.shard_digests().await.unwrap(), "same seed, same backend");
    assert_eq!(digests, pg.store.shard_digests().await.unwrap(), "same seed, SQLite vs PostgreSQL");
    let different = other.store.shard_digests().await.unwrap();
    assert!(digests.iter().zip(&different).all(|(x, y)| x != y), "a different seed must change every shard");

    let m = a.store.manifest();
    assert_eq!((m.counts.flights, m.backend), (2_000, Backend::Sqlite));
    assert_eq!(m.counts.events, (1..=2_000).map(|id| a.expected_events(id).len() as u64).sum::<u64>());
    assert_eq!(pg.store.manifest().counts, m.counts);
    assert!(
        pg.store
            .manifest()
            .postgres
            .as_ref()
            .unwrap()
            .shard_urls
            .iter()
            .all(|u| u.contains(&pg.pg.as_ref().unwrap().name))
    );
}

/// A quiet SQLite seed into `dir` that refuses to replace an existing dataset.
fn sqlite_config(dir: &std::path::Path, spec: flightbench::dataset::DatasetSpec, shards: i64) -> SeedConfig {
    SeedConfig {
        dir: dir.to_owned(),
        spec,
        shards: ShardCount::new(shards).unwrap(),
        target: SeedTarget::Sqlite { durability: Durability::Normal },
        force: false,
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_overwrite_without_force_and_replaces_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(dir.path(), spec(1, 300, 5), 4);
    seed(&config).await.unwrap();
    let first = Manifest::load(dir.path()).unwrap();

    config.spec = spec(2, 200, 5);
    config.shards = ShardCount::new(2).unwrap();
    let refused = seed(&config).await.unwrap_err();
    assert!(matches!(refused, SeedError::Exists(_)), "{refused}");
    assert_eq!(Manifest::load(dir.path()).unwrap(), first, "a refused seed must not touch the dataset");

    config.force = true;
    seed(&config).await.unwrap();
    let second = Manifest::load(dir.path()).unwrap();
    assert_eq!((second.shards.get(), second.counts.flights), (2, 200));
    let shard_files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".sqlite3"))
        .count();
    assert_eq!(shard_files, 2, "shard files of the replaced dataset must be removed");
    let store = Store::open(dir.path(), &StoreConfig::default()).await.unwrap();
    assert_eq!(store.shard_count(), 2);
}

#[tokio::test]
async fn missing_or_damaged_datasets_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Store::open(dir.path(), &StoreConfig::default()).await.err().unwrap();
    assert!(missing.to_string().contains("run `flightbench seed` first"), "{missing}");

    let config = sqlite_config(dir.path(), spec(1, 100, 2), 2);
    seed(&config).await.unwrap();
    std::fs::remove_file(dir.path().join("shard-001.sqlite3")).unwrap();
    let err = Store::open(dir.path(), &StoreConfig::default()).await.err().unwrap();
    assert!(matches!(&err, StoreError::Unavailable { shard: 1, reason, .. } if reason.contains("missing")), "{err}");
    std::fs::write(dir.path().join("shard-001.sqlite3"), b"not a database at all").unwrap();
    let err = Store::open(dir.path(), &StoreConfig::default()).await.err().unwrap();
    assert!(matches!(err, StoreError::Unavailable { shard: 1, .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_postgres_shard_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = SeedConfig {
        dir: dir.path().to_owned(),
        spec: spec(1, 10, 1),
        shards: ShardCount::new(1).unwrap(),
        target: SeedTarget::Postgres {
            // Port 9 (discard) on loopback: nothing listens there.
            shards: flightbench::seed::PgShards::Explicit(vec!["postgres://postgres@127.0.0.1:9/nothing".into()]),
            password: None,
        },
        force: false,
        progress: false,
    };
    let err = seed(&config).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:9") && err.contains("shard 0"), "{err}");
    assert!(!Manifest::exists_in(dir.path()), "a failed seed must not write a manifest");
}

/// `seed` keeps the planner's `sqlite_stat1` but no `sqlite_stat4` samples (they made
/// SQLite re-plan every range query; see `store::sqlite::drop_planner_samples`), and
/// opening a dataset seeded before clears the samples it still holds.
#[tokio::test]
async fn shards_keep_no_planner_samples_and_older_ones_lose_them_on_open() {
    let dir = tempfile::tempdir().unwrap();
    seed(&sqlite_config(dir.path(), spec(3, 2_000, 5), 2)).await.unwrap();
    let file = dir.path().join("shard-000.sqlite3");
    let count = |table: &str| {
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).unwrap()
    };
    assert!(count("sqlite_stat1") > 0);
    assert_eq!(count("sqlite_stat4"), 0);

    // As a build before this one left it: ANALYZE's samples in place.
    rusqlite::Connection::open(&file).unwrap().execute_batch("ANALYZE").unwrap();
    assert!(count("sqlite_stat4") > 0);
    let store = Store::open(dir.path(), &StoreConfig::default()).await.unwrap();
    assert_eq!(count("sqlite_stat4"), 0);
    assert_eq!(store.shard_count(), 2);
}
