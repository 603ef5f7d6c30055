//! The four phases of a reshard (see `mod.rs`), written once against `Shards`.

use super::shards::Shards;
use super::{MANIFEST_FILE, Mismatch, PauseSteps, Phase, ReshardConfig, ReshardError, State, hold, io, layout_dir};
use crate::dataset::Manifest;
use crate::projection::{Projector, ProjectorConfig};
use crate::routing::ShardCount;
use crate::store::{Store, StoreConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flight ids per copy (and comparison) step: each target commits once per chunk.
const CHUNK: i64 = 20_000;

/// Catch-up rounds stop once a round copies fewer events than this (the switch copies
/// the rest with writes paused), or after [`MAX_ROUNDS`].
const QUIET_ROUND: u64 = 500;
const MAX_ROUNDS: u32 = 20;

pub(super) fn bar(progress: bool, len: u64, what: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    // Cannot fail: the template is a literal (checked by a test).
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{human_pos}}/{{human_len}} flights ({{per_sec}}, eta {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Phase 1: the new layout's shards, filled from the old ones and finished for
/// serving, and its manifest in `layout-<v>/`. Returns the state and the events
/// copied.
pub(super) async fn copy(
    config: &ReshardConfig,
    manifest: &Manifest,
    staged: &Manifest,
    old: &Shards,
) -> Result<((State, Shards), u64), ReshardError> {
    let new_dir = layout_dir(&config.dir, staged.layout);
    std::fs::create_dir_all(&new_dir).map_err(io(&new_dir))?;
    // Cursors first: whatever is written from here on is the catch-up's.
    let (cursors, audit_since) = old.heads().await?;
    let state = State {
        layout: staged.layout,
        from: manifest.shards.get(),
        to: staged.shards.get(),
        phase: Phase::Copy,
        cursors,
        audit_since: vec![i64::MIN; old.len()],
    };
    state.save(&config.dir)?;
    let password = config.store.pg_password.as_deref();
    let new = Shards::create(staged, &new_dir, staged.shards, password).await?;
    let bar = bar(config.progress, manifest.counts.flights, "copying");
    let mut events = 0;
    for shard in 0..old.len() {
        let mut from = 1;
        while from <= manifest.counts.flights as i64 {
            let (n, e) = old.copy_chunk(shard, from, from + CHUNK, staged.shards, &new).await?;
            bar.inc(n);
            events += e;
            from += CHUNK;
            hold("copy");
        }
        old.copy_audit(shard, i64::MIN, staged.shards, &new).await?;
    }
    bar.finish_and_clear();
    new.finish(config.store.durability.pragma()).await?;
    staged.save(&new_dir).map_err(io(&new_dir.join(MANIFEST_FILE)))?;
    let state = State { phase: Phase::CatchUp, audit_since, ..state };
    state.save(&config.dir)?;
    Ok(((state, new), events))
}

/// Phase 2: rounds of catch-up until one finds little; returns rounds and events.
pub(super) async fn catch_up_rounds(
    dir: &Path,
    state: &mut State,
    old: &Shards,
    new: &Shards,
    to: ShardCount,
) -> Result<(u32, u64), ReshardError> {
    let (mut rounds, mut total) = (0, 0);
    loop {
        let mut events = 0;
        for shard in 0..old.len() {
            let caught = old.catch_up(shard, false, state.cursors[shard], state.audit_since[shard], to, new).await?;
            state.cursors[shard] = caught.cursor;
            state.audit_since[shard] = caught.audit_since;
            events += caught.events;
        }
        state.phase = Phase::CatchUp;
        state.save(dir)?;
        rounds += 1;
        total += events;
        hold("catch-up");
        if events < QUIET_ROUND || rounds >= MAX_ROUNDS {
            return Ok((rounds, total));
        }
    }
}

/// The new layout's read models, built from its events (as `seed` builds them), so the
/// server serves them current from the switch on.
pub(super) async fn build_read_models(new_dir: &Path, config: &StoreConfig) -> Result<(), ReshardError> {
    // On PostgreSQL, two connections per shard and library: the runner's followers take
    // turns, and a server shared with the running service keeps connections to spare.
    // Followers wait for a connection (and, on SQLite, for a shard's write lock) for
    // up to 5 minutes: nothing else uses the new layout yet, and at a low priority
    // beside a busy server 10 s (SQLite, pool of 2) and 35 s (PostgreSQL, 1,000,000
    // flights) were seen to run out.
    let pool_size =
        if Manifest::load(new_dir)?.postgres.is_some() { config.pool_size.min(2) } else { config.pool_size };
    let config = StoreConfig { pool_size, busy_timeout: Duration::from_secs(300), ..config.clone() };
    let store = Arc::new(Store::open(new_dir, &config).await?);
    let projector = Projector::new(store.clone(), ProjectorConfig { batch: 5000, ..ProjectorConfig::default() });
    let done = projector.catch_up(&|_| {}).await;
    store.close().await;
    done.map(drop).map_err(ReshardError::Projection)
}

/// Phase 3: every flight compared, chunk by chunk; returns the count and the flights
/// written since the last round (compared again in the switch).
pub(super) async fn verify(
    old: &Shards,
    new: &Shards,
    flights: u64,
    to: ShardCount,
    progress: bool,
) -> Result<(u64, BTreeSet<i64>), ReshardError> {
    let bar = bar(progress, flights, "verifying");
    let mut moving = BTreeSet::new();
    let (mut from, mut verified) = (1, 0);
    while from <= flights as i64 {
        let n = old.compare_chunk(new, from, from + CHUNK, to, &mut moving).await.map_err(ReshardError::Verify)?;
        verified += n;
        bar.inc(n);
        from += CHUNK;
        hold("verify");
    }
    bar.finish_and_clear();
    Ok((verified, moving))
}

/// Before the pause: rounds of catch-up, each followed by a comparison of the flights
/// written since the verify, until few are left (at most [`MAX_ROUNDS`]). What is left
/// is what the pause must copy and compare: under 200 writes a second on 1,000,000
/// flights, the verify's 27 s leave thousands, which made a 360 ms pause.
pub(super) async fn settle(
    dir: &Path,
    state: &mut State,
    manifest: &Manifest,
    old: &Shards,
    new: &Shards,
    to: ShardCount,
    mut moving: BTreeSet<i64>,
) -> Result<BTreeSet<i64>, ReshardError> {
    for _ in 0..MAX_ROUNDS {
        for shard in 0..old.len() {
            let caught = old.catch_up(shard, false, state.cursors[shard], state.audit_since[shard], to, new).await?;
            state.cursors[shard] = caught.cursor;
            state.audit_since[shard] = caught.audit_since;
            moving.extend(caught.flights);
        }
        state.save(dir)?;
        let settled = moving.len() < QUIET_FLIGHTS;
        moving = old.compare_flights(new, manifest.shards, to, &moving).await.map_err(ReshardError::Verify)?;
        if settled {
            break;
        }
    }
    Ok(moving)
}

/// The switch starts once fewer flights than this were written since the last check.
const QUIET_FLIGHTS: usize = 50;

/// Phase 4: writes paused on every old shard, the last writes copied and compared,
/// the fences committed, the manifest moved. Returns the pause.
pub(super) async fn switch(
    dir: &Path,
    state: &mut State,
    manifest: &Manifest,
    staged: &Manifest,
    old: &Shards,
    new: &Shards,
    mut moving: BTreeSet<i64>,
) -> Result<(Duration, PauseSteps), ReshardError> {
    let paused = Instant::now();
    let mut steps = PauseSteps::default();
    let mut step = Instant::now();
    let mut lap = |into: &mut f64| {
        *into = step.elapsed().as_secs_f64() * 1e3;
        step = Instant::now();
    };
    old.pause().await?;
    lap(&mut steps.lock_ms);
    for shard in 0..old.len() {
        let caught =
            old.catch_up(shard, true, state.cursors[shard], state.audit_since[shard], staged.shards, new).await?;
        state.cursors[shard] = caught.cursor;
        state.audit_since[shard] = caught.audit_since;
        moving.extend(caught.flights);
    }
    lap(&mut steps.catch_up_ms);
    let unequal = old.compare_flights(new, manifest.shards, staged.shards, &moving).await;
    if let Some(&id) = unequal.map_err(ReshardError::Verify)?.first() {
        let problem = "differs in version between the layouts with writes paused".to_owned();
        return Err(ReshardError::Verify(Mismatch::Flight { id, problem }));
    }
    lap(&mut steps.compare_ms);
    let (before, after) = (old.audit_heads().await, new.audit_heads().await);
    let (before, after) = (before.map_err(ReshardError::Verify)?, after.map_err(ReshardError::Verify)?);
    if let Some((chain, head)) = before.iter().find(|(chain, head)| after.get(*chain) != Some(head)) {
        let problem = format!("has {} records ending at {} in the old layout, not in the new", head.0, head.1);
        return Err(ReshardError::Verify(Mismatch::Audit { chain: chain.clone(), problem }));
    }
    if let Some(chain) = after.keys().find(|c| !before.contains_key(*c)) {
        let problem = "is in the new layout only".to_owned();
        return Err(ReshardError::Verify(Mismatch::Audit { chain: chain.clone(), problem }));
    }
    lap(&mut steps.audit_ms);
    // With writes paused, the relays' unpublished events are final on the old layout.
    new.carry_relay_checkpoints(&old.unpublished().await?, staged.shards).await?;
    lap(&mut steps.relay_ms);
    state.phase = Phase::Switch;
    state.save(dir)?;
    old.fence_and_commit().await?;
    lap(&mut steps.fence_ms);
    hold("switch");
    // The dataset's manifest: the new layout's, with SQLite files relative to `dir`.
    let mut moved = staged.clone();
    if let Some(s) = moved.sqlite.as_mut() {
        let prefix = format!("layout-{}", staged.layout);
        s.files = s.files.iter().map(|f| format!("{prefix}/{f}")).collect();
    }
    moved.save(dir).map_err(io(&dir.join(MANIFEST_FILE)))?;
    lap(&mut steps.manifest_ms);
    Ok((paused.elapsed(), steps))
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_templates_are_valid() {
        super::bar(true, 10, "copying").finish_and_clear();
    }
}
