//! Which part of the service a process is (`serve --role`), and which routes each
//! part answers. `all`, the monolith, answers every route; the others split them
//! the way a flight-delay service is commonly split: reads, writes, notifications.
//! A route another role serves is a 404 problem naming that role, so a request sent
//! to the wrong service says where it belongs.

use super::route::Route;

crate::choices! {
    /// Which part of the service this process is.
    #[derive(Debug)]
    pub enum ServiceRole as "role", default All {
        /// The whole service in one process (the monolith).
        All = "all",
        /// Reads: flights, events, departures, boards, statistics, the live feed. Its
        /// flight cache follows the events on the bus.
        Query = "query",
        /// Writes: delay reports and the admin endpoints. Publishes every event it
        /// commits to the bus (the outbox relay).
        Command = "command",
        /// Webhook subscriptions, and deliveries of the events on the bus to them.
        Notify = "notify",
        /// The only public listener of a split service: forwards each request to the
        /// part that serves it (`--gateway-config`), over HTTP/2.
        Gateway = "gateway",
    }
}

impl ServiceRole {
    /// The role that answers `route` in a split service (`All` for the routes every
    /// role answers: probes and metrics).
    pub fn owner(route: Route) -> ServiceRole {
        match route {
            Route::Healthz | Route::Readyz | Route::Metrics | Route::Unmatched => ServiceRole::All,
            Route::Flight
            | Route::FlightEvents
            | Route::Departures
            | Route::AirportDelays
            | Route::Board
            | Route::AirportHours
            | Route::CarrierOnTime
            | Route::Live
            | Route::Dashboard => ServiceRole::Query,
            // Every write, and the admin endpoints (erasure, export, key rotation,
            // the audit log): the sensitive ones live with the writer.
            Route::FlightDelays | Route::Subject | Route::SubjectExport | Route::KeysRotate | Route::Audit => {
                ServiceRole::Command
            }
            Route::Subscriptions | Route::Subscription => ServiceRole::Notify,
        }
    }

    /// The `service.name` of this process's exported spans: `flightbench` for the
    /// monolith (as before the split), `flightbench-query` and so on for its parts.
    pub fn service_name(self) -> String {
        match self {
            ServiceRole::All => "flightbench".to_owned(),
            part => format!("flightbench-{part}"),
        }
    }

    /// Whether this process answers `route`.
    pub fn serves(self, route: Route) -> bool {
        let owner = Self::owner(route);
        self == ServiceRole::All || owner == ServiceRole::All || owner == self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monolith_serves_everything_and_each_part_its_own() {
        for &route in &Route::ALL {
            assert!(ServiceRole::All.serves(route), "{route:?}");
        }
        for &role in ServiceRole::ALL {
            for probe in [Route::Healthz, Route::Readyz, Route::Metrics] {
                assert!(role.serves(probe), "{role} {probe:?}");
            }
        }
        assert!(ServiceRole::Query.serves(Route::Flight));
        assert!(!ServiceRole::Query.serves(Route::FlightDelays));
        assert!(ServiceRole::Command.serves(Route::FlightDelays));
        assert!(!ServiceRole::Command.serves(Route::Departures));
        assert!(ServiceRole::Notify.serves(Route::Subscriptions));
        assert!(ServiceRole::Notify.serves(Route::Readyz));
        assert!(!ServiceRole::Notify.serves(Route::Flight));
        assert_eq!(ServiceRole::All.service_name(), "flightbench");
        assert_eq!(ServiceRole::Gateway.service_name(), "flightbench-gateway");
    }
}
