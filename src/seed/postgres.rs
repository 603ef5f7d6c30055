//! Loading PostgreSQL shards: one database per shard, created here from a base URL or
//! given as a list, each with monthly partitions and binary `COPY`.

use super::{SeedError, event_rows, shard_ids, total};
use crate::dataset::{Counts, GeneratedFlight, Generator};
use crate::routing::ShardCount;
use crate::store::pg_tls::ConnectError;
use crate::store::row::{
    EVENT_PG_TYPES, FLIGHT_PG_TYPES, FlightRow, STATUS_PG_TYPES, StatusRow, event_columns, flight_columns,
    status_columns,
};
use crate::store::schema::{
    INDEXES, NUMBER_EVENTS, POSTGRES_AUDIT, POSTGRES_DROP, POSTGRES_SEQUENCING, POSTGRES_TABLES, postgres_partitions,
    projection_tables,
};
use futures_util::future::try_join_all;
use indicatif::ProgressBar;
use std::pin::pin;
use std::str::FromStr;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

/// Which databases hold the shards.
#[derive(Debug, Clone)]
pub enum PgShards {
    /// `postgres://…/NAME`: seed creates databases `NAME_0`, `NAME_1`, … on that server.
    Base(String),
    /// One URL per shard, databases already existing (possibly on several servers).
    Explicit(Vec<String>),
}

impl PgShards {
    /// The shard URLs, after creating (or, with `force`, re-creating) the databases,
    /// or checking that explicit ones hold no dataset unless `force`.
    pub(super) async fn resolve(
        &self,
        shards: ShardCount,
        password: Option<&str>,
        force: bool,
    ) -> Result<Vec<String>, SeedError> {
        match self {
            PgShards::Explicit(urls) => {
                if urls.len() != shards.get() as usize {
                    return Err(SeedError::Config(format!(
                        "{} --pg-shard-url given for --shards {}; give one URL per shard",
                        urls.len(),
                        shards.get()
                    )));
                }
                for (shard, url) in urls.iter().enumerate() {
                    let client = connect(url, password, Some(shard)).await?;
                    let taken: Option<String> = client
                        .query_one("SELECT to_regclass('flights')::text", &[])
                        .await
                        .map_err(|source| shard_err(shard, url, source))?
                        .get(0);
                    if taken.is_some() && !force {
                        return Err(SeedError::Config(format!(
                            "shard {shard} ({}) already holds a dataset; pass --force to replace it",
                            crate::store::redact_password(url)
                        )));
                    }
                }
                Ok(urls.clone())
            }
            PgShards::Base(base) => {
                // tokio-postgres cannot read verify-full: the name from the URL without TLS.
                let tls = crate::store::pg_tls::PgTls::of(base).map_err(SeedError::Config)?;
                let config = tokio_postgres::Config::from_str(&tls.raw_url)
                    .map_err(|cause| SeedError::PostgresAdmin { url: crate::store::redact_password(base), cause })?;
                let name = config.get_dbname().unwrap_or("flightbench").to_owned();
                let admin_url = replace_dbname(base, "postgres");
                let admin = connect(&admin_url, password, None).await?;
                let admin_err = |cause| SeedError::PostgresAdmin { url: crate::store::redact_password(base), cause };
                let mut urls = Vec::new();
                for shard in 0..shards.get() as usize {
                    let db = format!("{name}_{shard}");
                    let exists = admin
                        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
                        .await
                        .map_err(admin_err)?
                        .is_some();
                    if exists && !force {
                        return Err(SeedError::Config(format!(
                            "database {db} already exists; pass --force to drop and re-create it"
                        )));
                    }
                    // Identifiers cannot be bound; `quote_ident` makes any name safe.
                    let ident = quote_ident(&db);
                    if exists {
                        admin.batch_execute(&format!("DROP DATABASE {ident} WITH (FORCE)")).await.map_err(admin_err)?;
                    }
                    admin.batch_execute(&format!("CREATE DATABASE {ident}")).await.map_err(admin_err)?;
                    urls.push(replace_dbname(base, &db));
                }
                Ok(urls)
            }
        }
    }
}

fn shard_err(shard: usize, url: &str, source: tokio_postgres::Error) -> SeedError {
    SeedError::Postgres { shard, url: crate::store::redact_password(url), cause: source }
}

/// `"name"` with embedded quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The URL with its path (database name) replaced, query string kept.
pub(crate) fn replace_dbname(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(slash) => &head[..scheme_end + slash],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// One connection to shard `shard` (or, `None`, the server), TLS as the URL asks
/// (`store::pg_tls`); a failure names the shard.
pub(crate) async fn connect(url: &str, password: Option<&str>, shard: Option<usize>) -> Result<Client, SeedError> {
    let cause = match crate::store::pg_tls::connect(url, password).await {
        Ok(client) => return Ok(client),
        Err(cause) => cause,
    };
    let url = crate::store::redact_password(url);
    Err(match (cause, shard) {
        (ConnectError::Tls(problem), _) => SeedError::Config(format!("{url}: {problem}")),
        (ConnectError::Postgres(cause), Some(shard)) => SeedError::Postgres { shard, url, cause },
        (ConnectError::Postgres(cause), None) => SeedError::PostgresAdmin { url, cause },
    })
}

pub(super) async fn seed_all(
    urls: &[String],
    generator: &Generator,
    shards: ShardCount,
    password: Option<&str>,
    progress: &ProgressBar,
) -> Result<Counts, SeedError> {
    let loads = urls.iter().enumerate().map(|(shard, url)| async move {
        let client = connect(url, password, Some(shard)).await?;
        seed_shard(client, generator, shards, shard, progress).await.map_err(|source| shard_err(shard, url, source))
    });
    Ok(total(try_join_all(loads).await?))
}

async fn seed_shard(
    client: Client,
    generator: &Generator,
    shards: ShardCount,
    shard: usize,
    progress: &ProgressBar,
) -> Result<Counts, tokio_postgres::Error> {
    client.batch_execute(POSTGRES_DROP).await?;
    for ddl in POSTGRES_TABLES {
        client.batch_execute(ddl).await?;
    }
    for ddl in postgres_partitions(generator.spec()) {
        client.batch_execute(&ddl).await?;
    }
    // Generation is CPU work: run it on the blocking pool, not an async worker. A
    // generator is cheap to build from its spec, so the task owns its own.
    let spec = *generator.spec();
    let flights: Vec<GeneratedFlight> = tokio::task::spawn_blocking(move || {
        let generator = Generator::new(spec);
        shard_ids(&spec, shards, shard).map(|id| generator.flight(id)).collect()
    })
    .await
    .expect("generation task panicked");

    let copy = |table: &str, columns: &str| format!("COPY {table} ({columns}) FROM STDIN BINARY");
    let sink = client.copy_in(&copy("flights", flight_columns!())).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &FLIGHT_PG_TYPES));
    for g in &flights {
        writer.as_mut().write(&FlightRow::new(&g.flight).pg_params()).await?;
    }
    writer.finish().await?;

    let sink = client.copy_in(&copy("flight_status", status_columns!())).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &STATUS_PG_TYPES));
    for g in &flights {
        writer.as_mut().write(&StatusRow::new(g.flight.id, &g.status).pg_params()).await?;
    }
    writer.finish().await?;

    let sink = client.copy_in(&copy("delay_events", event_columns!())).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &EVENT_PG_TYPES));
    let mut events = 0u64;
    for g in &flights {
        for row in event_rows(&spec, g) {
            writer.as_mut().write(&row.pg_params()).await?;
        }
        events += g.events.len() as u64;
        progress.inc(1);
    }
    writer.finish().await?;

    client.batch_execute(NUMBER_EVENTS).await?;
    for ddl in INDEXES.iter().chain(POSTGRES_SEQUENCING).chain(POSTGRES_AUDIT) {
        client.batch_execute(ddl).await?;
    }
    for ddl in projection_tables() {
        client.batch_execute(&ddl).await?;
    }
    client.batch_execute("ANALYZE").await?;
    Ok(Counts { flights: flights.len() as u64, events })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database_names() {
        assert_eq!(replace_dbname("postgres://u@h:5432/fb", "fb_0"), "postgres://u@h:5432/fb_0");
        assert_eq!(replace_dbname("postgres://u@h/fb?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(replace_dbname("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
