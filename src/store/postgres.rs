//! Opening a PostgreSQL shard: one database, three handles onto it.
//!
//! - an sqlx pool (`prepared`, `adhoc`), with `standard_conforming_strings` forced on
//!   so that backslashes in the ad-hoc path's string literals are never escapes, and
//!   the configured `plan_cache_mode`;
//! - sea-orm over that pool (`orm`);
//! - a deadpool of tokio-postgres clients with cached prepared statements (`raw`).
//!
//! All three over verified TLS when the URL says `sslmode=verify-full` (`pg_tls`).

use super::pg_tls::PgTls;
use super::{StoreConfig, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sea_orm::{DatabaseConnection, SqlxPostgresConnector};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use std::str::FromStr;
use std::time::Duration;

pub(crate) struct PostgresShard {
    pub pool: PgPool,
    pub orm: DatabaseConnection,
    pub raw: Pool,
}

impl PostgresShard {
    pub async fn open(shard: usize, url: &str, config: &StoreConfig) -> Result<Self, StoreError> {
        let unavailable = |reason: String| StoreError::Unavailable { shard, location: url.to_owned(), reason };
        let tls = PgTls::of(url).map_err(unavailable)?;
        let mut options = PgConnectOptions::from_str(url).map_err(|e| unavailable(e.to_string()))?;
        if tls.connector.is_none() {
            // Without verify-full every handle is cleartext, sqlx's too: its default
            // (prefer) would encrypt without verifying, and the prepared, adhoc and orm
            // paths would then pay for TLS that the raw path does not.
            options = options.ssl_mode(PgSslMode::Disable);
        }
        let mut raw_config = tokio_postgres::Config::from_str(&tls.raw_url).map_err(|e| unavailable(e.to_string()))?;
        if let Some(password) = &config.pg_password {
            options = options.password(password);
            raw_config.password(password);
        }
        let plan_cache_mode = config.plan_cache_mode.as_str();
        options = options.options([("standard_conforming_strings", "on"), ("plan_cache_mode", plan_cache_mode)]);
        // sqlx logs every statement slower than 1 s as a warning on stderr, bypassing
        // the service's log format; a projection batch on a busy machine takes that
        // long by design (`seed` printed pages of them). Query durations are in
        // `/metrics` per shard and operation instead.
        options = options.disable_statement_logging();
        raw_config.options(format!("-c standard_conforming_strings=on -c plan_cache_mode={plan_cache_mode}"));
        raw_config.connect_timeout(Duration::from_secs(5));
        // A connection is waited for as long as a SQLite shard's lock is (at least
        // 10 s): `reshard`'s read-model build asks for 5 minutes, and its followers,
        // at nice 19 beside a busy server, outwaited 10 s (results/resharding.md).
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.busy_timeout.max(Duration::from_secs(10)))
            .connect_with(options)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match tls.connector {
            Some(connector) => {
                raw_config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(raw_config, connector, recycling)
            }
            None => Manager::from_config(raw_config, tokio_postgres::NoTls, recycling),
        };
        let raw = Pool::builder(manager)
            .max_size(config.pool_size as usize)
            .build()
            .map_err(|e| unavailable(e.to_string()))?;
        let client = raw.get().await.map_err(|e| unavailable(e.to_string()))?;
        client
            .query_one("SELECT COUNT(*) FROM flight_status WHERE flight_id = 0", &[])
            .await
            .map_err(|e| unavailable(format!("not a flightbench shard: {e}")))?;
        drop(client);
        let orm = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
        Ok(Self { pool, orm, raw })
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.raw.close();
    }
}

/// Removes the password from a connection URL before it is written anywhere.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_owned() };
    let user = userinfo.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}@{host}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        use super::redact_password as r;
        assert_eq!(r("postgres://u:secret@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(r("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(r("postgres://h/db"), "postgres://h/db");
    }
}
