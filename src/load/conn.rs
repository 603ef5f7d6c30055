//! Connections the load generator holds: hyper's low-level client connections, so the
//! tool decides exactly how many TCP connections and HTTP/2 streams exist. No pool,
//! no retries, no redirects: a failure is counted, never hidden.

use super::recorder::ErrorKind;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
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

/// An HTTP/1.1 connection's I/O future: it writes requests and reads responses. The
/// worker that owns the connection polls it beside its request instead of spawning it,
/// so a request and its response cost no task wake-ups between a connection task and
/// the worker (two per request otherwise). HTTP/2 connections, shared by several
/// streams' workers, keep a task of their own.
///
/// HTTP/2 goes through the `h2` crate directly rather than hyper's client on top of
/// it: hyper hands every request to its connection task through a channel and pipes
/// each body through a future of its own, which showed as copies, allocations and
/// wake-ups in the generator's profile; with `h2`, a stream's worker queues its
/// request on the shared connection state and polls its response itself.
pub type Driver = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), hyper::Error>> + Send>>;

/// A sender for one connection; an HTTP/2 sender is cloned once per stream.
pub enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
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

/// Opens one connection. HTTP/2: its driver runs as a task on the current runtime.
/// HTTP/1.1: its [`Driver`] is returned for the caller to poll.
pub async fn connect(endpoint: &Endpoint) -> Result<(Sender, Option<Driver>), (ErrorKind, String)> {
    let connect_err = |e: &dyn std::fmt::Display| (ErrorKind::Connect, format!("{}: {e}", endpoint.addr));
    let tcp = TcpStream::connect(endpoint.addr).await.map_err(|e| connect_err(&e))?;
    tcp.set_nodelay(true).map_err(|e| connect_err(&e))?;
    match &endpoint.tls {
        None => handshake(TokioIo::new(tcp), endpoint.protocol).await,
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| connect_err(&e))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| connect_err(&e))?;
            handshake(TokioIo::new(tls), endpoint.protocol).await
        }
    }
}

async fn handshake<I>(io: I, protocol: Protocol) -> Result<(Sender, Option<Driver>), (ErrorKind, String)>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| (ErrorKind::Connect, format!("handshake: {e}"));
    match protocol {
        Protocol::H1 => {
            let (sender, conn) = http1::handshake(io).await.map_err(failed)?;
            Ok((Sender::H1(sender), Some(Box::pin(conn))))
        }
        Protocol::H2 => {
            let io = TokioIo::new(io);
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
            Ok((Sender::H2 { sender, closed }, None))
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

    /// Sends `request` and reads the whole response. The body is counted frame by
    /// frame and kept only if `keep_body` or it is encoded: most responses are only
    /// counted, which saves a buffer per request.
    pub async fn send(&mut self, request: Request<Bytes>, keep_body: bool) -> Result<Answer, ErrorKind> {
        match self {
            Sender::H1(sender) => {
                sender.ready().await.map_err(|e| classify(&e))?;
                let response = sender.send_request(request.map(Full::new)).await.map_err(|e| classify(&e))?;
                let (parts, body) = response.into_parts();
                answer(parts, body, keep_body).await
            }
            Sender::H2 { sender, .. } => send_h2(sender, request, keep_body).await,
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(sender) => sender.is_closed(),
            Sender::H2 { closed, .. } => closed.load(Ordering::Relaxed),
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
    let (parts, body) = response.into_parts();
    answer(parts, H2Body(body), keep_body).await
}

/// A response body as frames of data, HTTP/1.1 (hyper's) or HTTP/2 (h2's).
trait Frames {
    async fn next_data(&mut self) -> Option<Result<Bytes, ErrorKind>>;
}

impl Frames for hyper::body::Incoming {
    async fn next_data(&mut self) -> Option<Result<Bytes, ErrorKind>> {
        use http_body_util::BodyExt;
        loop {
            match self.frame().await? {
                Err(e) => return Some(Err(classify(&e))),
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
            }
        }
    }
}

struct H2Body(h2::RecvStream);

impl Frames for H2Body {
    async fn next_data(&mut self) -> Option<Result<Bytes, ErrorKind>> {
        let data = self.0.data().await?;
        Some(data.map_err(|e| classify_h2(&e)).and_then(|data| {
            // Hand the window back at once, or a long run stalls on flow control.
            self.0.flow_control().release_capacity(data.len()).map_err(|e| classify_h2(&e))?;
            Ok(data)
        }))
    }
}

/// Reads a whole response. The body is counted frame by frame and kept only if
/// `keep_body` or it is encoded: most responses are only counted, which saves a
/// buffer per request.
async fn answer(mut parts: http::response::Parts, mut body: impl Frames, keep_body: bool) -> Result<Answer, ErrorKind> {
    {
        let content_encoding = parts.headers.remove(http::header::CONTENT_ENCODING);
        let etag = parts.headers.remove(http::header::ETAG);
        let keep = keep_body || content_encoding.is_some();
        let mut kept = bytes::BytesMut::new();
        let mut body_len = 0;
        while let Some(data) = body.next_data().await {
            let data = data?;
            body_len += data.len() as u64;
            if keep {
                kept.extend_from_slice(&data);
            }
        }
        let body = keep.then(|| kept.freeze());
        Ok(Answer { status: parts.status.as_u16(), content_encoding, etag, body_len, body })
    }
}

fn classify_h2(error: &h2::Error) -> ErrorKind {
    if let Some(io) = error.get_io() {
        use std::io::ErrorKind as Io;
        return match io.kind() {
            Io::TimedOut => ErrorKind::Timeout,
            Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => ErrorKind::Reset,
            _ => ErrorKind::Protocol,
        };
    }
    if error.is_go_away() || error.is_reset() {
        return ErrorKind::Reset;
    }
    ErrorKind::Protocol
}

pub(crate) fn classify(error: &hyper::Error) -> ErrorKind {
    use std::error::Error;
    if error.is_timeout() {
        return ErrorKind::Timeout;
    }
    if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        return ErrorKind::Reset;
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            if matches!(io.kind(), Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof) {
                return ErrorKind::Reset;
            }
        }
        source = cause.source();
    }
    ErrorKind::Protocol
}
