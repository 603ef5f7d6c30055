//! TLS to PostgreSQL shards, against the local server with a certificate this test
//! makes: a CA, a server certificate for `localhost` it signs, installed as the
//! server's (`ALTER SYSTEM`, reload; put back afterwards, even on a panic). The seeder
//! and every handle of the store connect with `sslmode=verify-full`, and the server's
//! own view (`pg_stat_ssl`) shows each of their connections encrypted. A CA that did
//! not sign the certificate, and a host name the certificate is not for, are refused.

use crate::helpers::{PgDatabases, pg_base, spec};
use flightbench::domain::FlightId;
use flightbench::routing::ShardCount;
use flightbench::seed::{PgShards, SeedConfig, SeedTarget, seed};
use flightbench::store::{QueryPath, Store, StoreConfig};
use std::path::Path;

/// The server certificate installed while it lives; the previous one put back on drop.
struct InstalledCert {
    previous: (String, String),
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&format!("{}/postgres", pg_base()), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

impl InstalledCert {
    async fn install(cert: &Path, key: &Path) -> Self {
        let admin = admin().await;
        let show = async |name: &str| admin.query_one(&format!("SHOW {name}"), &[]).await.unwrap().get::<_, String>(0);
        let previous = (show("ssl_cert_file").await, show("ssl_key_file").await);
        set_cert(&admin, &cert.display().to_string(), &key.display().to_string()).await;
        InstalledCert { previous }
    }
}

async fn set_cert(admin: &tokio_postgres::Client, cert: &str, key: &str) {
    let quote = |s: &str| s.replace('\'', "''");
    admin.batch_execute(&format!("ALTER SYSTEM SET ssl_cert_file = '{}'", quote(cert))).await.unwrap();
    admin.batch_execute(&format!("ALTER SYSTEM SET ssl_key_file = '{}'", quote(key))).await.unwrap();
    assert!(admin.query_one("SELECT pg_reload_conf()", &[]).await.unwrap().get::<_, bool>(0));
    // The reload is signalled; give the postmaster a moment to read the new files.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
}

impl Drop for InstalledCert {
    fn drop(&mut self) {
        let (cert, key) = self.previous.clone();
        let restore = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async { set_cert(&admin().await, &cert, &key).await });
        });
        if restore.join().is_err() && !std::thread::panicking() {
            panic!("could not put the server's TLS certificate back");
        }
    }
}

/// A CA and a certificate for `localhost` signed by it, in a directory the
/// `postgres` user can read (the key its own, mode 0600, as PostgreSQL requires).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn make() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server =
            CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&server_key, &issuer).unwrap();
        // Another CA, which signed nothing here.
        let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = other_params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", &ca.pem());
        write("other-ca.pem", &other.pem());
        write("server.pem", &server.pem());
        write("server.key", &server_key.serialize_pem());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = dir.path().join("server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let postgres = std::process::Command::new("chown").arg("postgres:postgres").arg(&key).status().unwrap();
        assert!(postgres.success(), "chown postgres (the tests run as root, as CI does)");
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// Whether each connection to the databases `<name>_*` is encrypted, by the server's
/// account (`pg_stat_ssl`).
async fn connections_encrypted(name: &str) -> Vec<bool> {
    let query = "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname LIKE $1";
    let rows = admin().await.query(query, &[&format!("{name}\\_%")]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shards_over_verified_tls() {
    let pki = Pki::make();
    let _installed =
        InstalledCert::install(Path::new(&pki.path("server.pem")), Path::new(&pki.path("server.key"))).await;
    let databases = PgDatabases::new(2);
    // The certificate is for `localhost`: the URL must name it so.
    let base = databases.base_url().replace("127.0.0.1", "localhost");
    let tls = format!("sslmode=verify-full&sslrootcert={}", pki.path("ca.pem"));
    let dir = tempfile::tempdir().unwrap();
    let config = SeedConfig {
        dir: dir.path().to_owned(),
        spec: spec(91, 300, 5),
        shards: ShardCount::new(2).unwrap(),
        target: SeedTarget::Postgres { shards: PgShards::Base(format!("{base}?{tls}")), password: None },
        force: false,
        progress: false,
    };
    seed(&config).await.unwrap_or_else(|e| panic!("seeding over TLS: {e}"));
    let store = Store::open(dir.path(), &StoreConfig::default()).await.unwrap();
    for path in QueryPath::ALL {
        let view = store.flight(*path, FlightId::new(1).unwrap()).await.unwrap();
        assert_eq!(view.flight.id.get(), 1, "{path}");
    }
    // Every connection the store holds to its shards is encrypted, by the server's account.
    let encrypted = connections_encrypted(&databases.name).await;
    assert!(encrypted.len() >= 4, "the store holds connections on both shards: {encrypted:?}");
    assert!(encrypted.iter().all(|ssl| *ssl), "a cleartext connection: {encrypted:?}");
    store.close().await;

    // The shards' URLs in the manifest, with `url` as their parameters.
    let manifest_urls = |url: &str| {
        let manifest = dir.path().join("manifest.json");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let shards = json["postgres"]["shard_urls"].as_array().unwrap().clone();
        let mut json = json.clone();
        json["postgres"]["shard_urls"] = shards
            .iter()
            .map(|u| serde_json::Value::from(u.as_str().unwrap().split('?').next().unwrap().to_owned() + url))
            .collect::<Vec<_>>()
            .into();
        std::fs::write(&manifest, json.to_string()).unwrap();
    };

    // Without the TLS parameters every handle is in cleartext, sqlx's too (its own
    // default would encrypt unverified, and only three of the four paths would pay).
    manifest_urls("");
    // The closed store's backends end a moment after it does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !connections_encrypted(&databases.name).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the closed store's connections linger");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let plain = Store::open(dir.path(), &StoreConfig::default()).await.unwrap();
    for path in QueryPath::ALL {
        plain.flight(*path, FlightId::new(2).unwrap()).await.unwrap();
    }
    let encrypted = connections_encrypted(&databases.name).await;
    assert!(encrypted.len() >= 4 && encrypted.iter().all(|ssl| !*ssl), "{encrypted:?}");
    plain.close().await;

    // A CA that signed nothing here, and a name the certificate is not for: refused,
    // and the error says why.
    manifest_urls(&format!("?sslmode=verify-full&sslrootcert={}", pki.path("other-ca.pem")));
    let refused = Store::open(dir.path(), &StoreConfig::default()).await.err().expect("an unknown CA is refused");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");
    let to_ip = |json: &str| json.replace("localhost", "127.0.0.1");
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, to_ip(&std::fs::read_to_string(&manifest).unwrap())).unwrap();
    manifest_urls(&format!("?{tls}"));
    let refused = Store::open(dir.path(), &StoreConfig::default()).await.err().expect("the wrong name is refused");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");
    // Asking for less than verification is refused too, not quietly honoured.
    manifest_urls("?sslmode=require");
    let refused = Store::open(dir.path(), &StoreConfig::default()).await.err().expect("sslmode=require is refused");
    assert!(refused.to_string().contains("sslmode=require is not supported"), "{refused}");
}
