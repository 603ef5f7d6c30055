//! The HTTP server: hyper 1.x on tokio, HTTP/1.1 and HTTP/2 with prior knowledge (h2c)
//! on one port, the flight API, negotiated compression, limits, graceful shutdown.
//!
//! Layers: `negotiate` (Accept-Encoding), `route` (path → route), `extract` (request
//! parts → values) and `error` (status + problem mapping) are pure; `response` builds
//! bodies; `handlers` answer each route from the store; `service` routes a request to
//! them; this module owns connections. Entry point: [`serve`], which takes its listener, state
//! and shutdown signal so tests start the real server on port 0.
//!
//! hyper drops `header_read_timeout` silently when no timer is set, so every
//! connection builder gets a `TokioTimer`; without it a slowloris client would keep a
//! connection forever.

pub mod admin;
pub mod cache;
mod config;
mod error;
mod extract;
pub mod follow;
mod handlers;
mod live;
pub(crate) mod metrics;
mod negotiate;
mod response;
mod role;
mod route;
mod runtime;
mod service;
mod stall;
mod subjects;
mod subscriptions;
pub mod tls;

pub use config::{CompressionLevels, ServerConfig};
pub use error::{ApiError, Problem};
pub use metrics::{OPENMETRICS, PROMETHEUS_TEXT, ServerMetrics};
pub use negotiate::AcceptEncoding;
pub use response::{Body, problem as problem_response};
pub use role::ServiceRole;
pub use route::{Route, method_label};
pub use runtime::{RuntimeShape, Stopped, reuseport_listeners, run_per_core};
pub use service::{CACHE_HEADER, QUERY_PATH_HEADER, handle};
pub use tls::TlsError;

use crate::projection::ProjectorStats;
use crate::projection::live::LiveFeed;
use crate::store::Store;
use bytes::Bytes;
use cache::FlightCache;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What every request handler shares.
pub struct AppState {
    /// The store on the dataset's current shard layout: replaced, without a restart,
    /// when `flightbench reshard` moves the dataset (`replace_store`). Read through
    /// [`AppState::store`], once per request.
    store: std::sync::RwLock<Arc<Store>>,
    /// Counts changes of layout: a new store swapped in, or an interrupted switch's
    /// fences removed (`follow`). A write the fence refused waits for the next one.
    layout_changes: tokio::sync::watch::Sender<u64>,
    /// Woken by a write that met a retired layout, so whoever follows the layout
    /// (`serve`) looks at the manifest at once rather than at its next poll.
    pub layout_moved: tokio::sync::Notify,
    pub config: ServerConfig,
    /// Point-read bodies of hot flights; `None` with `--cache off`.
    pub cache: Option<FlightCache>,
    /// Permits for requests in flight; see `ServerConfig::max_in_flight`. Each request
    /// borrows one for its own duration.
    in_flight: Semaphore,
    /// `None` with `ServerConfig::metrics` off: nothing is recorded, `/metrics` is 404.
    pub metrics: Option<Arc<ServerMetrics>>,
    /// The in-process projection runner's counters, when it runs here.
    projector: std::sync::RwLock<Option<Arc<ProjectorStats>>>,
    /// The board's changes as the in-process runner commits them, for `/live`.
    pub live: std::sync::OnceLock<Arc<LiveFeed>>,
    /// Connections closed because the peer stopped reading (`stall`).
    pub stalled_writes: Arc<std::sync::atomic::AtomicU64>,
    /// The notification service, where this process is one (`serve --role notify`).
    pub notifier: std::sync::OnceLock<Arc<crate::notify::Notifier>>,
}

impl AppState {
    pub fn new(store: Arc<Store>, config: ServerConfig) -> Arc<Self> {
        let in_flight = Semaphore::new(config.max_in_flight);
        let cache = (config.cache_capacity > 0).then(|| FlightCache::new(config.cache_capacity));
        let metrics = config.metrics.then(|| {
            let metrics = ServerMetrics::new(store.shard_count());
            store.record_metrics(metrics.store.clone());
            metrics
        });
        Arc::new(Self {
            layout_changes: tokio::sync::watch::Sender::new(0),
            layout_moved: tokio::sync::Notify::new(),
            store: std::sync::RwLock::new(store),
            config,
            cache,
            in_flight,
            metrics,
            projector: Default::default(),
            live: Default::default(),
            stalled_writes: Default::default(),
            notifier: Default::default(),
        })
    }

    /// The store on the current layout; a request keeps the one it started with.
    pub fn store(&self) -> Arc<Store> {
        self.store.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Serves from `store` (a reshard's new layout) from now on; returns the one it
    /// replaces, which requests already under way finish on.
    pub fn replace_store(&self, store: Arc<Store>) -> Arc<Store> {
        if let Some(metrics) = &self.metrics {
            store.record_metrics(metrics.store.clone());
        }
        let old = std::mem::replace(&mut *self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner()), store);
        self.layout_changed();
        old
    }

    /// Wakes the writes waiting for a change of layout.
    pub fn layout_changed(&self) {
        self.layout_changes.send_modify(|n| *n += 1);
    }

    /// How many times the layout has changed: read before a write, for
    /// [`AppState::await_layout_change`].
    pub fn layout_changes(&self) -> u64 {
        *self.layout_changes.borrow()
    }

    /// After a write met a retired layout's fence: asks the follower to look, and
    /// waits up to `within` for the layout to change from `seen`. False if it did not
    /// (a reshard stuck in its switch, or nothing follows the layout here).
    pub async fn await_layout_change(&self, seen: u64, within: std::time::Duration) -> bool {
        let mut changes = self.layout_changes.subscribe();
        // Changed already (the write started on the store just replaced): retry at once.
        if *changes.borrow() > seen {
            return true;
        }
        self.layout_moved.notify_one();
        matches!(tokio::time::timeout(within, changes.wait_for(|n| *n > seen)).await, Ok(Ok(_)))
    }

    /// Reports the counters of the projection runner in this process (again when a
    /// new layout's runner replaces it).
    pub fn report_projector(&self, projector: Arc<ProjectorStats>) {
        *self.projector.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(projector);
    }

    /// The in-process projection runner's counters, if one runs here.
    pub fn projector(&self) -> Option<Arc<ProjectorStats>> {
        self.projector.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Serves `/live` from `feed` (set once, by whoever runs the projector here).
    pub fn serve_live(&self, feed: Arc<LiveFeed>) {
        let _ = self.live.set(feed);
    }
}

fn connection_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // hyper's minimum read buffer is 8 KiB.
        .max_buf_size(config.max_header_bytes.max(8_192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(config.max_header_bytes as u32)
        .keep_alive_interval(config.idle_timeout)
        .keep_alive_timeout(config.idle_timeout);
    builder
}

/// Serves `listener` in cleartext (HTTP/1.1 and h2c) until `shutdown` resolves, then
/// stops accepting, lets in-flight requests finish (up to `shutdown_grace`) and returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, state, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (ALPN picks h2 or http/1.1).
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_connections(listener, &state, tls, shutdown).await;
    state.store().close().await;
    Ok(())
}

/// The accept loop of [`serve_with`] without closing the store: the per-core runtime
/// runs one per thread over a shared store, and closes it once they all stopped.
pub async fn serve_connections(
    listener: TcpListener,
    state: &Arc<AppState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let shared = state.clone();
    let handler = move |request, _peer| handle(shared.clone(), request);
    // Live streams never end by themselves: end them first, so the drain does not
    // wait out its grace period for them.
    let shutdown = async {
        shutdown.await;
        if let Some(feed) = state.live.get() {
            feed.close();
        }
    };
    accept_loop(listener, &state.config, tls, shutdown, state.stalled_writes.clone(), handler).await;
}

/// The ceiling for load tests: the same listener, connection settings and runtime as
/// [`serve`], answering every request with `body` and touching nothing else. Load
/// figures for the real server are quoted as ratios to this.
pub async fn serve_fixed(
    listener: TcpListener,
    config: &ServerConfig,
    body: Bytes,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |_request, _peer| {
        let mut response = Response::new(response::full(body.clone()));
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        std::future::ready(response)
    };
    accept_loop(listener, config, None, shutdown, Default::default(), handler).await;
}

/// Another front end on the server's own listener machinery (the gateway): the same
/// HTTP/1.1 and h2c (or TLS) connections, limits and graceful drain as [`serve`],
/// with every request answered by `handler`.
pub async fn serve_front<H, F>(
    listener: TcpListener,
    config: &ServerConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    accept_loop(listener, config, tls, shutdown, Default::default(), handler).await;
}

/// Accepts connections until `shutdown`, serving each with `handler`, then drains them
/// for up to `shutdown_grace`.
async fn accept_loop<H, F>(
    listener: TcpListener,
    config: &ServerConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    stalled: Arc<std::sync::atomic::AtomicU64>,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let builder = Arc::new(connection_builder(config));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small JSON responses: send them now rather than wait for Nagle.
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let response = handler(request, peer);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let watcher = graceful.watcher();
        let (builder, tls) = (builder.clone(), tls.clone());
        let handshake_timeout = config.header_read_timeout;
        let stream = stall::StallGuard::new(stream, config.write_stall_timeout, stalled.clone());
        tokio::spawn(async move {
            let served = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                Some(acceptor) => {
                    // The handshake counts against the header timeout: a client that
                    // stalls here is a slowloris too.
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = config.shutdown_grace;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "connections still open after the grace period"),
    }
}
