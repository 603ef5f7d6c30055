//! The gateway's `GET /metrics` (Prometheus or OpenMetrics text, as the server's):
//! what a team running a split needs to see of its edge.
//!
//! - Recorded per request: `gateway_request_duration_seconds{service, status}`, from
//!   the request head to the response head the client gets (the service's, or the
//!   gateway's own 502/504/413), by status class. Each service's five histograms are
//!   resolved once, when a table is built ([`ServiceDurations`]), so a request pays
//!   one histogram update and no label hashing, as the server's own do.
//! - Read at scrape time from state the gateway keeps anyway: its counters
//!   ([`super::GatewayStats`]), each destination's health, requests in flight and
//!   requests sent, and the process's CPU time (`rate(process_cpu_seconds_total)` over
//!   `rate(gateway_request_duration_seconds_count)` is the gateway's CPU per request,
//!   the figure results/topology.md measures from outside).

use crate::http::metrics::{
    CLASSES, class_index, counter, counters, exposition, gauges, process_cpu, register_build_info,
};
use crate::store::latency_histogram;
use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    service: String,
    destination: String,
}

/// Every metric the gateway records, in its own registry.
pub struct GatewayMetrics {
    registry: Registry,
    durations: Family<ServiceLabels, Histogram>,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

/// One service's request durations, a histogram per status class.
#[derive(Debug, Clone)]
pub struct ServiceDurations([Histogram; CLASSES.len()]);

impl ServiceDurations {
    pub fn observe(&self, status: StatusCode, elapsed: Duration) {
        self.0[class_index(status)].observe(elapsed.as_secs_f64());
    }
}

impl GatewayMetrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("flightbench");
        let durations =
            Family::<ServiceLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "gateway_request_duration",
            "Time from a request's head to the response head the client got (the service's, or the gateway's own 502, 504 or 413), by service and status class",
            Unit::Seconds,
            durations.clone(),
        );
        register_build_info(&mut registry);
        Arc::new(Self { registry, durations })
    }

    /// `service`'s histograms; a service kept across a reload keeps its series.
    pub fn service(&self, service: &str) -> ServiceDurations {
        ServiceDurations(
            CLASSES.map(|status| {
                self.durations.get_or_create(&ServiceLabels { service: service.to_owned(), status }).clone()
            }),
        )
    }

    /// The exposition: the recorded metrics plus `scraped`, read just now.
    pub fn encode(&self, scraped: Scraped) -> String {
        exposition(&self.registry, scraped)
    }
}

/// One destination as a scrape sees it.
#[derive(Debug)]
pub struct DestinationState {
    pub service: String,
    pub url: String,
    pub healthy: bool,
    pub outstanding: usize,
    pub sent: u64,
}

/// Figures read from the gateway when `/metrics` is asked for.
#[derive(Debug)]
pub struct Scraped {
    pub forwarded: u64,
    pub retries: u64,
    pub bad_gateway: u64,
    pub timeouts: u64,
    pub reloads: u64,
    /// With `--auth`: requests refused at the edge.
    pub auth_refused: Option<u64>,
    pub destinations: Vec<DestinationState>,
    pub cpu: Option<crate::machine::CpuTime>,
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        if let Some(cpu) = self.cpu {
            process_cpu(e, cpu)?;
        }
        counter(e, "gateway_forwarded", "Requests sent on to a service (a retried one counts once)", self.forwarded)?;
        counter(
            e,
            "gateway_retries",
            "Idempotent requests tried again on another destination (transport failure or 502/503/504), within the retry budget",
            self.retries,
        )?;
        counter(
            e,
            "gateway_bad_gateway",
            "Requests the gateway answered 502 itself: no healthy destination, or a transport failure",
            self.bad_gateway,
        )?;
        counter(
            e,
            "gateway_timeouts",
            "Requests the gateway answered 504: no response head within the route's time limit",
            self.timeouts,
        )?;
        counter(e, "gateway_reloads", "Times the configuration file was read again and applied", self.reloads)?;
        if let Some(refused) = self.auth_refused {
            counter(
                e,
                "gateway_auth_refused",
                "Requests refused 401 or 403 at the edge (--auth): no token, an invalid one, or one without the role the route needs",
                refused,
            )?;
        }
        let labels =
            |d: &DestinationState| DestinationLabels { service: d.service.clone(), destination: d.url.clone() };
        gauges(
            e,
            "gateway_destination_healthy",
            "1 while the destination is in (passing its checks, not ejected by failures), else 0",
            self.destinations.iter().map(|d| (labels(d), i64::from(d.healthy))),
        )?;
        gauges(
            e,
            "gateway_destination_requests_in_flight",
            "Requests sent to the destination and not yet answered (what two random choices compare)",
            self.destinations.iter().map(|d| (labels(d), d.outstanding as i64)),
        )?;
        counters(
            e,
            "gateway_destination_requests",
            "Requests sent to the destination, each try counted (health checks are not)",
            self.destinations.iter().map(|d| (labels(d), d.sent)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_destinations_are_exposed_by_service() {
        let metrics = GatewayMetrics::new();
        let query = metrics.service("query");
        query.observe(StatusCode::OK, Duration::from_millis(2));
        query.observe(StatusCode::OK, Duration::from_millis(3));
        query.observe(StatusCode::BAD_GATEWAY, Duration::from_millis(1));
        // A reload resolves the service's histograms again: the same series.
        metrics.service("query").observe(StatusCode::NOT_FOUND, Duration::from_millis(1));
        let destination = |healthy, sent| DestinationState {
            service: "query".into(),
            url: format!("http://127.0.0.1:{}", 9000 + sent),
            healthy,
            outstanding: 2,
            sent,
        };
        let scraped = Scraped {
            forwarded: 4,
            retries: 1,
            bad_gateway: 1,
            timeouts: 0,
            reloads: 2,
            auth_refused: Some(3),
            destinations: vec![destination(true, 3), destination(false, 1)],
            cpu: None,
        };
        let text = crate::http::metrics::to_prometheus_text(&metrics.encode(scraped));
        for line in [
            r#"flightbench_gateway_request_duration_seconds_count{service="query",status="2xx"} 2"#,
            r#"flightbench_gateway_request_duration_seconds_count{service="query",status="5xx"} 1"#,
            r#"flightbench_gateway_request_duration_seconds_count{service="query",status="4xx"} 1"#,
            "flightbench_gateway_forwarded_total 4",
            "flightbench_gateway_retries_total 1",
            "flightbench_gateway_reloads_total 2",
            "flightbench_gateway_auth_refused_total 3",
            r#"flightbench_gateway_destination_healthy{service="query",destination="http://127.0.0.1:9003"} 1"#,
            r#"flightbench_gateway_destination_healthy{service="query",destination="http://127.0.0.1:9001"} 0"#,
            r#"flightbench_gateway_destination_requests_total{service="query",destination="http://127.0.0.1:9003"} 3"#,
            r#"flightbench_gateway_destination_requests_in_flight{service="query",destination="http://127.0.0.1:9001"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(text.contains("# TYPE flightbench_gateway_forwarded_total counter"), "{text}");
        assert!(!text.contains("# EOF"));
    }
}
