//! The topology part: what splitting the service costs, measured the way a user would
//! run it, as `flightbench serve` processes on a copy of the run's dataset, one
//! topology after another on the same data and load:
//!
//! - `monolith`: one `serve --role all`;
//! - `monolith behind the gateway`: the same, with `serve --role gateway` in front
//!   (the price of one hop alone);
//! - `split`: the gateway in front of `query`, `command` and `notify`, the command's
//!   outbox relay publishing to RabbitMQ, the query cache following the events, and a
//!   webhook subscription to every airport (so every write becomes a delivery).
//!
//! Each gets the mixed part's requests closed loop (its capacity, and the CPU of all
//! its processes per response); then each, started afresh, gets them open loop at
//! [`MIXED_LOAD_SHARE`](super::MIXED_LOAD_SHARE) of the *smallest* capacity, a rate
//! every topology can take, so that their point reads' and writes' p50 and p99
//! compare work rather than queues. During the split's open-loop window a checking
//! writer's every 201 is timed to its webhook. During every topology's open-loop
//! window a probe times each of its writes' 201 to the first read through the front
//! that shows it ([`fresh`]). Beside them: publisher confirms per message,
//! pipelined, and off.

mod fresh;
mod measure;
mod sink;

pub(super) use measure::measure;

use super::data::RunData;
use super::findings::count;
use crate::bus::bench::{PublishMode, PublishRate};
use serde::{Deserialize, Serialize};

/// The topologies measured, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    Monolith,
    MonolithBehindGateway,
    Split,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Monolith, Shape::MonolithBehindGateway, Shape::Split];

    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Monolith => "monolith",
            Shape::MonolithBehindGateway => "monolith behind the gateway",
            Shape::Split => "gateway → query + command + notify",
        }
    }
}

/// p50 and p99 of one kind of request, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One topology's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapeFigures {
    pub shape: Shape,
    /// The processes it ran (`gateway`, `all`, `query`, …).
    pub processes: Vec<String>,
    /// Closed loop: responses per second.
    pub capacity: f64,
    /// Closed loop: CPU time of all its processes (user and system) per response, µs.
    pub cpu_us_per_request: Option<f64>,
    /// Open loop at the offered rate: point reads (`GET /flights/{id}`, most of the
    /// mix) and writes (`POST /flights/{id}/delays`).
    pub reads: Latency,
    pub writes: Latency,
    pub achieved_rate: f64,
    /// Requests without an answer, and answers other than 2xx, 409 and 422, in both runs.
    pub errors: u64,
    pub unexpected_statuses: u64,
    /// Open loop: read after write through the front. Absent in runs before it was
    /// measured.
    #[serde(default)]
    pub fresh: Option<Freshness>,
}

/// From a probe write's 201 to the first read through the front that shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Freshness {
    /// Probe writes that became readable within [`fresh::FRESH_WAIT`].
    pub writes: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Probe writes still not readable after [`fresh::FRESH_WAIT`].
    pub stale: u64,
    /// Probe requests that failed (no answer, or not 200/201/409/422).
    pub failed: u64,
}

impl Freshness {
    fn of(mut samples: Vec<f64>, stale: u64, failed: u64) -> Self {
        samples.sort_by(f64::total_cmp);
        let at =
            |q: f64| if samples.is_empty() { 0.0 } else { samples[((samples.len() - 1) as f64 * q).round() as usize] };
        Self { writes: samples.len() as u64, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1.0), stale, failed }
    }
}

/// The split's write-to-webhook latency: from each checked write's 201 to its
/// delivery, during the open-loop window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Notifications {
    pub acknowledged: u64,
    pub delivered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Deliveries of every write during the window (the load's too), per second.
    pub deliveries_per_s: f64,
}

/// The part's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub flights: u64,
    /// The open-loop rate every topology was offered.
    pub offered_rate: f64,
    pub shapes: Vec<ShapeFigures>,
    pub notifications: Option<Notifications>,
    pub confirms: Vec<PublishRate>,
}

impl Topology {
    pub fn shape(&self, shape: Shape) -> Option<&ShapeFigures> {
        self.shapes.iter().find(|s| s.shape == shape)
    }

    fn confirm(&self, mode: PublishMode) -> Option<&PublishRate> {
        self.confirms.iter().find(|c| c.mode == mode)
    }
}

/// The part's tables: the topologies, then the publish modes.
pub fn tables(t: &Topology) -> Vec<Vec<Vec<String>>> {
    let header = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let mut shapes = vec![header(&[
        "topology",
        "processes",
        "capacity req/s",
        "CPU µs/req",
        &format!("point reads p50 / p99 ms at {} req/s", count(t.offered_rate)),
        "writes p50 / p99 ms",
        "read after write p50 / p99 / max ms",
        "errors",
    ])];
    for s in &t.shapes {
        shapes.push(vec![
            s.shape.as_str().to_owned(),
            s.processes.join(", "),
            count(s.capacity),
            s.cpu_us_per_request.map_or("–".to_owned(), |c| format!("{c:.0}")),
            format!("{:.2} / {:.2}", s.reads.p50_ms, s.reads.p99_ms),
            format!("{:.2} / {:.2}", s.writes.p50_ms, s.writes.p99_ms),
            s.fresh.map_or("–".to_owned(), |f| {
                let stale = if f.stale > 0 { format!(" ({} stale > 5 s)", f.stale) } else { String::new() };
                format!("{:.2} / {:.2} / {:.2}{stale}", f.p50_ms, f.p99_ms, f.max_ms)
            }),
            (s.errors + s.unexpected_statuses).to_string(),
        ]);
    }
    let mut confirms = vec![header(&["publishing", "messages", "seconds", "messages/s"])];
    for c in &t.confirms {
        confirms.push(vec![
            c.mode.as_str().to_owned(),
            count(c.messages as f64),
            format!("{:.2}", c.seconds),
            count(c.per_second),
        ]);
    }
    let mut tables = vec![shapes, confirms];
    if let Some(n) = &t.notifications {
        tables.push(vec![
            header(&["write → webhook", "acknowledged", "delivered", "p50 ms", "p99 ms", "deliveries/s"]),
            vec![
                "split, open loop".to_owned(),
                count(n.acknowledged as f64),
                count(n.delivered as f64),
                format!("{:.1}", n.p50_ms),
                format!("{:.1}", n.p99_ms),
                count(n.deliveries_per_s),
            ],
        ]);
    }
    tables
}

/// What the part found, from its figures.
pub fn findings(run: &RunData) -> Vec<String> {
    let Some(t) = &run.topology else { return Vec::new() };
    let mut out = Vec::new();
    if let (Some(mono), Some(hop)) = (t.shape(Shape::Monolith), t.shape(Shape::MonolithBehindGateway)) {
        out.push(format!(
            "One hop through the gateway: capacity {} req/s against {} direct ({:.2}×), {} µs of CPU per request against {}; at {} req/s offered, point reads' p50 {:+.2} ms ({:.2} → {:.2}) and p99 {:.2} → {:.2} ms{}.",
            count(hop.capacity),
            count(mono.capacity),
            hop.capacity / mono.capacity.max(1.0),
            cpu(hop),
            cpu(mono),
            count(t.offered_rate),
            hop.reads.p50_ms - mono.reads.p50_ms,
            mono.reads.p50_ms,
            hop.reads.p50_ms,
            mono.reads.p99_ms,
            hop.reads.p99_ms,
            queueing(hop, t.offered_rate)
        ));
    }
    if let (Some(mono), Some(split)) = (t.shape(Shape::Monolith), t.shape(Shape::Split)) {
        out.push(format!(
            "The split (gateway, query, command, notify, with the relay and a webhook per write): capacity {} req/s, {:.2}× the monolith's {}; {} µs of CPU per request against {}; writes' p50 {:.2} ms against {:.2}, point reads' p99 {:.2} ms against {:.2}{}.",
            count(split.capacity),
            split.capacity / mono.capacity.max(1.0),
            count(mono.capacity),
            cpu(split),
            cpu(mono),
            split.writes.p50_ms,
            mono.writes.p50_ms,
            split.reads.p99_ms,
            mono.reads.p99_ms,
            queueing(split, t.offered_rate)
        ));
    }
    if let (Some(mono), Some(split)) = (t.shape(Shape::Monolith), t.shape(Shape::Split))
        && let (Some(m), Some(f)) = (mono.fresh, split.fresh)
    {
        let stale = if f.stale > 0 {
            format!("; {} of its writes were still unreadable after 5 s", count(f.stale as f64))
        } else {
            String::new()
        };
        out.push(format!(
            "Read after write through the front: the split's query service answered a write's new version p50 {:.2} ms, p99 {:.2} ms and at most {:.2} ms after its 201 ({} writes), the monolith's p50 {:.2} ms and at most {:.2} ms: the bound the bus puts on stale reads{stale}.",
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            count(f.writes as f64),
            m.p50_ms,
            m.max_ms
        ));
    }
    if let Some(n) = &t.notifications {
        out.push(if n.delivered == n.acknowledged {
            format!(
                "Every one of {} checked writes reached its webhook: p50 {:.1} ms and p99 {:.1} ms from the 201, while the notification service delivered {} webhooks a second.",
                count(n.acknowledged as f64),
                n.p50_ms,
                n.p99_ms,
                count(n.deliveries_per_s)
            )
        } else {
            format!(
                "{} of {} checked writes did NOT reach their webhook within the wait: a defect, not a cost.",
                count((n.acknowledged - n.delivered.min(n.acknowledged)) as f64),
                count(n.acknowledged as f64)
            )
        });
    }
    if let (Some(one), Some(piped), Some(off)) =
        (t.confirm(PublishMode::PerMessage), t.confirm(PublishMode::Pipelined), t.confirm(PublishMode::Unconfirmed))
    {
        out.push(format!(
            "Publisher confirms: pipelined {} messages/s, {:.1}× waiting for each ({}); no confirms at all {} messages/s ({:.2}× pipelined), which buys nothing but the chance to lose a message unnoticed.",
            count(piped.per_second),
            piped.per_second / one.per_second.max(1e-9),
            count(one.per_second),
            count(off.per_second),
            off.per_second / piped.per_second.max(1e-9)
        ));
    }
    out
}

/// Said of a topology that could not take the rate offered: its latencies are mostly
/// the queue's.
fn queueing(s: &ShapeFigures, offered: f64) -> String {
    if s.achieved_rate < offered * 0.98 {
        format!(
            "; it kept up with only {} of the {} req/s offered, so its latencies include queueing",
            count(s.achieved_rate),
            count(offered)
        )
    } else {
        String::new()
    }
}

fn cpu(s: &ShapeFigures) -> String {
    s.cpu_us_per_request.map_or("–".to_owned(), |c| format!("{c:.0}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_compare_the_topologies_from_their_figures() {
        let mut run = super::super::data::fixture::run();
        let found = findings(&run);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(
            found[0]
                .starts_with("One hop through the gateway: capacity 1,000 req/s against 2,000 direct (0.50×), 600 µs"),
            "{}",
            found[0]
        );
        assert!(found[0].contains("point reads' p50 +0.50 ms (1.00 → 1.50)"), "{}", found[0]);
        assert!(found[1].contains("capacity 800 req/s, 0.40× the monolith's 2,000"), "{}", found[1]);
        assert!(!found[1].contains("kept up"), "it kept up: {}", found[1]);
        assert!(
            found[2].starts_with("Read after write through the front: the split's query service answered a write's new version p50 4.00 ms, p99 8.00 ms and at most 12.00 ms after its 201 (100 writes), the monolith's p50 0.50 ms"),
            "{}",
            found[2]
        );
        assert!(!found[2].contains("unreadable"), "{}", found[2]);
        assert!(
            found[3].starts_with("Every one of 40 checked writes reached its webhook: p50 30.0 ms"),
            "{}",
            found[3]
        );
        assert!(found[4].contains("pipelined 5,000 messages/s, 5.0× waiting for each (1,000)"), "{}", found[4]);
        let t = run.topology.as_mut().unwrap();
        t.shapes[2].achieved_rate = 300.0;
        t.notifications.as_mut().unwrap().delivered = 38;
        t.shapes[2].fresh.as_mut().unwrap().stale = 3;
        let found = findings(&run);
        assert!(found[1].contains("kept up with only 300 of the 500 req/s offered"), "{}", found[1]);
        assert!(found[2].ends_with("; 3 of its writes were still unreadable after 5 s."), "{}", found[2]);
        assert!(found[3].starts_with("2 of 40 checked writes did NOT reach their webhook"), "{}", found[3]);
        assert_eq!(tables(run.topology.as_ref().unwrap()).len(), 3);
    }
}

#[cfg(test)]
mod freshness_tests {
    use super::*;

    #[test]
    fn freshness_takes_its_quantiles_from_the_samples() {
        let f = Freshness::of((1..=100).rev().map(f64::from).collect(), 2, 1);
        assert_eq!((f.writes, f.p50_ms, f.p99_ms, f.max_ms, f.stale, f.failed), (100, 51.0, 99.0, 100.0, 2, 1));
        let none = Freshness::of(Vec::new(), 0, 0);
        assert_eq!((none.writes, none.p50_ms, none.max_ms), (0, 0.0, 0.0));
    }
}
