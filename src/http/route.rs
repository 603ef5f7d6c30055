//! The API's routes by shape: what a request path matches, and the template metrics and
//! traces label it with. Labels use the template (`/flights/{id}`), never the raw path,
//! so a scan over ids cannot create a series per id.

use http::{Method, Version};

/// A route template. `Unmatched` covers every path the API does not serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    Flight,
    FlightEvents,
    FlightDelays,
    Departures,
    AirportDelays,
    Board,
    AirportHours,
    CarrierOnTime,
    Live,
    Dashboard,
    /// `/admin/subjects/{sub}`: erasure (DELETE).
    Subject,
    /// `/admin/subjects/{sub}/export`.
    SubjectExport,
    /// `/admin/keys/rotate`: re-wrap every data key under the newest KEK (POST).
    KeysRotate,
    /// `/admin/audit`: the audit log as JSON lines.
    Audit,
    /// `/subscriptions`: register a webhook (POST), list them (GET).
    Subscriptions,
    /// `/subscriptions/{id}`: one webhook and its deliveries (GET), or remove it (DELETE).
    Subscription,
    Unmatched,
}

impl Route {
    pub const ALL: [Route; 20] = [
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Flight,
        Route::FlightEvents,
        Route::FlightDelays,
        Route::Departures,
        Route::AirportDelays,
        Route::Board,
        Route::AirportHours,
        Route::CarrierOnTime,
        Route::Live,
        Route::Dashboard,
        Route::Subject,
        Route::SubjectExport,
        Route::KeysRotate,
        Route::Audit,
        Route::Subscriptions,
        Route::Subscription,
        Route::Unmatched,
    ];

    /// The route a path matches, whatever the method, and where its parameter (the
    /// flight id or airport code; empty for routes without one) is in `path`. One pass
    /// over the path, no allocation: this runs on every request, and the handler
    /// slices the parameter out later, after the request has been moved.
    pub fn locate(path: &str) -> (Route, std::ops::Range<usize>) {
        let (route, param) = Route::parse(path);
        // `param` is a slice of `path` (or empty).
        let start = if param.is_empty() { 0 } else { param.as_ptr() as usize - path.as_ptr() as usize };
        (route, start..start + param.len())
    }

    /// The route a path matches and its parameter; see [`Route::locate`].
    pub fn parse(path: &str) -> (Route, &str) {
        let mut segments = path.trim_start_matches('/').split('/');
        let mut next = || segments.next();
        match (next(), next(), next(), next()) {
            (Some("healthz"), None, _, _) => (Route::Healthz, ""),
            (Some("readyz"), None, _, _) => (Route::Readyz, ""),
            (Some("metrics"), None, _, _) => (Route::Metrics, ""),
            (Some("live"), None, _, _) => (Route::Live, ""),
            (Some("dashboard"), None, _, _) => (Route::Dashboard, ""),
            (Some("flights"), Some(id), None, _) => (Route::Flight, id),
            (Some("flights"), Some(id), Some("events"), None) => (Route::FlightEvents, id),
            (Some("flights"), Some(id), Some("delays"), None) => (Route::FlightDelays, id),
            (Some("airports"), Some(code), Some("departures"), None) => (Route::Departures, code),
            (Some("airports"), Some(code), Some("delays"), None) => (Route::AirportDelays, code),
            (Some("airports"), Some(code), Some("board"), None) => (Route::Board, code),
            (Some("airports"), Some(code), Some("hourly"), None) => (Route::AirportHours, code),
            (Some("carriers"), Some(code), Some("on-time"), None) => (Route::CarrierOnTime, code),
            (Some("admin"), Some("subjects"), Some(sub), None) => (Route::Subject, sub),
            (Some("admin"), Some("keys"), Some("rotate"), None) => (Route::KeysRotate, ""),
            (Some("admin"), Some("audit"), None, _) => (Route::Audit, ""),
            (Some("subscriptions"), None, _, _) => (Route::Subscriptions, ""),
            (Some("subscriptions"), Some(id), None, _) => (Route::Subscription, id),
            (Some("admin"), Some("subjects"), Some(sub), Some("export")) if segments.next().is_none() => {
                (Route::SubjectExport, sub)
            }
            _ => (Route::Unmatched, ""),
        }
    }

    /// What a request on this route needs when auth is on: probes and metrics are
    /// open (orchestrators and scrapers carry no user's token), delay reports need
    /// `reporter`, every other read is public.
    pub fn access(self, method: &Method) -> crate::auth::Access {
        use crate::auth::{Access, Role};
        match (self, method) {
            (Route::Healthz | Route::Readyz | Route::Metrics, _) => Access::Open,
            (Route::FlightDelays, &Method::POST) => Access::Needs(Role::Reporter),
            (Route::Subject | Route::SubjectExport | Route::KeysRotate | Route::Audit, _) => Access::Needs(Role::Admin),
            // A subscription holds a secret and makes the server call a URL.
            (Route::Subscriptions | Route::Subscription, _) => Access::Needs(Role::Admin),
            _ => Access::Public,
        }
    }

    pub fn template(self) -> &'static str {
        match self {
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Flight => "/flights/{id}",
            Route::FlightEvents => "/flights/{id}/events",
            Route::FlightDelays => "/flights/{id}/delays",
            Route::Departures => "/airports/{code}/departures",
            Route::AirportDelays => "/airports/{code}/delays",
            Route::Board => "/airports/{code}/board",
            Route::AirportHours => "/airports/{code}/hourly",
            Route::CarrierOnTime => "/carriers/{code}/on-time",
            Route::Live => "/live",
            Route::Dashboard => "/dashboard",
            Route::Subject => "/admin/subjects/{sub}",
            Route::SubjectExport => "/admin/subjects/{sub}/export",
            Route::KeysRotate => "/admin/keys/rotate",
            Route::Audit => "/admin/audit",
            Route::Subscriptions => "/subscriptions",
            Route::Subscription => "/subscriptions/{id}",
            Route::Unmatched => "unmatched",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The method label: the API only serves GET and POST; anything else is `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// The protocol label.
pub fn protocol_label(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_10 | Version::HTTP_09 => "http/1.0",
        _ => "http/1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_their_templates() {
        assert_eq!(Route::parse("/flights/42"), (Route::Flight, "42"));
        assert_eq!(Route::parse("/flights/42/events"), (Route::FlightEvents, "42"));
        assert_eq!(Route::parse("/flights/42/delays"), (Route::FlightDelays, "42"));
        assert_eq!(Route::parse("/airports/AMS/departures"), (Route::Departures, "AMS"));
        assert_eq!(Route::parse("/airports/AMS/delays"), (Route::AirportDelays, "AMS"));
        assert_eq!(Route::parse("/airports/AMS/board"), (Route::Board, "AMS"));
        assert_eq!(Route::parse("/airports/AMS/hourly"), (Route::AirportHours, "AMS"));
        assert_eq!(Route::parse("/carriers/KL/on-time"), (Route::CarrierOnTime, "KL"));
        assert_eq!(Route::parse("/metrics"), (Route::Metrics, ""));
        assert_eq!(Route::parse("/subscriptions"), (Route::Subscriptions, ""));
        assert_eq!(Route::parse("/subscriptions/12"), (Route::Subscription, "12"));
        assert_eq!(Route::parse("/admin/subjects/ops%207"), (Route::Subject, "ops%207"));
        assert_eq!(Route::parse("/admin/subjects/ops-7/export"), (Route::SubjectExport, "ops-7"));
        assert_eq!(Route::parse("/admin/subjects/ops-7/export/x"), (Route::Unmatched, ""));
        assert_eq!(Route::parse("//healthz"), (Route::Healthz, ""), "leading slashes are one");
        assert_eq!(Route::parse("/flights/"), (Route::Flight, ""), "an empty id is the handler's to refuse");
        for unmatched in ["/", "", "/flights", "/flights/1/2/3", "/flights/1/events/x", "/airports/AMS", "/healthz/x"] {
            assert_eq!(Route::parse(unmatched), (Route::Unmatched, ""), "{unmatched}");
        }
        for path in ["/flights/42/events", "//airports/AMS/delays", "/healthz", "/x"] {
            let (route, at) = Route::locate(path);
            assert_eq!((route, &path[at]), Route::parse(path), "{path}");
        }
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
