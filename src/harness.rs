//! The server in-process, on a loopback port: what `flightbench profile` (and the
//! workbench run) drive with the load generator, so one command measures one exact
//! configuration without a second process to start, find and stop.
//!
//! The server runs as `flightbench serve` does by default (a current-thread runtime
//! per core on `SO_REUSEPORT` listeners, threads named `serve-N`), so profiles and
//! figures taken here describe the real server, not a test double.

use crate::http::{AppState, ServerConfig, Stopped, reuseport_listeners, run_per_core, serve_connections};
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running in-process server.
pub struct LocalServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl LocalServer {
    /// Starts serving `store` with `config` on `127.0.0.1:<free port>` with `threads`
    /// per-core runtimes. The store stays open when the server stops, so several
    /// configurations can share it.
    pub fn start(store: Arc<Store>, config: ServerConfig, threads: usize) -> std::io::Result<Self> {
        let listeners = reuseport_listeners(SocketAddr::from(([127, 0, 0, 1], 0)), threads.max(1))?;
        let addr = listeners[0].local_addr()?;
        let state = AppState::new(store, config);
        let (stop, stopped) = watch::channel(false);
        let shared = state.clone();
        let serving =
            tokio::spawn(run_per_core(listeners, false, Stopped::new(stopped).wait(), move |listener, stopped| {
                let state = shared.clone();
                async move { serve_connections(listener, &state, None, stopped.wait()).await }
            }));
        Ok(Self { addr, state, stop, serving })
    }

    /// Stops accepting, lets requests in flight finish and joins the server threads.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.serving.await.map_err(std::io::Error::other)?
    }
}
