//! Upcasters: a stored event of any schema version the build knows becomes the
//! current version on read, so every reader (all four query paths, both backends,
//! `events migrate`) sees one shape and history is never rewritten to evolve it.
//!
//! An upcaster takes one version's payload to the next; [`upcast`] runs the chain from
//! the stored version to the current one. Each step is a plain function over
//! [`StoredEvent`], the columns as stored, so a step written for v1 → v2 keeps working
//! unchanged when v3 arrives (the tests prove a chain v1 → v2 → v3 composes with a
//! test-only v3). The chain lives here and nowhere else; adding a version means
//! bumping `SCHEMA_VERSION`, adding a step and teaching `DelayEvent::from_stored` the
//! new columns.
//!
//! A current-version payload passes through without a copy: the payload borrows the
//! row, and only a step that changes a column allocates.

use super::event::{EventKindError, SCHEMA_VERSION};
use super::reporting::DelayCode;
use std::borrow::Cow;

/// An event's payload as stored at some schema version, before decoding (the event's
/// identity and time are not versioned and stay with the row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent<'a> {
    pub schema_version: i64,
    pub kind: Cow<'a, str>,
    pub delay_minutes: i64,
    pub reason: Cow<'a, str>,
    /// v2: the IATA delay code, or `None`.
    pub cause: Option<Cow<'a, str>>,
    /// v2: the reporter's subject id, or `None`.
    pub reported_by: Option<Cow<'a, str>>,
}

/// One step of the chain: takes a payload at version `from` to `from + 1`.
#[derive(Clone, Copy)]
pub struct Upcaster {
    pub from: i64,
    pub step: for<'a> fn(StoredEvent<'a>) -> StoredEvent<'a>,
}

/// The production chain, oldest step first.
pub const UPCASTERS: &[Upcaster] = &[Upcaster { from: 1, step: v1_to_v2 }];

/// v1 → v2. Version 1 had no delay code and no reporter. The code is classified from
/// the free-text reason (`DelayCode::classify`; unknown texts get none rather than a
/// guessed "99"); the reporter was never recorded, so it stays unknown (`None`), which
/// is also what an unauthenticated v2 write stores.
fn v1_to_v2(e: StoredEvent<'_>) -> StoredEvent<'_> {
    let cause = match e.kind.as_ref() {
        "departed" => None,
        _ => DelayCode::classify(&e.reason).map(Cow::Borrowed),
    };
    StoredEvent { schema_version: 2, cause, reported_by: None, ..e }
}

/// Runs `stored` through this build's chain to `SCHEMA_VERSION`.
pub fn upcast(stored: StoredEvent<'_>) -> Result<StoredEvent<'_>, EventKindError> {
    upcast_with(UPCASTERS, SCHEMA_VERSION.into(), stored)
}

/// Runs `stored` through `chain` to version `target`. A version newer than `target`
/// is an error naming both (never a misread), as is a version with no step.
pub fn upcast_with<'a>(
    chain: &[Upcaster],
    target: i64,
    mut stored: StoredEvent<'a>,
) -> Result<StoredEvent<'a>, EventKindError> {
    if stored.schema_version > target {
        return Err(EventKindError::NewerSchema { found: stored.schema_version, known: target });
    }
    while stored.schema_version < target {
        let from = stored.schema_version;
        let upcaster =
            chain.iter().find(|u| u.from == from).ok_or(EventKindError::NoUpcaster { from, known: target })?;
        stored = (upcaster.step)(stored);
        debug_assert_eq!(stored.schema_version, from + 1, "an upcaster moves one version");
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(kind: &'static str, delay: i64, reason: &'static str) -> StoredEvent<'static> {
        StoredEvent {
            schema_version: 1,
            kind: kind.into(),
            delay_minutes: delay,
            reason: reason.into(),
            cause: None,
            reported_by: None,
        }
    }

    #[test]
    fn the_chain_is_contiguous_and_ends_at_the_current_version() {
        for (i, u) in UPCASTERS.iter().enumerate() {
            assert_eq!(u.from, i as i64 + 1);
        }
        assert_eq!(UPCASTERS.len() as i64 + 1, i64::from(SCHEMA_VERSION));
    }

    #[test]
    fn v1_gains_a_classified_code_and_no_reporter() {
        let up = upcast(v1("reported", 20, "weather at destination")).unwrap();
        assert_eq!(
            up,
            StoredEvent { schema_version: 2, cause: Some("72".into()), ..v1("reported", 20, "weather at destination") }
        );
        assert_eq!(upcast(v1("revised", 0, "")).unwrap().cause, None, "no text, no code");
        assert_eq!(upcast(v1("departed", 4, "")).unwrap().cause, None);
    }

    #[test]
    fn a_current_event_passes_through_borrowed() {
        let current = StoredEvent {
            schema_version: i64::from(SCHEMA_VERSION),
            cause: Some("41".into()),
            reported_by: Some("sub-1".into()),
            ..v1("revised", 5, "bird strike")
        };
        let up = upcast(current.clone()).unwrap();
        assert_eq!(up, current);
        assert!(matches!(up.kind, Cow::Borrowed(_)) && matches!(up.cause, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn newer_and_unknown_versions_are_named_errors() {
        let newer = StoredEvent { schema_version: 7, ..v1("reported", 1, "") };
        let err = upcast(newer).unwrap_err();
        assert_eq!(err, EventKindError::NewerSchema { found: 7, known: 2 });
        assert!(err.to_string().contains("schema version 7"), "{err}");
        let zero = StoredEvent { schema_version: 0, ..v1("reported", 1, "") };
        assert_eq!(upcast(zero).unwrap_err(), EventKindError::NoUpcaster { from: 0, known: 2 });
    }

    /// A test-only v3 that stores the delay in seconds: the v1 → v2 step, untouched,
    /// composes with it, and the composed result is what a v3 writer would store.
    #[test]
    fn a_chain_to_a_test_only_v3_composes() {
        fn v2_to_v3(e: StoredEvent<'_>) -> StoredEvent<'_> {
            StoredEvent { schema_version: 3, delay_minutes: e.delay_minutes * 60, ..e }
        }
        let chain = [UPCASTERS[0], Upcaster { from: 2, step: v2_to_v3 }];
        let written_as_v3 = StoredEvent {
            schema_version: 3,
            delay_minutes: 25 * 60,
            cause: Some("93".into()),
            ..v1("reported", 0, "late inbound aircraft")
        };
        assert_eq!(upcast_with(&chain, 3, v1("reported", 25, "late inbound aircraft")).unwrap(), written_as_v3);
        let v2 = upcast(v1("reported", 25, "late inbound aircraft")).unwrap();
        assert_eq!(upcast_with(&chain, 3, v2).unwrap(), written_as_v3, "from v2 too");
        assert_eq!(upcast_with(&chain, 3, written_as_v3.clone()).unwrap(), written_as_v3);
        // Without its last step the chain stops with an error, not a v2 read as v3.
        assert_eq!(
            upcast_with(&chain[..1], 3, v1("reported", 25, "")).unwrap_err(),
            EventKindError::NoUpcaster { from: 2, known: 3 }
        );
    }
}
