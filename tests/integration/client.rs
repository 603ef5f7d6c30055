//! A minimal HTTP client over hyper's low-level connections: one request per
//! connection, HTTP/1.1 or h2c, so tests control the protocol exactly.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug)]
pub enum Proto {
    H1,
    H2c,
}

pub const PROTOS: [Proto; 2] = [Proto::H1, Proto::H2c];

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// Sends one request on a new connection; any transport failure is an error.
pub async fn try_send(addr: SocketAddr, proto: Proto, request: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
    let io = TokioIo::new(TcpStream::connect(addr).await?);
    let response = match proto {
        Proto::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            sender.send_request(request).await?
        }
        Proto::H2c => {
            let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            sender.send_request(request).await?
        }
    };
    let (parts, body) = response.into_parts();
    Ok(Reply { status: parts.status, headers: parts.headers, body: body.collect().await?.to_bytes() })
}

/// [`try_send`] where a transport failure fails the test.
pub async fn send(addr: SocketAddr, proto: Proto, request: Request<Full<Bytes>>) -> Reply {
    try_send(addr, proto, request).await.unwrap_or_else(|e| panic!("{proto:?} request failed: {e}"))
}

pub fn get(uri: &str) -> http::request::Builder {
    Request::builder().method(Method::GET).uri(uri).header("host", "localhost")
}

pub fn post_delay(id: i64, if_match: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(format!("/flights/{id}/delays"))
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(v) = if_match {
        b = b.header("if-match", v);
    }
    b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}
