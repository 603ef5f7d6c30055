//! Requests as the load generator sends them, built from a per-thread template:
//! encoded bytes for HTTP/1.1 (`h1`), `http::Request`s for HTTP/2 (the `h2` crate).

use super::conn::Protocol;
use super::workload::Planned;
use super::{LoadConfig, Workload};
use bytes::Bytes;
use http::{HeaderValue, Request};
use std::io::Write;

/// What every request of a run shares, built once per thread. Parsing a URI and
/// filling a header map per request showed in the generator's profile; for HTTP/1.1
/// the whole `--url` request is encoded once and written as is.
pub(super) struct RequestTemplate {
    /// `http://host:port` for HTTP/2 (the `h2` crate takes :scheme and :authority
    /// from an absolute URI); empty for HTTP/1.1.
    prefix: String,
    /// HTTP/2: the headers every request carries.
    headers: http::HeaderMap,
    /// HTTP/2 `--url`: the parsed URI.
    fixed_uri: Option<http::Uri>,
    /// HTTP/1.1: `Host` and the user's headers, each line ending in CRLF.
    h1_header_lines: Vec<u8>,
    /// HTTP/1.1 `--url`: the whole request.
    h1_fixed: Option<Vec<u8>>,
}

impl RequestTemplate {
    pub(super) fn new(config: &LoadConfig) -> Result<Self, String> {
        let endpoint = &config.endpoint;
        let authority = format!("{}:{}", endpoint.host, endpoint.addr.port());
        HeaderValue::from_str(&authority).map_err(|e| format!("host {authority:?}: {e}"))?;
        let mut template = Self {
            prefix: String::new(),
            headers: http::HeaderMap::new(),
            fixed_uri: None,
            h1_header_lines: format!("Host: {authority}\r\n").into_bytes(),
            h1_fixed: None,
        };
        for (name, value) in &config.headers {
            template.headers.append(name, value.clone());
            // Header values cannot hold CR or LF (`HeaderValue` refuses them).
            for part in [name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                template.h1_header_lines.extend_from_slice(part);
            }
        }
        match endpoint.protocol {
            Protocol::H1 => {
                if let Workload::Url { path } = &config.workload {
                    let path: http::uri::PathAndQuery = path.parse().map_err(|e| format!("URL path {path:?}: {e}"))?;
                    let mut request = Vec::new();
                    encode_h1(&template.h1_header_lines, "GET", path.as_str(), None, &mut request);
                    template.h1_fixed = Some(request);
                }
            }
            Protocol::H2 => {
                let scheme = if endpoint.tls.is_some() { "https" } else { "http" };
                template.prefix = format!("{scheme}://{authority}");
                if let Workload::Url { path } = &config.workload {
                    let uri = format!("{}{path}", template.prefix);
                    template.fixed_uri = Some(uri.parse().map_err(|e| format!("URL path {path:?}: {e}"))?);
                }
            }
        }
        Ok(template)
    }

    /// The HTTP/1.1 bytes of `planned`: the request encoded once for `--url`, or
    /// `planned` encoded into `scratch` (reused from request to request).
    pub(super) fn h1_bytes<'a>(&'a self, planned: &Planned, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if let Some(fixed) = &self.h1_fixed {
            return fixed;
        }
        scratch.clear();
        let write = planned.write.as_ref().map(|(_, version, body)| (*version, body.as_bytes()));
        encode_h1(&self.h1_header_lines, planned.method.as_str(), &planned.path, write, scratch);
        scratch
    }

    /// The HTTP/2 request of `planned`.
    pub(super) fn h2_request(&self, planned: &Planned) -> Request<Bytes> {
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

/// Appends one HTTP/1.1 request to `out`; a write carries its JSON body and the
/// version it expects in `If-Match`.
fn encode_h1(header_lines: &[u8], method: &str, path: &str, write: Option<(i64, &[u8])>, out: &mut Vec<u8>) {
    for part in [method.as_bytes(), b" ", path.as_bytes(), b" HTTP/1.1\r\n", header_lines] {
        out.extend_from_slice(part);
    }
    if let Some((version, body)) = write {
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "Content-Type: application/json\r\nIf-Match: \"{version}\"\r\nContent-Length: {}\r\n",
            body.len()
        );
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_a_bare_get_and_a_write_carries_its_version_and_body() {
        let lines = b"Host: h:1\r\nAccept-Encoding: gzip\r\n";
        let mut read = Vec::new();
        encode_h1(lines, "GET", "/flights/7", None, &mut read);
        assert_eq!(read, b"GET /flights/7 HTTP/1.1\r\nHost: h:1\r\nAccept-Encoding: gzip\r\n\r\n");
        let mut write = Vec::new();
        encode_h1(lines, "POST", "/flights/7/events", Some((3, b"{}")), &mut write);
        assert_eq!(
            String::from_utf8(write).expect("ascii"),
            "POST /flights/7/events HTTP/1.1\r\nHost: h:1\r\nAccept-Encoding: gzip\r\n\
             Content-Type: application/json\r\nIf-Match: \"3\"\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn every_request_parses_as_http11_with_its_body() {
        let mut out = Vec::new();
        encode_h1(b"Host: h:1\r\n", "POST", "/a?b=c", Some((12, b"{\"x\":1}")), &mut out);
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut request = httparse::Request::new(&mut headers);
        let head = match request.parse(&out) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("not a complete request: {other:?}"),
        };
        assert_eq!((request.method, request.path, request.version), (Some("POST"), Some("/a?b=c"), Some(1)));
        assert_eq!(&out[head..], b"{\"x\":1}");
    }
}
