//! What a request carries, parsed strictly: path segments, the query-path header,
//! query strings, `If-Match` and JSON bodies. Every bad value is a 400 naming it.

use super::AppState;
use super::error::ApiError;
use super::service::QUERY_PATH_HEADER;
use crate::domain::{AirportCode, Carrier, DelayCode, DelayEvent, EventKind, FlightId, TimeWindow, UtcTime};
use crate::store::QueryPath;
use bytes::Bytes;
use http::Request;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http_body_util::{BodyExt, Limited};

pub(super) fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

pub(super) fn flight_id(segment: &str) -> Result<FlightId, ApiError> {
    FlightId::parse(segment).map_err(bad)
}

pub(super) fn airport(segment: &str) -> Result<AirportCode, ApiError> {
    AirportCode::parse(segment).map_err(bad)
}

pub(super) fn carrier(segment: &str) -> Result<Carrier, ApiError> {
    Carrier::parse(segment).map_err(bad)
}

pub(super) fn query_path<B>(state: &AppState, request: &Request<B>) -> Result<QueryPath, ApiError> {
    match request.headers().get(QUERY_PATH_HEADER) {
        None => Ok(state.config.default_path),
        Some(value) => {
            let text = value.to_str().map_err(|_| bad("x-query-path is not ASCII"))?;
            text.parse::<QueryPath>().map_err(|e| ApiError::BadRequest(format!("x-query-path: {e}")))
        }
    }
}

/// Query parameters: only the expected names, each at most once.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
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

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn time(&self, key: &str) -> Result<UtcTime, ApiError> {
        let text = self.get(key).ok_or_else(|| bad(format!("query parameter {key:?} is required (RFC 3339 time)")))?;
        UtcTime::parse(text).map_err(|e| bad(format!("{key}: {e}")))
    }

    pub(super) fn window(&self) -> Result<TimeWindow, ApiError> {
        TimeWindow::new(self.time("from")?, self.time("to")?).map_err(bad)
    }
}

/// `If-Match: "3"` (or a bare `3`): the version the client last saw.
pub(super) fn expected_version(header: Option<&HeaderValue>) -> Result<i64, ApiError> {
    let text = header.ok_or(ApiError::PreconditionRequired)?.to_str().map_err(|_| bad("If-Match is not ASCII"))?;
    let trimmed = text.trim();
    let unquoted = trimmed.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(trimmed);
    unquoted
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| bad(format!("If-Match {text:?} is not a flight version such as \"3\"")))
}

/// A request's JSON body: `application/json`, at most `limit` bytes (a declared
/// oversize body is refused before any of it is read; chunked and HTTP/2 bodies are
/// caught by `Limited` while reading).
pub(super) async fn json_body<B>(request: Request<B>, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let headers = request.headers();
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(content_type.to_owned()));
    }
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
    Ok(body.to_bytes())
}

pub(super) fn parse_event(body: &[u8]) -> Result<DelayEvent, ApiError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let object = value.as_object_mut().ok_or_else(|| bad("body must be a JSON object"))?;
    if object.contains_key("reported_by") {
        return Err(bad("reported_by is set by the server from the caller's verified identity, not by the body"));
    }
    let occurred_at = match object.remove("occurred_at") {
        None => UtcTime::now(),
        Some(v) => serde_json::from_value(v).map_err(|e| bad(format!("occurred_at: {e}")))?,
    };
    let cause: Option<DelayCode> = match object.remove("cause") {
        None => None,
        Some(v) => serde_json::from_value(v).map_err(|e| bad(format!("cause: {e}")))?,
    };
    let kind: EventKind = serde_json::from_value(value).map_err(|e| bad(format!("body: {e}")))?;
    kind.validate().map_err(bad)?;
    Ok(DelayEvent::new(occurred_at, kind).with_cause(cause))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Limit;

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
        assert_eq!(e.cause, None, "no code unless the client gives one");
        let coded = parse_event(br#"{"kind":"revised","delay_minutes":40,"cause":"72","reason":"fog"}"#).unwrap();
        assert_eq!((coded.cause.map(|c| c.to_string()), coded.reported_by), (Some("72".into()), None));
        assert_eq!(parse_event(br#"{"kind":"departed","delay_minutes":3,"cause":null}"#).unwrap().cause, None);
        let spoofed = parse_event(br#"{"kind":"departed","delay_minutes":3,"reported_by":"admin"}"#);
        assert!(matches!(spoofed, Err(ApiError::BadRequest(m)) if m.contains("reported_by is set by the server")));
        for bad in [
            &br#"{"kind":"departed","delay_minutes":3,"cause":"7"}"#[..],
            br#"{"kind":"departed","delay_minutes":3,"cause":72}"#,
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

    proptest::proptest! {
        /// Query strings, If-Match values and request bodies from anyone: a value or
        /// a 400, never a panic.
        #[test]
        fn hostile_request_parts_are_refused_not_fatal(
            query in "[a-z=&%0-9A-F:+.-]{0,80}",
            if_match in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            json in "\\{(\"[a-z_]{1,14}\":(\"[^\"]{0,10}\"|-?[0-9]{1,22}|null|true|\\[\\]|\\{\\}),?){0,5}\\}",
        ) {
            if let Ok(params) = Params::parse(Some(&query), &["from", "to", "limit"]) {
                let _ = params.window();
                let _ = params.get("limit").map(Limit::parse);
            }
            if let Ok(value) = HeaderValue::from_bytes(&if_match)
                && let Ok(version) = expected_version(Some(&value))
            {
                proptest::prop_assert!(version >= 0);
            }
            for bytes in [&body[..], json.as_bytes()] {
                if let Ok(event) = parse_event(bytes) {
                    proptest::prop_assert!(event.kind.validate().is_ok());
                }
            }
        }
    }
}
