//! Bulk-loading SQLite shard files.

use super::{SeedError, event_rows, shard_ids, total};
use crate::dataset::{Counts, Generator};
use crate::routing::ShardCount;
use crate::store::Durability;
use crate::store::row::{FlightRow, StatusRow, event_columns, flight_columns, status_columns};
use crate::store::schema::{INDEXES, NUMBER_EVENTS, SQLITE_AUDIT, SQLITE_SEQUENCING, SQLITE_TABLES, projection_tables};
use indicatif::ProgressBar;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Flights per transaction: large enough that commit cost vanishes, small enough that
/// progress moves smoothly.
const BATCH: usize = 20_000;

pub(super) fn file_name(shard: usize) -> String {
    format!("shard-{shard:03}.sqlite3")
}

/// Seeds every shard with at most one thread per core; returns counts and file names.
pub(super) fn seed_all(
    dir: &Path,
    generator: &Generator,
    shards: ShardCount,
    durability: Durability,
    progress: &ProgressBar,
) -> Result<(Counts, Vec<String>), SeedError> {
    let count = shards.get() as usize;
    let files: Vec<String> = (0..count).map(file_name).collect();
    remove_stale_files(dir)?;
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(count);
    let results: Vec<Result<Vec<Counts>, SeedError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let shard = next.fetch_add(1, Ordering::Relaxed);
                        if shard >= count {
                            return Ok(done);
                        }
                        let path = dir.join(&files[shard]);
                        let (counts, mode) = seed_shard(&path, generator, shards, shard, durability, progress)
                            .map_err(|cause| SeedError::Sqlite { shard, path: path.clone(), cause })?;
                        if mode != "wal" {
                            let problem =
                                format!("SQLite shard {shard} ({}): journal_mode is {mode}, not wal", path.display());
                            return Err(SeedError::Config(problem));
                        }
                        done.push(counts);
                    }
                })
            })
            .collect();
        // A panicking worker is a bug; surface it rather than report a partial seed.
        handles.into_iter().map(|h| h.join().expect("seed worker panicked")).collect()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok((total(all), files))
}

/// Removes shard files (and their WAL/SHM companions) left by an earlier dataset, and
/// the layouts `reshard` wrote (`layout-<n>/`), so a dataset with fewer shards leaves
/// no strays behind.
fn remove_stale_files(dir: &Path) -> Result<(), SeedError> {
    let entries = std::fs::read_dir(dir).map_err(|cause| SeedError::Io { path: dir.to_owned(), cause })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("shard-") && (name.contains(".sqlite3")) {
            let path: PathBuf = entry.path();
            std::fs::remove_file(&path).map_err(|cause| SeedError::Io { path, cause })?;
        } else if name.starts_with("layout-") && entry.path().join(crate::dataset::MANIFEST_FILE).exists() {
            let path: PathBuf = entry.path();
            std::fs::remove_dir_all(&path).map_err(|cause| SeedError::Io { path, cause })?;
        } else if name == crate::reshard::STATE_FILE {
            let path: PathBuf = entry.path();
            std::fs::remove_file(&path).map_err(|cause| SeedError::Io { path, cause })?;
        }
    }
    Ok(())
}

fn seed_shard(
    path: &Path,
    generator: &Generator,
    shards: ShardCount,
    shard: usize,
    durability: Durability,
    progress: &ProgressBar,
) -> rusqlite::Result<(Counts, String)> {
    let mut conn = Connection::open(path)?;
    // Bulk-load settings: no rollback journal and no syncs while loading. A crash now
    // can only damage a file that has no manifest yet, which no command will open.
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
    )?;
    for ddl in SQLITE_TABLES {
        conn.execute(ddl, [])?;
    }
    let mut counts = Counts { flights: 0, events: 0 };
    let mut ids = shard_ids(generator.spec(), shards, shard).peekable();
    while ids.peek().is_some() {
        let tx = conn.transaction()?;
        {
            let mut flight = tx.prepare_cached(concat!(
                "INSERT INTO flights (",
                flight_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?;
            let mut status = tx.prepare_cached(concat!(
                "INSERT INTO flight_status (",
                status_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?;
            let mut event = tx.prepare_cached(concat!(
                "INSERT INTO delay_events (",
                event_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?;
            let mut in_batch = 0;
            for id in ids.by_ref().take(BATCH) {
                let g = generator.flight(id);
                flight.execute(&FlightRow::new(&g.flight).sqlite_params()[..])?;
                status.execute(&StatusRow::new(id, &g.status).sqlite_params()[..])?;
                for row in event_rows(generator.spec(), &g) {
                    event.execute(&row.sqlite_params()[..])?;
                }
                counts.flights += 1;
                counts.events += g.events.len() as u64;
                in_batch += 1;
            }
            progress.inc(in_batch);
        }
        tx.commit()?;
    }
    conn.execute(NUMBER_EVENTS, [])?;
    for ddl in INDEXES.iter().chain(SQLITE_SEQUENCING).chain(SQLITE_AUDIT) {
        conn.execute_batch(ddl)?;
    }
    for ddl in projection_tables() {
        conn.execute_batch(&ddl)?;
    }
    // Serving settings, persistent in the file: WAL, and statistics for the planner.
    conn.execute_batch("ANALYZE; PRAGMA locking_mode = NORMAL;")?;
    crate::store::drop_planner_samples(&conn)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", durability.pragma())?;
    Ok((counts, mode))
}
