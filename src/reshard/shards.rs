//! One layout's shards, open for a reshard: SQLite connections or PostgreSQL clients.
//! Each step is dispatched to its backend's module (`sqlite`, `postgres`); the phases
//! in `mod.rs` are written once against this.

use super::{AuditHeads, CaughtUp, EventIds, Mismatch, ReshardError, postgres, sqlite};
use crate::dataset::Manifest;
use crate::routing::ShardCount;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tokio_postgres::Client;

pub(super) enum Shards {
    Sqlite { files: Vec<PathBuf>, conns: Vec<rusqlite::Connection> },
    Postgres { urls: Vec<String>, clients: Vec<Client> },
}

fn sqlite_err(file: &Path) -> impl Fn(rusqlite::Error) -> ReshardError + '_ {
    move |cause| ReshardError::Shard { location: file.display().to_string(), cause: cause.to_string() }
}

fn pg_err(url: &str) -> impl Fn(tokio_postgres::Error) -> ReshardError + '_ {
    move |cause| ReshardError::Shard {
        location: url.to_owned(),
        cause: cause.as_db_error().map_or(cause.to_string(), |d| d.message().to_owned()),
    }
}

/// Runs blocking SQLite work on this thread, telling a multi-threaded runtime to move
/// its other tasks elsewhere meanwhile (a single-threaded one just waits).
fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// The shard locations a manifest names: SQLite files (joined to `dir`) or URLs.
pub(super) fn locations(dir: &Path, manifest: &Manifest) -> Vec<String> {
    match (&manifest.sqlite, &manifest.postgres) {
        (Some(s), _) => s.files.iter().map(|f| dir.join(f).display().to_string()).collect(),
        (None, Some(p)) => p.shard_urls.clone(),
        (None, None) => Vec::new(),
    }
}

impl Shards {
    /// Opens the shards a manifest in `dir` names (existing ones).
    pub async fn open(dir: &Path, manifest: &Manifest, password: Option<&str>) -> Result<Self, ReshardError> {
        match (&manifest.sqlite, &manifest.postgres) {
            (Some(s), _) => {
                let files: Vec<PathBuf> = s.files.iter().map(|f| dir.join(f)).collect();
                let conns =
                    files.iter().map(|f| sqlite::open_old(f).map_err(sqlite_err(f))).collect::<Result<_, _>>()?;
                Ok(Shards::Sqlite { files, conns })
            }
            (None, Some(p)) => {
                let mut clients = Vec::new();
                for (shard, url) in p.shard_urls.iter().enumerate() {
                    clients.push(connect(url, password, shard).await?);
                }
                Ok(Shards::Postgres { urls: p.shard_urls.clone(), clients })
            }
            (None, None) => Err(ReshardError::Shard { location: dir.display().to_string(), cause: "no shards".into() }),
        }
    }

    /// Creates the new layout's empty shards (files in `dir`, or the databases
    /// `urls` name, which must not exist) with the tables the copy fills.
    pub async fn create(
        manifest: &Manifest,
        dir: &Path,
        to: ShardCount,
        password: Option<&str>,
    ) -> Result<Self, ReshardError> {
        match &manifest.postgres {
            None => {
                let files: Vec<PathBuf> = (0..to.get() as usize).map(|s| dir.join(super::shard_file(s))).collect();
                let conns = blocking(|| {
                    files.iter().map(|f| sqlite::create_target(f).map_err(sqlite_err(f))).collect::<Result<_, _>>()
                })?;
                Ok(Shards::Sqlite { files, conns })
            }
            Some(p) => {
                let mut clients = Vec::new();
                for (shard, url) in p.shard_urls.iter().enumerate() {
                    create_database(url, password).await?;
                    let client = connect(url, password, shard).await?;
                    postgres::create_target(&client, &manifest.dataset).await.map_err(pg_err(url))?;
                    clients.push(client);
                }
                Ok(Shards::Postgres { urls: p.shard_urls.clone(), clients })
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Shards::Sqlite { conns, .. } => conns.len(),
            Shards::Postgres { clients, .. } => clients.len(),
        }
    }

    pub fn location(&self, shard: usize) -> String {
        match self {
            Shards::Sqlite { files, .. } => files[shard].display().to_string(),
            Shards::Postgres { urls, .. } => urls[shard].clone(),
        }
    }

    fn pg_err(&self, shard: usize) -> impl Fn(tokio_postgres::Error) -> ReshardError + '_ {
        move |cause| ReshardError::Shard {
            location: self.location(shard),
            cause: cause.as_db_error().map_or(cause.to_string(), |d| d.message().to_owned()),
        }
    }

    fn err<E: std::fmt::Display>(&self, shard: usize) -> impl Fn(E) -> ReshardError + '_ {
        move |cause| ReshardError::Shard { location: self.location(shard), cause: cause.to_string() }
    }

    /// Per shard: the last event number handed out, and the newest audit record's time.
    pub async fn heads(&self) -> Result<(Vec<i64>, Vec<i64>), ReshardError> {
        let (mut seqs, mut times) = (Vec::new(), Vec::new());
        for shard in 0..self.len() {
            let (seq, time) = match self {
                Shards::Sqlite { conns, .. } => blocking(|| {
                    Ok::<_, rusqlite::Error>((
                        sqlite::sequence_head(&conns[shard])?,
                        sqlite::audit_head_time(&conns[shard])?,
                    ))
                })
                .map_err(self.err(shard))?,
                Shards::Postgres { clients, .. } => {
                    let c = &clients[shard];
                    (
                        postgres::sequence_head(c).await.map_err(self.pg_err(shard))?,
                        postgres::audit_head_time(c).await.map_err(self.pg_err(shard))?,
                    )
                }
            };
            seqs.push(seq);
            times.push(time);
        }
        Ok((seqs, times))
    }

    /// Every outbox relay's events on this (old) layout that it has not published,
    /// by checkpoint name: (flight, version) pairs, over every shard.
    pub async fn unpublished(&self) -> Result<BTreeMap<String, EventIds>, ReshardError> {
        let mut all: BTreeMap<String, EventIds> = BTreeMap::new();
        for shard in 0..self.len() {
            let found = match self {
                Shards::Sqlite { conns, .. } => {
                    blocking(|| sqlite::unpublished(&conns[shard], shard)).map_err(self.err(shard))?
                }
                Shards::Postgres { clients, .. } => {
                    postgres::unpublished(&clients[shard], shard).await.map_err(self.pg_err(shard))?
                }
            };
            for (name, events) in found {
                all.entry(name).or_default().extend(events);
            }
        }
        Ok(all)
    }

    /// Gives this (new) layout every relay checkpoint of `unpublished` (from the old
    /// layout's [`Shards::unpublished`]): on each shard, just before the first event
    /// the relay has not published, or at its newest event. Events after it that were
    /// published already are published again, which consumers drop (they deduplicate
    /// by flight and version); none is skipped.
    pub async fn carry_relay_checkpoints(
        &self,
        unpublished: &BTreeMap<String, EventIds>,
        to: ShardCount,
    ) -> Result<(), ReshardError> {
        for (name, events) in unpublished {
            for shard in 0..self.len() {
                let here: Vec<(i64, i64)> =
                    events.iter().copied().filter(|(id, _)| to.shard_for(*id) == shard).collect();
                match self {
                    Shards::Sqlite { conns, .. } => {
                        blocking(|| sqlite::carry_checkpoint(&conns[shard], shard, name, &here))
                            .map_err(self.err(shard))?
                    }
                    Shards::Postgres { clients, .. } => postgres::carry_checkpoint(&clients[shard], shard, name, &here)
                        .await
                        .map_err(self.pg_err(shard))?,
                };
            }
        }
        Ok(())
    }

    /// Copies old shard `shard`'s flights with ids in `from..to_id` into `new`.
    pub async fn copy_chunk(
        &self,
        shard: usize,
        from: i64,
        to_id: i64,
        to: ShardCount,
        new: &Shards,
    ) -> Result<(u64, u64), ReshardError> {
        match (self, new) {
            (Shards::Sqlite { conns, .. }, Shards::Sqlite { conns: targets, .. }) => {
                blocking(|| sqlite::copy_chunk(&conns[shard], from, to_id, to, targets)).map_err(self.err(shard))
            }
            (Shards::Postgres { clients, .. }, Shards::Postgres { clients: targets, .. }) => {
                postgres::copy_chunk(&clients[shard], from, to_id, to, targets).await.map_err(self.pg_err(shard))
            }
            _ => Err(mixed()),
        }
    }

    /// Copies old shard `shard`'s audit records from `since` into `new`.
    pub async fn copy_audit(
        &self,
        shard: usize,
        since: i64,
        to: ShardCount,
        new: &Shards,
    ) -> Result<i64, ReshardError> {
        match (self, new) {
            (Shards::Sqlite { conns, .. }, Shards::Sqlite { conns: targets, .. }) => {
                blocking(|| sqlite::copy_audit(&conns[shard], since, to, targets)).map_err(self.err(shard))
            }
            (Shards::Postgres { clients, .. }, Shards::Postgres { clients: targets, .. }) => {
                postgres::copy_audit(&clients[shard], since, to, targets).await.map_err(self.pg_err(shard))
            }
            _ => Err(mixed()),
        }
    }

    /// Readies copied shards for serving.
    pub async fn finish(&self, synchronous: &str) -> Result<(), ReshardError> {
        for shard in 0..self.len() {
            match self {
                Shards::Sqlite { conns, .. } => {
                    blocking(|| sqlite::finish_target(&conns[shard], synchronous)).map_err(self.err(shard))?
                }
                Shards::Postgres { clients, .. } => {
                    postgres::finish_target(&clients[shard]).await.map_err(self.pg_err(shard))?
                }
            }
        }
        Ok(())
    }

    /// Copies what old shard `shard` numbered after `cursor` into `new`; `held`: in
    /// the switch's transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn catch_up(
        &self,
        shard: usize,
        held: bool,
        cursor: i64,
        audit_since: i64,
        to: ShardCount,
        new: &Shards,
    ) -> Result<CaughtUp, ReshardError> {
        match (self, new) {
            (Shards::Sqlite { conns, .. }, Shards::Sqlite { conns: targets, .. }) => {
                blocking(|| sqlite::catch_up(&conns[shard], cursor, audit_since, to, targets)).map_err(self.err(shard))
            }
            (Shards::Postgres { clients, .. }, Shards::Postgres { clients: targets, .. }) => {
                postgres::catch_up(&clients[shard], held, cursor, audit_since, to, targets)
                    .await
                    .map_err(self.err(shard))
            }
            _ => Err(mixed()),
        }
    }

    /// Compares flights `from..to_id` of this (old) layout with `new`.
    pub async fn compare_chunk(
        &self,
        new: &Shards,
        from: i64,
        to_id: i64,
        to: ShardCount,
        moving: &mut BTreeSet<i64>,
    ) -> Result<u64, Mismatch> {
        match (self, new) {
            (Shards::Sqlite { conns, .. }, Shards::Sqlite { conns: targets, .. }) => {
                blocking(|| sqlite::compare_chunk(conns, targets, from, to_id, to, moving))
            }
            (Shards::Postgres { clients, .. }, Shards::Postgres { clients: targets, .. }) => {
                postgres::compare_chunk(clients, targets, from, to_id, to, moving).await
            }
            _ => Err(Mismatch::Read(mixed().to_string())),
        }
    }

    /// Compares the given flights; returns those still being written.
    pub async fn compare_flights(
        &self,
        new: &Shards,
        from: ShardCount,
        to: ShardCount,
        ids: &BTreeSet<i64>,
    ) -> Result<BTreeSet<i64>, Mismatch> {
        match (self, new) {
            (Shards::Sqlite { conns, .. }, Shards::Sqlite { conns: targets, .. }) => {
                blocking(|| sqlite::compare_flights(conns, targets, from, to, ids))
            }
            (Shards::Postgres { clients, .. }, Shards::Postgres { clients: targets, .. }) => {
                postgres::compare_flights(clients, targets, from, to, ids).await
            }
            _ => Err(Mismatch::Read(mixed().to_string())),
        }
    }

    pub async fn audit_heads(&self) -> Result<AuditHeads, Mismatch> {
        match self {
            Shards::Sqlite { conns, .. } => blocking(|| sqlite::audit_heads(conns)),
            Shards::Postgres { clients, .. } => postgres::audit_heads(clients).await,
        }
    }

    /// Pauses writes on every shard (the switch): each holds its write lock in an
    /// open transaction until [`Shards::fence_and_commit`].
    pub async fn pause(&self) -> Result<(), ReshardError> {
        for shard in 0..self.len() {
            match self {
                Shards::Sqlite { conns, .. } => {
                    blocking(|| conns[shard].execute_batch("BEGIN IMMEDIATE")).map_err(self.err(shard))?
                }
                Shards::Postgres { clients, .. } => {
                    postgres::pause(&clients[shard]).await.map_err(self.pg_err(shard))?
                }
            }
        }
        Ok(())
    }

    /// Fences every shard against writes and commits the paused transactions.
    pub async fn fence_and_commit(&self) -> Result<(), ReshardError> {
        for shard in 0..self.len() {
            match self {
                Shards::Sqlite { conns, .. } => blocking(|| {
                    sqlite::FENCE.iter().try_for_each(|f| conns[shard].execute_batch(f))?;
                    conns[shard].execute_batch("COMMIT")
                })
                .map_err(self.err(shard))?,
                Shards::Postgres { clients, .. } => {
                    postgres::fence_and_commit(&clients[shard]).await.map_err(self.pg_err(shard))?
                }
            }
        }
        Ok(())
    }

    /// Takes every fence down (an interrupted switch's, or none).
    pub async fn unfence(&self) -> Result<(), ReshardError> {
        for shard in 0..self.len() {
            match self {
                Shards::Sqlite { conns, .. } => {
                    blocking(|| conns[shard].execute_batch(sqlite::UNFENCE)).map_err(self.err(shard))?
                }
                Shards::Postgres { clients, .. } => {
                    clients[shard].batch_execute(postgres::UNFENCE).await.map_err(self.pg_err(shard))?
                }
            }
        }
        Ok(())
    }
}

/// Takes the fences down on the shards a manifest names, holding no SQLite connection
/// across an await (so a server's task can do it). Returns how many shards had one.
pub(super) async fn unfence(dir: &Path, manifest: &Manifest, password: Option<&str>) -> Result<usize, ReshardError> {
    let mut fenced = 0;
    if let Some(s) = &manifest.sqlite {
        for file in s.files.iter().map(|f| dir.join(f)) {
            let conn = sqlite::open_old(&file).map_err(sqlite_err(&file))?;
            let found: i64 = conn.query_row(sqlite::FENCED, [], |r| r.get(0)).map_err(sqlite_err(&file))?;
            conn.execute_batch(sqlite::UNFENCE).map_err(sqlite_err(&file))?;
            fenced += usize::from(found > 0);
        }
    }
    if let Some(p) = &manifest.postgres {
        for (shard, url) in p.shard_urls.iter().enumerate() {
            let client = connect(url, password, shard).await?;
            let found: i64 = client.query_one(postgres::FENCED, &[]).await.map_err(pg_err(url))?.get(0);
            client.batch_execute(postgres::UNFENCE).await.map_err(pg_err(url))?;
            fenced += usize::from(found > 0);
        }
    }
    Ok(fenced)
}

fn mixed() -> ReshardError {
    ReshardError::Shard { location: "the two layouts".into(), cause: "are on different backends".into() }
}

async fn connect(url: &str, password: Option<&str>, shard: usize) -> Result<Client, ReshardError> {
    crate::seed::connect(url, password, Some(shard)).await.map_err(connect_err(url))
}

/// A connection failure, with the server's own message when it gave one.
fn connect_err(url: &str) -> impl Fn(crate::seed::SeedError) -> ReshardError + '_ {
    move |e| {
        let server = match &e {
            crate::seed::SeedError::Postgres { cause, .. } | crate::seed::SeedError::PostgresAdmin { cause, .. } => {
                cause.as_db_error().map(|d| d.message().to_owned())
            }
            _ => None,
        };
        ReshardError::Shard { location: url.to_owned(), cause: server.unwrap_or_else(|| e.to_string()) }
    }
}

/// The database a new shard's URL names, on its server; it must not exist.
async fn create_database(url: &str, password: Option<&str>) -> Result<(), ReshardError> {
    let (admin, db) = admin_of(url, password).await?;
    let err = pg_err(url);
    if admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db]).await.map_err(&err)?.is_some() {
        return Err(ReshardError::TargetExists(PathBuf::from(url)));
    }
    admin.batch_execute(&format!("CREATE DATABASE {}", crate::seed::quote_ident(&db))).await.map_err(err)
}

/// Drops the database a new shard's URL names, if it exists.
pub(super) async fn drop_database(url: &str, password: Option<&str>) -> Result<(), ReshardError> {
    let (admin, db) = admin_of(url, password).await?;
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", crate::seed::quote_ident(&db));
    admin.batch_execute(&sql).await.map_err(pg_err(url))
}

/// Whether the database a URL names exists.
pub(super) async fn database_exists(url: &str, password: Option<&str>) -> Result<bool, ReshardError> {
    let (admin, db) = admin_of(url, password).await?;
    let found = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db]).await.map_err(pg_err(url))?;
    Ok(found.is_some())
}

async fn admin_of(url: &str, password: Option<&str>) -> Result<(Client, String), ReshardError> {
    let db = database_name(url);
    let admin = crate::seed::connect(&crate::seed::replace_dbname(url, "postgres"), password, None)
        .await
        .map_err(connect_err(url))?;
    Ok((admin, db))
}

/// The database name in a URL's path.
pub(super) fn database_name(url: &str) -> String {
    let head = url.split('?').next().unwrap_or(url);
    let after_scheme = head.split_once("://").map_or(head, |(_, rest)| rest);
    after_scheme.split_once('/').map_or("", |(_, db)| db).to_owned()
}

/// The new layout's shard URLs: new shard `j` on old shard `j mod n`'s server, in a
/// database named after old shard 0's with the layout's generation.
pub(super) fn new_urls(old: &[String], layout: u32, to: ShardCount) -> Vec<String> {
    // `name_3` and `name_l2_3` (a layout a reshard made) both give `name`.
    let first = database_name(&old[0]);
    let strip = |s: &str, prefix: &str| -> Option<String> {
        let (stem, n) = s.rsplit_once('_')?;
        let digits = n.strip_prefix(prefix)?;
        (!stem.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| stem.to_owned())
    };
    let stem = strip(&first, "").unwrap_or_else(|| first.clone());
    let stem = strip(&stem, "l").unwrap_or(stem);
    (0..to.get() as usize)
        .map(|j| crate::seed::replace_dbname(&old[j % old.len()], &format!("{stem}_l{layout}_{j}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_shards_are_named_after_the_old_and_spread_over_their_servers() {
        let old = vec![
            "postgres://postgres@127.0.0.1:5432/flightbench_0".to_owned(),
            "postgres://postgres@10.0.0.2:5432/flightbench_1?sslmode=require".to_owned(),
        ];
        let new = new_urls(&old, 2, ShardCount::new(3).unwrap());
        assert_eq!(
            new,
            [
                "postgres://postgres@127.0.0.1:5432/flightbench_l2_0",
                "postgres://postgres@10.0.0.2:5432/flightbench_l2_1?sslmode=require",
                "postgres://postgres@127.0.0.1:5432/flightbench_l2_2",
            ]
        );
        assert_eq!(database_name(&new[1]), "flightbench_l2_1");
        let odd = new_urls(&["postgres://h/shardA".to_owned()], 3, ShardCount::new(1).unwrap());
        assert_eq!(odd, ["postgres://h/shardA_l3_0"]);
        let again = new_urls(&new, 3, ShardCount::new(1).unwrap());
        assert_eq!(again, ["postgres://postgres@127.0.0.1:5432/flightbench_l3_0"]);
    }
}
