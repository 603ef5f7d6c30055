use super::*;

const KEY: [u8; 32] = [9; 32];

fn draft(n: i64) -> Draft {
    Draft {
        at: 1_800_000_000_000_000 + n,
        request_id: format!("req-{n}"),
        actor: Some(format!("sealed-{n}")),
        actor_key: Some("dk-1".into()),
        role: "reporter".into(),
        action: action::REPORT.into(),
        target: "flight/7".into(),
        before_version: Some(n),
        after_version: Some(n + 1),
    }
}

fn chain(n: i64) -> Vec<Record> {
    let mut records: Vec<Record> = Vec::new();
    for i in 0..n {
        let prev = records.last().map(|r| (r.seq, r.hash.clone()));
        records.push(draft(i).link("flight-7", prev, &KEY));
    }
    records
}

fn renumber(records: &mut [Record]) {
    for (i, r) in records.iter_mut().enumerate() {
        r.seq = i as i64 + 1;
    }
}

#[test]
fn an_intact_chain_verifies_and_needs_the_key() {
    let records = chain(5);
    assert_eq!(records[0].prev_hash, GENESIS);
    assert_eq!(records[3].prev_hash, records[2].hash);
    assert_eq!(verify(&records, &KEY), Ok(5));
    assert_eq!(verify(&[], &KEY), Ok(0));
    assert!(matches!(verify(&records, &[8; 32]), Err(Tamper::Altered { seq: 1, .. })), "another key forges nothing");
}

#[test]
fn each_kind_of_tampering_is_named_at_the_first_record_it_touches() {
    let at = |seq| ("flight-7".to_owned(), seq);
    let named = |t: Tamper| match t {
        Tamper::Altered { chain, seq } => ("altered", (chain, seq)),
        Tamper::Deleted { chain, seq } => ("deleted", (chain, seq)),
        Tamper::Inserted { chain, seq } => ("inserted", (chain, seq)),
        Tamper::Reordered { chain, seq } => ("reordered", (chain, seq)),
    };

    let mut altered = chain(6);
    altered[2].draft.action = action::ERASE.into();
    assert_eq!(named(verify(&altered, &KEY).unwrap_err()), ("altered", at(3)));
    let mut relinked = chain(6);
    relinked[3].prev_hash = relinked[1].hash.clone();
    assert_eq!(named(verify(&relinked, &KEY).unwrap_err()), ("altered", at(4)), "a link is content too");

    let mut gap = chain(6);
    gap.remove(2);
    assert_eq!(named(verify(&gap, &KEY).unwrap_err()), ("deleted", at(3)));
    let mut renumbered = chain(6);
    renumbered.remove(2);
    renumber(&mut renumbered);
    assert_eq!(named(verify(&renumbered, &KEY).unwrap_err()), ("deleted", at(3)));
    let mut first = chain(3);
    first.remove(0);
    assert_eq!(named(verify(&first, &KEY).unwrap_err()), ("deleted", at(1)));

    let mut inserted = chain(6);
    let mut forged = draft(99).link("flight-7", Some((2, inserted[1].hash.clone())), &[1; 32]);
    forged.seq = 3;
    inserted.insert(2, forged);
    renumber(&mut inserted);
    assert_eq!(named(verify(&inserted, &KEY).unwrap_err()), ("inserted", at(3)));

    let mut swapped = chain(6);
    swapped.swap(3, 4);
    renumber(&mut swapped);
    assert_eq!(named(verify(&swapped, &KEY).unwrap_err()), ("reordered", at(4)));
}
