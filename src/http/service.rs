//! One request in, one response out: routing, parameter parsing, the handlers. Every
//! failure becomes an `ApiError` and leaves through `response::problem`.

use super::AppState;
use super::cache::CachedFlight;
use super::error::ApiError;
use super::metrics::{OPENMETRICS, PROMETHEUS_TEXT, Scraped, to_prometheus_text, wants_openmetrics};
use super::negotiate::AcceptEncoding;
use super::response::{Body, etag, full, json, json_bytes, problem, serialize};
use super::route::{Route, method_label, protocol_label};
use crate::compression::Encoding;
use crate::domain::{AirportCode, DelayEvent, EventKind, FlightId, Limit, TimeWindow, UtcTime};
use crate::store::QueryPath;
use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderValue, IF_MATCH, LOCATION};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The header that picks a query path for one request.
pub const QUERY_PATH_HEADER: &str = "x-query-path";

/// On `GET /flights/{id}` with the cache on: `hit` or `miss`.
pub const CACHE_HEADER: &str = "x-cache";

/// Handles one request. Never fails: errors become problem responses.
///
/// With metrics on, the request's duration is recorded by route template, method,
/// status class and protocol. The `request` span is at debug level, so it costs
/// nothing unless traces are exported (or the log filter asks for debug).
pub async fn handle<B>(state: Arc<AppState>, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let start = Instant::now();
    let (route, param) = Route::locate(request.uri().path());
    let (method, version) = (request.method().clone(), request.version());
    let traced = state.config.trace_sample_ratio.is_none_or(sampled);
    let span = if traced {
        tracing::debug_span!(
            "request",
            route = route.template(),
            method = method_label(&method),
            protocol = protocol_label(version),
            status = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    let response = handle_in(&state, route, param, request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    if let Some(metrics) = &state.metrics {
        metrics.observe_request(route, &method, response.status(), version, start.elapsed());
    }
    response
}

/// Head sampling: true for about `ratio` of calls. A per-thread xorshift generator:
/// the decision is made on every request, so it must cost next to nothing.
fn sampled(ratio: f64) -> bool {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            // Any non-zero seed that differs between threads.
            let seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
            seed | 1
        });
    }
    if ratio >= 1.0 {
        return true;
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        // The top 53 bits as a fraction in [0, 1).
        ((x >> 11) as f64 / (1u64 << 53) as f64) < ratio
    })
}

async fn handle_in<B>(state: &AppState, route: Route, param: Range<usize>, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    // Shed load before doing any work: a permit per request in flight (borrowed from
    // the state for this call: no reference count to bump).
    let Ok(_permit) = state.in_flight.try_acquire() else {
        if let Some(metrics) = &state.metrics {
            metrics.observe_load_shed();
        }
        return problem_counted(state, &ApiError::Overloaded(state.config.max_in_flight));
    };
    match self::route(state, route, param, request).await {
        Ok(response) => response,
        Err(error) => problem_counted(state, &error),
    }
}

/// A problem response, its (uncompressed) body counted with the others.
fn problem_counted(state: &AppState, error: &ApiError) -> Response<Body> {
    let response = problem(error);
    if let (Some(metrics), Some(len)) = (&state.metrics, response.body().size_hint().exact()) {
        metrics.observe_body(Encoding::Identity, len as usize, len as usize);
    }
    response
}

/// Only the hot arm (`GET /flights/{id}`) awaits its store call inline; the others box
/// theirs. A future is as large as its largest arm, and hyper moves the request's
/// future (memcpy) on every request: before boxing, those copies were 7% of a cached
/// point read's CPU time in the profile.
async fn route<B>(
    state: &AppState,
    route: Route,
    param: Range<usize>,
    request: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let accept = AcceptEncoding::parse(request.headers().get_all(ACCEPT_ENCODING));
    // Borrowed, not copied: the POST arm moves `request` only after it is done with
    // the segment it needs.
    let path = request.uri().path();
    // The range came from this same path (`Route::locate`); `get` keeps that a
    // non-issue rather than a proof.
    let param = path.get(param).unwrap_or_default();
    let method = request.method().clone();
    let allow = |allow: &'static str| ApiError::MethodNotAllowed { method: method.to_string(), allow };
    match (route, &method) {
        (Route::Healthz, &Method::GET) => {
            json(StatusCode::OK, &serde_json::json!({"status": "ok"}), &accept, state).await
        }
        (Route::Readyz, &Method::GET) => Box::pin(readyz(state, &accept)).await,
        (Route::Metrics, &Method::GET) if state.metrics.is_some() => Ok(Box::pin(metrics(state, &request)).await),
        (Route::Healthz | Route::Readyz, _) => Err(allow("GET")),
        (Route::Metrics, _) if state.metrics.is_some() => Err(allow("GET")),
        (Route::Flight, &Method::GET) => {
            let query_path = query_path(state, &request)?;
            flight(state, query_path, flight_id(param)?, &accept).await
        }
        (Route::Flight, _) => Err(allow("GET")),
        (Route::FlightEvents, &Method::GET) => {
            let query_path = query_path(state, &request)?;
            let events = Box::pin(state.store.events(query_path, flight_id(param)?)).await?;
            json(StatusCode::OK, &events, &accept, state).await
        }
        (Route::FlightEvents, _) => Err(allow("GET")),
        (Route::FlightDelays, &Method::POST) => {
            let id = flight_id(param)?;
            Box::pin(report_delay(state, id, request, &accept)).await
        }
        (Route::FlightDelays, _) => Err(allow("POST")),
        (Route::Departures, &Method::GET) => {
            let query_path = query_path(state, &request)?;
            let params = Params::parse(request.uri().query(), &["from", "to", "limit"])?;
            let limit = params.get("limit").map(Limit::parse).transpose().map_err(bad)?.unwrap_or(Limit::DEFAULT);
            let departures =
                Box::pin(state.store.departures(query_path, airport(param)?, params.window()?, limit)).await?;
            json(StatusCode::OK, &departures, &accept, state).await
        }
        (Route::AirportDelays, &Method::GET) => {
            let query_path = query_path(state, &request)?;
            let params = Params::parse(request.uri().query(), &["from", "to"])?;
            let stats = Box::pin(state.store.delay_stats(query_path, airport(param)?, params.window()?)).await?;
            json(StatusCode::OK, &stats, &accept, state).await
        }
        (Route::Departures | Route::AirportDelays, _) => Err(allow("GET")),
        (Route::Metrics | Route::Unmatched, _) => Err(ApiError::NoRoute(path.to_owned())),
    }
}

/// `GET /metrics`: never compressed (Prometheus asks for gzip, but a scrape is a few
/// kilobytes on loopback and compressing it would show up in the server's own profile).
/// OpenMetrics when the client asks for it (Prometheus does), else Prometheus text.
/// The readiness probes run for every scrape, so Prometheus sees shard readiness
/// and projection lag without anyone calling `/readyz`.
async fn metrics<B>(state: &AppState, request: &Request<B>) -> Response<Body> {
    let Some(metrics) = &state.metrics else { unreachable!("routed only with metrics on") };
    let scraped = Scraped {
        in_flight: state.config.max_in_flight - state.in_flight.available_permits(),
        max_in_flight: state.config.max_in_flight,
        cache: state.cache.as_ref().map(|c| c.stats()),
        pools: state.store.pool_stats(),
        shards: state.store.readiness(state.config.probes).await.shards,
    };
    let openmetrics = metrics.encode(scraped);
    let accept = request.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, media_type) = if wants_openmetrics(accept) {
        (openmetrics, OPENMETRICS)
    } else {
        (to_prometheus_text(&openmetrics), PROMETHEUS_TEXT)
    };
    let mut response = Response::new(full(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    response
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

fn flight_id(segment: &str) -> Result<FlightId, ApiError> {
    FlightId::parse(segment).map_err(bad)
}

fn airport(segment: &str) -> Result<AirportCode, ApiError> {
    AirportCode::parse(segment).map_err(bad)
}

fn query_path<B>(state: &AppState, request: &Request<B>) -> Result<QueryPath, ApiError> {
    match request.headers().get(QUERY_PATH_HEADER) {
        None => Ok(state.config.default_path),
        Some(value) => {
            let text = value.to_str().map_err(|_| bad("x-query-path is not ASCII"))?;
            text.parse::<QueryPath>().map_err(|e| ApiError::BadRequest(format!("x-query-path: {e}")))
        }
    }
}

/// Query parameters: only the expected names, each at most once.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if !allowed.contains(&key.as_ref()) {
                return Err(bad(format!("unknown query parameter {key:?}; expected {}", allowed.join(", "))));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(bad(format!("query parameter {key:?} given more than once")));
            }
            pairs.push((key.into_owned(), value.into_owned()));
        }
        Ok(Self(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn time(&self, key: &str) -> Result<UtcTime, ApiError> {
        let text = self.get(key).ok_or_else(|| bad(format!("query parameter {key:?} is required (RFC 3339 time)")))?;
        UtcTime::parse(text).map_err(|e| bad(format!("{key}: {e}")))
    }

    fn window(&self) -> Result<TimeWindow, ApiError> {
        TimeWindow::new(self.time("from")?, self.time("to")?).map_err(bad)
    }
}

/// `GET /flights/{id}`, through the flight cache when it is on.
async fn flight(
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
    let view = Box::pin(state.store.flight(query_path, id)).await?;
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
async fn readyz(state: &AppState, accept: &AcceptEncoding) -> Result<Response<Body>, ApiError> {
    let readiness = state.store.readiness(state.config.probes).await;
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &readiness, accept, state).await
}

/// The request body of `POST /flights/{id}/delays`: an event kind with its fields,
/// and optionally when it happened (default: now).
async fn report_delay<B>(
    state: &AppState,
    id: FlightId,
    request: Request<B>,
    accept: &AcceptEncoding,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let query_path = query_path(state, &request)?;
    let headers = request.headers();
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(content_type.to_owned()));
    }
    let expected = expected_version(headers.get(IF_MATCH))?;
    let limit = state.config.max_body_bytes;
    // Refuse a declared oversize body before reading any of it; chunked and HTTP/2
    // bodies are caught by `Limited` while reading.
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body = Limited::new(request.into_body(), limit).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError::PayloadTooLarge { limit }
        } else {
            bad(format!("reading the request body: {e}"))
        }
    })?;
    let event = parse_event(&body.to_bytes())?;
    let outcome = state.store.append(query_path, id, expected, &event).await;
    // Whatever the outcome: an error after the commit (a lost connection, say) may
    // still have changed the flight.
    if let Some(cache) = &state.cache {
        cache.invalidate(id);
    }
    let outcome = outcome?;
    let version = outcome.status.version;
    let mut response = json(StatusCode::CREATED, &outcome, accept, state).await?;
    response.headers_mut().insert(ETAG, etag(version));
    // Cannot fail: the path is ASCII digits and slashes.
    response.headers_mut().insert(LOCATION, HeaderValue::from_str(&format!("/flights/{id}/events")).expect("ascii"));
    Ok(response)
}

/// `If-Match: "3"` (or a bare `3`): the version the client last saw.
fn expected_version(header: Option<&HeaderValue>) -> Result<i64, ApiError> {
    let text = header.ok_or(ApiError::PreconditionRequired)?.to_str().map_err(|_| bad("If-Match is not ASCII"))?;
    let trimmed = text.trim();
    let unquoted = trimmed.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(trimmed);
    unquoted
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| bad(format!("If-Match {text:?} is not a flight version such as \"3\"")))
}

fn parse_event(body: &[u8]) -> Result<DelayEvent, ApiError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let object = value.as_object_mut().ok_or_else(|| bad("body must be a JSON object"))?;
    let occurred_at = match object.remove("occurred_at") {
        None => UtcTime::now(),
        Some(v) => serde_json::from_value(v).map_err(|e| bad(format!("occurred_at: {e}")))?,
    };
    let kind: EventKind = serde_json::from_value(value).map_err(|e| bad(format!("body: {e}")))?;
    kind.validate().map_err(bad)?;
    Ok(DelayEvent::new(occurred_at, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_sampling_keeps_about_the_ratio() {
        assert!((0..1_000).all(|_| sampled(1.0)));
        assert!((0..1_000).all(|_| !sampled(0.0)));
        let kept = (0..100_000).filter(|_| sampled(0.1)).count();
        assert!((9_000..11_000).contains(&kept), "{kept} of 100,000 at 0.1");
    }

    #[test]
    fn if_match_versions() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(expected_version(Some(&h("\"3\""))).unwrap(), 3);
        assert_eq!(expected_version(Some(&h("0"))).unwrap(), 0);
        assert!(matches!(expected_version(None), Err(ApiError::PreconditionRequired)));
        for bad in ["\"x\"", "-1", "W/\"3\"", "*", ""] {
            assert!(expected_version(Some(&h(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_bodies() {
        let e = parse_event(
            br#"{"kind":"reported","delay_minutes":20,"reason":"fog","occurred_at":"2026-12-01T06:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(e.occurred_at, UtcTime::parse("2026-12-01T06:00:00Z").unwrap());
        assert!(parse_event(br#"{"kind":"departed","delay_minutes":3}"#).is_ok());
        for bad in [
            &br#"[1]"#[..],
            br#"{"kind":"landed"}"#,
            br#"{"kind":"reported","delay_minutes":0}"#,
            br#"{"kind":"departed","delay_minutes":1,"gate":"B"}"#,
            b"not json",
        ] {
            assert!(matches!(parse_event(bad), Err(ApiError::BadRequest(_))), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn query_parameters_are_strict() {
        assert!(Params::parse(Some("from=2026-12-01&to=2026-12-02"), &["from", "to"]).unwrap().window().is_ok());
        assert!(Params::parse(Some("from=a&from=b"), &["from", "to"]).is_err());
        assert!(Params::parse(Some("form=x"), &["from", "to"]).is_err());
        let missing = Params::parse(Some("from=2026-12-01"), &["from", "to"]).unwrap();
        assert!(missing.window().is_err());
        let encoded =
            Params::parse(Some("from=2026-12-01T07%3A00%3A00%2B01%3A00&to=2026-12-02"), &["from", "to"]).unwrap();
        assert_eq!(encoded.time("from").unwrap(), UtcTime::parse("2026-12-01T06:00:00Z").unwrap());
    }
}
