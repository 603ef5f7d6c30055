//! One webhook delivery: a POST over HTTP/1.1 to the subscriber's URL, answered within
//! a time limit. Any 2xx is delivered; anything else (another status, a refused
//! connection, no answer in time) is a failed try, with the reason kept.

use bytes::Bytes;
use http_body_util::Full;
use std::time::Duration;

/// A webhook target: parsed once, when the subscription is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub authority: String,
    pub path: String,
}

impl Target {
    /// An `http://` URL whose host is in `allowed` (a subscription makes this server
    /// call the URL, so the hosts it may call are the operator's choice, loopback by
    /// default). `https` targets are not supported yet, and say so.
    pub fn parse(url: &str, allowed: &[String]) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err("https webhook targets are not supported yet; use http".into()),
            _ => return Err(format!("url {url:?} must start with http://")),
        }
        let host = uri.host().ok_or_else(|| format!("url {url:?} has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
            return Err(format!(
                "webhook host {host} is not allowed here (serve --webhook-hosts: {})",
                allowed.join(",")
            ));
        }
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri.authority().map_or_else(|| host.clone(), |a| a.to_string());
        let path = uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.to_string());
        Ok(Self { host, port, authority, path })
    }
}

/// POSTs `body` with `headers`; `Ok` for a 2xx, the reason otherwise.
pub async fn post(target: &Target, headers: &[(&str, String)], body: Bytes, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, post_unbounded(target, headers, body)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn post_unbounded(target: &Target, headers: &[(&str, String)], body: Bytes) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let mut request = http::Request::post(target.path.as_str())
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, concat!("flightbench/", env!("CARGO_PKG_VERSION")));
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string());
    connection.abort();
    let status = response?.status();
    if status.is_success() { Ok(()) } else { Err(format!("answered {status}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_http_urls_on_allowed_hosts() {
        let loopback = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let t = Target::parse("http://127.0.0.1:9000/hooks/delays?x=1", &loopback).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("127.0.0.1", 9000, "/hooks/delays?x=1"));
        assert_eq!(Target::parse("http://LOCALHOST/", &loopback).unwrap().port, 80);
        for (url, says) in [
            ("https://127.0.0.1/", "not supported yet"),
            ("ftp://127.0.0.1/", "must start with http://"),
            ("http://169.254.169.254/latest/meta-data", "not allowed here"),
            ("not a url", "is not a URL"),
        ] {
            let err = Target::parse(url, &loopback).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
    }
}
