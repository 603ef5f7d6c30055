//! `ApiError`: every way a request can fail, mapped to a status and an
//! `application/problem+json` body (RFC 9457) in exactly one place, [`ApiError::status`]
//! and [`ApiError::problem`].

use crate::auth::AuthError;
use crate::store::StoreError;
use http::StatusCode;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed path segment, query parameter, header or body.
    #[error("{0}")]
    BadRequest(String),
    #[error("no resource at {0}")]
    NoRoute(String),
    #[error("{method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error(
        "none of the encodings in Accept-Encoding ({0:?}) can be produced; acceptable: br, zstd, gzip, deflate, identity"
    )]
    NotAcceptable(String),
    #[error("request body is larger than the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("request body must be application/json, not {0:?}")]
    UnsupportedMediaType(String),
    #[error(
        "If-Match with the flight's current version is required, e.g. If-Match: \"3\" (see the ETag of GET /flights/{{id}})"
    )]
    PreconditionRequired,
    #[error("the server is at its limit of {0} requests in flight; retry shortly")]
    Overloaded(usize),
    #[error("a profile is already running; request another when it finishes")]
    ProfileBusy,
    /// `/live` on a server whose projection runner is elsewhere (or off): the feed
    /// comes from the runner's commits.
    #[error("the live feed needs the projection runner in this server (serve --projector in-process)")]
    LiveOff,
    #[error(transparent)]
    Live(#[from] crate::projection::live::LiveError),
    /// A route another part of the split service answers (`serve --role`).
    #[error("{route} is served by the {owner} service; this is the {role} service")]
    OtherRole { route: &'static str, role: crate::http::ServiceRole, owner: crate::http::ServiceRole },
    /// The gateway could not get an answer from the service behind a route.
    #[error("route {route} → {service}: {problem}")]
    BadGateway { route: String, service: String, problem: String },
    #[error("route {route} → {service}: no answer within {timeout_ms} ms")]
    GatewayTimeout { route: String, service: String, timeout_ms: u64 },
    #[error("webhook subscriptions are not served here (serve --role notify, or --notify with --role all)")]
    NotifyOff,
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// With `--auth` on: no token where one is needed, a token refused, or one without
    /// the role.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// An admin endpoint this server cannot serve as configured.
    #[error("{0}")]
    AdminOff(&'static str),
    /// A failure inside the server itself (logged; the client sees a generic detail).
    #[error("internal: {0}")]
    Internal(String),
    /// A write that met a layout retired by `flightbench reshard` while no newer one
    /// appeared (a reshard interrupted in its switch): nothing was written.
    #[error(
        "the dataset's shard layout is being switched by `flightbench reshard`; nothing was written, retry shortly \
         (if this lasts, run `flightbench reshard` again to finish the switch, or `--abort`)"
    )]
    LayoutSwitching,
}

/// The problem document.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

impl ApiError {
    /// `WWW-Authenticate` for a 401 or 403 (RFC 6750 §3): no error code when no
    /// token was sent, `invalid_token` or `insufficient_scope` otherwise.
    pub fn www_authenticate(&self) -> Option<String> {
        let ApiError::Auth(error) = self else { return None };
        Some(match error {
            AuthError::Missing(role) => format!(r#"Bearer realm="flightbench", scope="{role}""#),
            AuthError::Invalid(rejection) => format!(
                r#"Bearer realm="flightbench", error="invalid_token", error_description="{}""#,
                rejection.public()
            ),
            AuthError::Forbidden(role) => {
                format!(r#"Bearer realm="flightbench", error="insufficient_scope", scope="{role}""#)
            }
        })
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NoRoute(_) | ApiError::OtherRole { .. } => StatusCode::NOT_FOUND,
            ApiError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::ProfileBusy | ApiError::AdminOff(_) => StatusCode::CONFLICT,
            ApiError::Overloaded(_)
            | ApiError::LiveOff
            | ApiError::Live(_)
            | ApiError::LayoutSwitching
            | ApiError::NotifyOff => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Notify(crate::notify::NotifyError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Notify(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Auth(AuthError::Forbidden(_)) => StatusCode::FORBIDDEN,
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
            ApiError::Store(e) => match e {
                StoreError::FlightNotFound(_) => StatusCode::NOT_FOUND,
                StoreError::Conflict { .. } => StatusCode::CONFLICT,
                StoreError::Transition { .. } | StoreError::InvalidEvent(_) => StatusCode::UNPROCESSABLE_ENTITY,
                StoreError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                StoreError::Database { .. }
                | StoreError::Corrupt { .. }
                | StoreError::Manifest(_)
                | StoreError::Config(_)
                | StoreError::Sealing(_) => StatusCode::INTERNAL_SERVER_ERROR,
                StoreError::NoKek { .. } => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// The problem's title: chosen with each variant, not by status, so two errors
    /// that share a status (a version conflict and a profile already running are both
    /// 409) keep their own names.
    pub fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "Bad request",
            ApiError::NoRoute(_) => "Not found",
            ApiError::OtherRole { .. } => "Served by another service",
            ApiError::BadGateway { .. } => "Bad gateway",
            ApiError::GatewayTimeout { .. } => "Gateway timeout",
            ApiError::NotifyOff => "Notifications not served here",
            ApiError::Notify(crate::notify::NotifyError::Invalid(_)) => "Invalid subscription",
            ApiError::Notify(_) => "Internal server error",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
            ApiError::NotAcceptable(_) => "Not acceptable",
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::PreconditionRequired => "Precondition required",
            ApiError::Overloaded(_) => "Overloaded",
            ApiError::ProfileBusy => "Profile already running",
            ApiError::AdminOff(_) => "Not available on this server",
            ApiError::LiveOff => "Live feed not served here",
            ApiError::Live(_) => "Live feed unavailable",
            ApiError::Internal(_) => "Internal server error",
            ApiError::LayoutSwitching => "Shard layout switching",
            ApiError::Auth(AuthError::Forbidden(_)) => "Forbidden",
            ApiError::Auth(_) => "Unauthorized",
            ApiError::Store(e) => match e {
                StoreError::FlightNotFound(_) => "Flight not found",
                StoreError::Conflict { .. } => "Version conflict",
                StoreError::Transition { .. } => "Event not allowed",
                StoreError::InvalidEvent(_) => "Invalid event",
                StoreError::Unavailable { .. } => "Shard unavailable",
                StoreError::Database { .. }
                | StoreError::Corrupt { .. }
                | StoreError::Manifest(_)
                | StoreError::Config(_)
                | StoreError::Sealing(_) => "Internal server error",
                StoreError::NoKek { .. } => "Sealed data unavailable",
            },
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let title = self.title();
        let current_version = match self {
            ApiError::Store(StoreError::Conflict { current, .. }) => *current,
            _ => None,
        };
        // Internal failures are logged in full; the client learns only that it failed,
        // never driver messages or file paths.
        let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
            "the server failed to handle this request; it has been logged".to_owned()
        } else {
            self.to_string()
        };
        Problem { kind: "about:blank", title, status: status.as_u16(), detail, current_version }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FlightId;

    #[test]
    fn store_errors_map_to_statuses_and_internal_detail_is_hidden() {
        let id = FlightId::new(3).unwrap();
        let conflict = ApiError::from(StoreError::Conflict { flight: id, expected: 1, current: Some(4) });
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        assert_eq!(conflict.problem().current_version, Some(4));
        assert_eq!(ApiError::from(StoreError::FlightNotFound(id)).status(), StatusCode::NOT_FOUND);
        let internal = ApiError::from(StoreError::Corrupt { shard: 2, problem: "/secret/path".into() });
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.problem().detail.contains("secret"));
        let json = serde_json::to_value(ApiError::PayloadTooLarge { limit: 10 }.problem()).unwrap();
        assert_eq!(json["status"], 413);
        assert_eq!(json["type"], "about:blank");
    }

    #[test]
    fn titles_belong_to_variants_not_statuses() {
        let id = FlightId::new(3).unwrap();
        let busy = ApiError::ProfileBusy.problem();
        let conflict = ApiError::from(StoreError::Conflict { flight: id, expected: 1, current: Some(4) }).problem();
        assert_eq!((busy.status, conflict.status), (409, 409));
        assert_eq!((busy.title, conflict.title), ("Profile already running", "Version conflict"));
        let not_found = ApiError::from(StoreError::FlightNotFound(id)).problem();
        assert_eq!((not_found.status, not_found.title), (404, "Flight not found"));
        assert_eq!(ApiError::NoRoute("/x".into()).problem().title, "Not found");
    }
}
