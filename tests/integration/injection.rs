//! The ad-hoc path builds SQL text from values, so it is the one that could be
//! injected. Hostile strings are either rejected when parsed (codes, ids, control
//! characters) or stored verbatim and read back identically by every path, and no
//! other data changes.

use crate::helpers::{Kind, dataset, spec};
use flightbench::domain::{AirportCode, Carrier, DelayEvent, EventKind, FlightId, Reason, UtcTime};
use flightbench::routing::shard_for;
use flightbench::store::QueryPath;

const HOSTILE: &[&str] = &[
    "'",
    "''",
    "'; DROP TABLE flights; --",
    "\"; DROP TABLE flights; --",
    "Robert'); DELETE FROM delay_events; --",
    "x' OR '1'='1",
    "1; UPDATE flight_status SET version = 0",
    "/* comment */ --",
    "\\",
    "\\'; SELECT 1; --",
    "$1 ?1 :name @name %s {}",
    "E'\\x27'",
    "$$; DROP TABLE flights; $$",
    "遅延 ✈ 'quoted' «guillemets»",
    "\u{202E}rtl override",
    "\u{FEFF}bom",
    "😀'😀",
];

const REJECTED: &[&str] = &["nul\0byte", "new\nline", "tab\tbed", "bell\u{7}", "esc\u{1b}[2J"];

#[test]
fn hostile_codes_and_control_characters_are_rejected_at_parse() {
    for s in HOSTILE.iter().chain(REJECTED) {
        assert!(AirportCode::parse(s).is_err(), "airport {s:?}");
        assert!(Carrier::parse(s).is_err(), "carrier {s:?}");
        assert!(FlightId::parse(s).is_err(), "flight id {s:?}");
    }
    for s in REJECTED {
        assert!(Reason::parse(s).is_err(), "reason {s:?} should be rejected");
    }
}

async fn hostile_reasons_are_inert(kind: Kind) {
    let ds = dataset(kind, spec(5, 400, 10), 3).await;
    let target = ds.all_expected().into_iter().find(|v| !v.status.state.is_terminal()).unwrap();
    let (id, mut version) = (target.flight.id, target.status.version);
    let target_shard = shard_for(id.get(), 3) as usize;
    let before = ds.store.shard_digests().await.unwrap();

    for (i, text) in HOSTILE.iter().enumerate() {
        let reason = Reason::parse(text).unwrap();
        let event = DelayEvent::new(
            UtcTime::parse("2026-12-03T00:00:00Z").unwrap().plus_seconds(i as i64),
            EventKind::Revised { delay_minutes: 10 + i as i64, reason: reason.clone() },
        );
        ds.store.append(QueryPath::Adhoc, id, version, &event).await.unwrap();
        version += 1;
        for &path in QueryPath::ALL {
            let last = ds.store.events(path, id).await.unwrap().pop().unwrap();
            assert_eq!(last.event.kind.reason(), *text, "{kind:?} {path} read back a different reason");
        }
    }

    // Other shards are byte-for-byte unchanged; on the target's shard every other
    // flight still reads exactly as generated.
    let after = ds.store.shard_digests().await.unwrap();
    for shard in 0..3 {
        if shard != target_shard {
            assert_eq!(before[shard], after[shard], "{kind:?}: shard {shard} changed");
        }
    }
    for view in ds.all_expected() {
        if view.flight.id != id && shard_for(view.flight.id.get(), 3) as usize == target_shard {
            assert_eq!(ds.store.flight(QueryPath::Adhoc, view.flight.id).await.unwrap(), view);
            assert_eq!(
                ds.store.events(QueryPath::Adhoc, view.flight.id).await.unwrap(),
                ds.expected_events(view.flight.id.get())
            );
        }
    }
    assert_eq!(ds.store.events(QueryPath::Raw, id).await.unwrap().len() as i64, version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_hostile_reasons_are_inert() {
    hostile_reasons_are_inert(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hostile_reasons_are_inert() {
    hostile_reasons_are_inert(Kind::Postgres).await;
}
