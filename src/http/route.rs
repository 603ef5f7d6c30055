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
    Unmatched,
}

impl Route {
    pub const ALL: [Route; 9] = [
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Flight,
        Route::FlightEvents,
        Route::FlightDelays,
        Route::Departures,
        Route::AirportDelays,
        Route::Unmatched,
    ];

    /// The route a path's segments (without the leading slash) match, whatever the method.
    pub fn of(segments: &[&str]) -> Route {
        match segments {
            ["healthz"] => Route::Healthz,
            ["readyz"] => Route::Readyz,
            ["metrics"] => Route::Metrics,
            ["flights", _] => Route::Flight,
            ["flights", _, "events"] => Route::FlightEvents,
            ["flights", _, "delays"] => Route::FlightDelays,
            ["airports", _, "departures"] => Route::Departures,
            ["airports", _, "delays"] => Route::AirportDelays,
            _ => Route::Unmatched,
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
        let route = |path: &str| Route::of(&path.trim_start_matches('/').split('/').collect::<Vec<_>>());
        assert_eq!(route("/flights/42"), Route::Flight);
        assert_eq!(route("/flights/42/events"), Route::FlightEvents);
        assert_eq!(route("/airports/AMS/departures"), Route::Departures);
        assert_eq!(route("/metrics"), Route::Metrics);
        for unmatched in ["/", "/flights", "/flights/1/2/3", "/airports/AMS", "/healthz/x"] {
            assert_eq!(route(unmatched), Route::Unmatched, "{unmatched}");
        }
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
