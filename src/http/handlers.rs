//! The handlers behind the routes: the flight read (through the cache), readiness,
//! metrics and the delay report.

use super::AppState;
use super::cache::CachedFlight;
use super::error::ApiError;
use super::extract::{expected_version, json_body, parse_event, query_path};
use super::metrics::{Scraped, negotiated};
use super::negotiate::AcceptEncoding;
use super::response::{Body, etag, full, json, json_bytes, serialize};
use super::service::CACHE_HEADER;
use crate::domain::FlightId;
use crate::store::QueryPath;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, ETAG, HeaderValue, IF_MATCH, LOCATION};
use http::{Request, Response, StatusCode};

/// `GET /metrics`: never compressed (Prometheus asks for gzip, but a scrape is a few
/// kilobytes on loopback and compressing it would show up in the server's own profile).
/// OpenMetrics when the client asks for it (Prometheus does), else Prometheus text.
/// The readiness probes run for every scrape, so Prometheus sees shard readiness
/// and projection lag without anyone calling `/readyz`.
pub(super) async fn metrics<B>(state: &AppState, request: &Request<B>) -> Response<Body> {
    let Some(metrics) = &state.metrics else { unreachable!("routed only with metrics on") };
    let readiness = state.store().readiness(state.config.probes).await;
    let scraped = Scraped {
        in_flight: state.config.max_in_flight - state.in_flight.available_permits(),
        max_in_flight: state.config.max_in_flight,
        cache: state.cache.as_ref().map(|c| c.stats()),
        pools: state.store().pool_stats(),
        shards: readiness.shards,
        async_lags: readiness.probes.async_projections.lags,
        projector: state.projector(),
        stalled_writes: state.stalled_writes.load(std::sync::atomic::Ordering::Relaxed),
        live: state.live.get().map(|feed| {
            let stats = feed.stats();
            let read = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
            (read(&stats.subscribers), read(&stats.published), read(&stats.dropped))
        }),
        cpu: crate::machine::CpuTime::of_process(),
    };
    let openmetrics = metrics.encode(scraped);
    let accept = request.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, media_type) = negotiated(openmetrics, accept);
    let mut response = Response::new(full(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    response
}

/// `GET /flights/{id}`, through the flight cache when it is on.
pub(super) async fn flight(
    state: &AppState,
    query_path: QueryPath,
    id: FlightId,
    accept: &AcceptEncoding,
) -> Result<Response<Body>, ApiError> {
    let ticket = match &state.cache {
        None => None,
        Some(cache) => match cache.get(id) {
            Ok(hit) => return flight_response(hit, Some(CACHE_HIT), accept, state).await,
            Err(ticket) => Some(ticket),
        },
    };
    // Boxed: the four paths' futures are large (sea-orm's most), and a cache hit
    // should not carry their size; a miss pays one allocation next to a query.
    let view = Box::pin(state.store().flight(query_path, id)).await?;
    let cached = CachedFlight::new(serialize(&view), view.status.version);
    if let (Some(cache), Some(ticket)) = (&state.cache, ticket) {
        cache.fill(id, ticket, cached.clone());
        return flight_response(cached, Some(CACHE_MISS), accept, state).await;
    }
    flight_response(cached, None, accept, state).await
}

const CACHE_HIT: HeaderValue = HeaderValue::from_static("hit");
const CACHE_MISS: HeaderValue = HeaderValue::from_static("miss");

async fn flight_response(
    flight: CachedFlight,
    cache: Option<HeaderValue>,
    accept: &AcceptEncoding,
    state: &AppState,
) -> Result<Response<Body>, ApiError> {
    let mut response = json_bytes(StatusCode::OK, flight.body, accept, state).await?;
    let headers = response.headers_mut();
    headers.insert(ETAG, flight.etag);
    if let Some(cache) = cache {
        headers.insert(CACHE_HEADER, cache);
    }
    Ok(response)
}

/// `GET /readyz`: every probe in `store::health`, 503 when any fails.
pub(super) async fn readyz(state: &AppState, accept: &AcceptEncoding) -> Result<Response<Body>, ApiError> {
    let readiness = state.store().readiness(state.config.probes).await;
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &readiness, accept, state).await
}

/// The request body of `POST /flights/{id}/delays`: an event kind with its fields,
/// and optionally when it happened (default: now).
pub(super) async fn report_delay<B>(
    state: &AppState,
    id: FlightId,
    request: Request<B>,
    accept: &AcceptEncoding,
    caller: crate::auth::Caller,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let query_path = query_path(state, &request)?;
    let headers = request.headers();
    let request_id = request_id(headers);
    let expected = expected_version(headers.get(IF_MATCH))?;
    let body = json_body(request, state.config.max_body_bytes).await?;
    // The reporter is whoever the verified token names (with auth off, nobody).
    let event = parse_event(&body)?.with_reporter(caller.subject);
    let role = if state.config.auth.is_some() { "reporter" } else { "anonymous" };
    let change = crate::store::Change { request_id: request_id.clone(), role: role.into() };
    let outcome = append_following_layout(state, query_path, id, expected, &event, &change).await;
    // Whatever the outcome: an error after the commit (a lost connection, say) may
    // still have changed the flight.
    if let Some(cache) = &state.cache {
        cache.invalidate(id);
    }
    let outcome = outcome?;
    if !state.config.inline_read_models.is_empty() {
        wait_for_read_models(state, id).await;
    }
    let version = outcome.status.version;
    let mut response = json(StatusCode::CREATED, &outcome, accept, state).await?;
    response.headers_mut().insert(ETAG, etag(version));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    // Cannot fail: the path is ASCII digits and slashes.
    response.headers_mut().insert(LOCATION, HeaderValue::from_str(&format!("/flights/{id}/events")).expect("ascii"));
    Ok(response)
}

/// Appends on the current layout. A write that meets the fence of a layout
/// `flightbench reshard` retired wrote nothing; it waits for the server to follow the
/// layout (`follow`) and is tried again, at most [`LAYOUT_TRIES`] times in all.
async fn append_following_layout(
    state: &AppState,
    query_path: QueryPath,
    id: FlightId,
    expected: i64,
    event: &crate::domain::DelayEvent,
    change: &crate::store::Change,
) -> Result<crate::domain::AppendOutcome, ApiError> {
    for _ in 0..LAYOUT_TRIES {
        let seen = state.layout_changes();
        match state.store().append_as(query_path, id, expected, event, change).await {
            Err(error) if crate::reshard::is_retired(&error) => {
                if !state.await_layout_change(seen, super::follow::LAYOUT_WAIT).await {
                    break;
                }
            }
            done => return Ok(done?),
        }
    }
    Err(ApiError::LayoutSwitching)
}

/// Tries of a write across layout changes: one reshard needs two.
const LAYOUT_TRIES: usize = 3;

/// The header a change's request id travels in, both ways.
pub(super) const REQUEST_ID: &str = "x-request-id";

/// The client's `X-Request-Id` when it is a sensible one (1 to 128 visible ASCII
/// characters), else a fresh random one: the id the audit log records.
pub(super) fn request_id(headers: &http::HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()));
    match given {
        Some(id) => id.to_owned(),
        None => {
            let bytes: [u8; 8] = crate::seal::cipher::random().unwrap_or_default();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// How long a write with inline read models waits for the runner before it answers
/// anyway (the event is committed; the runner will apply it once it can).
pub const INLINE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// With inline read models: waits until the in-process runner has applied every
/// event committed on the flight's shard so far (this write's included) to each
/// inline read model. The rows live on other shards than the event, so one transaction
/// cannot hold both; this is Marten's inline in what the writer is promised (its
/// change is in every model when it is answered), not in atomicity.
async fn wait_for_read_models(state: &AppState, id: FlightId) {
    let Some(projector) = state.projector() else { return };
    let shard = state.store().shards().shard_for(id.get());
    let head = match state.store().event_head(shard).await {
        Ok(head) => head,
        Err(error) => return tracing::warn!(%error, "inline read models: cannot read the shard's newest event"),
    };
    if !projector.applied_through(&state.config.inline_read_models, shard, head, INLINE_WAIT).await {
        tracing::warn!(shard, head, "inline read models: the runner did not apply the write within {INLINE_WAIT:?}");
    }
}
