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
use crate::audit::{Draft, action};
use crate::auth::Caller;
use crate::domain::{RecordedEvent, SubjectId};
use crate::store::StoreError;
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

/// What an export answers.
#[derive(serde::Serialize)]
struct Export<'a> {
    subject: &'a str,
    data_key: Option<String>,
    events: Vec<RecordedEvent>,
}

/// A subject id from its (percent-encoded) path segment.
fn subject(segment: &str) -> Result<SubjectId, ApiError> {
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| ApiError::BadRequest("the subject id is not UTF-8 once percent-decoded".into()))?;
    SubjectId::parse(&decoded).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn admin_on(state: &AppState) -> Result<(), ApiError> {
    if state.config.auth.is_none() { Err(ApiError::AdminOff(NEEDS_AUTH)) } else { Ok(()) }
}

/// The audit record of an admin's change to the key store, when the log is on: the
/// admin sealed under their own key (the target is filled in by the key store).
async fn admin_draft(
    state: &AppState,
    caller: &Caller,
    request_id: &str,
    what: &str,
) -> Result<Option<Draft>, ApiError> {
    let (Some(sealer), Some(_)) = (state.store.sealer(), state.store.audit_scope()) else { return Ok(None) };
    let (actor, actor_key) = match &caller.subject {
        Some(admin) => {
            let (sealed, key) = sealer
                .seal_actor(admin, &crate::seal::actor_context(request_id, what))
                .await
                .map_err(StoreError::from)?;
            (Some(sealed), Some(key))
        }
        None => (None, None),
    };
    Ok(Some(Draft {
        at: crate::store::now_micros(),
        request_id: request_id.to_owned(),
        actor,
        actor_key,
        role: "admin".into(),
        action: what.into(),
        target: String::new(),
        before_version: None,
        after_version: None,
    }))
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
    let sealer = state.store.sealer().ok_or(ApiError::AdminOff(NOT_SEALING))?;
    let draft = admin_draft(state, caller, request_id, action::ERASE).await?;
    let erasure = sealer.erase(&subject, draft).await.map_err(StoreError::from)?;
    // Neither the subject nor the admin is personal data to log in clear; the key id
    // is random and says nothing about either.
    tracing::info!(erased_key = ?erasure.key_id, by_admin = caller.subject.is_some(), "subject erased");
    let remaining = state.store.subject_events(&subject).await?;
    let still_in_clear = remaining.iter().filter(|e| e.event.reported_by.as_ref() == Some(&subject)).count();
    let body = Erased { subject: subject.as_str(), erased_key: erasure.key_id, still_in_clear };
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
    let sealer = state.store.sealer().ok_or(ApiError::AdminOff(NOT_SEALING))?;
    let draft = admin_draft(state, caller, request_id, action::ROTATE).await?;
    let rotation = sealer.rotate(draft).await.map_err(StoreError::from)?;
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
    let data_key = match state.store.sealer() {
        Some(sealer) => sealer.key_id_for(&subject).await.map_err(StoreError::from)?,
        None => None,
    };
    let events = state.store.subject_events(&subject).await?;
    json(StatusCode::OK, &Export { subject: subject.as_str(), data_key, events }, accept, state).await
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
    let mut records = state.store.audit_records(since).await?;
    records.sort_by(|a, b| (a.draft.at, &a.chain, a.seq).cmp(&(b.draft.at, &b.chain, b.seq)));
    let mut body = Vec::new();
    for record in &records {
        let actor_subject = match (&record.draft.actor, &record.draft.actor_key, state.store.sealer()) {
            (Some(actor), Some(key), Some(sealer)) if open => {
                let context = crate::seal::actor_context(&record.draft.request_id, &record.draft.action);
                let opened = sealer.open_actor(actor, key, &context).await.map_err(StoreError::from)?;
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
