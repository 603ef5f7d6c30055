//! The server's thread layout (`--runtime`, `--threads`, `--pin`), shared by `serve`
//! and `ceiling` so both are measured alike, and its stop on SIGINT or SIGTERM.

use crate::http::{RuntimeShape, Stopped, reuseport_listeners, run_per_core};
use crate::telemetry::notice;
use anyhow::Context;
use clap::Args;
use std::future::Future;
use std::net::SocketAddr;

/// The thread layout, shared by `serve` and `ceiling` so both are measured alike.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Thread layout: a current-thread runtime per core with SO_REUSEPORT listeners
    /// (the default: results/server.md measures it 1.2–1.5× the multi-thread runtime
    /// under h2load), or one multi-thread runtime.
    #[arg(long, value_parser = super::choice::<RuntimeShape>(), env = "FLIGHTBENCH_RUNTIME", default_value_t = RuntimeShape::PerCore)]
    pub runtime: RuntimeShape,
    /// Server threads for `--runtime per-core` (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Pin each `--runtime per-core` thread to its own core.
    #[arg(long)]
    pub pin: bool,
}

impl RuntimeArgs {
    pub(super) fn threads(&self) -> anyhow::Result<usize> {
        match self.runtime {
            RuntimeShape::MultiThread => {
                super::ensure_usage!(
                    self.threads.is_none() && !self.pin,
                    "--threads and --pin apply to --runtime per-core only"
                );
                Ok(1)
            }
            RuntimeShape::PerCore => Ok(self.threads.map_or_else(crate::machine::cores, |n| n as usize)),
        }
    }

    pub(super) fn describe(&self, threads: usize) -> String {
        match self.runtime {
            RuntimeShape::MultiThread => format!("multi-thread runtime, {} workers", crate::machine::cores()),
            RuntimeShape::PerCore => {
                format!("{threads} current-thread runtimes{}", if self.pin { ", pinned" } else { "" })
            }
        }
    }

    /// Binds the listeners and runs `serve_one` on each, in this runtime shape, until
    /// SIGINT/SIGTERM. `announce` gets the bound address before serving starts.
    pub(super) async fn serve<F, Fut>(
        &self,
        addr: SocketAddr,
        announce: impl FnOnce(SocketAddr, String),
        serve_one: F,
    ) -> anyhow::Result<()>
    where
        F: Fn(tokio::net::TcpListener, Stopped) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let threads = self.threads()?;
        let listeners = reuseport_listeners(addr, threads).with_context(|| format!("cannot listen on {addr}"))?;
        announce(listeners[0].local_addr()?, self.describe(threads));
        match self.runtime {
            RuntimeShape::MultiThread => {
                let listener = listeners.into_iter().next().context("no listener")?;
                listener.set_nonblocking(true)?;
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let serving =
                    tokio::spawn(serve_one(tokio::net::TcpListener::from_std(listener)?, Stopped::new(stopped)));
                shutdown_signal().await;
                let _ = stop.send(true);
                serving.await?;
            }
            RuntimeShape::PerCore => {
                let cores = if self.pin { crate::machine::core_ids() } else { Vec::new() };
                run_per_core(listeners, &cores, shutdown_signal(), serve_one).await?
            }
        }
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(super) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; SIGINT still stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    notice("shutting down: finishing requests in flight");
}
