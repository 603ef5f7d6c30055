//! Requests as the load generator sends them, built from a per-thread template:
//! encoded bytes for HTTP/1.1 (`h1`) and HPACK header blocks for HTTP/2 (`http2`).

use super::conn::Protocol;
use super::http2::{RequestHead, encode_head};
use super::workload::Planned;
use super::{LoadConfig, LoadError, Workload};
use std::io::Write;

/// What every request of a run shares, built once per thread. For `--url` the whole
/// request is encoded once and written as is; the API mix encodes each request into a
/// buffer its connection reuses.
pub(super) struct RequestTemplate {
    protocol: Protocol,
    https: bool,
    /// `host:port`: the HTTP/1.1 `Host` header, the HTTP/2 `:authority`.
    authority: String,
    /// HTTP/1.1: `Host` and the user's headers, each line ending in CRLF.
    h1_header_lines: Vec<u8>,
    /// HTTP/2: the user's headers, names in lower case.
    h2_fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// `--url`: the whole HTTP/1.1 request, or the HTTP/2 header block.
    fixed: Option<Vec<u8>>,
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2): they describe an HTTP/1.1 connection.
const CONNECTION_SPECIFIC: [&str; 5] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

impl RequestTemplate {
    pub(super) fn new(config: &LoadConfig) -> Result<Self, LoadError> {
        let endpoint = &config.endpoint;
        let authority = format!("{}:{}", endpoint.host, endpoint.addr.port());
        http::HeaderValue::from_str(&authority).map_err(|e| LoadError::Config(format!("host {authority:?}: {e}")))?;
        let mut template = Self {
            protocol: endpoint.protocol,
            https: endpoint.tls.is_some(),
            h1_header_lines: format!("Host: {authority}\r\n").into_bytes(),
            authority,
            h2_fields: Vec::new(),
            fixed: None,
        };
        for (name, value) in &config.headers {
            // Header values cannot hold CR or LF (`HeaderValue` refuses them).
            for part in [name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                template.h1_header_lines.extend_from_slice(part);
            }
            if !CONNECTION_SPECIFIC.contains(&name.as_str()) {
                template.h2_fields.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
            }
        }
        if let Workload::Url { path } = &config.workload {
            let path: http::uri::PathAndQuery =
                path.parse().map_err(|e| LoadError::Config(format!("URL path {path:?}: {e}")))?;
            let get = Planned {
                kind: super::workload::RequestKind::Url,
                method: http::Method::GET,
                path: path.as_str().to_owned(),
                write: None,
            };
            let mut request = Vec::new();
            template.encode(&get, &mut request);
            template.fixed = Some(request);
        }
        Ok(template)
    }

    /// The bytes of `planned`: for HTTP/1.1 the whole request, for HTTP/2 its header
    /// block (the body is [`Self::body`]). `--url` returns the request encoded once;
    /// otherwise `planned` is encoded into `scratch`.
    pub(super) fn encoded<'a>(&'a self, planned: &Planned, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if let Some(fixed) = &self.fixed {
            return fixed;
        }
        scratch.clear();
        self.encode(planned, scratch);
        scratch
    }

    /// An HTTP/2 request's body.
    pub(super) fn body<'a>(&self, planned: &'a Planned) -> &'a [u8] {
        planned.write.as_ref().map_or(&[], |(_, _, body)| body.as_bytes())
    }

    fn encode(&self, planned: &Planned, out: &mut Vec<u8>) {
        let write = planned.write.as_ref().map(|(_, version, body)| (*version, body.as_bytes()));
        match self.protocol {
            Protocol::H1 => encode_h1(&self.h1_header_lines, planned.method.as_str(), &planned.path, write, out),
            Protocol::H2 => {
                let if_match;
                let length;
                let mut fields: Vec<(&[u8], &[u8])> =
                    self.h2_fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
                if let Some((version, body)) = write {
                    if_match = format!("\"{version}\"");
                    length = body.len().to_string();
                    fields.push((b"content-type", b"application/json"));
                    fields.push((b"if-match", if_match.as_bytes()));
                    fields.push((b"content-length", length.as_bytes()));
                }
                let head = RequestHead {
                    method: planned.method.as_str(),
                    https: self.https,
                    authority: &self.authority,
                    path: &planned.path,
                    fields: &fields,
                };
                encode_head(&head, out);
            }
        }
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
