//! TLS to PostgreSQL shards. A shard URL with `sslmode=verify-full&sslrootcert=FILE`
//! connects every handle onto the shard (the sqlx pool, the ORM over it, the raw
//! tokio-postgres pool, the seeder and `events migrate`) over TLS, checking the
//! server's certificate against that CA and its name against the URL's host, on
//! rustls with the `ring` provider like the rest of the crate.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require` and verifies nothing by
//! itself, so its URL is given without the TLS parameters and its connector is
//! [`RustlsConnect`]. `require` and `verify-ca` (encryption without checking the name,
//! or nothing at all) are refused rather than half-honoured: a URL that asks for less
//! than verification gets none silently nowhere.

use rustls::pki_types::ServerName;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a shard URL asks of TLS.
pub(crate) struct PgTls {
    /// The URL for tokio-postgres: `sslmode` and `sslrootcert` removed.
    pub raw_url: String,
    /// Verified TLS, or none (`sslmode` absent, `disable`, `allow` or `prefer`): then
    /// every handle connects in cleartext, so all four query paths pay alike.
    pub connector: Option<RustlsConnect>,
}

impl PgTls {
    pub(crate) fn of(url: &str) -> Result<Self, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = None;
        let mut root = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", value)) => mode = Some(value.to_owned()),
                Some(("sslrootcert", value)) => {
                    let path: String = form_urlencoded::parse(format!("p={value}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    root = Some(path);
                }
                _ => kept.push(pair),
            }
        }
        let raw_url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        let connector = match (mode.as_deref(), root) {
            (None | Some("disable" | "allow" | "prefer"), _) => None,
            (Some("verify-full"), Some(root)) => Some(RustlsConnect::trusting(&root)?),
            (Some("verify-full"), None) => {
                return Err(
                    "sslmode=verify-full needs sslrootcert=FILE (the CA that signed the server's certificate)".into()
                );
            }
            (Some(other), _) => {
                return Err(format!(
                    "sslmode={other} is not supported: use sslmode=verify-full with sslrootcert=FILE (encrypted and verified), or leave TLS off"
                ));
            }
        };
        Ok(PgTls { raw_url, connector })
    }
}

/// Why [`connect`] failed: the URL's TLS settings, or PostgreSQL (or the way to it).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Tls(String),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// One connection outside a pool (the seeder's, `events migrate`'s), TLS as the URL
/// asks; its connection task runs until the client is dropped.
pub(crate) async fn connect(url: &str, password: Option<&str>) -> Result<tokio_postgres::Client, ConnectError> {
    use std::str::FromStr;
    let tls = PgTls::of(url).map_err(ConnectError::Tls)?;
    let mut config = tokio_postgres::Config::from_str(&tls.raw_url)?;
    if let Some(p) = password {
        config.password(p);
    }
    config.connect_timeout(std::time::Duration::from_secs(5));
    Ok(match tls.connector {
        Some(connector) => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            spawned(&config, connector).await?
        }
        None => spawned(&config, tokio_postgres::NoTls).await?,
    })
}

/// Connects with `tls` and runs the connection on a task of its own; an error of the
/// connection surfaces on the client's next call.
async fn spawned<T>(config: &tokio_postgres::Config, tls: T) -> Result<tokio_postgres::Client, tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move { drop(connection.await) });
    Ok(client)
}

/// tokio-postgres' TLS over rustls, verifying against one CA file.
#[derive(Clone)]
pub(crate) struct RustlsConnect(Arc<rustls::ClientConfig>);

impl RustlsConnect {
    fn trusting(ca_file: &str) -> Result<Self, String> {
        let pem = std::fs::read(ca_file).map_err(|e| format!("sslrootcert {ca_file}: {e}"))?;
        let config = crate::load::conn::tls_config(&pem, crate::load::conn::Protocol::H1)
            .map_err(|e| format!("sslrootcert {ca_file}: {e}"))?;
        // PostgreSQL negotiates TLS after its own SSLRequest, without ALPN.
        let mut config = (*config).clone();
        config.alpn_protocols.clear();
        Ok(Self(Arc::new(config)))
    }
}

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = OneConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<OneConnect, Self::Error> {
        Ok(OneConnect { config: self.0.clone(), name: ServerName::try_from(host.to_owned())? })
    }
}

/// The connector for one connection to one host.
pub(crate) struct OneConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> tokio_postgres::tls::TlsConnect<S> for OneConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A TLS stream as tokio-postgres wants it (no channel binding: SCRAM-PLUS is not
/// offered).
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_raw_url_and_only_verification_is_taken() {
        let plain = PgTls::of("postgres://u@h:5432/db?application_name=x").unwrap();
        assert_eq!(plain.raw_url, "postgres://u@h:5432/db?application_name=x");
        assert!(plain.connector.is_none());
        let preferred = PgTls::of("postgres://u@h/db?sslmode=prefer").unwrap();
        assert_eq!((preferred.raw_url.as_str(), preferred.connector.is_none()), ("postgres://u@h/db", true));
        let missing = PgTls::of("postgres://u@h/db?sslmode=verify-full").err().unwrap();
        assert!(missing.contains("needs sslrootcert"), "{missing}");
        for weak in ["require", "verify-ca"] {
            let refused = PgTls::of(&format!("postgres://u@h/db?sslmode={weak}&sslrootcert=/x")).err().unwrap();
            assert!(refused.contains("not supported") && refused.contains(weak), "{refused}");
        }
        let unreadable =
            PgTls::of("postgres://u@h/db?a=1&sslmode=verify-full&sslrootcert=%2Fnone%2Fca.pem&b=2").err().unwrap();
        assert!(unreadable.contains("sslrootcert /none/ca.pem"), "{unreadable}");
    }
}
