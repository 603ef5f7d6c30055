//! `flightbench reshard --to N`: moves a dataset onto another shard count while `serve`
//! keeps serving it, the way Vitess' Reshard and the Citus rebalancer do: copy, catch
//! up, verify, then switch with a short write pause.
//!
//! 1. **Copy.** The new layout is built beside the old one (SQLite files in
//!    `layout-<v>/`, or new PostgreSQL databases, `shards::new_urls`), with its own
//!    manifest in `layout-<v>/`, from each old shard's rows in chunks of flight ids. Before the copy
//!    starts, each old shard's event number (`event_sequence`) is noted: every write
//!    after it is the catch-up's.
//! 2. **Catch up.** Each old shard's events numbered after its cursor are copied, with
//!    their flights' status rows and the recent audit records, in rounds until a round
//!    finds few. The event streams are the source of truth: a flight gets the events
//!    past its version in the new layout, so a round repeated after a crash copies
//!    nothing twice. The read models are built on the new layout from its events.
//! 3. **Verify.** Every flight, chunk by chunk: on the new shard its id hashes to,
//!    once, with the same rows (a BLAKE3 digest of its flight, status and events). A
//!    flight written since the last round differs in version and is compared again in
//!    the switch.
//! 4. **Switch.** The old shards' write locks are taken (writes pause; on
//!    PostgreSQL, an EXCLUSIVE lock on `flight_status`), the last
//!    writes are copied, the flights written since the verify and every audit chain's
//!    head are compared, a trigger that refuses writes (the fence) is committed on
//!    every old shard, and the manifest moves to the new layout with its generation
//!    bumped (`Manifest::layout`), by an atomic rename. A server's write that meets
//!    the fence waits for the new manifest and is retried on the new layout
//!    (`http::follow`). The pause is measured and reported. Before the fence, each
//!    outbox relay's checkpoint is carried to the new layout, just before the first
//!    event it has not published (`Shards::carry_relay_checkpoints`), so a relay that
//!    moves to the new layout (`bus::relay`) skips nothing.
//!
//! Until the switch the old layout is authoritative and untouched. A crash or
//! `--abort` at any point leaves it serving: the next `reshard` resumes from the
//! cursors in `reshard.json` (or starts the copy again), removing a fence an
//! interrupted switch left behind; `--abort` removes the fence and the new layout.
//! One reshard at a time: `reshard.lock` is held (`flock`) for the whole run.
//!
//! Jump hashing (`routing`) moves a flight only if its shard changes: growing from n
//! to m shards, a flight either stays on its shard or moves to one of the new ones.
//! The copy reads each old shard once and writes each row to the shard it now hashes
//! to; the old layout is kept, fenced, for inspection until the user removes it.
//! (Copying whole shards rather than only the moving flights keeps the old layout
//! untouched until the switch, and lets the same steps shrink a dataset.)

mod phases;
mod postgres;
mod shards;
mod sql;
mod sqlite;
mod state;

use state::{Phase, State, hold, lock};
pub use state::{Release, release_interrupted_switch, set_priority};

use crate::dataset::{MANIFEST_FILE, Manifest, ManifestError};
use crate::projection::ProjectionError;
use crate::routing::ShardCount;
use crate::store::StoreConfig;
use serde::{Deserialize, Serialize};
use shards::Shards;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const STATE_FILE: &str = "reshard.json";
pub const LOCK_FILE: &str = "reshard.lock";
/// The text the fence raises; a server that meets it follows the layout.
pub const RETIRED: &str = "this shard layout was retired by reshard";
/// The environment variable the resharding tests set to stop a run in a phase (and
/// then kill it there): `copy`, `catch-up`, `verify` or `switch`.
pub const HOLD_ENV: &str = "FLIGHTBENCH_RESHARD_HOLD";

/// How far back each catch-up re-reads the audit log, by the records' own times: a
/// record is stamped before its transaction commits, and a commit waits at most the
/// busy timeout (5 s) for a SQLite shard's lock. Re-reading is harmless (records
/// already copied are skipped).
const AUDIT_SLACK_MICROS: i64 = 60_000_000;

/// How to reshard.
#[derive(Debug, Clone)]
pub struct ReshardConfig {
    pub dir: PathBuf,
    /// `None` with `abort`.
    pub to: Option<ShardCount>,
    pub abort: bool,
    pub store: StoreConfig,
    pub progress: bool,
    /// The nice value the process runs at (`set_priority`); the switch runs at 0 if
    /// it may.
    pub nice: i32,
}

/// What a reshard did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReshardReport {
    pub backend: String,
    pub from: u32,
    pub to: u32,
    pub layout: u32,
    pub resumed: bool,
    pub flights: u64,
    pub events_copied: u64,
    pub copy_seconds: f64,
    pub catch_up_rounds: u32,
    pub events_caught_up: u64,
    pub catch_up_seconds: f64,
    /// Building the new layout's read models from its events.
    pub read_models_seconds: f64,
    pub flights_verified: u64,
    pub verify_seconds: f64,
    /// Writes waited this long: from the first old shard's lock to the new manifest.
    pub pause_ms: f64,
    /// Where the pause went.
    #[serde(default)]
    pub pause_steps: PauseSteps,
    pub seconds: f64,
    /// The old layout's shards, fenced, kept until the user removes them.
    pub old_layout: Vec<String>,
}

/// The write pause, step by step (milliseconds): what to shorten if it is too long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PauseSteps {
    /// Taking every old shard's write lock (waiting for the appends under way).
    pub lock_ms: f64,
    /// Copying what was written since the last catch-up round.
    pub catch_up_ms: f64,
    /// Comparing the flights written since the verify.
    pub compare_ms: f64,
    /// Comparing every audit chain's length and last hash.
    pub audit_ms: f64,
    /// Carrying the outbox relays' checkpoints to the new layout.
    #[serde(default)]
    pub relay_ms: f64,
    /// Saving the run's state and committing the fences (which ends the old
    /// shards' transactions).
    pub fence_ms: f64,
    /// Writing the new manifest.
    pub manifest_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReshardError {
    #[error("the dataset already has {0} shards; pass another --to")]
    SameCount(u32),
    #[error("pass --to N (the new shard count) or --abort")]
    NoTarget,
    #[error(
        "another `flightbench reshard` holds {0}; wait for it to finish, or stop it and run `flightbench reshard --abort`"
    )]
    Locked(PathBuf),
    #[error("{0} already exists and no reshard of this dataset wrote it; move it away first")]
    TargetExists(PathBuf),
    #[error(
        "a reshard to {found} shards was interrupted; run `flightbench reshard --to {found}` to resume it, or `--abort`"
    )]
    OtherTarget { found: u32 },
    #[error("no reshard of {0} is under way; nothing to abort")]
    NothingToAbort(PathBuf),
    #[error(
        "verification failed: {0}; the old layout is unchanged and still serves (`reshard --abort` removes the new one)"
    )]
    Verify(Mismatch),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("shard {location}: {cause}")]
    Shard { location: String, cause: String },
    #[error("building the new layout's read models: {0}")]
    Projection(#[from] ProjectionError),
    #[error("opening the new layout: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Where the two layouts differ.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error("flight {id} {problem}")]
    Flight { id: i64, problem: String },
    #[error("audit chain {chain} {problem}")]
    Audit { chain: String, problem: String },
    #[error("reading for the comparison: {0}")]
    Read(String),
}

impl Mismatch {
    fn read(e: rusqlite::Error) -> Self {
        Mismatch::Read(e.to_string())
    }
}

impl crate::failure::Classify for ReshardError {
    fn failure(&self) -> crate::failure::Failure {
        use crate::failure::Failure;
        match self {
            ReshardError::SameCount(_)
            | ReshardError::NoTarget
            | ReshardError::Locked(_)
            | ReshardError::TargetExists(_)
            | ReshardError::OtherTarget { .. }
            | ReshardError::NothingToAbort(_) => Failure::Usage,
            ReshardError::Manifest(_) => Failure::BadInput,
            ReshardError::Io { cause, .. } => crate::failure::Classify::failure(cause),
            ReshardError::Verify(_) | ReshardError::Shard { .. } | ReshardError::Projection(_) => Failure::Internal,
            ReshardError::Store(e) => crate::failure::Classify::failure(e),
        }
    }
}

/// What one catch-up of one old shard did.
pub(super) struct CaughtUp {
    /// The old shard's event number read up to.
    pub cursor: i64,
    /// The newest audit record time seen.
    pub audit_since: i64,
    pub events: u64,
    pub flights: BTreeSet<i64>,
}

/// Events by flight id and version, in commit order.
pub(super) type EventIds = Vec<(i64, i64)>;

/// Per audit chain, over a layout's shards: records, last position, last hash. The
/// hash links the whole chain, so equal heads and lengths mean equal chains.
pub(super) type AuditHeads = BTreeMap<String, (i64, i64, String)>;

fn add_head(heads: &mut AuditHeads, chain: String, count: i64, last: i64, hash: String) {
    let head = heads.entry(chain).or_insert((0, 0, String::new()));
    head.0 += count;
    if last > head.1 {
        (head.1, head.2) = (last, hash);
    }
}

/// A layout's flights read from one shard: id → (version, BLAKE3 digest of its flight,
/// status and events rows).
type Bundles = BTreeMap<i64, (i64, [u8; 32])>;

/// One chunk of flight ids read from every shard of both layouts (`old` and `new`, a
/// map per shard) compared: every flight must be on the new shard it hashes to, once,
/// and equal to the old one (`compare_bundles`).
fn compare_gathered(
    old: Vec<Bundles>,
    new: Vec<Bundles>,
    to: ShardCount,
    moving: &mut BTreeSet<i64>,
) -> Result<u64, Mismatch> {
    let before = old.into_iter().flatten().collect();
    let mut after = BTreeMap::new();
    for (shard, bundles) in new.into_iter().enumerate() {
        for (id, bundle) in bundles {
            if to.shard_for(id) != shard {
                return Err(Mismatch::Flight { id, problem: format!("is on new shard {shard}, not its own") });
            }
            after.insert(id, bundle);
        }
    }
    compare_bundles(before, after, moving)
}

/// One chunk's flights in both layouts (id → version and digest) compared: every flight
/// in both, equal; one whose version differs is being written (the switch compares it
/// again with writes paused) and goes to `moving`.
fn compare_bundles(before: Bundles, mut after: Bundles, moving: &mut BTreeSet<i64>) -> Result<u64, Mismatch> {
    for (id, (version, hash)) in &before {
        match after.remove(id) {
            None => return Err(Mismatch::Flight { id: *id, problem: "is missing from the new layout".into() }),
            Some((_, h)) if h == *hash => {}
            Some((v, _)) if v != *version => {
                moving.insert(*id);
            }
            Some(_) => return Err(Mismatch::Flight { id: *id, problem: "differs between the layouts".into() }),
        }
    }
    match after.into_keys().next() {
        Some(id) => Err(Mismatch::Flight { id, problem: "is in the new layout but not in the old".into() }),
        None => Ok(before.len() as u64),
    }
}

/// The new shard an audit record belongs on: a flight's chain with the flight, a
/// shard's chain on the shard of that number (or its remainder, when shrinking), any
/// other chain (the global one) with the flight the record is about.
pub(crate) fn audit_home(chain: &str, target: &str, to: ShardCount) -> usize {
    if let Some(id) = chain.strip_prefix("flight-").and_then(|s| s.parse::<i64>().ok()) {
        return to.shard_for(id);
    }
    if let Some(shard) = chain.strip_prefix("shard-").and_then(|s| s.parse::<usize>().ok()) {
        return shard % to.get() as usize;
    }
    target.strip_prefix("flight/").and_then(|s| s.parse::<i64>().ok()).map_or(0, |id| to.shard_for(id))
}

/// Whether a store error is a write that met a retired layout's fence. The fence's
/// text is in the driver's error or one of its sources (tokio-postgres shows only
/// "db error" and keeps the server's message in the source).
pub fn is_retired(error: &crate::store::StoreError) -> bool {
    let crate::store::StoreError::Database { cause, .. } = error else { return false };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(cause.as_ref());
    while let Some(e) = next {
        if e.to_string().contains(RETIRED) {
            return true;
        }
        next = e.source();
    }
    false
}

fn layout_dir(dir: &Path, layout: u32) -> PathBuf {
    dir.join(format!("layout-{layout}"))
}

fn shard_file(shard: usize) -> String {
    format!("shard-{shard:03}.sqlite3")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReshardError + '_ {
    move |cause| ReshardError::Io { path: path.to_owned(), cause }
}

/// The new layout's manifest: the old one with the new count, generation and shards.
fn staged_manifest(manifest: &Manifest, layout: u32, to: ShardCount) -> Manifest {
    let mut staged = manifest.clone();
    staged.shards = to;
    staged.layout = layout;
    if let Some(s) = staged.sqlite.as_mut() {
        s.files = (0..to.get() as usize).map(shard_file).collect();
    }
    if let Some(p) = staged.postgres.as_mut() {
        p.shard_urls = shards::new_urls(&p.shard_urls, layout, to);
    }
    staged
}

/// Removes a new layout: its directory and, on PostgreSQL, its databases.
async fn remove_layout(dir: &Path, staged: &Manifest, password: Option<&str>) -> Result<(), ReshardError> {
    if let Some(p) = &staged.postgres {
        for url in &p.shard_urls {
            shards::drop_database(url, password).await?;
        }
    }
    let new_dir = layout_dir(dir, staged.layout);
    match std::fs::remove_dir_all(&new_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ReshardError::Io { path: new_dir, cause: e }),
        _ => Ok(()),
    }
}

/// Whether anything of a new layout exists already (its directory or a database).
async fn layout_exists(dir: &Path, staged: &Manifest, password: Option<&str>) -> Result<Option<PathBuf>, ReshardError> {
    let new_dir = layout_dir(dir, staged.layout);
    if new_dir.exists() {
        return Ok(Some(new_dir));
    }
    if let Some(p) = &staged.postgres {
        for url in &p.shard_urls {
            if shards::database_exists(url, password).await? {
                return Ok(Some(PathBuf::from(url)));
            }
        }
    }
    Ok(None)
}

/// Runs (or resumes, or aborts) a reshard of the dataset in `config.dir`.
pub async fn reshard(config: &ReshardConfig) -> Result<ReshardReport, ReshardError> {
    let started = Instant::now();
    let dir = &config.dir;
    let password = config.store.pg_password.as_deref();
    let manifest = Manifest::load(dir)?;
    let lock = lock(dir)?;
    let mut state = State::load(dir)?;
    // A run that died after moving the manifest is finished: its state is stale.
    if state.as_ref().is_some_and(|s| manifest.layout >= s.layout) {
        State::remove(dir)?;
        state = None;
    }
    let old = Shards::open(dir, &manifest, password).await?;
    let mut report = ReshardReport {
        backend: manifest.backend.as_str().to_owned(),
        from: manifest.shards.get(),
        flights: manifest.counts.flights,
        layout: manifest.layout + 1,
        old_layout: shards::locations(dir, &manifest),
        ..ReshardReport::default()
    };
    if config.abort {
        let Some(state) = state else { return Err(ReshardError::NothingToAbort(dir.clone())) };
        let to = ShardCount::new(i64::from(state.to)).map_err(|e| ReshardError::Shard {
            location: State::path(dir).display().to_string(),
            cause: e.to_string(),
        })?;
        old.unfence().await?;
        remove_layout(dir, &staged_manifest(&manifest, state.layout, to), password).await?;
        State::remove(dir)?;
        report.to = state.to;
        return Ok(report);
    }
    let to = config.to.ok_or(ReshardError::NoTarget)?;
    report.to = to.get();
    // A state file edited or left from another dataset must not be resumed from: its
    // cursors are indexed by old shard.
    if let Some(s) = state
        .as_ref()
        .filter(|s| s.from != manifest.shards.get() || s.cursors.len() != old.len() || s.audit_since.len() != old.len())
    {
        let problem = format!(
            "names {} shards and {} cursors, but the dataset has {} shards; run `flightbench reshard --abort`",
            s.from,
            s.cursors.len(),
            old.len()
        );
        return Err(ReshardError::Io { path: State::path(dir), cause: std::io::Error::other(problem) });
    }
    let staged = staged_manifest(&manifest, manifest.layout + 1, to);
    let resumed = match &state {
        Some(s) if s.to != to.get() => return Err(ReshardError::OtherTarget { found: s.to }),
        Some(s) => {
            // An interrupted switch may have fenced some old shards: they serve again
            // until this run's switch.
            old.unfence().await?;
            s.phase > Phase::Copy
        }
        None if to == manifest.shards => return Err(ReshardError::SameCount(to.get())),
        None => false,
    };
    report.resumed = resumed;
    let (mut state, new) = match state {
        Some(s) if resumed => (s, Shards::open(&layout_dir(dir, staged.layout), &staged, password).await?),
        interrupted => {
            if interrupted.is_some() {
                remove_layout(dir, &staged, password).await?;
            } else if let Some(taken) = layout_exists(dir, &staged, password).await? {
                return Err(ReshardError::TargetExists(taken));
            }
            let copy_started = Instant::now();
            let copied = phases::copy(config, &manifest, &staged, &old).await?;
            report.events_copied = copied.1;
            report.copy_seconds = copy_started.elapsed().as_secs_f64();
            copied.0
        }
    };
    let catch_up_started = Instant::now();
    let (rounds, events) = phases::catch_up_rounds(dir, &mut state, &old, &new, to).await?;
    report.catch_up_rounds = rounds;
    report.events_caught_up = events;
    report.catch_up_seconds = catch_up_started.elapsed().as_secs_f64();
    let projecting_started = Instant::now();
    phases::build_read_models(&layout_dir(dir, staged.layout), &config.store).await?;
    report.read_models_seconds = projecting_started.elapsed().as_secs_f64();

    let verify_started = Instant::now();
    let (verified, moving) = phases::verify(&old, &new, manifest.counts.flights, to, config.progress).await?;
    report.flights_verified = verified;
    report.verify_seconds = verify_started.elapsed().as_secs_f64();

    let moving = phases::settle(dir, &mut state, &manifest, &old, &new, to, moving).await?;
    // Writes wait for the switch: at a low priority it would be the server's writers
    // that wait longest (360 ms measured at 19 beside a busy server).
    let raised = config.nice > 0 && set_priority(0).is_ok();
    let pause = phases::switch(dir, &mut state, &manifest, &staged, &old, &new, moving).await;
    if raised {
        let _ = set_priority(config.nice);
    }
    let (pause, steps) = pause?;
    report.pause_ms = pause.as_secs_f64() * 1e3;
    report.pause_steps = steps;
    report.seconds = started.elapsed().as_secs_f64();
    State::remove(dir)?;
    drop(lock);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_records_go_with_their_chains() {
        let to = ShardCount::new(16).unwrap();
        assert_eq!(audit_home("flight-42", "flight/42", to), to.shard_for(42));
        assert_eq!(audit_home("shard-3", "flight/42", to), 3);
        assert_eq!(audit_home("shard-11", "flight/42", ShardCount::new(8).unwrap()), 3);
        assert_eq!(audit_home("global", "flight/77", to), to.shard_for(77));
        assert_eq!(audit_home("global", "subject/x", to), 0);
    }

    #[test]
    fn a_flight_being_written_is_moving_and_any_other_difference_is_a_mismatch() {
        let bundle = |v: i64, h: u8| (v, [h; 32]);
        let before = BTreeMap::from([(1, bundle(3, 1)), (2, bundle(4, 2)), (3, bundle(1, 3))]);
        let mut moving = BTreeSet::new();
        let after = BTreeMap::from([(1, bundle(3, 1)), (2, bundle(5, 9)), (3, bundle(1, 3))]);
        assert_eq!(compare_bundles(before.clone(), after, &mut moving).unwrap(), 3);
        assert_eq!(moving, BTreeSet::from([2]));
        let changed = BTreeMap::from([(1, bundle(3, 7)), (2, bundle(4, 2)), (3, bundle(1, 3))]);
        assert!(matches!(compare_bundles(before.clone(), changed, &mut moving), Err(Mismatch::Flight { id: 1, .. })));
        let missing = BTreeMap::from([(1, bundle(3, 1)), (2, bundle(4, 2))]);
        assert!(matches!(compare_bundles(before.clone(), missing, &mut moving), Err(Mismatch::Flight { id: 3, .. })));
        let extra = BTreeMap::from([(1, bundle(3, 1)), (2, bundle(4, 2)), (3, bundle(1, 3)), (4, bundle(1, 4))]);
        assert!(matches!(compare_bundles(before, extra, &mut moving), Err(Mismatch::Flight { id: 4, .. })));
    }
}
