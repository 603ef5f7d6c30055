//! `GET /live?airport=…` (Server-Sent Events from the live feed) and `GET /dashboard`
//! (the page that shows them). The feed itself is `projection::live`.

use super::AppState;
use super::error::ApiError;
use super::extract::{Params, bad};
use super::response::{Body, full};
use crate::domain::AirportCode;
use crate::projection::live::MAX_AIRPORTS;
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, StreamBody};
use hyper::body::Frame;

/// The page, with `/*CONFIG*/null` standing for its settings.
const DASHBOARD: &str = include_str!("dashboard.html");

/// Airports the dashboard shows unless `?airports=` names them: the busiest, as the
/// manifest lists them.
pub const DASHBOARD_AIRPORTS: usize = 6;

/// `airport=ATL,ORD` (or `airports=`): 1 to [`MAX_AIRPORTS`] distinct codes.
fn airports(list: &str) -> Result<Vec<AirportCode>, ApiError> {
    let mut codes: Vec<AirportCode> = Vec::new();
    for code in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let code = AirportCode::parse(code).map_err(|e| bad(format!("airport {code:?}: {e}")))?;
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    if codes.is_empty() || codes.len() > MAX_AIRPORTS {
        return Err(bad(format!("name 1 to {MAX_AIRPORTS} airports, comma-separated, e.g. ?airport=ATL,ORD")));
    }
    Ok(codes)
}

/// The event stream for the airports in `?airport=`.
pub(super) fn live<B>(state: &AppState, request: &Request<B>) -> Result<Response<Body>, ApiError> {
    let params = Params::parse(request.uri().query(), &["airport"])?;
    let list =
        params.get("airport").ok_or_else(|| bad("query parameter \"airport\" is required, e.g. ?airport=ATL"))?;
    let airports = airports(list)?;
    let feed = state.live.get().ok_or(ApiError::LiveOff)?;
    let frames = feed.subscribe(&airports)?.frames();
    let body = StreamBody::new(frames.map(|frame| Ok::<_, std::io::Error>(Frame::data(frame))));
    let mut response = Response::new(Either::Right(BodyExt::boxed_unsync(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer responses (nginx) would hold the events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The dashboard: one page, everything inline, for `?airports=` or the busiest
/// [`DASHBOARD_AIRPORTS`].
pub(super) fn dashboard<B>(state: &AppState, request: &Request<B>) -> Result<Response<Body>, ApiError> {
    let params = Params::parse(request.uri().query(), &["airports"])?;
    let store = state.store();
    let manifest = store.manifest();
    let airports: Vec<String> = match params.get("airports") {
        Some(list) => airports(list)?.iter().map(|a| a.as_str().to_owned()).collect(),
        None => manifest.airports.iter().take(DASHBOARD_AIRPORTS).cloned().collect(),
    };
    let config = serde_json::json!({
        "airports": airports,
        "start": manifest.dataset.start.to_string(),
        "days": manifest.dataset.days,
        "live": state.live.get().is_some(),
    });
    // `</` cannot close the script: the JSON holds only codes and times, and any
    // `<` is escaped anyway.
    let config = config.to_string().replace('<', "\\u003c");
    let page = DASHBOARD.replacen("/*CONFIG*/null", &config, 1);
    let mut response = Response::new(full(Bytes::from(page)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Everything is inline: nothing may be loaded from anywhere, this origin included,
    // except the API calls the page makes.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        ),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airport_lists_are_checked() {
        let codes = airports("ATL, ORD,ATL").unwrap();
        assert_eq!(codes.iter().map(AirportCode::as_str).collect::<Vec<_>>(), ["ATL", "ORD"]);
        assert!(airports("").is_err());
        assert!(airports("atl").is_err());
        let code = |i: usize| format!("Q{}{}", (b'A' + (i / 26) as u8) as char, (b'A' + (i % 26) as u8) as char);
        let most: Vec<String> = (0..MAX_AIRPORTS).map(code).collect();
        assert_eq!(airports(&most.join(",")).unwrap().len(), MAX_AIRPORTS);
        let too_many: Vec<String> = (0..=MAX_AIRPORTS).map(code).collect();
        assert!(airports(&too_many.join(",")).unwrap_err().to_string().starts_with("name 1 to 32 airports"));
    }

    #[test]
    fn the_page_has_its_settings_slot_and_loads_nothing_from_elsewhere() {
        assert_eq!(DASHBOARD.matches("/*CONFIG*/null").count(), 1);
        for outside in ["src=\"http", "href=\"http", "@import", "url(http", "<link"] {
            assert!(!DASHBOARD.contains(outside), "{outside}");
        }
    }
}
