//! The gateway (`serve --role gateway`): the only public listener of a split service.
//! HTTP/1.1, h2c or TLS in front, on the server's own listener machinery
//! (`http::serve_front`: the same limits, timeouts and graceful drain); HTTP/2 with
//! one reused connection per destination behind ([`pool`]); routes from the
//! services' own split unless the file adds its own ([`config`]).
//!
//! Per request: the route and its service, a destination by two random choices,
//! the request (body read up to the size limit) sent with the hop-by-hop headers
//! removed and `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and
//! `Forwarded` (RFC 7239) added; `Authorization` passes through, and with `--auth`
//! the gateway checks it first, as the service would (`auth::authorize` with the
//! route's access), so a request without the role it needs is a 401 or 403 at the
//! edge and never reaches a service. Traces: a `gateway`
//! span per request (continuing the client's `traceparent`, or sampled at the ratio)
//! with an `upstream` span per try under it, whose id goes to the service in
//! `traceparent`, so one trace spans gateway and service ([`crate::trace_context`]);
//! an untraced request's `traceparent` passes through as it came.
//! An idempotent request (GET, HEAD, OPTIONS) that fails in transport or is answered
//! 502/503/504 is tried once more on another destination, if the retry budget
//! allows. No destination, or a transport failure, is a 502 problem naming the route
//! and service; no response head within the route's time limit is a 504.
//!
//! The file is read again when it changes (checked every 500 ms); requests in flight
//! keep the table they started with, and destinations that stay keep their
//! connection and health. A file that does not parse is logged and ignored.

pub mod config;
mod headers;
pub mod metrics;
pub mod pool;

use crate::http::{ApiError, Body, Route};
use crate::trace_context;
use bytes::Bytes;
use config::{GatewayConfig, Target};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use metrics::{DestinationState, GatewayMetrics};
use pool::{Destination, RetryBudget, Service};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tracing::Instrument;

/// What the gateway has done.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub forwarded: AtomicU64,
    pub retries: AtomicU64,
    pub bad_gateway: AtomicU64,
    pub timeouts: AtomicU64,
    pub reloads: AtomicU64,
    /// Requests refused 401 or 403 at the edge (`--auth`).
    pub auth_refused: AtomicU64,
}

/// One version of the configuration, with its destinations.
struct Table {
    config: GatewayConfig,
    services: BTreeMap<String, Service>,
    budget: RetryBudget,
}

impl Table {
    /// Builds from `config`, keeping the destinations (connection, health) of
    /// `previous` whose URL stays; each service's histograms come from `metrics`.
    fn build(
        config: GatewayConfig,
        previous: Option<&Table>,
        metrics: Option<&GatewayMetrics>,
    ) -> Result<Self, String> {
        let kept: BTreeMap<&str, &Arc<Destination>> = previous
            .map(|p| p.services.values().flat_map(|s| s.destinations.iter().map(|d| (d.url.as_str(), d))).collect())
            .unwrap_or_default();
        let mut services = BTreeMap::new();
        for (name, file) in &config.file.services {
            let mut destinations = Vec::new();
            for url in &file.destinations {
                let url = url.trim_end_matches('/');
                destinations.push(match kept.get(url) {
                    Some(&d) => d.clone(),
                    None => Destination::new(url)?,
                });
            }
            let durations = metrics.map(|m| m.service(name));
            services.insert(name.clone(), Service { name: name.clone(), destinations, durations });
        }
        let budget = RetryBudget::new(config.file.retry_budget_percent);
        Ok(Self { config, services, budget })
    }
}

pub struct Gateway {
    file: Option<PathBuf>,
    table: RwLock<Arc<Table>>,
    /// The largest request body forwarded (413 beyond).
    max_body_bytes: usize,
    /// `https` when the front listener speaks TLS.
    scheme: &'static str,
    /// With traces exported: the share of requests without a caller's decision traced.
    trace_sample_ratio: Option<f64>,
    /// With `--auth`: every forwarded request's token checked here first.
    auth: Option<Arc<crate::auth::Verifier>>,
    pub stats: GatewayStats,
    /// `None` with `--metrics off`: nothing recorded, `/metrics` is 404.
    metrics: Option<Arc<GatewayMetrics>>,
}

impl Gateway {
    /// From the routes' file and the front listener's own settings (body limit, trace
    /// sampling, metrics, auth); `tls` when the front speaks TLS.
    pub fn new(
        config: GatewayConfig,
        file: Option<PathBuf>,
        server: &crate::http::ServerConfig,
        tls: bool,
    ) -> Result<Arc<Self>, String> {
        let metrics = server.metrics.then(GatewayMetrics::new);
        let table = Table::build(config, None, metrics.as_deref())?;
        Ok(Arc::new(Self {
            metrics,
            file,
            table: RwLock::new(Arc::new(table)),
            max_body_bytes: server.max_body_bytes,
            scheme: if tls { "https" } else { "http" },
            trace_sample_ratio: server.trace_sample_ratio,
            auth: server.auth.clone(),
            stats: GatewayStats::default(),
        }))
    }

    fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every destination as it is now, by service.
    pub fn destinations(&self) -> Vec<DestinationState> {
        let table = self.table();
        let all = table.services.values().flat_map(|s| s.destinations.iter().map(move |d| (s, d)));
        all.map(|(s, d)| DestinationState {
            service: s.name.clone(),
            url: d.url.clone(),
            healthy: d.healthy(),
            outstanding: d.outstanding.load(Ordering::Relaxed),
            sent: d.sent.load(Ordering::Relaxed),
        })
        .collect()
    }

    /// One round of active checks on every destination, concurrently.
    pub async fn check_all(&self) {
        let table = self.table();
        let health = table.config.file.health;
        let timeout = Duration::from_millis(health.timeout_ms);
        let checks = table.services.values().flat_map(|s| s.destinations.iter()).map(|d| async move {
            if pool::check(d, timeout).await {
                d.passed_check();
            } else {
                d.failed(health.eject_after);
            }
        });
        futures_util::future::join_all(checks).await;
    }

    /// Active checks every `health.interval_ms` until stopped.
    pub async fn keep_checking(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        loop {
            let interval = Duration::from_millis(self.table().config.file.health.interval_ms);
            tokio::select! {
                _ = tokio::time::sleep(interval) => self.check_all().await,
                _ = stopped.changed() => return,
            }
        }
    }

    /// Reads the file again whenever its modification time changes, until stopped.
    pub async fn follow_file(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let Some(path) = self.file.clone() else { return };
        let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen: Option<SystemTime> = modified(&path);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stopped.changed() => return,
            }
            let now = modified(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match self.reload(&path) {
                Ok(summary) => tracing::info!("gateway: {} reloaded: {summary}", path.display()),
                Err(e) => tracing::error!("gateway: {} not reloaded, the running table stays: {e}", path.display()),
            }
        }
    }

    /// Replaces the table from the file; in-flight requests keep the old one.
    pub fn reload(&self, path: &std::path::Path) -> Result<String, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let config = GatewayConfig::parse(&text)?;
        let table = Table::build(config, Some(&self.table()), self.metrics.as_deref())?;
        let summary = format!(
            "{} services, {} destinations",
            table.services.len(),
            table.services.values().map(|s| s.destinations.len()).sum::<usize>()
        );
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        self.stats.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(summary)
    }

    /// Answers one request from a client at `peer`.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let table = self.table();
        let target = table.config.target(request.method(), request.uri().path());
        let outcome = match target {
            Target::Own(route) => self.own(&table, route, &request),
            Target::Unmatched => Err(ApiError::NoRoute(request.uri().path().to_owned())),
            Target::Service { route, service, timeout } => {
                let method = crate::http::method_label(request.method());
                let span = trace_context::request_span(request.headers(), self.trace_sample_ratio, || {
                    tracing::debug_span!("gateway", route, service, method, status = tracing::field::Empty)
                });
                let leg = Leg { route: &route, service: &service, timeout, span: &span };
                let outcome = match self.refused(&request).await {
                    Some(refused) => Err(ApiError::Auth(refused)),
                    None => Box::pin(self.forward(&table, request, peer, leg).instrument(span.clone())).await,
                };
                let status = outcome.as_ref().map_or_else(|e| e.status(), |r| r.status());
                span.record("status", status.as_u16());
                if let Some(durations) = table.services.get(&service).and_then(|s| s.durations.as_ref()) {
                    durations.observe(status, started.elapsed());
                }
                outcome
            }
        };
        outcome.unwrap_or_else(|e| {
            match e {
                ApiError::BadGateway { .. } => self.stats.bad_gateway.fetch_add(1, Ordering::Relaxed),
                ApiError::GatewayTimeout { .. } => self.stats.timeouts.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            crate::http::problem_response(&e)
        })
    }

    /// Why the request's token does not let it through, with `--auth`: the check the
    /// service makes, for the route the path names (a route of the file's own that
    /// names none is public here, and the service behind decides).
    async fn refused(&self, request: &Request<Incoming>) -> Option<crate::auth::AuthError> {
        let verifier = self.auth.as_ref()?;
        let access = Route::locate(request.uri().path()).0.access(request.method());
        let token = request.headers().get(header::AUTHORIZATION);
        let refused = crate::auth::authorize(verifier, access, token, crate::auth::now()).await.err()?;
        self.stats.auth_refused.fetch_add(1, Ordering::Relaxed);
        Some(refused)
    }

    /// What the gateway answers itself: `/healthz` always, `/readyz` when every
    /// service has a healthy destination, `/metrics` unless metrics are off.
    fn own(&self, table: &Table, route: Route, request: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let known =
            matches!(route, Route::Healthz | Route::Readyz) || (route == Route::Metrics && self.metrics.is_some());
        if !known {
            return Err(ApiError::NoRoute(request.uri().path().to_owned()));
        }
        if request.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed { method: request.method().to_string(), allow: "GET" });
        }
        let (status, body) = match route {
            Route::Metrics => return Ok(self.metrics_response(request)),
            Route::Healthz => (StatusCode::OK, serde_json::json!({ "status": "ok" })),
            Route::Readyz => {
                let services: BTreeMap<&str, serde_json::Value> = table
                    .services
                    .values()
                    .map(|s| {
                        let value =
                            serde_json::json!({ "healthy": s.healthy_count(), "destinations": s.destinations.len() });
                        (s.name.as_str(), value)
                    })
                    .collect();
                let ready = table.services.values().all(|s| s.healthy_count() > 0);
                let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (status, serde_json::json!({ "ready": ready, "services": services }))
            }
            _ => return Err(ApiError::NoRoute(request.uri().path().to_owned())),
        };
        let mut response = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(response)
    }

    /// `/metrics`, in the exposition the client's Accept header asks for.
    fn metrics_response(&self, request: &Request<Incoming>) -> Response<Body> {
        let Some(metrics) = &self.metrics else { unreachable!("routed only with metrics on") };
        let stats = &self.stats;
        let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let scraped = metrics::Scraped {
            forwarded: read(&stats.forwarded),
            retries: read(&stats.retries),
            bad_gateway: read(&stats.bad_gateway),
            timeouts: read(&stats.timeouts),
            reloads: read(&stats.reloads),
            auth_refused: self.auth.is_some().then(|| read(&stats.auth_refused)),
            destinations: self.destinations(),
            cpu: crate::machine::CpuTime::of_process(),
        };
        let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let (body, media_type) = crate::http::metrics::negotiated(metrics.encode(scraped), accept);
        let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
        response
    }

    async fn forward(
        &self,
        table: &Table,
        request: Request<Incoming>,
        peer: SocketAddr,
        leg: Leg<'_>,
    ) -> Result<Response<Body>, ApiError> {
        let Leg { route, service: service_name, timeout, span } = leg;
        let bad = |problem: String| ApiError::BadGateway {
            route: route.to_owned(),
            service: service_name.to_owned(),
            problem,
        };
        let service = table.services.get(service_name).ok_or_else(|| bad("no such service".into()))?;
        let (parts, body) = request.into_parts();
        let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let limit = self.max_body_bytes;
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let body = Limited::new(body, limit).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest(format!("reading the request body: {e}"))
            }
        })?;
        let body = body.to_bytes();
        let headers = headers::forwarded(&parts.headers, peer, self.scheme);
        let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let eject_after = table.config.file.health.eject_after;
        table.budget.deposit();
        let first = service.pick(None).ok_or_else(|| bad("no healthy destination".into()))?;
        let attempt = |destination: Arc<Destination>| {
            let request = upstream_request(&parts.method, &destination, &path, &headers, body.clone());
            let try_span = if span.is_disabled() {
                tracing::Span::none()
            } else {
                let url = destination.url.as_str();
                tracing::debug_span!(parent: span, "upstream", destination = url, status = tracing::field::Empty)
            };
            let traceparent = trace_context::traceparent(&try_span);
            async move {
                let mut request = request.map_err(Failure::Transport)?;
                if let Some(traceparent) = traceparent {
                    request.headers_mut().insert(trace_context::TRACEPARENT, traceparent);
                }
                let outcome = send(&destination, request, timeout).instrument(try_span.clone()).await;
                match &outcome {
                    Ok(r) if is_gateway_error(r.status()) => destination.failed(eject_after),
                    Ok(_) => destination.succeeded(),
                    Err(_) => destination.failed(eject_after),
                }
                if let Ok(response) = &outcome {
                    try_span.record("status", response.status().as_u16());
                }
                outcome
            }
        };
        let mut outcome = attempt(first.clone()).await;
        let failed = match &outcome {
            Ok(r) => is_gateway_error(r.status()),
            Err(_) => true,
        };
        if idempotent
            && failed
            && let Some(second) = service.pick(Some(&first))
            && table.budget.withdraw()
        {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            outcome = attempt(second).await;
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(response) => Ok(downstream_response(response)),
            Err(Failure::Timeout) => Err(ApiError::GatewayTimeout {
                route: route.to_owned(),
                service: service_name.to_owned(),
                timeout_ms: timeout.as_millis() as u64,
            }),
            Err(Failure::Transport(problem)) => Err(bad(problem)),
        }
    }
}

/// Where one request goes: its route's name (for errors and spans), the service, the
/// time limit for the service's response head, and the span it is traced under.
struct Leg<'a> {
    route: &'a str,
    service: &'a str,
    timeout: Duration,
    span: &'a tracing::Span,
}

/// Why a try got no response.
enum Failure {
    Timeout,
    Transport(String),
}

/// The statuses that say the service itself could not answer, not the request.
fn is_gateway_error(status: StatusCode) -> bool {
    matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

fn upstream_request(
    method: &Method,
    to: &Destination,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method.clone();
    *request.uri_mut() = to.uri(path)?;
    *request.headers_mut() = headers.clone();
    Ok(request)
}

/// Sends on the destination's connection; the head must arrive within `timeout`.
async fn send(
    to: &Destination,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Response<Incoming>, Failure> {
    to.outstanding.fetch_add(1, Ordering::Relaxed);
    to.sent.fetch_add(1, Ordering::Relaxed);
    let exchange = async {
        let mut upstream = to.upstream().await?;
        upstream.ready().await.map_err(|e| format!("{}: {e}", to.url))?;
        upstream.send_request(request).await.map_err(|e| format!("{}: {e}", to.url))
    };
    let outcome = tokio::time::timeout(timeout, exchange).await;
    to.outstanding.fetch_sub(1, Ordering::Relaxed);
    match outcome {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(problem)) => Err(Failure::Transport(problem)),
        Err(_) => Err(Failure::Timeout),
    }
}

/// The service's response as the client gets it: the body streamed through.
fn downstream_response(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    for name in headers::HOP_BY_HOP {
        parts.headers.remove(name);
    }
    let body = body.map_err(std::io::Error::other).boxed_unsync();
    Response::from_parts(parts, Either::Right(body))
}
