//! Building responses: JSON bodies with negotiated compression, and problem documents.
//!
//! Bodies are serialised once into one buffer. Below `compression_min_bytes` they go
//! out as they are (compressing a few hundred bytes costs more than it saves); up to
//! `stream_min_bytes` they are compressed in memory in one call; above that the encoder
//! streams, so the first compressed bytes reach the socket while the rest are still
//! being encoded. Only that large-body case boxes its body type.

use super::AppState;
use super::error::ApiError;
use super::metrics::ServerMetrics;
use super::negotiate::AcceptEncoding;
use crate::compression::{Encoding, compress};
use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, VARY};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::Frame;
use std::io::Cursor;
use std::sync::Arc;
use tokio_util::io::ReaderStream;

/// Every response body: a complete buffer, or (large compressed bodies) a stream.
pub type Body = Either<Full<Bytes>, UnsyncBoxBody<Bytes, std::io::Error>>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");
const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("accept-encoding");

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Left(Full::new(bytes.into()))
}

/// A JSON response, compressed as the client accepts.
pub async fn json(
    status: StatusCode,
    value: &impl serde::Serialize,
    accept: &AcceptEncoding,
    state: &AppState,
) -> Result<Response<Body>, ApiError> {
    json_bytes(status, serialize(value), accept, state).await
}

/// `value` as JSON. Cannot fail: every type we serialise is plain data with string keys.
pub fn serialize(value: &impl serde::Serialize) -> Bytes {
    serde_json::to_vec(value).expect("response values serialise").into()
}

/// [`json`] for a body already serialised (the flight cache keeps bodies this way).
/// Counts the body's bytes before and after compression when metrics are on.
pub async fn json_bytes(
    status: StatusCode,
    raw: Bytes,
    accept: &AcceptEncoding,
    state: &AppState,
) -> Result<Response<Body>, ApiError> {
    let config = &state.config;
    let metrics = state.metrics.as_deref();
    let encoding = accept
        .choose(raw.len(), config.compression_min_bytes)
        .ok_or_else(|| ApiError::NotAcceptable(accept.to_string()))?;
    let level = config.levels.level(encoding);
    let uncompressed = raw.len();
    let body = if encoding == Encoding::Identity {
        metrics.inspect(|m| m.observe_body(encoding, uncompressed, uncompressed));
        full(raw)
    } else if raw.len() < config.stream_min_bytes {
        // Boxed: an encoder's state is kilobytes, and inline it would make every
        // request's future that large (and hyper moves it with memcpy), compressed or not.
        let compressed = Box::pin(compress(encoding, level, &raw)).await;
        let compressed = compressed.map_err(|e| ApiError::Internal(format!("{encoding}: {e}")))?;
        metrics.inspect(|m| m.observe_body(encoding, uncompressed, compressed.len()));
        full(compressed)
    } else {
        // The sent size is known only as the encoder's frames go out.
        metrics.inspect(|m| m.observe_body(encoding, uncompressed, 0));
        stream(encoding, level, raw, state.metrics.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(VARY, ACCEPT_ENCODING);
    if encoding != Encoding::Identity {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding.as_str()));
    }
    Ok(response)
}

fn stream(encoding: Encoding, level: i32, raw: Bytes, metrics: Option<Arc<ServerMetrics>>) -> Body {
    let level = Level::Precise(level);
    let input = Cursor::new(raw);
    let frames = |reader| frames(encoding, reader, metrics);
    Either::Right(match encoding {
        Encoding::Br => frames(Box::pin(BrotliEncoder::with_quality(input, level))),
        Encoding::Zstd => frames(Box::pin(ZstdEncoder::with_quality(input, level))),
        Encoding::Gzip => frames(Box::pin(GzipEncoder::with_quality(input, level))),
        Encoding::Deflate => frames(Box::pin(ZlibEncoder::with_quality(input, level))),
        Encoding::Identity => return full(input.into_inner()),
    })
}

type Encoder = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// An encoder's output as a body of data frames, counted as they leave.
fn frames(
    encoding: Encoding,
    reader: Encoder,
    metrics: Option<Arc<ServerMetrics>>,
) -> UnsyncBoxBody<Bytes, std::io::Error> {
    let counted = ReaderStream::new(reader).inspect_ok(move |chunk| {
        if let Some(metrics) = &metrics {
            metrics.observe_streamed(encoding, chunk.len());
        }
    });
    StreamBody::new(counted.map_ok(Frame::data)).boxed_unsync()
}

/// `"<version>"`: a flight's version as its `ETag`, formatted on the stack (the
/// header's own copy is the one allocation).
pub fn etag(version: i64) -> HeaderValue {
    use std::io::Write;
    // Room for `"` + 20 characters of any i64 + `"`.
    let mut buffer = [0u8; 22];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    // Cannot fail: 22 bytes hold every i64 between quotes, and digits, a minus sign
    // and quotes are valid header bytes.
    write!(cursor, "\"{version}\"").expect("fits");
    let written = cursor.position() as usize;
    HeaderValue::from_bytes(&buffer[..written]).expect("valid etag")
}

/// A problem document for `error`. Never compressed: problem bodies are small and must
/// be readable even by a client whose Accept-Encoding caused the error.
pub fn problem(error: &ApiError) -> Response<Body> {
    let status = error.status();
    if status.is_server_error() {
        tracing::error!(%error, "request failed");
    }
    // Cannot fail: Problem is plain data.
    let body = serde_json::to_vec(&error.problem()).expect("problem serialises");
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
    if let ApiError::MethodNotAllowed { allow, .. } = error {
        response.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(challenge) = error.www_authenticate().and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, challenge);
    }
    if matches!(error, ApiError::Overloaded(_) | ApiError::LayoutSwitching) {
        response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
