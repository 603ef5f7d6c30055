//! The gateway's configuration file (JSON) and the route table built from it.
//!
//! Only the services' destinations are required. Routes default to the service's own
//! split (`http::ServiceRole::owner`: reads to `query`, delay reports and admin to
//! `command`, subscriptions to `notify`), so the gateway and the services agree on
//! one rule; `routes` in the file add prefix routes tried first. Example:
//!
//! ```json
//! {
//!   "services": {
//!     "query":   { "destinations": ["http://127.0.0.1:8081", "http://127.0.0.1:8082"] },
//!     "command": { "destinations": ["http://127.0.0.1:8083"], "timeout_ms": 5000 },
//!     "notify":  { "destinations": ["http://127.0.0.1:8084"] }
//!   },
//!   "routes": [ { "prefix": "/carriers/", "methods": ["GET"], "service": "query", "timeout_ms": 500 } ],
//!   "health": { "interval_ms": 1000, "timeout_ms": 1000, "eject_after": 3 },
//!   "retry_budget_percent": 20,
//!   "timeout_ms": 10000
//! }
//! ```

use crate::http::{Route, ServiceRole};
use http::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    pub services: BTreeMap<String, ServiceFile>,
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    #[serde(default)]
    pub health: HealthFile,
    /// Retries allowed, as a share of requests: a retry spends a token, each request
    /// adds this many hundredths of one (YARP's and Envoy's retry budgets work alike),
    /// so a failing service is not sent every request twice.
    #[serde(default = "default_budget")]
    pub retry_budget_percent: u32,
    /// The default time limit for a service's response head.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// `http://host:port` of each instance; spoken to in HTTP/2 (prior knowledge).
    pub destinations: Vec<String>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// A path prefix (`/carriers/`); the longest matching prefix wins.
    pub prefix: String,
    /// Methods it takes (empty: every method).
    #[serde(default)]
    pub methods: Vec<String>,
    pub service: String,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthFile {
    /// How often each destination's `/readyz` is asked.
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures (checks, or requests that failed in transport or with a
    /// 502/503/504) that take a destination out; a passing check puts it back.
    pub eject_after: u32,
}

impl Default for HealthFile {
    fn default() -> Self {
        Self { interval_ms: 1_000, timeout_ms: 1_000, eject_after: 3 }
    }
}

fn default_budget() -> u32 {
    20
}

fn default_timeout() -> u64 {
    10_000
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// To a service: the route's name (for errors and logs), the service, its time limit.
    Service {
        route: String,
        service: String,
        timeout: Duration,
    },
    /// A probe the gateway answers itself.
    Own(Route),
    Unmatched,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub file: GatewayFile,
    routes: Vec<(RouteFile, Vec<Method>)>,
}

impl GatewayConfig {
    /// Parses and checks the file: every destination an `http://host:port` URL, every
    /// route naming a known service, every method a method, timeouts above zero.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: GatewayFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.services.is_empty() {
            return Err("services must name at least one service".into());
        }
        for (name, service) in &file.services {
            if service.destinations.is_empty() {
                return Err(format!("service {name} has no destinations"));
            }
            for url in &service.destinations {
                authority(url).map_err(|e| format!("service {name}: {e}"))?;
            }
        }
        let mut routes = Vec::new();
        for route in &file.routes {
            if !file.services.contains_key(&route.service) {
                return Err(format!(
                    "route {} names service {:?}, which is not in services",
                    route.prefix, route.service
                ));
            }
            if !route.prefix.starts_with('/') {
                return Err(format!("route prefix {:?} must start with /", route.prefix));
            }
            let methods = route
                .methods
                .iter()
                .map(|m| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| format!("{m:?} is not a method"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            routes.push((route.clone(), methods));
        }
        // Longest prefix first.
        routes.sort_by_key(|(r, _)| std::cmp::Reverse(r.prefix.len()));
        let timeouts =
            file.services.values().filter_map(|s| s.timeout_ms).chain(file.routes.iter().filter_map(|r| r.timeout_ms));
        if file.timeout_ms == 0
            || file.health.interval_ms == 0
            || file.health.timeout_ms == 0
            || timeouts.into_iter().any(|t| t == 0)
        {
            return Err("every timeout and the health interval must be above 0 ms".into());
        }
        if file.health.eject_after == 0 {
            return Err("health.eject_after must be at least 1".into());
        }
        Ok(Self { file, routes })
    }

    /// Where `method path` goes.
    pub fn target(&self, method: &Method, path: &str) -> Target {
        for (route, methods) in &self.routes {
            if path.starts_with(&route.prefix) && (methods.is_empty() || methods.contains(method)) {
                let name = format!("{} {}*", method, route.prefix);
                return self.to_service(name, &route.service, route.timeout_ms);
            }
        }
        let (route, _) = Route::locate(path);
        match ServiceRole::owner(route) {
            ServiceRole::All if route == Route::Unmatched => Target::Unmatched,
            ServiceRole::All => Target::Own(route),
            owner if self.file.services.contains_key(owner.as_str()) => {
                self.to_service(format!("{method} {}", route.template()), owner.as_str(), None)
            }
            _ => Target::Unmatched,
        }
    }

    fn to_service(&self, route: String, service: &str, route_timeout: Option<u64>) -> Target {
        let service_timeout = self.file.services.get(service).and_then(|s| s.timeout_ms);
        let ms = route_timeout.or(service_timeout).unwrap_or(self.file.timeout_ms);
        Target::Service { route, service: service.to_owned(), timeout: Duration::from_millis(ms) }
    }
}

/// `host:port` of an `http://host:port` destination URL.
pub fn authority(url: &str) -> Result<http::uri::Authority, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("destination {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("destination {url:?} must be http://host:port (HTTP/2 cleartext to the service)"));
    }
    let authority = uri.authority().ok_or_else(|| format!("destination {url:?} has no host"))?;
    if authority.port_u16().is_none() {
        return Err(format!("destination {url:?} needs a port"));
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!("destination {url:?} must not have a path"));
    }
    Ok(authority.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
        "services": {
            "query": { "destinations": ["http://127.0.0.1:8081", "http://127.0.0.1:8082"] },
            "command": { "destinations": ["http://127.0.0.1:8083"], "timeout_ms": 5000 }
        },
        "routes": [
            { "prefix": "/carriers/", "methods": ["get"], "service": "command", "timeout_ms": 700 },
            { "prefix": "/car", "service": "query" }
        ]
    }"#;

    #[test]
    fn routes_follow_the_split_unless_the_file_says_otherwise() {
        let config = GatewayConfig::parse(FILE).unwrap();
        let service = |route: &str, service: &str, ms: u64| Target::Service {
            route: route.into(),
            service: service.into(),
            timeout: Duration::from_millis(ms),
        };
        assert_eq!(config.target(&Method::GET, "/flights/42"), service("GET /flights/{id}", "query", 10_000));
        assert_eq!(
            config.target(&Method::POST, "/flights/42/delays"),
            service("POST /flights/{id}/delays", "command", 5_000)
        );
        // The longest prefix first, its methods respected.
        assert_eq!(config.target(&Method::GET, "/carriers/LH/on-time"), service("GET /carriers/*", "command", 700));
        assert_eq!(config.target(&Method::POST, "/carriers/LH/on-time"), service("POST /car*", "query", 10_000));
        assert_eq!(config.target(&Method::GET, "/readyz"), Target::Own(Route::Readyz));
        assert_eq!(config.target(&Method::GET, "/nothing"), Target::Unmatched);
        // No notify service in this file: its routes are unmatched, not misrouted.
        assert_eq!(config.target(&Method::POST, "/subscriptions"), Target::Unmatched);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for (text, says) in [
            (r#"{"services": {}}"#, "at least one service"),
            (r#"{"services": {"query": {"destinations": []}}}"#, "no destinations"),
            (r#"{"services": {"query": {"destinations": ["https://a:1"]}}}"#, "must be http://host:port"),
            (r#"{"services": {"query": {"destinations": ["http://a"]}}}"#, "needs a port"),
            (r#"{"services": {"query": {"destinations": ["http://a:1/x"]}}}"#, "must not have a path"),
            (
                r#"{"services": {"q": {"destinations": ["http://a:1"]}}, "routes": [{"prefix": "/x", "service": "z"}]}"#,
                "not in services",
            ),
            (
                r#"{"services": {"q": {"destinations": ["http://a:1"]}}, "routes": [{"prefix": "x", "service": "q"}]}"#,
                "must start with /",
            ),
            (r#"{"services": {"q": {"destinations": ["http://a:1"]}}, "timeout_ms": 0}"#, "above 0 ms"),
            (r#"{"services": {"q": {"destinations": ["http://a:1"]}}, "extra": 1}"#, "unknown field"),
        ] {
            let err = GatewayConfig::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
