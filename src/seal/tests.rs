use super::*;
use crate::domain::{EventKind, UtcTime};

fn event(reporter: Option<&str>, reason: &str) -> DelayEvent {
    let kind = EventKind::Reported { delay_minutes: 30, reason: Reason::parse(reason).unwrap() };
    DelayEvent::new(UtcTime::from_unix(1_800_000_000).unwrap(), kind)
        .with_reporter(reporter.map(|r| SubjectId::parse(r).unwrap()))
}

fn sealer(dir: &Path) -> Sealer {
    let kek = dir.join("kek");
    if !kek.exists() {
        kek::add_to_file(&kek).unwrap();
    }
    Sealer::load(KekSource::File(kek), &dir.join(DEFAULT_KEY_STORE)).unwrap()
}

fn flight(n: i64) -> FlightId {
    FlightId::new(n).unwrap()
}

#[tokio::test]
async fn fields_seal_open_and_are_bound_to_their_event() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = sealer(dir.path());
    let alice = event(Some("alice"), "crew rest; call +44 20 7946 0000");
    let sealed = sealer.seal(flight(7), 3, &alice).await.unwrap();
    assert!(!sealed.ciphertext.contains("crew") && !sealed.ciphertext.contains("alice"));
    let opened = sealer.open(flight(7), 3, &sealed).await.unwrap();
    assert_eq!(
        opened,
        Opened::Clear {
            reported_by: alice.reported_by.clone(),
            reason: Reason::parse("crew rest; call +44 20 7946 0000").unwrap()
        }
    );

    // The same subject's next event uses the same key; another subject another one.
    assert_eq!(sealer.seal(flight(8), 1, &alice).await.unwrap().data_key, sealed.data_key);
    let bob = sealer.seal(flight(7), 4, &event(Some("bob"), "")).await.unwrap();
    assert_ne!(bob.data_key, sealed.data_key);
    let anonymous = sealer.seal(flight(9), 1, &event(None, "fog")).await.unwrap();
    assert_eq!(
        sealer.open(flight(9), 1, &anonymous).await.unwrap(),
        Opened::Clear { reported_by: None, reason: Reason::parse("fog").unwrap() }
    );

    // Moved to another version or flight, or altered: refused, by name.
    for (f, v) in [(7, 4), (8, 3)] {
        let err = sealer.open(flight(f), v, &sealed).await.unwrap_err();
        assert!(matches!(err, SealError::Tampered { version, .. } if version == v), "{err}");
    }
    let mut altered = sealed.clone();
    altered.ciphertext.replace_range(20..21, if &altered.ciphertext[20..21] == "A" { "B" } else { "A" });
    assert!(matches!(sealer.open(flight(7), 3, &altered).await, Err(SealError::Tampered { .. })));
    let swapped = Sealed { data_key: bob.data_key.clone(), ..sealed.clone() };
    assert!(matches!(sealer.open(flight(7), 3, &swapped).await, Err(SealError::Tampered { .. })));
    let foreign = Sealed { data_key: "dk-000000000000000000000000".into(), ..sealed.clone() };
    let err = sealer.open(flight(7), 3, &foreign).await.unwrap_err();
    assert!(matches!(err, SealError::UnknownKey { .. }), "{err}");
}

#[tokio::test]
async fn erasure_makes_a_subjects_fields_read_as_erased_and_no_one_elses() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = sealer(dir.path());
    let sealed = sealer.seal(flight(7), 1, &event(Some("alice"), "crew")).await.unwrap();
    let bobs = sealer.seal(flight(7), 2, &event(Some("bob"), "fuel")).await.unwrap();
    let alice = SubjectId::parse("alice").unwrap();
    assert_eq!(sealer.key_id_for(&alice).await.unwrap().as_deref(), Some(sealed.data_key.as_str()));
    let erased = sealer.erase(&alice, None).await.unwrap();
    assert_eq!(erased.as_deref(), Some(sealed.data_key.as_str()));
    assert_eq!(sealer.open(flight(7), 1, &sealed).await.unwrap(), Opened::Erased);
    assert!(matches!(sealer.open(flight(7), 2, &bobs).await.unwrap(), Opened::Clear { .. }));
    assert_eq!(sealer.erase(&alice, None).await.unwrap(), None, "nothing left to erase");
    assert_eq!(sealer.key_id_for(&alice).await.unwrap(), None);

    // A new process (nothing cached) reads the same: erased from the store itself.
    drop(sealer);
    let fresh = self::sealer(dir.path());
    assert_eq!(fresh.open(flight(7), 1, &sealed).await.unwrap(), Opened::Erased);
    // A returning subject gets a new key; their erased events stay erased.
    let again = fresh.seal(flight(7), 3, &event(Some("alice"), "wx")).await.unwrap();
    assert_ne!(again.data_key, sealed.data_key);
    assert_eq!(fresh.open(flight(7), 1, &sealed).await.unwrap(), Opened::Erased);
}

#[tokio::test]
async fn rotation_rewraps_keys_so_the_old_kek_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let sealer = sealer(dir.path());
    let kek_file = dir.path().join("kek");
    let sealed = sealer.seal(flight(7), 1, &event(Some("alice"), "crew")).await.unwrap();
    sealer.seal(flight(7), 2, &event(Some("bob"), "")).await.unwrap();
    let first = std::fs::read_to_string(&kek_file).unwrap();
    let new_id = kek::add_to_file(&kek_file).unwrap();
    let rotation = sealer.rotate(None).await.unwrap();
    assert_eq!((rotation.primary.as_str(), rotation.rewrapped, rotation.still_under.len()), (new_id.as_str(), 2, 0));
    // Drop the old KEK from the file: a fresh process still opens everything.
    let text = std::fs::read_to_string(&kek_file).unwrap();
    let old_line = first.lines().find(|l| l.starts_with("kek-")).unwrap();
    std::fs::write(&kek_file, text.replace(&format!("{old_line}\n"), "")).unwrap();
    drop(sealer);
    let fresh = self::sealer(dir.path());
    assert!(matches!(fresh.open(flight(7), 1, &sealed).await.unwrap(), Opened::Clear { .. }));
}

#[test]
fn the_plaintext_encoding_round_trips_and_refuses_junk() {
    let alice = SubjectId::parse("älice").unwrap();
    for (by, reason) in [(None, ""), (Some(&alice), ""), (Some(&alice), "crew; ✈"), (None, "fog")] {
        let back = parse_fields(&fields(by, reason)).unwrap();
        assert_eq!((back.0.as_ref(), back.1.as_str()), (by, reason));
    }
    assert_eq!(parse_fields(&[]), None);
    assert_eq!(parse_fields(&[1, 0, 9, b'a']), None, "length past the end");
    assert_eq!(parse_fields(&[2, 0, 0]), None, "unknown presence byte");
    assert_eq!(parse_fields(&[0, 0, 0, 0x07]), None, "a control character is no reason");
}
