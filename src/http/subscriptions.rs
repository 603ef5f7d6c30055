//! Webhook subscriptions (`serve --role notify`): register one (`POST
//! /subscriptions`: a URL, the airports whose flights it wants, optionally a secret),
//! list them, see one with its delivery counts, remove one. The secret is shown once,
//! in the answer that created it.

use super::AppState;
use super::error::ApiError;
use super::extract::{bad, json_body};
use super::negotiate::AcceptEncoding;
use super::response::{Body, full, json};
use crate::notify::{NewSubscription, Notifier};
use bytes::Bytes;
use http::header::{HeaderValue, LOCATION};
use http::{Request, Response, StatusCode};

fn notifier(state: &AppState) -> Result<&Notifier, ApiError> {
    state.notifier.get().map(|n| &**n).ok_or(ApiError::NotifyOff)
}

fn subscription_id(segment: &str) -> Result<i64, ApiError> {
    segment.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| bad(format!("{segment:?} is not a subscription id")))
}

pub(super) async fn create<B>(
    state: &AppState,
    request: Request<B>,
    accept: &AcceptEncoding,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let notifier = notifier(state)?;
    let body = json_body(request, state.config.max_body_bytes).await?;
    let new: NewSubscription = serde_json::from_slice(&body).map_err(|e| bad(format!("body: {e}")))?;
    let created = notifier.subscribe(new).await?;
    let mut response = json(StatusCode::CREATED, &created, accept, state).await?;
    let location = HeaderValue::from_str(&format!("/subscriptions/{}", created.id)).expect("ascii digits");
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

pub(super) async fn list(state: &AppState, accept: &AcceptEncoding) -> Result<Response<Body>, ApiError> {
    json(StatusCode::OK, &notifier(state)?.subscriptions().await?, accept, state).await
}

pub(super) async fn show(state: &AppState, segment: &str, accept: &AcceptEncoding) -> Result<Response<Body>, ApiError> {
    let id = subscription_id(segment)?;
    match notifier(state)?.subscription(id).await? {
        Some(subscription) => json(StatusCode::OK, &subscription, accept, state).await,
        None => Err(ApiError::NoRoute(format!("/subscriptions/{id}"))),
    }
}

pub(super) async fn remove(state: &AppState, segment: &str) -> Result<Response<Body>, ApiError> {
    let id = subscription_id(segment)?;
    if notifier(state)?.unsubscribe(id).await? {
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    } else {
        Err(ApiError::NoRoute(format!("/subscriptions/{id}")))
    }
}
