//! `TestDataset`: a freshly seeded store, SQLite or PostgreSQL, plus the generator
//! that made it, used as the oracle for what every query should return.

use flightbench::dataset::{DatasetSpec, Generator};
use flightbench::domain::{FlightId, FlightView, RecordedEvent, UtcTime};
use flightbench::routing::ShardCount;
use flightbench::seed::{PgShards, SeedConfig, SeedTarget, seed};
use flightbench::store::{Durability, Store, StoreConfig};
use std::sync::atomic::{AtomicU32, Ordering};

/// The PostgreSQL server the store tests use: `FLIGHTBENCH_TEST_PG_URL` (a server URL
/// without a database), by default the local one `scripts/test.sh` starts.
pub fn pg_base() -> String {
    std::env::var("FLIGHTBENCH_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub struct TestDataset {
    pub store: std::sync::Arc<Store>,
    pub spec: DatasetSpec,
    pub generator: Generator,
    /// Owns the shard directory: deleted when the dataset is dropped.
    _dir: tempfile::TempDir,
    pub pg: Option<PgDatabases>,
}

pub fn spec(seed: u64, flights: u64, days: u32) -> DatasetSpec {
    DatasetSpec::new(seed, flights, days, UtcTime::parse("2026-12-01").unwrap()).unwrap()
}

/// Seeds `spec` into `shards` shards of the given kind and opens it.
pub async fn dataset(kind: Kind, spec: DatasetSpec, shards: u32) -> TestDataset {
    let dir = tempfile::tempdir().unwrap();
    let (target, pg) = match kind {
        Kind::Sqlite => (SeedTarget::Sqlite { durability: Durability::Normal }, None),
        Kind::Postgres => {
            let pg = PgDatabases::new(shards);
            (SeedTarget::Postgres { shards: PgShards::Base(pg.base_url()), password: None }, Some(pg))
        }
    };
    let config = SeedConfig {
        dir: dir.path().to_owned(),
        spec,
        shards: ShardCount::new(i64::from(shards)).unwrap(),
        target,
        force: false,
        progress: false,
    };
    seed(&config).await.unwrap_or_else(|e| panic!("seeding {kind:?} failed: {e}"));
    let store = Store::open(dir.path(), &StoreConfig::default()).await.unwrap();
    TestDataset { store: std::sync::Arc::new(store), spec, generator: Generator::new(spec), _dir: dir, pg }
}

impl TestDataset {
    /// Runs `sql` (one or more statements) on every shard as the database's owner:
    /// what someone with direct access to the shards can do. Returns the first
    /// refusal's message.
    pub async fn on_shards(&self, sql: &str) -> Result<(), String> {
        match &self.pg {
            None => {
                for file in self.store.manifest().sqlite.as_ref().unwrap().files.iter() {
                    let conn = rusqlite::Connection::open(self.dir().join(file)).unwrap();
                    conn.execute_batch(sql).map_err(|e| e.to_string())?;
                }
            }
            Some(pg) => {
                for url in pg.shard_urls() {
                    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                    tokio::spawn(conn);
                    client
                        .batch_execute(sql)
                        .await
                        .map_err(|e| e.as_db_error().map_or(e.to_string(), |d| d.message().to_owned()))?;
                }
            }
        }
        Ok(())
    }

    /// The shard directory (manifest and SQLite files).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn flight_count(&self) -> i64 {
        self.spec.flights as i64
    }

    /// What the seeded store must return for a point read.
    pub fn expected_flight(&self, id: i64) -> Option<FlightView> {
        (1..=self.flight_count()).contains(&id).then(|| {
            let g = self.generator.flight(FlightId::new(id).unwrap());
            FlightView { flight: g.flight, status: g.status }
        })
    }

    pub fn expected_events(&self, id: i64) -> Vec<RecordedEvent> {
        let flight_id = FlightId::new(id).unwrap();
        let generated = self.generator.flight(flight_id);
        generated
            .versioned_events()
            .map(|(version, event)| RecordedEvent { flight_id, version, event: event.clone() })
            .collect()
    }

    pub fn all_expected(&self) -> Vec<FlightView> {
        (1..=self.flight_count()).map(|id| self.expected_flight(id).unwrap()).collect()
    }

    /// The first `n` flights that still take events, for tests that write.
    pub fn writable_flights(&self, n: usize) -> Vec<FlightId> {
        let open = self.all_expected().into_iter().filter(|v| !v.status.state.is_terminal());
        open.map(|v| v.flight.id).take(n).collect()
    }
}

/// Uniquely named PostgreSQL databases (`<base>_0` … `<base>_{n-1}`), dropped when
/// the guard is, even if the test panicked.
pub struct PgDatabases {
    pub name: String,
    shards: u32,
}

impl PgDatabases {
    pub fn new(shards: u32) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("fbtest_{}_{}_{}", std::process::id(), nanos, NEXT.fetch_add(1, Ordering::Relaxed));
        Self { name, shards }
    }

    pub fn base_url(&self) -> String {
        format!("{}/{}", pg_base(), self.name)
    }

    /// Each shard database's URL, in shard order.
    pub fn shard_urls(&self) -> Vec<String> {
        (0..self.shards).map(|i| format!("{}_{i}", self.base_url())).collect()
    }
}

impl Drop for PgDatabases {
    fn drop(&mut self) {
        let (name, shards) = (self.name.clone(), self.shards);
        // Drop may run inside a runtime; do the async cleanup on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&format!("{}/postgres", pg_base()), tokio_postgres::NoTls)
                    .await
                    .expect("connect to drop test databases");
                tokio::spawn(conn);
                // The shards, and any layout `reshard` made of them (`<name>_l<n>_<i>`).
                let pattern = format!("{}\\_l%", name.replace('_', "\\_"));
                let layouts = client.query("SELECT datname FROM pg_database WHERE datname LIKE $1", &[&pattern]).await;
                let layouts: Vec<String> = layouts.expect("list test databases").iter().map(|r| r.get(0)).collect();
                for db in (0..shards).map(|i| format!("{name}_{i}")).chain(layouts) {
                    client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                        .await
                        .expect("drop test database");
                }
            });
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("could not drop test databases {}_*", self.name);
        }
    }
}

/// A self-signed certificate for `localhost` and a TLS acceptor serving it. The
/// certificate's PEM is what a client trusts; the directory holds the files.
pub struct TestTls {
    pub cert_pem: String,
    pub acceptor: tokio_rustls::TlsAcceptor,
    _dir: tempfile::TempDir,
}

pub fn test_tls() -> TestTls {
    let (cert, key) = flightbench::http::tls::self_signed(&["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let acceptor = flightbench::http::tls::acceptor(&cert_path, &key_path, Default::default()).unwrap();
    TestTls { cert_pem: cert, acceptor, _dir: dir }
}

/// The HS256 secret of servers that verify [`hs256_token`]s (`hs256_server`).
pub const HS256_SECRET: &[u8] = b"integration-test-secret-32-bytes";

/// A token for `sub` with `roles`, signed with [`HS256_SECRET`], valid for 5 minutes.
pub fn hs256_token(sub: &str, roles: &[flightbench::auth::Role]) -> String {
    let key = flightbench::auth::SigningKey::hmac("hs", HS256_SECRET).unwrap();
    let claims = flightbench::auth::claims(
        "https://issuer.test",
        "flightbench",
        sub,
        roles,
        std::time::Duration::from_secs(300),
        flightbench::auth::now(),
    );
    key.token(&claims)
}

/// A server that accepts [`hs256_token`]s.
pub fn hs256_server() -> flightbench::http::ServerConfig {
    use flightbench::auth::{KeySet, Keys, Rules, Verifier};
    let keys = Keys::Static(std::sync::Arc::new(KeySet { keys: vec![], skipped: vec![] }));
    let verifier = Verifier::new(Rules::new("https://issuer.test", "flightbench"), keys, Some(HS256_SECRET));
    flightbench::http::ServerConfig { auth: Some(std::sync::Arc::new(verifier)), ..Default::default() }
}
