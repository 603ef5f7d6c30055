//! A minimal HTTP client over hyper's low-level connections: one request per
//! connection, HTTP/1.1 or h2c, so tests control the protocol exactly.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
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
    /// The protocol ALPN settled on, for TLS connections.
    pub alpn: Option<Vec<u8>>,
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

/// How a request travels: cleartext HTTP/1.1 or h2c, or TLS offering one ALPN protocol.
#[derive(Clone)]
pub enum Transport {
    Plain(Proto),
    Tls { config: Arc<rustls::ClientConfig>, proto: Proto },
}

impl From<Proto> for Transport {
    fn from(proto: Proto) -> Self {
        Transport::Plain(proto)
    }
}

impl Transport {
    /// A TLS client trusting exactly `cert_pem`, offering `proto` by ALPN.
    pub fn tls(cert_pem: &str, proto: Proto) -> Self {
        Self::tls_versions(cert_pem, proto, rustls::DEFAULT_VERSIONS)
    }

    /// [`Transport::tls`] speaking only `versions`.
    pub fn tls_versions(cert_pem: &str, proto: Proto, versions: &[&'static rustls::SupportedProtocolVersion]) -> Self {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()).unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![match proto {
            Proto::H1 => b"http/1.1".to_vec(),
            Proto::H2c => b"h2".to_vec(),
        }];
        Transport::Tls { config: Arc::new(config), proto }
    }
}

async fn exchange<I>(io: I, proto: Proto, request: Request<Full<Bytes>>) -> Result<Reply, ClientError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
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
    Ok(Reply { status: parts.status, headers: parts.headers, body: body.collect().await?.to_bytes(), alpn: None })
}

/// Sends one request on a new connection; any transport failure is an error.
pub async fn try_send(
    addr: SocketAddr,
    transport: impl Into<Transport>,
    request: Request<Full<Bytes>>,
) -> Result<Reply, ClientError> {
    let tcp = TcpStream::connect(addr).await?;
    match transport.into() {
        Transport::Plain(proto) => exchange(TokioIo::new(tcp), proto, request).await,
        Transport::Tls { config, proto } => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let mut reply = exchange(TokioIo::new(tls), proto, request).await?;
            reply.alpn = alpn;
            Ok(reply)
        }
    }
}

/// [`try_send`] where a transport failure fails the test.
pub async fn send(addr: SocketAddr, transport: impl Into<Transport>, request: Request<Full<Bytes>>) -> Reply {
    try_send(addr, transport, request).await.unwrap_or_else(|e| panic!("request failed: {e}"))
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

/// `request` with `Authorization: Bearer <token>`.
pub fn with_bearer(mut request: Request<Full<Bytes>>, token: &str) -> Request<Full<Bytes>> {
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A flight's current version, from `GET /flights/{id}`.
pub async fn current_version(addr: SocketAddr, transport: impl Into<Transport>, id: impl std::fmt::Display) -> i64 {
    let reply = send(addr, transport, get(&format!("/flights/{id}")).body(Full::default()).unwrap()).await;
    reply.json()["status"]["version"].as_i64().unwrap_or_else(|| panic!("flight {id}: {:?}", reply.body))
}
