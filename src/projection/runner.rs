//! The projection runner: one follower per (read model, source shard), reading the
//! shard's events in commit order after its checkpoint and applying them to the
//! target shards' read-model rows.
//!
//! A follower keeps its position in memory and the checkpoints on the targets. Each
//! batch goes, per target, to one transaction that moves that target's checkpoint
//! (guarded) and changes its rows; targets a batch does not touch are moved when the
//! follower goes idle, at most every [`FLUSH_EVERY`], so a steady trickle of events
//! does not cost a write on every shard per event. The lag read from the checkpoints
//! alone can therefore overstate under steady writes (never understate); a follower
//! notes its exact position in the store after each batch, which the lag in this
//! process uses (`Store::projection_positions`).
//!
//! Errors never skip: the batch is rolled back, the error counted and logged, and the
//! follower starts again from the checkpoints after a back-off (1 s doubling to 30 s).

use super::live::{LiveFeed, LiveUpdate};
use super::{ProjectionError, ReadModel};
use crate::choice::Choice;
use crate::store::{Generation, SequencedEvent, Store};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The longest a target the recent batches did not touch waits for its checkpoint
/// to catch up once the follower is idle.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// How a runner runs.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    pub models: Vec<ReadModel>,
    /// Events read per batch.
    pub batch: i64,
    /// How often an idle follower looks for events written by another process (an
    /// append through this process's store wakes it at once).
    pub poll: Duration,
    /// While events keep coming, the least time between one batch's start and the
    /// next's: each batch costs every follower a read and a write transaction per
    /// target shard, so small batches are paid for by the writers. Under a saturating
    /// write load on this 2-core machine, write throughput with the runner alongside
    /// was 0.58× of none at 50 ms, 0.75× at 250 ms and about 1.0× at 1 s
    /// (results/projections.md); 250 ms keeps the lag well under the dashboard's
    /// one second. An idle follower still applies the first event at once.
    pub gather: Duration,
    /// Models whose writers wait for them (`serve --read-models`): their followers
    /// never gather, so batches form from the writes that are waiting.
    pub inline: Vec<ReadModel>,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            models: ReadModel::ALL.to_vec(),
            batch: 1000,
            poll: Duration::from_millis(250),
            gather: Duration::from_millis(250),
            inline: Vec::new(),
        }
    }
}

impl ProjectorConfig {
    /// The defaults, with `inline` the models writers wait for.
    pub fn for_writes(inline: &[ReadModel]) -> Self {
        Self { inline: inline.to_vec(), ..Self::default() }
    }
}

/// One follower's counters, for `/metrics` and the command's summary.
#[derive(Debug, Default)]
pub struct FollowerStats {
    /// Events applied (counted once per event, whichever target it went to).
    pub applied: AtomicU64,
    pub batches: AtomicU64,
    /// Numbers missing from the sequence: only possible if events were deleted, or
    /// written for a flight that does not exist, around the service.
    pub gaps: AtomicU64,
    pub errors: AtomicU64,
    /// The last event number applied, in memory.
    pub position: AtomicI64,
    pub last_error: Mutex<Option<String>>,
}

/// Every follower's counters, by (model, source shard).
#[derive(Debug, Default)]
pub struct ProjectorStats {
    pub followers: Vec<(ReadModel, usize, Arc<FollowerStats>)>,
    /// Woken after every batch any follower applies.
    progressed: tokio::sync::Notify,
}

impl ProjectorStats {
    pub fn new(followers: Vec<(ReadModel, usize, Arc<FollowerStats>)>) -> Self {
        Self { followers, progressed: tokio::sync::Notify::new() }
    }

    /// Waits until the followers of `models` on `source` have applied its events up
    /// to `seq`, or `within` has passed; returns whether they had. What an inline
    /// read model's writer waits for before it answers (`serve --read-models`).
    pub async fn applied_through(&self, models: &[ReadModel], source: usize, seq: i64, within: Duration) -> bool {
        let caught_up = || {
            self.followers
                .iter()
                .filter(|(m, s, _)| *s == source && models.contains(m))
                .all(|(_, _, f)| f.position.load(Ordering::Acquire) >= seq)
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let progressed = self.progressed.notified();
            tokio::pin!(progressed);
            // Registered before the check, so a batch between the two still wakes us.
            progressed.as_mut().enable();
            if caught_up() {
                return true;
            }
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                return caught_up();
            }
        }
    }

    /// The errors followers are currently stopped on, as (model, shard, message).
    pub fn errors(&self) -> Vec<(ReadModel, usize, String)> {
        self.followers
            .iter()
            .filter_map(|(m, s, f)| f.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone().map(|e| (*m, *s, e)))
            .collect()
    }
}

/// What a catch-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Events applied per model (each event once per model).
    pub applied: Vec<(ReadModel, u64)>,
    /// Numbers missing from the shards' sequences.
    pub gaps: u64,
}

/// Runs followers over one store.
pub struct Projector {
    store: Arc<Store>,
    config: ProjectorConfig,
    stats: Arc<ProjectorStats>,
    /// Where the board's changes go as they commit (`serve`'s `/live`).
    feed: Option<Arc<LiveFeed>>,
}

impl Projector {
    pub fn new(store: Arc<Store>, config: ProjectorConfig) -> Self {
        let followers = config
            .models
            .iter()
            .flat_map(|&m| (0..store.shard_count()).map(move |s| (m, s, Arc::new(FollowerStats::default()))))
            .collect();
        Self { store, config, stats: Arc::new(ProjectorStats::new(followers)), feed: None }
    }

    /// Sends every departures-board change to `feed` once it commits.
    pub fn with_feed(mut self, feed: Arc<LiveFeed>) -> Self {
        self.feed = Some(feed);
        self
    }

    pub fn stats(&self) -> Arc<ProjectorStats> {
        self.stats.clone()
    }

    /// Applies every event committed so far to every model, then returns;
    /// `progress` is called with the events each batch applied. Stops at the first
    /// error.
    pub async fn catch_up(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<CatchUp, ProjectionError> {
        let runs = self.stats.followers.iter().map(|(model, source, stats)| async move {
            let mut follower =
                Follower::start(&self.store, *model, Generation::Live, *source, self.config.batch, stats.clone())
                    .await?;
            while follower.step().await? > 0 {
                progress(follower.last_batch);
            }
            follower.flush().await?;
            Ok::<_, ProjectionError>(())
        });
        futures_util::future::try_join_all(runs).await?;
        let mut applied: Vec<(ReadModel, u64)> = Vec::new();
        for (model, _, stats) in &self.stats.followers {
            let n = stats.applied.load(Ordering::Relaxed);
            match applied.iter_mut().find(|(m, _)| m == model) {
                Some((_, total)) => *total += n,
                None => applied.push((*model, n)),
            }
        }
        let gaps = self.stats.followers.iter().map(|(_, _, s)| s.gaps.load(Ordering::Relaxed)).sum();
        Ok(CatchUp { applied, gaps })
    }

    /// Follows the events until `shutdown` changes to true. Errors are counted,
    /// logged and retried; they never end the run.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        let follows = self.stats.followers.iter().map(|(model, source, stats)| {
            let shutdown = shutdown.clone();
            self.follow(*model, *source, stats.clone(), shutdown)
        });
        futures_util::future::join_all(follows).await;
    }

    async fn follow(
        &self,
        model: ReadModel,
        source: usize,
        stats: Arc<FollowerStats>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut appended = self.store.watch_appends(source);
        let mut backoff = Duration::from_secs(1);
        while !*shutdown.borrow() {
            let result = async {
                let mut follower =
                    Follower::start(&self.store, model, Generation::Live, source, self.config.batch, stats.clone())
                        .await?;
                follower.feed = self.feed.as_deref();
                record_error(&stats, None);
                backoff = Duration::from_secs(1);
                loop {
                    let started = tokio::time::Instant::now();
                    let read = follower.step().await? as i64;
                    if read > 0 {
                        self.stats.progressed.notify_waiters();
                    }
                    if read >= self.config.batch {
                        continue;
                    }
                    if read > 0 && !self.config.inline.contains(&model) {
                        // Events are flowing: let them gather for a batch rather than
                        // take a write transaction per event on every target shard.
                        tokio::select! {
                            _ = tokio::time::sleep_until(started + self.config.gather) => {}
                            _ = shutdown.changed() => {}
                        }
                        if *shutdown.borrow() {
                            return Ok(());
                        }
                        continue;
                    }
                    follower.flush_if_due().await?;
                    let woken = async {
                        match appended.as_mut() {
                            Some(rx) => {
                                let _ = rx.changed().await;
                            }
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(self.config.poll) => {}
                        _ = shutdown.changed() => {}
                    }
                    if *shutdown.borrow() {
                        return Ok::<_, ProjectionError>(());
                    }
                }
            }
            .await;
            let Err(e) = result else { return };
            if let ProjectionError::LostRace { .. } = e {
                // Another runner, or a rebuild's swap, moved a checkpoint: start again
                // from the checkpoints as they are now.
                tracing::debug!(model = model.name(), shard = source, "checkpoint moved by another writer; reloading");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(model = model.name(), shard = source, error = %e, "projection batch failed; retrying");
            record_error(&stats, Some(e.to_string()));
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

fn record_error(stats: &FollowerStats, error: Option<String>) {
    *stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
}

/// One (model, source shard) follower between batches.
pub(super) struct Follower<'s> {
    store: &'s Store,
    model: ReadModel,
    generation: Generation,
    /// `model.checkpoint_name(generation)`.
    name: String,
    source: usize,
    batch: i64,
    stats: Arc<FollowerStats>,
    /// Per target shard: the checkpoint as stored there.
    checkpoints: Vec<i64>,
    /// Every event up to here is in every target (stored or not needed there).
    position: i64,
    last_flush: Instant,
    last_batch: u64,
    /// Gets the board's changes after each commit (live generation only).
    feed: Option<&'s LiveFeed>,
}

impl<'s> Follower<'s> {
    /// Reads the checkpoints, starting any target that has none (for the board, with
    /// its rows for this shard's flights, in the same transaction).
    pub(super) async fn start(
        store: &'s Store,
        model: ReadModel,
        generation: Generation,
        source: usize,
        batch: i64,
        stats: Arc<FollowerStats>,
    ) -> Result<Follower<'s>, ProjectionError> {
        let name = model.checkpoint_name(generation);
        let targets = store.shard_count();
        let mut checkpoints: Vec<Option<i64>> = vec![None; targets];
        for (target, slot) in checkpoints.iter_mut().enumerate() {
            *slot = store.checkpoints(target, &name).await?.into_iter().find(|(s, _)| *s == source).map(|c| c.1);
        }
        if checkpoints.iter().any(Option::is_none) {
            let flights = if model.starts_from_flights() { all_flights(store, source).await? } else { Vec::new() };
            for (target, slot) in checkpoints.iter_mut().enumerate().filter(|(_, c)| c.is_none()) {
                let mut tx = store.begin_projection(target).await?;
                if !tx.start_checkpoint(&name, source).await? {
                    return Err(ProjectionError::LostRace { model, from_shard: source, target });
                }
                let mine: Vec<_> =
                    flights.iter().filter(|f| model.target(store.shards(), f) == target).cloned().collect();
                tx.insert_board_flights(generation, &mine).await?;
                tx.commit().await?;
                *slot = Some(0);
            }
        }
        let checkpoints: Vec<i64> = checkpoints.into_iter().map(|c| c.unwrap_or(0)).collect();
        let head = store.event_head(source).await?;
        if let Some((target, &checkpoint)) = checkpoints.iter().enumerate().find(|(_, c)| **c > head) {
            return Err(ProjectionError::AheadOfEvents { model, from_shard: source, target, checkpoint, head });
        }
        let position = checkpoints.iter().copied().min().unwrap_or(0);
        stats.position.store(position, Ordering::Relaxed);
        store.note_position(&name, source, position);
        Ok(Follower {
            store,
            model,
            generation,
            name,
            source,
            batch,
            stats,
            checkpoints,
            position,
            last_flush: Instant::now(),
            last_batch: 0,
            feed: None,
        })
    }

    /// Applies the next batch; returns how many events it read (0: caught up).
    pub(super) async fn step(&mut self) -> Result<usize, ProjectionError> {
        let events = self.store.events_after(self.source, self.position, self.batch).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            let head = self.store.event_head(self.source).await?;
            if head < self.position {
                let target = self.checkpoints.iter().position(|c| *c > head).unwrap_or(0);
                return Err(ProjectionError::AheadOfEvents {
                    model: self.model,
                    from_shard: self.source,
                    target,
                    checkpoint: self.position,
                    head,
                });
            }
            return Ok(0);
        };
        let mut expected = self.position + 1;
        for e in &events {
            if e.seq != expected {
                let missing = (e.seq - expected).max(0) as u64;
                self.stats.gaps.fetch_add(missing, Ordering::Relaxed);
                tracing::warn!(
                    model = self.model.name(),
                    shard = self.source,
                    from = expected,
                    to = e.seq - 1,
                    "event numbers missing from the shard's sequence: deleted, or written for no flight, outside the service"
                );
            }
            expected = e.seq + 1;
        }
        let shards = self.store.shards();
        let mut by_target: Vec<Vec<&SequencedEvent>> = vec![Vec::new(); self.checkpoints.len()];
        for e in &events {
            let target = self.model.target(shards, &e.flight);
            if e.seq > self.checkpoints[target] {
                by_target[target].push(e);
            }
        }
        for (target, mine) in by_target.iter().enumerate() {
            if !mine.is_empty() {
                self.apply(target, mine, last).await?;
            }
        }
        self.position = last;
        self.last_batch = events.len() as u64;
        self.stats.position.store(last, Ordering::Release);
        self.store.note_position(&self.name, self.source, last);
        self.stats.applied.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(events.len())
    }

    /// One target's part of a batch: guarded checkpoint move and row changes, one
    /// transaction.
    async fn apply(&mut self, target: usize, events: &[&SequencedEvent], to: i64) -> Result<(), ProjectionError> {
        let mut tx = self.store.begin_projection(target).await?;
        let from = self.checkpoints[target];
        if !tx.advance_checkpoint(&self.name, self.source, from, to).await? {
            return Err(ProjectionError::LostRace { model: self.model, from_shard: self.source, target });
        }
        let statuses = self.model.apply(&mut tx, self.generation, target, events).await?;
        tx.commit().await?;
        self.checkpoints[target] = to;
        if let Some(feed) = self.feed.filter(|_| self.generation == Generation::Live) {
            for (e, status) in events.iter().zip(statuses) {
                if feed.watched(&e.flight.origin) {
                    let update = LiveUpdate {
                        seq: e.seq,
                        shard: self.source,
                        flight: e.flight.clone(),
                        event: e.recorded.clone(),
                        status,
                    };
                    feed.publish(&e.flight.origin, &update);
                }
            }
        }
        Ok(())
    }

    /// Moves every target's checkpoint up to the position.
    pub(super) async fn flush(&mut self) -> Result<(), ProjectionError> {
        for target in 0..self.checkpoints.len() {
            if self.checkpoints[target] < self.position {
                self.apply(target, &[], self.position).await?;
            }
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    async fn flush_if_due(&mut self) -> Result<(), ProjectionError> {
        if self.last_flush.elapsed() >= FLUSH_EVERY && self.checkpoints.iter().any(|c| *c < self.position) {
            self.flush().await?;
        }
        Ok(())
    }
}

async fn all_flights(store: &Store, source: usize) -> Result<Vec<crate::domain::Flight>, ProjectionError> {
    let mut flights = Vec::new();
    let mut after = 0;
    loop {
        let page = store.flights_after(source, after, 10_000).await?;
        let Some(last) = page.last() else { return Ok(flights) };
        after = last.id.get();
        flights.extend(page);
    }
}
