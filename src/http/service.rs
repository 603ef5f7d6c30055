//! One request in, one response out: the entry point, load shedding, head sampling
//! and routing. The handlers are in `handlers`, the parsing of paths, headers, query
//! strings and bodies in `extract`. Every failure becomes an `ApiError` and leaves
//! through `response::problem`.

use super::AppState;
use super::error::ApiError;
use super::extract::{Params, airport, bad, carrier, flight_id, query_path};
use super::handlers::{flight, metrics, readyz, report_delay};
use super::negotiate::AcceptEncoding;
use super::response::{Body, json, problem};
use super::route::{Route, method_label, protocol_label};
use crate::auth::{self, Caller, authorize};
use crate::compression::Encoding;
use crate::domain::Limit;
use crate::trace_context;
use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, AUTHORIZATION};
use http::{Method, Request, Response, StatusCode};
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
/// nothing unless traces are exported (or the log filter asks for debug). A request
/// that arrives in a trace (`traceparent`) continues it: see `trace_context`.
pub async fn handle<B>(state: Arc<AppState>, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let start = Instant::now();
    let (route, param) = Route::locate(request.uri().path());
    let (method, version) = (request.method().clone(), request.version());
    let span = trace_context::request_span(request.headers(), state.config.trace_sample_ratio, || {
        tracing::debug_span!(
            "request",
            route = route.template(),
            method = method_label(&method),
            protocol = protocol_label(version),
            status = tracing::field::Empty,
        )
    });
    let mut response = handle_in(&state, route, param, request).instrument(span.clone()).await;
    if let Some(hsts) = &state.config.hsts {
        response.headers_mut().insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    span.record("status", response.status().as_u16());
    if let Some(metrics) = &state.metrics {
        metrics.observe_request(route, &method, response.status(), version, start.elapsed());
    }
    response
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
    if !state.config.role.serves(route) {
        let (role, owner) = (state.config.role, super::ServiceRole::owner(route));
        return problem_counted(state, &ApiError::OtherRole { route: route.template(), role, owner });
    }
    let caller = match &state.config.auth {
        None => Caller::default(),
        Some(verifier) => {
            let access = route.access(request.method());
            // Boxed: only servers with auth on carry the check's future.
            let checked = Box::pin(authorize(verifier, access, request.headers().get(AUTHORIZATION), auth::now()));
            match checked.await {
                Ok(caller) => caller,
                Err(refused) => {
                    if let Some(metrics) = &state.metrics {
                        metrics.observe_auth_refused(refused);
                    }
                    return problem_counted(state, &ApiError::Auth(refused));
                }
            }
        }
    };
    match self::route(state, route, param, request, caller).await {
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
    caller: Caller,
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
            let events = Box::pin(state.store().events(query_path, flight_id(param)?)).await?;
            json(StatusCode::OK, &events, &accept, state).await
        }
        (Route::FlightEvents, _) => Err(allow("GET")),
        (Route::FlightDelays, &Method::POST) => {
            let id = flight_id(param)?;
            Box::pin(report_delay(state, id, request, &accept, caller)).await
        }
        (Route::FlightDelays, _) => Err(allow("POST")),
        (Route::Departures, &Method::GET) => {
            let query_path = query_path(state, &request)?;
            let params = Params::parse(request.uri().query(), &["from", "to", "limit"])?;
            let limit = params.get("limit").map(Limit::parse).transpose().map_err(bad)?.unwrap_or(Limit::DEFAULT);
            let departures =
                Box::pin(state.store().departures(query_path, airport(param)?, params.window()?, limit)).await?;
            json(StatusCode::OK, &departures, &accept, state).await
        }
        (Route::AirportDelays, &Method::GET) => {
            let query_path = query_path(state, &request)?;
            let params = Params::parse(request.uri().query(), &["from", "to"])?;
            let stats = Box::pin(state.store().delay_stats(query_path, airport(param)?, params.window()?)).await?;
            json(StatusCode::OK, &stats, &accept, state).await
        }
        (Route::Board, &Method::GET) => {
            let params = Params::parse(request.uri().query(), &["from", "to", "limit"])?;
            let limit = params.get("limit").map(Limit::parse).transpose().map_err(bad)?.unwrap_or(Limit::DEFAULT);
            let board = Box::pin(state.store().board(airport(param)?, params.window()?, limit)).await?;
            json(StatusCode::OK, &board, &accept, state).await
        }
        (Route::AirportHours, &Method::GET) => {
            let params = Params::parse(request.uri().query(), &["from", "to"])?;
            let hours = Box::pin(state.store().airport_hours(airport(param)?, params.window()?)).await?;
            let hours: Vec<_> = hours.iter().map(|(hour, tally)| Punctuality::of(Some(*hour), tally)).collect();
            json(StatusCode::OK, &hours, &accept, state).await
        }
        (Route::CarrierOnTime, &Method::GET) => {
            let tally = Box::pin(state.store().carrier_on_time(carrier(param)?)).await?;
            json(StatusCode::OK, &Punctuality::of(None, &tally), &accept, state).await
        }
        (Route::Departures | Route::AirportDelays | Route::Board | Route::AirportHours | Route::CarrierOnTime, _) => {
            Err(allow("GET"))
        }
        (Route::Live, &Method::GET) => super::live::live(state, &request),
        (Route::Dashboard, &Method::GET) => super::live::dashboard(state, &request),
        (Route::Live | Route::Dashboard, _) => Err(allow("GET")),
        (Route::Subject, &Method::DELETE) => {
            let request_id = super::handlers::request_id(request.headers());
            Box::pin(super::subjects::erase(state, param, &accept, &caller, &request_id)).await
        }
        (Route::Subject, _) => Err(allow("DELETE")),
        (Route::SubjectExport, &Method::GET) => Box::pin(super::subjects::export(state, param, &accept)).await,
        (Route::SubjectExport, _) => Err(allow("GET")),
        (Route::KeysRotate, &Method::POST) => {
            let request_id = super::handlers::request_id(request.headers());
            Box::pin(super::subjects::rotate(state, &accept, &caller, &request_id)).await
        }
        (Route::KeysRotate, _) => Err(allow("POST")),
        (Route::Audit, &Method::GET) => Box::pin(super::subjects::audit(state, request.uri().query())).await,
        (Route::Audit, _) => Err(allow("GET")),
        (Route::Subscriptions, &Method::POST) => Box::pin(super::subscriptions::create(state, request, &accept)).await,
        (Route::Subscriptions, &Method::GET) => Box::pin(super::subscriptions::list(state, &accept)).await,
        (Route::Subscriptions, _) => Err(allow("GET, POST")),
        (Route::Subscription, &Method::GET) => Box::pin(super::subscriptions::show(state, param, &accept)).await,
        (Route::Subscription, &Method::DELETE) => Box::pin(super::subscriptions::remove(state, param)).await,
        (Route::Subscription, _) => Err(allow("GET, DELETE")),
        (Route::Metrics | Route::Unmatched, _) => Err(ApiError::NoRoute(path.to_owned())),
    }
}

/// A tally as the API returns it, with its ratios.
#[derive(serde::Serialize)]
struct Punctuality<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    hour: Option<crate::domain::UtcTime>,
    #[serde(flatten)]
    tally: &'a crate::domain::Tally,
    on_time_ratio: Option<f64>,
    mean_delay_minutes: Option<f64>,
}

impl<'a> Punctuality<'a> {
    fn of(hour: Option<crate::domain::UtcTime>, tally: &'a crate::domain::Tally) -> Self {
        Self { hour, tally, on_time_ratio: tally.on_time_ratio(), mean_delay_minutes: tally.mean_delay_minutes() }
    }
}
