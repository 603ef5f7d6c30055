//! The server in-process, on a loopback port, and the load shapes that drive it: what
//! `flightbench profile` and `flightbench run` measure, so one command measures one
//! exact configuration without a second process to start, find and stop.
//!
//! The server runs as `flightbench serve` does by default (a current-thread runtime
//! per core on `SO_REUSEPORT` listeners, threads named `serve-N`), so profiles and
//! figures taken here describe the real server, not a test double.

use crate::failure::{Classify, Failure};
use crate::http::{AppState, ServerConfig, Stopped, reuseport_listeners, run_per_core, serve_connections};
use crate::load::conn::{Endpoint, Protocol};
use crate::load::report::LoadReport;
use crate::load::{LoadConfig, LoadError, LoopModel, Workload};
use crate::profile;
use crate::store::Store;
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
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
    /// per-core runtimes, pinned to `cores` when it names any. The store stays open
    /// when the server stops, so several configurations can share it.
    pub fn start(store: Arc<Store>, config: ServerConfig, threads: usize, cores: &[usize]) -> std::io::Result<Self> {
        Self::start_tls(store, config, threads, cores, None)
    }

    /// [`LocalServer::start`], serving TLS with `tls` when given.
    pub fn start_tls(
        store: Arc<Store>,
        config: ServerConfig,
        threads: usize,
        cores: &[usize],
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let listeners = reuseport_listeners(SocketAddr::from(([127, 0, 0, 1], 0)), threads.max(1))?;
        let addr = listeners[0].local_addr()?;
        let state = AppState::new(store, config);
        let (stop, stopped) = watch::channel(false);
        let shared = state.clone();
        let cores = cores.to_vec();
        let serving = tokio::spawn(async move {
            run_per_core(listeners, &cores, Stopped::new(stopped).wait(), move |listener, stopped| {
                let (state, tls) = (shared.clone(), tls.clone());
                async move { serve_connections(listener, &state, tls, stopped.wait()).await }
            })
            .await
        });
        Ok(Self { addr, state, stop, serving })
    }

    /// Stops accepting, lets requests in flight finish and joins the server threads.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.serving.await.map_err(std::io::Error::other)?
    }
}

/// A closed-loop load on `addr`: the shape `profile` and the workbench run use.
#[derive(Clone)]
pub struct LoadShape {
    pub protocol: Protocol,
    pub connections: usize,
    pub streams_per_connection: usize,
    pub workload: Workload,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub warmup: Duration,
    pub measure: Duration,
    /// Open loop at this rate when set.
    pub rate: Option<f64>,
    /// TLS to a server with the certificate for `localhost` this client trusts.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl LoadShape {
    /// The load on `addr` with `threads` load threads, pinned to `cores` if any.
    pub fn config(&self, addr: SocketAddr, threads: usize, cores: &[usize]) -> LoadConfig {
        LoadConfig {
            endpoint: Endpoint {
                addr,
                // The name the certificate is for, when there is one.
                host: if self.tls.is_some() { "localhost".to_owned() } else { addr.ip().to_string() },
                protocol: self.protocol,
                tls: self.tls.clone(),
            },
            target: format!("{}://{addr}", if self.tls.is_some() { "https" } else { "http" }),
            workload: self.workload.clone(),
            loop_model: self.rate.map_or(LoopModel::Closed, |rate| LoopModel::Open { rate, tick: Duration::ZERO }),
            connections: self.connections,
            streams_per_connection: self.streams_per_connection,
            threads,
            warmup: self.warmup,
            duration: Some(self.measure),
            requests: None,
            timeout: Duration::from_secs(10),
            headers: self.headers.clone(),
            seed: 1,
            server_in_process: true,
            cores: cores.to_vec(),
        }
    }
}

/// Why a load under profiling gave no profile.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("profiling: {0}")]
    Profile(String),
}

impl Classify for SampleError {
    fn failure(&self) -> Failure {
        match self {
            SampleError::Load(e) => e.failure(),
            SampleError::Profile(_) => Failure::Internal,
        }
    }
}

/// Runs `load` (blocking) and samples the whole process at `frequency` Hz from the end
/// of its warm-up to its end. Returns the folded stacks without the load generator's
/// own threads, merged by thread role, and the load's report.
pub fn sample_under_load(
    load: &LoadConfig,
    frequency: i32,
    mut progress: impl FnMut(u64, f64),
) -> Result<(Vec<String>, LoadReport), SampleError> {
    profile::prime();
    let mut sampler: Option<Result<pprof::ProfilerGuard<'static>, String>> = None;
    let report = crate::load::run(load, |done, since| {
        if since >= 0.0 && sampler.is_none() {
            sampler = Some(profile::start_sampling(frequency).map_err(|e| e.to_string()));
        }
        progress(done, since);
    })?;
    let guard = sampler
        .ok_or_else(|| SampleError::Profile("the load ended before sampling started".into()))?
        .map_err(SampleError::Profile)?;
    let sampled = guard.report().build().map_err(|e| SampleError::Profile(format!("building the profile: {e}")))?;
    Ok((profile::by_thread_role(&profile::fold(&sampled), &["load-"]), report))
}
