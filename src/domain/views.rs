//! What queries return. These are the values the four query paths must agree on
//! exactly, so they derive `PartialEq` and carry no floating-point state that could
//! differ by evaluation order (the one mean is computed here from integer totals).

use super::event::DelayEvent;
use super::ids::{AirportCode, Carrier, FlightId, FlightNumber};
use super::status::FlightStatus;
use super::time::{TimeWindow, UtcTime};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reference data for one scheduled flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flight {
    pub id: FlightId,
    pub carrier: Carrier,
    pub number: FlightNumber,
    pub origin: AirportCode,
    pub destination: AirportCode,
    pub scheduled_departure: UtcTime,
    pub scheduled_arrival: UtcTime,
}

/// A flight with its current status: the point read and each departures row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlightView {
    #[serde(flatten)]
    pub flight: Flight,
    pub status: FlightStatus,
}

/// A departures-board row.
pub type Departure = FlightView;

/// An event as stored: its place in the flight's stream and the event itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub flight_id: FlightId,
    pub version: i64,
    #[serde(flatten)]
    pub event: DelayEvent,
}

/// What a successful append returns: the new status, whose version is the next
/// expected version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    pub flight_id: FlightId,
    pub status: FlightStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit {0} is outside 1..={max}", max = Limit::MAX)]
pub struct LimitError(pub i64);

/// How many departures to return, 1..=1000; the limit is pushed down to every shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit(u16);

impl Limit {
    pub const MAX: i64 = 1_000;
    pub const DEFAULT: Limit = Limit(50);

    pub fn new(n: i64) -> Result<Self, LimitError> {
        if (1..=Self::MAX).contains(&n) { Ok(Self(n as u16)) } else { Err(LimitError(n)) }
    }

    pub fn parse(text: &str) -> Result<Self, LimitError> {
        text.parse::<i64>().map_err(|_| LimitError(-1)).and_then(Self::new)
    }

    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// Exact, mergeable delay counts for a set of flights: cancelled flights, and the
/// other flights counted per whole minute of current delay. Each shard returns one;
/// merging adds counts, so percentiles over all shards are exact (a p95 of per-shard
/// p95s would not be).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelayHistogram {
    pub cancelled: u64,
    pub by_delay_minutes: BTreeMap<i64, u64>,
}

impl DelayHistogram {
    /// Adds one `(state, delay, count)` group as the shard queries return them.
    pub fn add_group(&mut self, cancelled: bool, delay_minutes: i64, count: u64) {
        if cancelled {
            self.cancelled += count;
        } else {
            *self.by_delay_minutes.entry(delay_minutes).or_default() += count;
        }
    }

    pub fn merge(&mut self, other: &DelayHistogram) {
        self.cancelled += other.cancelled;
        for (&delay, &count) in &other.by_delay_minutes {
            *self.by_delay_minutes.entry(delay).or_default() += count;
        }
    }

    /// The nearest-rank percentile of delay over flights not cancelled.
    fn percentile(&self, operating: u64, p: u64) -> Option<i64> {
        if operating == 0 {
            return None;
        }
        let rank = (operating * p).div_ceil(100).max(1);
        let mut seen = 0;
        self.by_delay_minutes.iter().find_map(|(&delay, &count)| {
            seen += count;
            (seen >= rank).then_some(delay)
        })
    }

    pub fn into_stats(self, airport: AirportCode, window: TimeWindow) -> DelayStats {
        let operating: u64 = self.by_delay_minutes.values().sum();
        let total_delay: i64 = self.by_delay_minutes.iter().map(|(&d, &c)| d * c as i64).sum();
        let delayed = self.by_delay_minutes.range(DelayStats::DELAYED_MINUTES..).map(|(_, &c)| c).sum();
        DelayStats {
            airport,
            from: window.from,
            to: window.to,
            flights: operating + self.cancelled,
            cancelled: self.cancelled,
            delayed,
            mean_delay_minutes: (operating > 0).then(|| total_delay as f64 / operating as f64),
            p50_delay_minutes: self.percentile(operating, 50),
            p95_delay_minutes: self.percentile(operating, 95),
        }
    }
}

/// Delay statistics for departures from one airport in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelayStats {
    pub airport: AirportCode,
    pub from: UtcTime,
    pub to: UtcTime,
    /// Flights scheduled to depart in the window.
    pub flights: u64,
    pub cancelled: u64,
    /// Flights not cancelled whose current delay is at least 15 minutes (the usual
    /// on-time-performance threshold).
    pub delayed: u64,
    /// Mean current delay of the flights not cancelled; `None` when there are none.
    pub mean_delay_minutes: Option<f64>,
    pub p50_delay_minutes: Option<i64>,
    pub p95_delay_minutes: Option<i64>,
}

impl DelayStats {
    pub const DELAYED_MINUTES: i64 = 15;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> TimeWindow {
        TimeWindow::new(UtcTime::from_unix(0).unwrap(), UtcTime::from_unix(86_400).unwrap()).unwrap()
    }

    #[test]
    fn limits() {
        assert_eq!(Limit::parse("1").unwrap().get(), 1);
        assert_eq!(Limit::parse("1000").unwrap().get(), 1000);
        for bad in ["0", "-5", "1001", "99999999999999999999", "ten", ""] {
            assert!(Limit::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn merged_histograms_give_exact_percentiles() {
        // Shard A: delays 0..=9 once each. Shard B: ten flights at 100 minutes, 2 cancelled.
        let mut a = DelayHistogram::default();
        (0..10).for_each(|d| a.add_group(false, d, 1));
        let mut b = DelayHistogram::default();
        b.add_group(false, 100, 10);
        b.add_group(true, 0, 2);
        a.merge(&b);
        let stats = a.into_stats(AirportCode::parse("JFK").unwrap(), window());
        assert_eq!(stats.flights, 22);
        assert_eq!(stats.cancelled, 2);
        assert_eq!(stats.delayed, 10);
        assert_eq!(stats.mean_delay_minutes, Some((45 + 1000) as f64 / 20.0));
        // Sorted operating delays: 0..=9 then ten 100s; rank 10 is 9, rank 19 is 100.
        assert_eq!(stats.p50_delay_minutes, Some(9));
        assert_eq!(stats.p95_delay_minutes, Some(100));
    }

    #[test]
    fn empty_and_all_cancelled_have_no_delay_figures() {
        let mut h = DelayHistogram::default();
        let empty = h.clone().into_stats(AirportCode::parse("JFK").unwrap(), window());
        assert_eq!((empty.flights, empty.mean_delay_minutes, empty.p50_delay_minutes), (0, None, None));
        h.add_group(true, 30, 3);
        let cancelled = h.into_stats(AirportCode::parse("JFK").unwrap(), window());
        assert_eq!((cancelled.flights, cancelled.cancelled, cancelled.p95_delay_minutes), (3, 3, None));
    }

    proptest::proptest! {
        #[test]
        fn limits_are_in_range_or_refused(text in "[-+0-9]{0,24}|\\PC{0,8}") {
            if let Ok(limit) = Limit::parse(&text) {
                proptest::prop_assert!((1..=1_000).contains(&limit.get()));
            }
        }
    }
}
