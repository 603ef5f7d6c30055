//! `profile --attach`: the client side of a running server's admin listener.

use crate::cli::Refused;
use crate::failure::Failure;
use crate::http::admin::PROFILE_PATH;
use http::{Request, StatusCode};
use http_body_util::BodyExt;

/// Asks the admin listener at `admin` for `seconds` of collapsed stacks at
/// `frequency` Hz.
pub(super) async fn fetch_folded(
    admin: std::net::SocketAddr,
    seconds: u32,
    frequency: u32,
) -> anyhow::Result<Vec<String>> {
    let refused = |failure, message: String| anyhow::Error::new(Refused { failure, message });
    let unreachable =
        |e: &dyn std::fmt::Display| refused(Failure::Unreachable, format!("admin listener at {admin}: {e}"));
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| refused(Failure::Unreachable, format!("cannot connect to the admin listener at {admin}: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    let driving = tokio::spawn(connection);
    let request = Request::get(format!("{PROFILE_PATH}?seconds={seconds}&format=folded&frequency={frequency}"))
        .header(http::header::HOST, admin.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await.map_err(|e| unreachable(&e))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| unreachable(&e))?;
    driving.abort();
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    if status != StatusCode::OK {
        return Err(refused(
            Failure::BadInput,
            format!("admin listener at {admin} answered {status}: {}", text.trim()),
        ));
    }
    Ok(text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
}
