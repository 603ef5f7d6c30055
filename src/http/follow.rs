//! Following a reshard: `serve` notices the manifest's newer layout generation
//! (`flightbench reshard`'s switch) and moves to it without a restart and without
//! failing a request.
//!
//! The follower looks at the manifest every [`POLL`], and at once when a write met a
//! retired layout's fence (`AppState::layout_moved`). It opens a store on the new
//! layout (set up as the first one was, by `open`), moves the projection runner onto
//! it, and swaps it into the state. Requests under way finish on the old store; the
//! fenced write is retried on the new one (`handlers::report_delay`). Reads that
//! started before the swap may miss a write made on the new layout since the switch,
//! as any read racing a write may.

use super::AppState;
use crate::dataset::Manifest;
use crate::projection::live::LiveFeed;
use crate::projection::{Projector, ProjectorConfig};
use crate::reshard::Release;
use crate::store::{Store, StoreError};
use futures_util::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the follower reads the manifest. A read that starts within this of a
/// switch can miss a write made on the new layout; writes never miss (the fence).
pub const POLL: Duration = Duration::from_millis(250);

/// How long a write refused by the fence waits for the new layout before answering
/// 503: the switch moves the manifest straight after the fences commit, and opening
/// the new layout's pools takes well under a second here.
pub const LAYOUT_WAIT: Duration = Duration::from_secs(10);

/// While a write waits at a fence, how often the follower looks.
const FENCED_POLL: Duration = Duration::from_millis(20);

/// How long a fence may stand with the manifest unmoved before the follower takes it
/// for an interrupted switch (if no reshard holds the dataset's lock).
const SWITCH_GRACE: Duration = Duration::from_millis(500);

/// Opens a store on the dataset's current layout, set up for serving.
pub type OpenStore = Box<dyn Fn() -> BoxFuture<'static, Result<Store, StoreError>> + Send + Sync>;

/// The projection runner of this process, restarted on each new layout.
pub struct Projecting {
    config: ProjectorConfig,
    feed: Option<Arc<LiveFeed>>,
    running: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Projecting {
    /// Starts the runner on `store` and reports its counters to `state`.
    pub fn start(state: &AppState, store: Arc<Store>, config: ProjectorConfig, feed: Option<Arc<LiveFeed>>) -> Self {
        let mut projecting = Self { config, feed, running: None };
        projecting.run_on(state, store);
        projecting
    }

    fn run_on(&mut self, state: &AppState, store: Arc<Store>) {
        let mut projector = Projector::new(store, self.config.clone());
        if let Some(feed) = &self.feed {
            projector = projector.with_feed(feed.clone());
        }
        state.report_projector(projector.stats());
        let (stop, stopped) = watch::channel(false);
        self.running = Some((stop, tokio::spawn(async move { projector.run(stopped).await })));
    }

    /// Stops the runner, letting its batch in progress finish.
    pub async fn stop(&mut self) {
        if let Some((stop, running)) = self.running.take() {
            let _ = stop.send(true);
            let _ = running.await;
        }
    }
}

/// Follows the dataset in `dir` until `stopped`: each newer layout is opened, the
/// runner (if any) moved onto it, and the store swapped into `state`.
pub async fn follow_layout(
    state: Arc<AppState>,
    dir: PathBuf,
    pg_password: Option<String>,
    open: OpenStore,
    projecting: Arc<tokio::sync::Mutex<Option<Projecting>>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut complained = false;
    // Since when a write has been waiting at a fence with no new layout in sight.
    let mut fenced_since: Option<std::time::Instant> = None;
    loop {
        let wait = if fenced_since.is_some() { FENCED_POLL } else { POLL };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.layout_moved.notified() => { fenced_since.get_or_insert_with(std::time::Instant::now); }
            _ = stopped.changed() => return,
        }
        let serving = state.store().manifest().layout;
        match Manifest::load(&dir) {
            Ok(manifest) if manifest.layout > serving => {}
            Ok(_) => {
                // The switch moves the manifest right after fencing; a fence that
                // outlives [`SWITCH_GRACE`] with no reshard holding the dataset was
                // left by one that died.
                if fenced_since.is_some_and(|t| t.elapsed() >= SWITCH_GRACE) {
                    match crate::reshard::release_interrupted_switch(&dir, pg_password.as_deref()).await {
                        Ok(Release::Removed(shards)) => {
                            eprintln!(
                                "serve: removed the fence an interrupted `flightbench reshard` left on {shards} shards; \
                                 writes go to the old layout again"
                            );
                            fenced_since = None;
                            state.layout_changed();
                        }
                        Ok(Release::NoFence) => {
                            fenced_since = None;
                            state.layout_changed();
                        }
                        Ok(Release::ReshardRunning) => {}
                        Err(error) => tracing::warn!(%error, "cannot remove an interrupted reshard's fence"),
                    }
                }
                continue;
            }
            // A manifest being replaced is renamed into place, never half written; an
            // unreadable one is an operator's doing, said once.
            Err(error) => {
                if !complained {
                    tracing::warn!(%error, "cannot read the manifest to follow a reshard; serving the layout it had");
                    complained = true;
                }
                continue;
            }
        }
        let store = match open().await {
            Ok(store) => Arc::new(store),
            Err(error) => {
                tracing::warn!(%error, "cannot open the dataset's new shard layout; serving the old one meanwhile");
                continue;
            }
        };
        complained = false;
        fenced_since = None;
        let mut projecting = projecting.lock().await;
        if let Some(runner) = projecting.as_mut() {
            runner.stop().await;
        }
        let manifest = store.manifest();
        let (layout, shards) = (manifest.layout, manifest.shards.get());
        let old = state.replace_store(store.clone());
        if let Some(runner) = projecting.as_mut() {
            runner.run_on(&state, store);
        }
        drop(old);
        tracing::info!(layout, shards, "now serving the dataset's new shard layout");
        eprintln!("serve: now serving shard layout {layout} ({shards} shards), moved by `flightbench reshard`");
    }
}
