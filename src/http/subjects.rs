//! The data subject endpoints (admin only): erasure by crypto-shredding, export, and
//! the key-encryption key rotation.
//!
//! `DELETE /admin/subjects/{sub}` destroys the subject's data key (`seal`): every
//! reason and identity sealed under it reads as erased from then on, while the events
//! still fold. `GET /admin/subjects/{sub}/export` returns every event the subject
//! reported, opened. Both need `--auth` (an `admin` token): with auth off, anyone who
//! reaches the port could erase anyone, so the server refuses instead.

use super::AppState;
use super::error::ApiError;
use super::negotiate::AcceptEncoding;
use super::response::{Body, json};
use crate::auth::Caller;
use crate::domain::SubjectId;
use crate::store::{Change, StoreError};
use http::{Response, StatusCode};

const NEEDS_AUTH: &str =
    "the admin API needs --auth (a token with the admin role); with the server stopped, use `flightbench gdpr`";
const NOT_SEALING: &str =
    "this server seals nothing (no --kek-file or FLIGHTBENCH_KEK): there is no data key to destroy";

/// What an erasure answers.
#[derive(serde::Serialize)]
struct Erased<'a> {
    subject: &'a str,
    /// The destroyed key's id; `null` when the subject had none (never reported
    /// since sealing was on, or already erased).
    erased_key: Option<String>,
    /// Events the subject reported in clear, before sealing was turned on: erasure
    /// cannot reach them, and says so rather than pretend.
    still_in_clear: usize,
}

/// A subject id from its (percent-encoded) path segment.
fn subject(segment: &str) -> Result<SubjectId, ApiError> {
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| ApiError::BadRequest("the subject id is not UTF-8 once percent-decoded".into()))?;
    SubjectId::parse(&decoded).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// An admin's change, for its audit record.
fn admin(request_id: &str) -> Change {
    Change { request_id: request_id.to_owned(), role: "admin".into() }
}

fn admin_on(state: &AppState) -> Result<(), ApiError> {
    if state.config.auth.is_none() { Err(ApiError::AdminOff(NEEDS_AUTH)) } else { Ok(()) }
}

pub(super) async fn erase(
    state: &AppState,
    segment: &str,
    accept: &AcceptEncoding,
    caller: &Caller,
    request_id: &str,
) -> Result<Response<Body>, ApiError> {
    admin_on(state)?;
    let subject = subject(segment)?;
    state.store().sealer().ok_or(ApiError::AdminOff(NOT_SEALING))?;
    let erasure = state.store().erase_subject(&subject, &admin(request_id), caller.subject.as_ref()).await?;
    // Neither the subject nor the admin is personal data to log in clear; the key id
    // is random and says nothing about either.
    tracing::info!(erased_key = ?erasure.key_id, by_admin = caller.subject.is_some(), "subject erased");
    let body = Erased { subject: subject.as_str(), erased_key: erasure.key_id, still_in_clear: erasure.still_in_clear };
    json(StatusCode::OK, &body, accept, state).await
}

/// Re-reads the server's KEK file and re-wraps every data key under its newest key,
/// while the server goes on serving (`seal::Sealer::rotate`).
pub(super) async fn rotate(
    state: &AppState,
    accept: &AcceptEncoding,
    caller: &Caller,
    request_id: &str,
) -> Result<Response<Body>, ApiError> {
    admin_on(state)?;
    state.store().sealer().ok_or(ApiError::AdminOff(NOT_SEALING))?;
    let rotation = state.store().rotate_keys(&admin(request_id), caller.subject.as_ref()).await?;
    tracing::info!(primary = %rotation.primary, rewrapped = rotation.rewrapped, "data keys re-wrapped");
    json(StatusCode::OK, &rotation, accept, state).await
}

pub(super) async fn export(
    state: &AppState,
    segment: &str,
    accept: &AcceptEncoding,
) -> Result<Response<Body>, ApiError> {
    admin_on(state)?;
    let subject = subject(segment)?;
    json(StatusCode::OK, &state.store().subject_export(&subject).await?, accept, state).await
}

/// One exported audit record, with its actor opened when asked (`actors=open`): the
/// subject id, or "erased" once their key is gone.
#[derive(serde::Serialize)]
struct Exported<'a> {
    #[serde(flatten)]
    record: &'a crate::audit::Record,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_subject: Option<String>,
}

/// `GET /admin/audit?since=…&actors=open`: the audit records from a time on (RFC 3339
/// or Unix seconds; default: all), as JSON lines, each chain in order. Actors stay
/// sealed unless `actors=open` (only an admin reaches this: whom to show them to is
/// the admin's decision).
pub(super) async fn audit(state: &AppState, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    admin_on(state)?;
    let params = super::extract::Params::parse(query, &["since", "actors"])?;
    let open = match params.get("actors") {
        None | Some("sealed") => false,
        Some("open") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("actors: {other:?} is not sealed or open"))),
    };
    let since = match params.get("since") {
        None => i64::MIN,
        Some(text) => match text.parse::<i64>() {
            Ok(seconds) => seconds.saturating_mul(1_000_000),
            Err(_) => crate::domain::UtcTime::parse(text)
                .map_err(|e| ApiError::BadRequest(format!("since: {e} (RFC 3339 or Unix seconds)")))?
                .unix()
                .saturating_mul(1_000_000),
        },
    };
    let mut records = state.store().audit_records(since).await?;
    records.sort_by(|a, b| (a.draft.at, &a.chain, a.seq).cmp(&(b.draft.at, &b.chain, b.seq)));
    let mut body = Vec::new();
    for record in &records {
        let actor_subject = match (&record.draft.actor, &record.draft.actor_key, state.store().sealer()) {
            (Some(actor), Some(key), Some(sealer)) if open => {
                let (request_id, action) = (&record.draft.request_id, &record.draft.action);
                let opened = sealer.open_actor(actor, key, request_id, action).await.map_err(StoreError::from)?;
                Some(opened.map_or_else(|| "erased".to_owned(), |s| s.as_str().to_owned()))
            }
            _ => None,
        };
        let exported = Exported { record, actor_subject };
        serde_json::to_writer(&mut body, &exported).map_err(|e| ApiError::Internal(e.to_string()))?;
        body.push(b'\n');
    }
    let mut response = Response::new(super::response::full(bytes::Bytes::from(body)));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/jsonl"));
    Ok(response)
}
