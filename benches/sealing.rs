//! What protecting a delay report costs on this machine, apart from the database:
//! sealing its reason and reporter under the reporter's data key (cached in memory, as
//! after a subject's first report), opening them again, and linking an audit record
//! into its chain (one keyed BLAKE3 over the record). The workbench's `security` part
//! measures the same work inside whole writes; this separates the crypto from the rest.
//! Each arm's output is checked to open or verify before timing.
//!
//!     cargo bench --bench sealing

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use flightbench::audit::{Draft, action, verify};
use flightbench::domain::{DelayEvent, EventKind, FlightId, Reason, SubjectId, UtcTime};
use flightbench::seal::kek::{self, KekSource};
use flightbench::seal::{Opened, Sealer};
use std::hint::black_box;

fn sealing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kek_file = dir.path().join("kek");
    kek::add_to_file(&kek_file).unwrap();
    let sealer = Sealer::load(KekSource::File(kek_file), &dir.path().join("keys.sqlite")).unwrap();
    let reason = Reason::parse("late inbound aircraft; crew out of hours at the previous station").unwrap();
    let event =
        DelayEvent::new(UtcTime::from_unix(1_800_000_000).unwrap(), EventKind::Reported { delay_minutes: 25, reason })
            .with_reporter(Some(SubjectId::parse("ops-controller-17").unwrap()));
    let flight = FlightId::new(42).unwrap();
    let sealed = runtime.block_on(sealer.seal(flight, 3, &event)).unwrap();
    let opened = runtime.block_on(sealer.open(flight, 3, &sealed)).unwrap();
    assert!(matches!(opened, Opened::Clear { reported_by: Some(_), .. }));

    let mut g = c.benchmark_group("sealing");
    g.bench_function("seal", |b| b.iter(|| runtime.block_on(sealer.seal(flight, 3, black_box(&event))).unwrap()));
    g.bench_function("open", |b| b.iter(|| runtime.block_on(sealer.open(flight, 3, black_box(&sealed))).unwrap()));
    let key = [7u8; 32];
    let draft = Draft {
        at: 1_800_000_000_000_000,
        request_id: "0123456789abcdef".into(),
        actor: Some(sealed.ciphertext.clone()),
        actor_key: Some(sealed.data_key.clone()),
        role: "reporter".into(),
        action: action::REPORT.into(),
        target: "flight/42".into(),
        before_version: Some(2),
        after_version: Some(3),
    };
    let record = draft.clone().link("flight-42", Some((2, "ab".repeat(32))), &key);
    let first = draft.clone().link("flight-42", None, &key);
    assert_eq!(verify(&[first], &key), Ok(1));
    assert_eq!(record.seq, 3);
    g.bench_function("audit_link", |b| {
        b.iter(|| black_box(draft.clone()).link("flight-42", Some((2, "ab".repeat(32))), &key))
    });
    g.finish();
}

criterion_group! { name = benches; config = support::criterion(); targets = sealing }
criterion_main!(benches);
