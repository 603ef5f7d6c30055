//! The headers a request carries from the gateway to a service: hop-by-hop ones
//! removed, the client and the original host and scheme recorded
//! (`X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, RFC 7239 `Forwarded`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::SocketAddr;

/// RFC 9110 §7.6.1's connection-specific headers: HTTP/2 forbids them.
pub(super) const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// A hop-by-hop header, or `Host`, which HTTP/2 carries as `:authority` (the
/// original goes in `X-Forwarded-Host`).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || name == header::HOST
}

/// The request's headers as the service gets them: hop-by-hop ones removed, the
/// client and the original host and scheme recorded.
pub(super) fn forwarded(incoming: &HeaderMap, peer: SocketAddr, scheme: &str) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(incoming.len() + 4);
    let listed: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    for (name, value) in incoming {
        if !is_hop_by_hop(name) && !listed.iter().any(|l| l == name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    let client = peer.ip().to_string();
    let xff = match incoming.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client}"),
        None => client.clone(),
    };
    let host = incoming.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let node = if peer.is_ipv6() { format!("\"[{client}]\"") } else { client };
    let mut forwarded = format!("for={node};proto={}", scheme);
    if !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
        forwarded.push_str(&format!(";host=\"{host}\""));
    }
    let forwarded = match incoming.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {forwarded}"),
        None => forwarded,
    };
    for (name, value) in [("x-forwarded-for", xff), ("x-forwarded-proto", scheme.to_owned()), ("forwarded", forwarded)]
    {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if let Some(host) = incoming.get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    headers
}
