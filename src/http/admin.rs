//! The admin listener: on-demand CPU profiles of the running server, in the style of
//! Go's `net/http/pprof`. It listens on its own address (loopback unless told
//! otherwise), never on the API port, because a profile request costs the server CPU
//! and reveals its internals.
//!
//! `GET /debug/pprof/profile?seconds=N&format=svg|folded|pprof&frequency=HZ` samples
//! every thread with pprof for N seconds and answers with an inferno flamegraph (SVG),
//! the collapsed stacks, or a pprof protobuf (`profile.proto`, uncompressed), which
//! `go tool pprof` and other pprof viewers read. One profile at a time: pprof's
//! sampler is process-wide, so a second request while one runs gets 409.

use super::error::ApiError;
use super::response::{Body, full, problem};
use super::{ServerConfig, accept_loop};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

/// The path of the profile endpoint.
pub const PROFILE_PATH: &str = "/debug/pprof/profile";

/// What a profile is rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileFormat {
    /// An inferno flamegraph.
    Svg,
    /// Collapsed stacks, one line per stack.
    Folded,
    /// pprof's protobuf (`profile.proto`).
    Pprof,
}

/// What takes the profiles, handed in by the caller (`serve` gives it
/// `profile::Sampler`): the HTTP layer knows no profiler.
pub trait Profiler: Send + Sync + 'static {
    /// One-time set-up, done when the listener starts rather than inside the first
    /// profile's window.
    fn prime(&self);
    /// Samples every thread for `seconds` at `frequency` Hz (blocking: it runs on a
    /// blocking thread) and renders the result; returns the body and its media type.
    fn take(&self, seconds: u32, frequency: u32, format: ProfileFormat) -> Result<(Vec<u8>, &'static str), String>;
}

/// Admin settings, the profiler and the one-profile-at-a-time flag.
pub struct AdminState {
    /// Longest profile a request may ask for.
    pub max_seconds: u32,
    /// Sampling frequency when the request names none.
    pub default_frequency: u32,
    profiler: Arc<dyn Profiler>,
    busy: AtomicBool,
    /// With `--auth` on: every admin request needs a token with the `admin` role.
    auth: Option<Arc<crate::auth::Verifier>>,
}

impl AdminState {
    pub fn new(max_seconds: u32, default_frequency: u32, profiler: Arc<dyn Profiler>) -> Arc<Self> {
        Self::with_auth(max_seconds, default_frequency, profiler, None)
    }

    pub fn with_auth(
        max_seconds: u32,
        default_frequency: u32,
        profiler: Arc<dyn Profiler>,
        auth: Option<Arc<crate::auth::Verifier>>,
    ) -> Arc<Self> {
        Arc::new(Self { max_seconds, default_frequency, profiler, busy: AtomicBool::new(false), auth })
    }
}

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve_admin(listener: TcpListener, state: Arc<AdminState>, shutdown: impl Future<Output = ()>) {
    // A profile request legitimately takes `seconds` to answer: no in-flight limit
    // applies here, and the connection settings are the API's defaults.
    let config = ServerConfig::default();
    // A profiler's one-time set-up (pprof's takes seconds in a debug build): now, not
    // inside the first profile's window.
    let profiler = state.profiler.clone();
    tokio::task::spawn_blocking(move || profiler.prime());
    let handler = move |request, _peer| handle_admin(state.clone(), request);
    accept_loop(listener, &config, None, shutdown, Default::default(), handler).await;
}

async fn handle_admin<B>(state: Arc<AdminState>, request: Request<B>) -> Response<Body> {
    if let Some(verifier) = &state.auth {
        let access = crate::auth::Access::Needs(crate::auth::Role::Admin);
        let authorization = request.headers().get(http::header::AUTHORIZATION);
        if let Err(refused) = crate::auth::authorize(verifier, access, authorization, crate::auth::now()).await {
            return problem(&ApiError::Auth(refused));
        }
    }
    let path = request.uri().path();
    let result = match (request.method(), path) {
        (&Method::GET, PROFILE_PATH) => profile(&state, request.uri().query()).await,
        (_, PROFILE_PATH) => Err(ApiError::MethodNotAllowed { method: request.method().to_string(), allow: "GET" }),
        _ => Err(ApiError::NoRoute(path.to_owned())),
    };
    result.unwrap_or_else(|error| problem(&error))
}

/// The validated query of a profile request.
#[derive(Debug, PartialEq, Eq)]
struct ProfileRequest {
    seconds: u32,
    format: ProfileFormat,
    frequency: u32,
}

impl ProfileRequest {
    fn parse(query: Option<&str>, state: &AdminState) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::BadRequest(m);
        let mut request =
            ProfileRequest { seconds: 10, format: ProfileFormat::Svg, frequency: state.default_frequency };
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "seconds" => {
                    request.seconds =
                        value.parse::<u32>().ok().filter(|s| (1..=state.max_seconds).contains(s)).ok_or_else(|| {
                            bad(format!("seconds={value:?}: give whole seconds from 1 to {}", state.max_seconds))
                        })?;
                }
                "format" => {
                    request.format = match value.as_ref() {
                        "svg" => ProfileFormat::Svg,
                        "folded" => ProfileFormat::Folded,
                        "pprof" | "proto" => ProfileFormat::Pprof,
                        other => return Err(bad(format!("format={other:?}: use svg, folded or pprof"))),
                    };
                }
                "frequency" => {
                    request.frequency =
                        value.parse::<u32>().ok().filter(|f| (1..=1_000).contains(f)).ok_or_else(|| {
                            bad(format!("frequency={value:?}: give samples per second from 1 to 1000"))
                        })?;
                }
                other => return Err(bad(format!("unknown parameter {other:?}; expected seconds, format, frequency"))),
            }
        }
        Ok(request)
    }
}

/// Clears the busy flag however the profile ends.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

async fn profile(state: &AdminState, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let request = ProfileRequest::parse(query, state)?;
    if state.busy.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return Err(ApiError::ProfileBusy);
    }
    let _running = Running(&state.busy);
    // Sampling is a wait (and pprof's guard is not Send): a blocking thread's work.
    let profiler = state.profiler.clone();
    let ProfileRequest { seconds, format, frequency } = request;
    let (body, content_type) = tokio::task::spawn_blocking(move || profiler.take(seconds, frequency, format))
        .await
        .map_err(|e| ApiError::Internal(format!("profiler task: {e}")))?
        .map_err(ApiError::Internal)?;
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admin settings (60 s, 99 Hz) with a profiler the parsing tests never reach.
    fn idle_state() -> Arc<AdminState> {
        struct Idle;
        impl Profiler for Idle {
            fn prime(&self) {}
            fn take(&self, _: u32, _: u32, _: ProfileFormat) -> Result<(Vec<u8>, &'static str), String> {
                Err("not in this test".into())
            }
        }
        AdminState::new(60, 99, Arc::new(Idle))
    }

    #[test]
    fn profile_queries_are_checked() {
        let state = idle_state();
        let ok = ProfileRequest::parse(Some("seconds=3&format=folded&frequency=250"), &state).unwrap();
        assert_eq!(ok, ProfileRequest { seconds: 3, format: ProfileFormat::Folded, frequency: 250 });
        let proto = ProfileRequest::parse(Some("format=pprof"), &state).unwrap();
        assert_eq!(proto.format, ProfileFormat::Pprof);
        let default = ProfileRequest::parse(None, &state).unwrap();
        assert_eq!(default, ProfileRequest { seconds: 10, format: ProfileFormat::Svg, frequency: 99 });
        for bad in [
            "seconds=0",
            "seconds=-1",
            "seconds=61",
            "seconds=x",
            "format=png",
            "frequency=0",
            "frequency=5000",
            "sec=1",
        ] {
            assert!(matches!(ProfileRequest::parse(Some(bad), &state), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn profile_queries_are_bounded_or_refused(query in "[a-z=&%0-9-]{0,60}") {
            let state = idle_state();
            if let Ok(request) = ProfileRequest::parse(Some(&query), &state) {
                proptest::prop_assert!((1..=60).contains(&request.seconds));
                proptest::prop_assert!((1..=1_000).contains(&request.frequency));
            }
        }
    }
}
