//! Requests as the load generator sends them, built from a per-thread template.

use super::conn::Protocol;
use super::workload::Planned;
use super::{LoadConfig, Workload};
use bytes::Bytes;
use http::{HeaderValue, Request};

/// What every request of a run shares, built once per thread: the URI prefix HTTP/2
/// needs, the headers, and for `--url` the parsed URI itself. Parsing a URI and
/// filling a header map per request showed in the generator's profile.
pub(super) struct RequestTemplate {
    /// `http://host:port` for HTTP/2 (hyper takes :scheme and :authority from an
    /// absolute URI); empty for HTTP/1.1, which sends the path and a Host header.
    prefix: String,
    headers: http::HeaderMap,
    fixed_uri: Option<http::Uri>,
}

impl RequestTemplate {
    pub(super) fn new(config: &LoadConfig) -> Result<Self, String> {
        let endpoint = &config.endpoint;
        let authority = format!("{}:{}", endpoint.host, endpoint.addr.port());
        let prefix = match endpoint.protocol {
            Protocol::H1 => String::new(),
            Protocol::H2 => format!("{}://{authority}", if endpoint.tls.is_some() { "https" } else { "http" }),
        };
        let mut headers = http::HeaderMap::new();
        if endpoint.protocol == Protocol::H1 {
            let host = HeaderValue::from_str(&authority).map_err(|e| format!("host {authority:?}: {e}"))?;
            headers.insert(http::header::HOST, host);
        }
        for (name, value) in &config.headers {
            headers.append(name, value.clone());
        }
        let fixed_uri = match &config.workload {
            Workload::Url { path } => {
                Some(format!("{prefix}{path}").parse().map_err(|e| format!("URL path {path:?}: {e}"))?)
            }
            Workload::Mix { .. } => None,
        };
        Ok(Self { prefix, headers, fixed_uri })
    }

    pub(super) fn request(&self, planned: &Planned) -> Request<Bytes> {
        let body = planned.write.as_ref().map_or_else(Bytes::new, |(_, _, body)| Bytes::from(body.clone()));
        let mut request = Request::new(body);
        *request.method_mut() = planned.method.clone();
        *request.uri_mut() = match &self.fixed_uri {
            Some(uri) => uri.clone(),
            // Cannot fail: planned paths are ASCII paths and queries built by the planner.
            None => format!("{}{}", self.prefix, planned.path).parse().expect("planned paths are valid URIs"),
        };
        *request.headers_mut() = self.headers.clone();
        if let Some((_, version, _)) = &planned.write {
            let headers = request.headers_mut();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            // Cannot fail: digits and quotes.
            headers.insert(http::header::IF_MATCH, HeaderValue::from_str(&format!("\"{version}\"")).expect("ascii"));
        }
        request
    }
}
