//! Connections the load generator holds, opened one by one so the tool decides
//! exactly how many TCP connections and HTTP/2 streams exist. No pool, no retries,
//! no redirects: a failure is counted, never hidden.
//!
//! Both protocols go through the generator's own clients, `h1` and `http2`, over TCP
//! or TLS (rustls, protocol chosen by ALPN). hyper's client, and the `h2` crate under
//! it, cost more per request than wrk and h2load (the `h2` crate 2.2× h2load's
//! user-space instructions), which made the generator the bottleneck of its own
//! comparison (results/load.md, results/load-instructions.md); each module says what
//! it leaves out.

use super::LoadError;
use super::h1::H1Connection;
use super::http2::{Driver, H2Stream};
use super::recorder::ErrorKind;
use super::request::RequestTemplate;
use super::workload::Planned;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

crate::choices! {
    /// HTTP version spoken on each connection.
    #[derive(Debug)]
    pub enum Protocol as "protocol" {
        /// HTTP/1.1 with keep-alive: one request in flight per connection.
        H1 = "h1",
        /// HTTP/2: cleartext with prior knowledge (h2c) for http://, ALPN h2 for https://.
        H2 = "h2",
    }
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

/// A sender for one connection or, for HTTP/2, one stream of it. An HTTP/1.1
/// connection is its own sender: the worker that owns it does its I/O inside its own
/// task, so a request and its response cost no wake-ups between tasks. An HTTP/2
/// connection, shared by several streams' workers, has a task of its own on the same
/// thread.
pub enum Sender {
    H1(H1Connection),
    H2(H2Stream),
}

/// A TLS client trusting the PEM certificates in `ca_pem`, offering `protocol` by ALPN.
pub fn tls_config(ca_pem: &[u8], protocol: Protocol) -> Result<Arc<rustls::ClientConfig>, LoadError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| LoadError::Tls(format!("not a PEM certificate: {e}")))?;
        roots.add(cert).map_err(|e| LoadError::Tls(format!("unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(LoadError::Tls("no certificate found in the PEM file".into()));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![match protocol {
        Protocol::H1 => b"http/1.1".to_vec(),
        Protocol::H2 => b"h2".to_vec(),
    }];
    Ok(Arc::new(config))
}

/// Opens one connection. An HTTP/2 connection comes with its [`Driver`], the task
/// that does its I/O, for the caller to spawn on the load thread.
pub async fn connect(endpoint: &Endpoint) -> Result<(Sender, Option<Driver>), (ErrorKind, String)> {
    let connect_err = |e: &dyn std::fmt::Display| (ErrorKind::Connect, format!("{}: {e}", endpoint.addr));
    let tcp = TcpStream::connect(endpoint.addr).await.map_err(|e| connect_err(&e))?;
    tcp.set_nodelay(true).map_err(|e| connect_err(&e))?;
    let io = match &endpoint.tls {
        None => Stream::Tcp(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| connect_err(&e))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| connect_err(&e))?;
            Stream::Tls(Box::new(tls))
        }
    };
    match endpoint.protocol {
        Protocol::H1 => Ok((Sender::H1(H1Connection::new(io)), None)),
        Protocol::H2 => {
            let (stream, driver) = super::http2::handshake(Box::new(io)).await.map_err(|e| (ErrorKind::Connect, e))?;
            Ok((Sender::H2(stream), Some(driver)))
        }
    }
}

/// A connection's byte stream, TCP or TLS over TCP. An enum rather than a boxed trait
/// object: the HTTP/1.1 client's reads and writes dispatch with a `match` the compiler
/// can see through, not a vtable call per poll.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
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
            Sender::H2(stream) => Some(Sender::H2(stream.another_stream())),
        }
    }

    /// Sends `planned` (encoded into `scratch` unless the template holds it whole)
    /// and reads the whole response. The body is counted and kept only if `keep_body`
    /// or it is encoded: most responses are only counted, which saves a buffer per
    /// request.
    pub(super) async fn send(
        &mut self,
        template: &RequestTemplate,
        planned: &Planned,
        scratch: &mut Vec<u8>,
        keep_body: bool,
    ) -> Result<Answer, ErrorKind> {
        let encoded = template.encoded(planned, scratch);
        match self {
            Sender::H1(connection) => {
                connection.exchange(encoded, planned.method == http::Method::HEAD, keep_body).await
            }
            Sender::H2(stream) => stream.exchange(encoded, template.body(planned), keep_body).await,
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(connection) => connection.is_closed(),
            Sender::H2(stream) => stream.is_closed(),
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
