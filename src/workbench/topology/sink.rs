//! The topology part's webhook target: an HTTP/1.1 listener on loopback that answers
//! every delivery 204 and notes when each event id first arrived.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Default)]
pub(super) struct Sink {
    /// Event id (`flight/version`) → when it first arrived.
    pub first: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Sink {
    /// Listens on a free loopback port until the runtime ends; its address.
    pub async fn start(&self) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sink = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let id = request
                                .headers()
                                .get("flightbench-event-id")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let _ = request.into_body().collect().await;
                            if let Some(id) = id {
                                sink.first
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .entry(id)
                                    .or_insert_with(Instant::now);
                            }
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = http::StatusCode::NO_CONTENT;
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Ok(addr)
    }

    pub fn delivered(&self) -> usize {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn arrived(&self, id: &str) -> Option<Instant> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied()
    }
}
