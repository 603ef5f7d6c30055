//! Punctuality figures: what the per-airport-hour and per-carrier read models count.
//!
//! A departure is on time when its final delay is under 15 minutes, the industry's
//! D15 measure (the threshold IATA, Eurocontrol and the US DOT report against). Every
//! count is a sum over events, so tallies from different batches, shards or hours add
//! up exactly; the one mean is computed here from integer totals.

use super::event::{DelayEvent, EventKind};
use serde::Serialize;

/// Delays under this many minutes count as on time (D15).
pub const ON_TIME_MINUTES: i64 = 15;

/// Counts of what the events reported, for one key (an airport's hour, a carrier).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Flights that departed.
    pub departed: i64,
    /// Of those, departed less than 15 minutes late.
    pub on_time: i64,
    pub cancelled: i64,
    /// Total final delay of the departed flights.
    pub delay_minutes: i64,
    /// Delay reports and revisions.
    pub reports: i64,
}

impl Tally {
    /// Counts one event.
    pub fn add(&mut self, event: &DelayEvent) {
        match &event.kind {
            EventKind::Reported { .. } | EventKind::Revised { .. } => self.reports += 1,
            EventKind::Cancelled { .. } => self.cancelled += 1,
            EventKind::Departed { delay_minutes } => {
                self.departed += 1;
                self.delay_minutes += delay_minutes;
                if *delay_minutes < ON_TIME_MINUTES {
                    self.on_time += 1;
                }
            }
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.departed += other.departed;
        self.on_time += other.on_time;
        self.cancelled += other.cancelled;
        self.delay_minutes += other.delay_minutes;
        self.reports += other.reports;
    }

    /// Share of departures on time, or `None` before any departed.
    pub fn on_time_ratio(&self) -> Option<f64> {
        (self.departed > 0).then(|| self.on_time as f64 / self.departed as f64)
    }

    /// Mean final delay of the departed flights, in minutes.
    pub fn mean_delay_minutes(&self) -> Option<f64> {
        (self.departed > 0).then(|| self.delay_minutes as f64 / self.departed as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Reason, UtcTime};

    fn event(kind: EventKind) -> DelayEvent {
        DelayEvent::new(UtcTime::parse("2026-12-01T10:00:00Z").unwrap(), kind)
    }

    #[test]
    fn counts_d15_on_time_and_adds_exactly() {
        let mut a = Tally::default();
        a.add(&event(EventKind::Reported { delay_minutes: 30, reason: Reason::default() }));
        a.add(&event(EventKind::Departed { delay_minutes: 14 }));
        a.add(&event(EventKind::Departed { delay_minutes: 15 }));
        let mut b = Tally::default();
        b.add(&event(EventKind::Cancelled { reason: Reason::default() }));
        b.merge(&a);
        assert_eq!(b, Tally { departed: 2, on_time: 1, cancelled: 1, delay_minutes: 29, reports: 1 });
        assert_eq!(b.on_time_ratio(), Some(0.5));
        assert_eq!(b.mean_delay_minutes(), Some(14.5));
        assert_eq!(Tally::default().on_time_ratio(), None);
    }
}
