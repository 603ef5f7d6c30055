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

/// Admin settings and the one-profile-at-a-time flag.
pub struct AdminState {
    /// Longest profile a request may ask for.
    pub max_seconds: u32,
    /// Sampling frequency when the request names none.
    pub default_frequency: u32,
    busy: AtomicBool,
}

impl AdminState {
    pub fn new(max_seconds: u32, default_frequency: u32) -> Arc<Self> {
        Arc::new(Self { max_seconds, default_frequency, busy: AtomicBool::new(false) })
    }
}

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve_admin(listener: TcpListener, state: Arc<AdminState>, shutdown: impl Future<Output = ()>) {
    // A profile request legitimately takes `seconds` to answer: no in-flight limit
    // applies here, and the connection settings are the API's defaults.
    let config = ServerConfig::default();
    // pprof's one-time set-up takes seconds in a debug build: do it now, not inside
    // the first profile's window.
    tokio::task::spawn_blocking(crate::profile::prime);
    let handler = move |request| handle_admin(state.clone(), request);
    accept_loop(listener, &config, None, shutdown, handler).await;
}

async fn handle_admin<B>(state: Arc<AdminState>, request: Request<B>) -> Response<Body> {
    let path = request.uri().path();
    let result = match (request.method(), path) {
        (&Method::GET, PROFILE_PATH) => profile(&state, request.uri().query()).await,
        (_, PROFILE_PATH) => Err(ApiError::MethodNotAllowed { method: request.method().to_string(), allow: "GET" }),
        _ => Err(ApiError::NoRoute(path.to_owned())),
    };
    result.unwrap_or_else(|error| problem(&error))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Svg,
    Folded,
    Pprof,
}

/// The validated query of a profile request.
#[derive(Debug, PartialEq, Eq)]
struct ProfileRequest {
    seconds: u32,
    format: Format,
    frequency: u32,
}

impl ProfileRequest {
    fn parse(query: Option<&str>, state: &AdminState) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::BadRequest(m);
        let mut request = ProfileRequest { seconds: 10, format: Format::Svg, frequency: state.default_frequency };
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
                        "svg" => Format::Svg,
                        "folded" => Format::Folded,
                        "pprof" | "proto" => Format::Pprof,
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
    // pprof's guard is not Send and sampling is a wait: both belong on a blocking thread.
    let (body, content_type) = tokio::task::spawn_blocking(move || render(request))
        .await
        .map_err(|e| ApiError::Internal(format!("profiler task: {e}")))?
        .map_err(ApiError::Internal)?;
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// The client side: asks the admin listener at `admin` for `seconds` of collapsed
/// stacks at `frequency` Hz (what `flightbench profile --attach` does).
pub async fn fetch_folded(admin: std::net::SocketAddr, seconds: u32, frequency: u32) -> Result<Vec<String>, String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| format!("cannot connect to the admin listener at {admin}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("admin listener at {admin}: {e}"))?;
    let driving = tokio::spawn(connection);
    let request = Request::get(format!("{PROFILE_PATH}?seconds={seconds}&format=folded&frequency={frequency}"))
        .header(http::header::HOST, admin.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("admin listener at {admin}: {e}"))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| format!("admin listener at {admin}: {e}"))?;
    driving.abort();
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    if status != StatusCode::OK {
        return Err(format!("admin listener at {admin} answered {status}: {}", text.trim()));
    }
    Ok(text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

/// Samples for the request's duration and renders the profile in its format.
fn render(request: ProfileRequest) -> Result<(Vec<u8>, &'static str), String> {
    let ProfileRequest { seconds, format, frequency } = request;
    let guard = crate::profile::start_sampling(frequency as i32).map_err(|e| format!("starting the sampler: {e}"))?;
    std::thread::sleep(std::time::Duration::from_secs(u64::from(seconds)));
    let report = guard.report().build().map_err(|e| format!("building the report: {e}"))?;
    if format == Format::Pprof {
        use pprof::protos::Message;
        let profile = report.pprof().map_err(|e| format!("encoding the pprof protobuf: {e}"))?;
        return Ok((profile.encode_to_vec(), "application/octet-stream"));
    }
    let lines = crate::profile::fold(&report);
    Ok(match format {
        Format::Folded => (lines.join("\n").into_bytes(), "text/plain; charset=utf-8"),
        // An idle server gives no samples, and inferno renders nothing from nothing:
        // say so in the picture rather than fail.
        _ if lines.is_empty() => (
            crate::profile::empty_svg(&format!(
                "No CPU samples in {seconds} s at {frequency} Hz: the server was idle."
            )),
            "image/svg+xml",
        ),
        _ => {
            let mut svg = Vec::new();
            let title = format!("flightbench serve: {seconds} s at {frequency} Hz");
            crate::profile::flamegraph_svg(&lines, &title, &mut svg).map_err(|e| e.to_string())?;
            (svg, "image/svg+xml")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_queries_are_checked() {
        let state = AdminState::new(60, 99);
        let ok = ProfileRequest::parse(Some("seconds=3&format=folded&frequency=250"), &state).unwrap();
        assert_eq!(ok, ProfileRequest { seconds: 3, format: Format::Folded, frequency: 250 });
        let proto = ProfileRequest::parse(Some("format=pprof"), &state).unwrap();
        assert_eq!(proto.format, Format::Pprof);
        let default = ProfileRequest::parse(None, &state).unwrap();
        assert_eq!(default, ProfileRequest { seconds: 10, format: Format::Svg, frequency: 99 });
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
}
