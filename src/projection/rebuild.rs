//! Rebuilding a read model from the events, blue/green, without downtime.
//!
//! 1. **Prepare**: on every shard, drop whatever a previous rebuild left
//!    (`<table>_next` and its checkpoints: a killed rebuild is simply started over)
//!    and create `<table>_next` empty.
//! 2. **Replay**: followers of the `Next` generation, one per source shard, apply every
//!    event to `<table>_next` exactly as the runner does to the live table, with
//!    checkpoints of their own. The live table keeps serving, and the live runner (in
//!    `serve` or `flightbench project`) keeps it current meanwhile.
//! 3. **Swap**, per shard, in one transaction: bring whichever generation is behind
//!    up to the other (per source shard), compare the two tables by digest (they are
//!    then built from exactly the same events), and rename `<table>_next` over the
//!    live table with its checkpoints. A live runner's next batch finds its
//!    checkpoint moved, starts again from the new one, and carries on.
//!
//! If the digests differ, the live table is not what the events say (edited by
//! hand, or built by a faulty build): the swap is refused unless forced, and the
//! rebuilt table is left beside it for inspection.

use super::runner::{Follower, FollowerStats};
use super::{ProjectionError, ReadModel};
use crate::store::{Generation, SequencedEvent, Store};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What a rebuild did on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSwap {
    pub shard: usize,
    pub rows: u64,
    pub digest: String,
    /// The live table's digest at the same checkpoints, or why it could not be read
    /// that far (`Err`: the live table did not fit the events).
    pub live: Result<String, String>,
}

impl ShardSwap {
    pub fn matches_live(&self) -> bool {
        self.live.as_ref().is_ok_and(|d| *d == self.digest)
    }
}

/// A finished rebuild.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub model: ReadModel,
    /// Events replayed in step 2.
    pub replayed: u64,
    pub shards: Vec<ShardSwap>,
}

/// Rebuilds `model` (see the module documentation). `progress` gets the events each
/// replayed batch applied; `total_events` the sum of the shards' newest event numbers
/// at the start, for an ETA. `force` swaps even where the live table differs.
pub async fn rebuild(
    store: &Arc<Store>,
    model: ReadModel,
    batch: i64,
    force: bool,
    total_events: &(dyn Fn(u64) + Sync),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Rebuilt, ProjectionError> {
    let shards = store.shard_count();
    let next_name = model.checkpoint_name(Generation::Next);
    let live_name = model.checkpoint_name(Generation::Live);
    for target in 0..shards {
        let mut tx = store.begin_projection(target).await?;
        tx.recreate_next(model.table(), &next_name).await?;
        tx.commit().await?;
    }
    let mut total = 0;
    for source in 0..shards {
        total += store.event_head(source).await?.max(0) as u64;
    }
    total_events(total);

    let stats: Vec<_> = (0..shards).map(|_| Arc::new(FollowerStats::default())).collect();
    let replays = stats.iter().enumerate().map(|(source, stats)| async move {
        let mut follower = Follower::start(store, model, Generation::Next, source, batch, stats.clone()).await?;
        loop {
            let n = follower.step().await?;
            if n == 0 {
                break;
            }
            progress(n as u64);
        }
        follower.flush().await
    });
    futures_util::future::try_join_all(replays).await?;
    let replayed = stats.iter().map(|s| s.applied.load(Ordering::Relaxed)).sum();

    let mut swaps = Vec::with_capacity(shards);
    for target in 0..shards {
        swaps.push(swap(store, model, target, &live_name, &next_name, force).await?);
    }
    Ok(Rebuilt { model, replayed, shards: swaps })
}

/// Step 3 on one shard.
async fn swap(
    store: &Store,
    model: ReadModel,
    target: usize,
    live_name: &str,
    next_name: &str,
    force: bool,
) -> Result<ShardSwap, ProjectionError> {
    let mut tx = store.begin_projection(target).await?;
    let live = tx.lock_checkpoints(live_name).await?;
    let next = tx.lock_checkpoints(next_name).await?;
    let position = |cps: &[(usize, i64)], source: usize| cps.iter().find(|(s, _)| *s == source).map(|c| c.1);
    let mut live_fits: Result<(), String> = Ok(());
    for source in 0..store.shard_count() {
        let next_at = position(&next, source).ok_or_else(|| ProjectionError::Diverged {
            model,
            target,
            problem: format!("the rebuild has no checkpoint for shard {source}"),
        })?;
        let live_at = position(&live, source);
        let goal = next_at.max(live_at.unwrap_or(0));
        if next_at < goal {
            let events = events_for(store, model, source, target, next_at, goal).await?;
            catch_up_in(&mut tx, model, Generation::Next, next_name, source, target, next_at, goal, &events).await?;
        }
        match live_at {
            None => live_fits = Err(format!("the live table was never built from shard {source}")),
            Some(at) if at < goal && live_fits.is_ok() => {
                let events = events_for(store, model, source, target, at, goal).await?;
                let caught =
                    catch_up_in(&mut tx, model, Generation::Live, live_name, source, target, at, goal, &events);
                if let Err(e) = caught.await {
                    live_fits = Err(e.to_string());
                }
            }
            Some(_) => {}
        }
    }
    let (digest, rows) = tx.digest(Generation::Next, model.table()).await?;
    let live = match live_fits {
        Ok(()) => Ok(tx.digest(Generation::Live, model.table()).await?.0),
        Err(why) => Err(why),
    };
    let result = ShardSwap { shard: target, rows, digest, live };
    if !result.matches_live() && !force {
        // Rolled back on drop: the live table and its checkpoints stay as they were.
        let why = match &result.live {
            Ok(live) => format!("the live table's digest {live} differs from the rebuilt {}", result.digest),
            Err(why) => why.clone(),
        };
        return Err(ProjectionError::Diverged {
            model,
            target,
            problem: format!(
                "{why}; nothing was swapped, the rebuilt table is left as {}_next (`--force` replaces the live one)",
                model.table()
            ),
        });
    }
    tx.swap(model.table(), live_name, next_name).await?;
    tx.commit().await?;
    Ok(result)
}

/// The events of `source` in `(from, to]` whose rows live on `target`.
async fn events_for(
    store: &Store,
    model: ReadModel,
    source: usize,
    target: usize,
    from: i64,
    to: i64,
) -> Result<Vec<SequencedEvent>, ProjectionError> {
    let events = store.events_after(source, from, to - from).await?;
    Ok(events.into_iter().filter(|e| e.seq <= to && model.target(store.shards(), &e.flight) == target).collect())
}

/// Applies `events` to one generation inside the swap's transaction, moving its
/// checkpoint for `source` from `from` to `to`.
#[allow(clippy::too_many_arguments)]
async fn catch_up_in(
    tx: &mut crate::store::ProjectionTx<'_>,
    model: ReadModel,
    generation: Generation,
    name: &str,
    source: usize,
    target: usize,
    from: i64,
    to: i64,
    events: &[SequencedEvent],
) -> Result<(), ProjectionError> {
    if !tx.advance_checkpoint(name, source, from, to).await? {
        return Err(ProjectionError::LostRace { model, from_shard: source, target });
    }
    let events: Vec<&SequencedEvent> = events.iter().collect();
    model.apply(tx, generation, target, &events).await.map(drop)
}
