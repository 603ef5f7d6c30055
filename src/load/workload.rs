//! What the load generator asks for: a weighted mix of the API's requests, with flight
//! ids and airports drawn from the seeded dataset's manifest (uniformly or with the
//! dataset's own Zipf popularity), or one fixed URL for any HTTP server.

use crate::dataset::{Manifest, Popularity};
use crate::domain::FlightId;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;
use std::collections::HashMap;

/// The kinds of request a mix can contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// `GET /flights/{id}`
    Read,
    /// `GET /flights/{id}/events`
    Events,
    /// `GET /airports/{code}/departures` (2-hour window, limit 50)
    Departures,
    /// `GET /airports/{code}/board`: the same rows from the airport-keyed read model
    Board,
    /// `GET /airports/{code}/delays` (one day)
    Delays,
    /// `POST /flights/{id}/delays`
    Write,
    /// `--url` mode: one fixed request.
    Url,
}

impl RequestKind {
    pub const MIXABLE: [RequestKind; 6] = [
        RequestKind::Read,
        RequestKind::Events,
        RequestKind::Departures,
        RequestKind::Board,
        RequestKind::Delays,
        RequestKind::Write,
    ];
    pub const ALL: [RequestKind; 7] = [
        RequestKind::Read,
        RequestKind::Events,
        RequestKind::Departures,
        RequestKind::Board,
        RequestKind::Delays,
        RequestKind::Write,
        RequestKind::Url,
    ];

    /// Its place in [`RequestKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Read => "read",
            RequestKind::Events => "events",
            RequestKind::Departures => "departures",
            RequestKind::Board => "board",
            RequestKind::Delays => "delays",
            RequestKind::Write => "write",
            RequestKind::Url => "url",
        }
    }
}

impl RequestKind {
    /// The route this kind requests.
    pub fn route(self) -> &'static str {
        match self {
            RequestKind::Read => "GET /flights/{id}",
            RequestKind::Events => "GET /flights/{id}/events",
            RequestKind::Departures => "GET /airports/{code}/departures",
            RequestKind::Board => "GET /airports/{code}/board",
            RequestKind::Delays => "GET /airports/{code}/delays",
            RequestKind::Write => "POST /flights/{id}/delays",
            RequestKind::Url => "GET <url>",
        }
    }
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a mix, a skew or a planner could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    #[error("{0:?} is not kind=weight")]
    NotKindWeight(String),
    #[error("unknown request kind {0:?} (read, events, departures, board, delays or write)")]
    UnknownKind(String),
    #[error("weight {0:?} is not a whole number from 0 to {max}", max = Mix::MAX_WEIGHT)]
    BadWeight(String),
    #[error("{0} is given more than once")]
    Repeated(RequestKind),
    #[error("mix {0:?} has no request kind with a weight above 0")]
    Empty(String),
    #[error("skew {0:?} is not uniform, zipf or an exponent such as 1.1 (or zipf:1.1)")]
    BadSkew(String),
    #[error("skew exponent {0} is outside (0, 10]")]
    SkewOutOfRange(f64),
    #[error("the dataset has no flights or airports to draw from")]
    EmptyDataset,
}

impl crate::failure::Classify for WorkloadError {
    fn failure(&self) -> crate::failure::Failure {
        match self {
            WorkloadError::EmptyDataset => crate::failure::Failure::BadInput,
            _ => crate::failure::Failure::Usage,
        }
    }
}

/// `read=80,departures=15,write=5`: relative weights (they need not sum to 100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(Vec<(RequestKind, u32)>);

impl Mix {
    /// The largest weight: plenty for any proportion, and five of them cannot
    /// overflow the `u32` total a draw picks from.
    pub const MAX_WEIGHT: u32 = 1_000_000;

    pub fn parse(text: &str) -> Result<Self, WorkloadError> {
        let mut weights: Vec<(RequestKind, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| WorkloadError::NotKindWeight(part.to_owned()))?;
            let kind = RequestKind::MIXABLE
                .into_iter()
                .find(|k| k.as_str() == name.trim())
                .ok_or_else(|| WorkloadError::UnknownKind(name.trim().to_owned()))?;
            let weight = weight
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|w| *w <= Self::MAX_WEIGHT)
                .ok_or_else(|| WorkloadError::BadWeight(weight.trim().to_owned()))?;
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(WorkloadError::Repeated(kind));
            }
            if weight > 0 {
                weights.push((kind, weight));
            }
        }
        if weights.is_empty() {
            return Err(WorkloadError::Empty(text.to_owned()));
        }
        Ok(Self(weights))
    }

    pub fn weights(&self) -> &[(RequestKind, u32)] {
        &self.0
    }

    /// `GET /flights/{id}` for a single kind, `mix read=80,write=20` otherwise: for
    /// titles.
    pub fn describe(&self) -> String {
        match self.0.as_slice() {
            [(kind, _)] => kind.route().to_owned(),
            _ => {
                let parts: Vec<String> = self.0.iter().map(|(k, w)| format!("{k}={w}")).collect();
                format!("mix {}", parts.join(","))
            }
        }
    }

    fn total(&self) -> u32 {
        self.0.iter().map(|(_, w)| w).sum()
    }

    fn pick(&self, rng: &mut impl Rng) -> RequestKind {
        let mut ticket = rng.random_range(0..self.total());
        for &(kind, weight) in &self.0 {
            if ticket < weight {
                return kind;
            }
            ticket -= weight;
        }
        self.0[self.0.len() - 1].0
    }
}

/// `read=80,departures=15,write=5`, as [`Mix::parse`] reads it.
impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (kind, weight)) in self.0.iter().enumerate() {
            write!(f, "{}{kind}={weight}", if i > 0 { "," } else { "" })?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Mix {
    type Err = WorkloadError;
    fn from_str(text: &str) -> Result<Self, WorkloadError> {
        Mix::parse(text)
    }
}

/// How flight ids (and airports) are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Skew {
    Uniform,
    /// Zipf over the dataset's popularity ranks with this exponent.
    Zipf {
        exponent: f64,
    },
}

/// `uniform`, `zipf` (exponent 1) or `zipf:1.2`, as [`Skew::parse`] reads it.
impl std::fmt::Display for Skew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skew::Uniform => f.write_str("uniform"),
            Skew::Zipf { exponent } if *exponent == 1.0 => f.write_str("zipf"),
            Skew::Zipf { exponent } => write!(f, "zipf:{exponent}"),
        }
    }
}

impl std::str::FromStr for Skew {
    type Err = WorkloadError;
    fn from_str(text: &str) -> Result<Self, WorkloadError> {
        Skew::parse(text)
    }
}

impl Skew {
    pub fn parse(text: &str) -> Result<Self, WorkloadError> {
        match text {
            "uniform" | "0" => Ok(Skew::Uniform),
            "zipf" => Ok(Skew::Zipf { exponent: 1.0 }),
            other => {
                let exponent = other
                    .strip_prefix("zipf:")
                    .unwrap_or(other)
                    .parse::<f64>()
                    .map_err(|_| WorkloadError::BadSkew(text.to_owned()))?;
                if !(exponent > 0.0 && exponent <= 10.0) {
                    return Err(WorkloadError::SkewOutOfRange(exponent));
                }
                Ok(Skew::Zipf { exponent })
            }
        }
    }
}

/// One request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub kind: RequestKind,
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    /// For writes: the flight, the version sent in `If-Match`, the JSON body.
    pub write: Option<(FlightId, i64, String)>,
}

/// What the mix draws from: the dataset's shape, read from its manifest.
#[derive(Debug, Clone)]
pub struct DatasetShape {
    pub flights: u64,
    pub popularity: Popularity,
    /// Busiest first.
    pub airports: Vec<String>,
    pub start_unix: i64,
    pub days: u32,
    /// Flights that still take events, with their current versions: when given,
    /// writes go to these, uniformly, and start from the right version, so nearly
    /// every write commits. Without them writes go to the mix's ids and learn each
    /// flight's version from a first 409 (and departed or cancelled flights answer
    /// 422): a fair load for a mix, but only a few percent of its writes commit.
    pub writable: Option<std::sync::Arc<[(FlightId, i64)]>>,
}

impl DatasetShape {
    pub fn from_manifest(manifest: &Manifest) -> Self {
        Self {
            flights: manifest.counts.flights,
            popularity: manifest.popularity,
            airports: manifest.airports.clone(),
            start_unix: manifest.dataset.start.unix(),
            days: manifest.dataset.days,
            writable: None,
        }
    }
}

/// Draws requests. One per load thread (no sharing, no locks); each keeps the flight
/// versions it has learned so its writes carry a valid `If-Match`.
pub struct Planner {
    mix: Mix,
    shape: DatasetShape,
    flight_zipf: Option<Zipf<f64>>,
    airport_zipf: Option<Zipf<f64>>,
    versions: HashMap<FlightId, i64>,
    writes: u64,
}

impl Planner {
    pub fn new(mix: Mix, shape: DatasetShape, skew: Skew) -> Result<Self, WorkloadError> {
        if shape.flights == 0 || shape.airports.is_empty() {
            return Err(WorkloadError::EmptyDataset);
        }
        let (flight_zipf, airport_zipf) = match skew {
            Skew::Uniform => (None, None),
            Skew::Zipf { exponent } => {
                let zipf = |n: f64| Zipf::new(n, exponent).map_err(|_| WorkloadError::SkewOutOfRange(exponent));
                (Some(zipf(shape.flights as f64)?), Some(zipf(shape.airports.len() as f64)?))
            }
        };
        Ok(Self { mix, shape, flight_zipf, airport_zipf, versions: HashMap::new(), writes: 0 })
    }

    fn flight(&self, rng: &mut impl Rng) -> FlightId {
        let rank = match &self.flight_zipf {
            // Zipf samples are 1-based ranks.
            Some(zipf) => zipf.sample(rng) as u64 - 1,
            None => rng.random_range(0..self.shape.flights),
        };
        self.shape.popularity.flight_at_rank(rank, self.shape.flights)
    }

    fn airport(&self, rng: &mut impl Rng) -> &str {
        let index = match &self.airport_zipf {
            Some(zipf) => zipf.sample(rng) as usize - 1,
            None => rng.random_range(0..self.shape.airports.len()),
        };
        &self.shape.airports[index.min(self.shape.airports.len() - 1)]
    }

    /// A window of `hours` starting on a random hour of the schedule.
    fn window(&self, rng: &mut impl Rng, hours: i64) -> (String, String) {
        let span_hours = (i64::from(self.shape.days) * 24 - hours).max(1);
        let from = self.shape.start_unix + rng.random_range(0..span_hours) * 3_600;
        let fmt = |t: i64| crate::domain::UtcTime::from_unix(t).map(|t| t.to_string()).unwrap_or_default();
        (fmt(from), fmt(from + hours * 3_600))
    }

    pub fn next(&mut self, rng: &mut impl Rng) -> Planned {
        let kind = self.mix.pick(rng);
        let get = |path: String| Planned { kind, method: http::Method::GET, path, write: None };
        match kind {
            RequestKind::Read => get(format!("/flights/{}", self.flight(rng))),
            RequestKind::Events => get(format!("/flights/{}/events", self.flight(rng))),
            RequestKind::Departures => {
                let (from, to) = self.window(rng, 2);
                get(format!("/airports/{}/departures?from={from}&to={to}&limit=50", self.airport(rng)))
            }
            RequestKind::Board => {
                let (from, to) = self.window(rng, 2);
                get(format!("/airports/{}/board?from={from}&to={to}&limit=50", self.airport(rng)))
            }
            RequestKind::Delays => {
                let (from, to) = self.window(rng, 24);
                get(format!("/airports/{}/delays?from={from}&to={to}", self.airport(rng)))
            }
            RequestKind::Write => {
                let (id, known) = match &self.shape.writable {
                    Some(pool) if !pool.is_empty() => pool[rng.random_range(0..pool.len())],
                    // Unknown flights start at 0: the 409 that may earn tells us the version.
                    _ => (self.flight(rng), 0),
                };
                let version = self.versions.get(&id).copied().unwrap_or(known);
                self.writes += 1;
                let body = format!(
                    r#"{{"kind":"revised","delay_minutes":{},"reason":"load {}"}}"#,
                    rng.random_range(1..=180),
                    self.writes
                );
                Planned {
                    kind,
                    method: http::Method::POST,
                    path: format!("/flights/{id}/delays"),
                    write: Some((id, version, body)),
                }
            }
            RequestKind::Url => get(String::new()),
        }
    }

    /// Learns a flight's version from a 201 (`ETag`) or a 409 (`current_version`).
    pub fn learn(&mut self, flight: FlightId, version: i64) {
        self.versions.insert(flight, version);
    }
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
