//! A provider's published keys: OpenID Connect discovery (`/.well-known/openid-configuration`
//! → `jwks_uri`), the JWKS fetched and kept, fetched again on a schedule and when a
//! token names a `kid` the set does not have (rate-limited), so a key rotation at the
//! provider needs no restart. openidconnect-rs #232 is what happens otherwise: every
//! token fails after the provider rotates.

use super::keys::{KeySet, KeySetError};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

/// The largest discovery or JWKS document read (a JWKS with a dozen RSA-4096 keys is
/// about 10 KB).
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How long one fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{url}: {problem}")]
    Fetch { url: String, problem: String },
    #[error("{url}: {cause}")]
    Keys { url: String, cause: KeySetError },
    #[error("{url}: the discovery document's issuer is {found:?}, not {expected:?} (OpenID Connect Discovery §4.3)")]
    IssuerMismatch { url: String, expected: String, found: String },
    #[error("reading CA certificates {path}: {problem}")]
    Ca { path: String, problem: String },
}

/// How the keys are fetched and how often.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Fetch the set again this often, whatever happens.
    pub refresh_every: Duration,
    /// At most one fetch per this interval for unknown `kid`s: a stream of tokens with
    /// made-up `kid`s must not turn into a stream of requests to the provider.
    pub min_refresh: Duration,
    /// Roots for `https` URLs (`None`: none can be fetched).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The current key set of a provider.
pub struct RemoteKeys {
    pub jwks_uri: String,
    config: RemoteConfig,
    set: RwLock<Arc<KeySet>>,
    /// When the set was last fetched (or tried), behind the one lock fetches take.
    last_fetch: tokio::sync::Mutex<Instant>,
    fetches: std::sync::atomic::AtomicU64,
    /// Sets installed so far (the token cache's entries belong to one).
    generation: std::sync::atomic::AtomicU64,
}

impl RemoteKeys {
    /// Discovers `issuer`'s `jwks_uri`, fetches the set, and (on the current runtime)
    /// starts the scheduled refresh, which ends when the keys are dropped.
    pub async fn discover(issuer: &str, config: RemoteConfig) -> Result<Arc<Self>, RemoteError> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let document: serde_json::Value = serde_json::from_slice(&get(&url, config.tls.as_ref()).await?)
            .map_err(|e| RemoteError::Fetch { url: url.clone(), problem: format!("not JSON: {e}") })?;
        let found = document.get("issuer").and_then(|v| v.as_str()).unwrap_or_default();
        if found != issuer {
            return Err(RemoteError::IssuerMismatch { url, expected: issuer.to_owned(), found: found.to_owned() });
        }
        let jwks_uri = document.get("jwks_uri").and_then(|v| v.as_str()).ok_or_else(|| RemoteError::Fetch {
            url: url.clone(),
            problem: "no jwks_uri in the discovery document".into(),
        })?;
        Self::from_jwks_uri(jwks_uri, config).await
    }

    /// Fetches the set at `jwks_uri` and starts the scheduled refresh.
    pub async fn from_jwks_uri(jwks_uri: &str, config: RemoteConfig) -> Result<Arc<Self>, RemoteError> {
        let set = fetch_set(jwks_uri, config.tls.as_ref()).await?;
        let keys = Arc::new(Self {
            jwks_uri: jwks_uri.to_owned(),
            config,
            set: RwLock::new(Arc::new(set)),
            last_fetch: tokio::sync::Mutex::new(Instant::now()),
            fetches: 1.into(),
            generation: 1.into(),
        });
        tokio::spawn(scheduled_refresh(Arc::downgrade(&keys)));
        Ok(keys)
    }

    pub fn current(&self) -> Arc<KeySet> {
        // A poisoned lock still holds a whole set: the writer only swaps an Arc.
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes every time a fetched set replaces the current one.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sets fetched so far, the first included.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fetches the set again unless that was done within the minimum interval.
    /// Concurrent callers wait for one fetch rather than each making their own.
    pub async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.elapsed() >= self.config.min_refresh {
            self.fetch(&mut last).await;
        }
    }

    async fn fetch(&self, last: &mut Instant) {
        *last = Instant::now();
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match fetch_set(&self.jwks_uri, self.config.tls.as_ref()).await {
            Ok(set) => {
                for skipped in &set.skipped {
                    tracing::warn!(jwks_uri = %self.jwks_uri, "key skipped: {skipped}");
                }
                *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            // The old set stays: a provider that is down for a minute must not log
            // everyone out.
            Err(error) => tracing::warn!(%error, "refreshing the key set failed; keeping the previous one"),
        }
    }
}

async fn scheduled_refresh(keys: Weak<RemoteKeys>) {
    loop {
        let Some(every) = keys.upgrade().map(|k| k.config.refresh_every) else { return };
        tokio::time::sleep(every).await;
        let Some(keys) = keys.upgrade() else { return };
        let mut last = keys.last_fetch.lock().await;
        keys.fetch(&mut last).await;
    }
}

async fn fetch_set(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<KeySet, RemoteError> {
    KeySet::from_jwks(&get(url, tls).await?).map_err(|cause| RemoteError::Keys { url: url.to_owned(), cause })
}

/// Trust for `https` provider URLs: the PEM certificates in `path`.
pub fn tls_roots(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, RemoteError> {
    let problem = |problem: String| RemoteError::Ca { path: path.display().to_string(), problem };
    let pem = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
    crate::load::conn::tls_config(&pem, crate::load::conn::Protocol::H1).map_err(|e| problem(e.to_string()))
}

/// One GET over HTTP/1.1 (TLS for `https`), answered 200 within the time limit, body
/// within the size limit.
async fn get(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Bytes, RemoteError> {
    let problem = |problem: String| RemoteError::Fetch { url: url.to_owned(), problem };
    tokio::time::timeout(FETCH_TIMEOUT, get_unbounded(url, tls))
        .await
        .map_err(|_| problem(format!("no answer within {FETCH_TIMEOUT:?}")))?
        .map_err(problem)
}

async fn get_unbounded(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let secure = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => return Err(format!("scheme {other:?} is not http or https")),
    };
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = if secure {
        let tls = tls.ok_or("an https URL needs CA certificates (--oidc-ca)")?;
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let stream =
            tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| e.to_string())?;
        send(hyper_util::rt::TokioIo::new(stream), request).await?
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), request).await?
    };
    if response.status() != http::StatusCode::OK {
        return Err(format!("answered {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES).collect().await.map_err(|e| e.to_string())?;
    Ok(body.to_bytes())
}

async fn send<IO>(io: IO, request: http::Request<Empty<Bytes>>) -> Result<http::Response<hyper::body::Incoming>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(|e| e.to_string())
}
