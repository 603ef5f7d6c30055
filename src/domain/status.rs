//! The current-status projection: a left fold of a flight's events.
//!
//! The store updates it in the same transaction as each append, using
//! [`FlightStatus::apply`] so that the rule lives here once, not in each query path. A
//! replay of the events (see [`FlightStatus::replay`]) must always equal the stored
//! row; the tests of every backend check that.

use super::event::{DelayEvent, EventKind};
use super::time::UtcTime;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlightState {
    Scheduled,
    Delayed,
    Departed,
    Cancelled,
}

impl FlightState {
    pub fn as_str(self) -> &'static str {
        match self {
            FlightState::Scheduled => "scheduled",
            FlightState::Delayed => "delayed",
            FlightState::Departed => "departed",
            FlightState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "scheduled" => FlightState::Scheduled,
            "delayed" => FlightState::Delayed,
            "departed" => FlightState::Departed,
            "cancelled" => FlightState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, FlightState::Departed | FlightState::Cancelled)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flight is already {}; a {event} event cannot follow", state.as_str())]
pub struct TransitionError {
    pub state: FlightState,
    pub event: &'static str,
}

/// A flight's status as of its latest event. `version` counts the events applied, so
/// it is also the expected version for the next append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlightStatus {
    pub version: i64,
    pub state: FlightState,
    pub delay_minutes: i64,
    pub updated_at: Option<UtcTime>,
}

impl FlightStatus {
    /// A flight nothing has been reported about.
    pub fn initial() -> Self {
        Self { version: 0, state: FlightState::Scheduled, delay_minutes: 0, updated_at: None }
    }

    /// The status after `event`, or why the event cannot happen now: a departed or
    /// cancelled flight accepts no further events.
    pub fn apply(&self, event: &DelayEvent) -> Result<Self, TransitionError> {
        if self.state.is_terminal() {
            return Err(TransitionError { state: self.state, event: event.kind.name() });
        }
        let (state, delay_minutes) = match &event.kind {
            EventKind::Reported { delay_minutes, .. } => (FlightState::Delayed, *delay_minutes),
            EventKind::Revised { delay_minutes: 0, .. } => (FlightState::Scheduled, 0),
            EventKind::Revised { delay_minutes, .. } => (FlightState::Delayed, *delay_minutes),
            EventKind::Cancelled { .. } => (FlightState::Cancelled, self.delay_minutes),
            EventKind::Departed { delay_minutes } => (FlightState::Departed, *delay_minutes),
        };
        Ok(Self { version: self.version + 1, state, delay_minutes, updated_at: Some(event.occurred_at) })
    }

    /// Folds a whole stream from the initial status.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a DelayEvent>) -> Result<Self, TransitionError> {
        events.into_iter().try_fold(Self::initial(), |status, event| status.apply(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Reason;

    fn at(minute: i64, kind: EventKind) -> DelayEvent {
        DelayEvent::new(UtcTime::from_unix(1_800_000_000 + minute * 60).unwrap(), kind)
    }

    #[test]
    fn folds_a_stream() {
        let events = [
            at(0, EventKind::Reported { delay_minutes: 30, reason: Reason::default() }),
            at(5, EventKind::Revised { delay_minutes: 45, reason: Reason::default() }),
            at(90, EventKind::Departed { delay_minutes: 50 }),
        ];
        let status = FlightStatus::replay(&events).unwrap();
        assert_eq!(status.version, 3);
        assert_eq!(status.state, FlightState::Departed);
        assert_eq!(status.delay_minutes, 50);
        assert_eq!(status.updated_at, Some(events[2].occurred_at));
    }

    #[test]
    fn revising_to_zero_clears_the_delay_and_cancel_keeps_the_last_delay() {
        let s = FlightStatus::initial()
            .apply(&at(0, EventKind::Reported { delay_minutes: 20, reason: Reason::default() }))
            .unwrap();
        let cleared = s.apply(&at(1, EventKind::Revised { delay_minutes: 0, reason: Reason::default() })).unwrap();
        assert_eq!((cleared.state, cleared.delay_minutes), (FlightState::Scheduled, 0));
        let cancelled = s.apply(&at(2, EventKind::Cancelled { reason: Reason::default() })).unwrap();
        assert_eq!((cancelled.state, cancelled.delay_minutes), (FlightState::Cancelled, 20));
    }

    #[test]
    fn terminal_states_accept_nothing() {
        let gone = FlightStatus::initial().apply(&at(0, EventKind::Departed { delay_minutes: 0 })).unwrap();
        let err = gone.apply(&at(1, EventKind::Cancelled { reason: Reason::default() })).unwrap_err();
        assert_eq!(err, TransitionError { state: FlightState::Departed, event: "cancelled" });
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in [FlightState::Scheduled, FlightState::Delayed, FlightState::Departed, FlightState::Cancelled] {
            assert_eq!(FlightState::parse(s.as_str()), Some(s));
        }
        assert_eq!(FlightState::parse("landed"), None);
    }
}
