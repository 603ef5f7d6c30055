//! Connections the load generator holds, opened one by one so the tool decides
//! exactly how many TCP connections and HTTP/2 streams exist. No pool, no retries,
//! no redirects: a failure is counted, never hidden.
//!
//! HTTP/1.1 goes through the generator's own client (`h1`), HTTP/2 through the `h2`
//! crate directly. hyper's client sits on top of both and costs more per request than
//! wrk and h2load do (results/load.md): for HTTP/2 it hands every request to its
//! connection task through a channel and pipes each body through a future of its own,
//! which showed as copies, allocations and wake-ups in the generator's profile; with
//! `h2`, a stream's worker queues its request on the shared connection state and polls
//! its response itself. The HTTP/1.1 reasons are in `h1`.

use super::h1::{H1Connection, Io, classify_io};
use super::recorder::ErrorKind;
use super::request::RequestTemplate;
use super::workload::Planned;
use bytes::Bytes;
use http::Request;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpStream;

/// HTTP version spoken on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive: one request in flight per connection.
    #[value(name = "h1")]
    #[serde(rename = "h1")]
    H1,
    /// HTTP/2: cleartext with prior knowledge (h2c) for http://, ALPN h2 for https://.
    #[value(name = "h2")]
    #[serde(rename = "h2")]
    H2,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Host header / TLS server name.
    pub host: String,
    pub protocol: Protocol,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A sender for one connection; an HTTP/2 sender is cloned once per stream. An
/// HTTP/1.1 connection is its own sender: the worker that owns it does its I/O inside
/// its own task, so a request and its response cost no wake-ups between tasks. HTTP/2
/// connections, shared by several streams' workers, have a task of their own.
pub enum Sender {
    H1(H1Connection),
    H2 {
        sender: h2::client::SendRequest<Bytes>,
        /// Set when the connection's task ends (closed, failed or GOAWAY).
        closed: Arc<AtomicBool>,
    },
}

/// A TLS client trusting the PEM certificates in `ca_pem`, offering `protocol` by ALPN.
pub fn tls_config(ca_pem: &[u8], protocol: Protocol) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
        roots.add(cert).map_err(|e| format!("unusable certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate found in the PEM file".into());
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![match protocol {
        Protocol::H1 => b"http/1.1".to_vec(),
        Protocol::H2 => b"h2".to_vec(),
    }];
    Ok(Arc::new(config))
}

/// Opens one connection; an HTTP/2 connection's I/O runs as a task on the current
/// runtime.
pub async fn connect(endpoint: &Endpoint) -> Result<Sender, (ErrorKind, String)> {
    let connect_err = |e: &dyn std::fmt::Display| (ErrorKind::Connect, format!("{}: {e}", endpoint.addr));
    let tcp = TcpStream::connect(endpoint.addr).await.map_err(|e| connect_err(&e))?;
    tcp.set_nodelay(true).map_err(|e| connect_err(&e))?;
    match &endpoint.tls {
        None => handshake(tcp, endpoint.protocol).await,
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| connect_err(&e))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| connect_err(&e))?;
            handshake(tls, endpoint.protocol).await
        }
    }
}

async fn handshake<I: Io + 'static>(io: I, protocol: Protocol) -> Result<Sender, (ErrorKind, String)> {
    match protocol {
        Protocol::H1 => Ok(Sender::H1(H1Connection::new(Box::new(io)))),
        Protocol::H2 => {
            let (sender, conn) = h2::client::Builder::new()
                .initial_window_size(1 << 20)
                .initial_connection_window_size(1 << 24)
                .handshake::<_, Bytes>(io)
                .await
                .map_err(|e| (ErrorKind::Connect, format!("handshake: {e}")))?;
            let closed = Arc::new(AtomicBool::new(false));
            let ended = closed.clone();
            tokio::spawn(async move {
                let _ = conn.await;
                ended.store(true, Ordering::Relaxed);
            });
            Ok(Sender::H2 { sender, closed })
        }
    }
}

/// A response as the recorder needs it.
pub struct Answer {
    pub status: u16,
    pub content_encoding: Option<http::HeaderValue>,
    pub etag: Option<http::HeaderValue>,
    /// Body bytes as received.
    pub body_len: u64,
    /// The body itself, kept only when asked for or when it must be decoded.
    pub body: Option<Bytes>,
}

impl Sender {
    /// Another sender on the same connection: HTTP/2 only (a stream per sender).
    pub fn another_stream(&self) -> Option<Sender> {
        match self {
            Sender::H1(_) => None,
            Sender::H2 { sender, closed } => Some(Sender::H2 { sender: sender.clone(), closed: closed.clone() }),
        }
    }

    /// Sends `planned` and reads the whole response. The body is counted and kept
    /// only if `keep_body` or it is encoded: most responses are only counted, which
    /// saves a buffer per request.
    pub(super) async fn send(
        &mut self,
        template: &RequestTemplate,
        planned: &Planned,
        keep_body: bool,
    ) -> Result<Answer, ErrorKind> {
        match self {
            Sender::H1(connection) => {
                let mut scratch = std::mem::take(&mut connection.scratch);
                let request = template.h1_bytes(planned, &mut scratch);
                let answer = connection.exchange(request, planned.method == http::Method::HEAD, keep_body).await;
                connection.scratch = scratch;
                answer
            }
            Sender::H2 { sender, .. } => send_h2(sender, template.h2_request(planned), keep_body).await,
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(connection) => connection.is_closed(),
            Sender::H2 { closed, .. } => closed.load(Ordering::Relaxed),
        }
    }

    /// After an idle wait: notices that the server closed an HTTP/1.1 connection,
    /// which is polled only while a request is in flight. (An HTTP/2 connection's
    /// task notices by itself.)
    pub fn check_idle(&mut self) {
        if let Sender::H1(connection) = self {
            connection.check_idle();
        }
    }
}

async fn send_h2(
    sender: &mut h2::client::SendRequest<Bytes>,
    request: Request<Bytes>,
    keep_body: bool,
) -> Result<Answer, ErrorKind> {
    futures_util::future::poll_fn(|cx| sender.poll_ready(cx)).await.map_err(|e| classify_h2(&e))?;
    let (head, body) = request.into_parts();
    let end_of_stream = body.is_empty();
    let (response, mut stream) =
        sender.send_request(Request::from_parts(head, ()), end_of_stream).map_err(|e| classify_h2(&e))?;
    if !end_of_stream {
        stream.send_data(body, true).map_err(|e| classify_h2(&e))?;
    }
    let response = response.await.map_err(|e| classify_h2(&e))?;
    let (mut parts, mut body) = response.into_parts();
    let content_encoding = parts.headers.remove(http::header::CONTENT_ENCODING);
    let etag = parts.headers.remove(http::header::ETAG);
    let keep = keep_body || content_encoding.is_some();
    let mut kept = bytes::BytesMut::new();
    let mut body_len = 0;
    while let Some(data) = body.data().await {
        let data = data.map_err(|e| classify_h2(&e))?;
        // Hand the window back at once, or a long run stalls on flow control.
        body.flow_control().release_capacity(data.len()).map_err(|e| classify_h2(&e))?;
        body_len += data.len() as u64;
        if keep {
            kept.extend_from_slice(&data);
        }
    }
    let body = keep.then(|| kept.freeze());
    Ok(Answer { status: parts.status.as_u16(), content_encoding, etag, body_len, body })
}

fn classify_h2(error: &h2::Error) -> ErrorKind {
    if let Some(io) = error.get_io() {
        return classify_io(io);
    }
    if error.is_go_away() || error.is_reset() {
        return ErrorKind::Reset;
    }
    ErrorKind::Protocol
}
