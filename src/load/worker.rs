//! One stream's loop: take the next slot (closed loop: now; open loop: the schedule's),
//! wait for it, send, read the whole answer, record it in the thread's recorder.

use super::conn::{Answer, Sender};
use super::recorder::ErrorKind;
use super::runner::{Control, ThreadState, open};
use super::workload::{Planned, RequestKind};
use super::{LoadConfig, Workload};
use crate::compression::{Encoding, decoded_len};
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(super) async fn worker(config: &LoadConfig, control: &Control, state: &ThreadState, sender: Sender) {
    let mut sender = Some(sender);
    // Requests that differ per request (the API mix) are encoded here, reused.
    let mut scratch = Vec::new();
    let deadline = tokio::time::sleep(config.timeout);
    tokio::pin!(deadline);
    let schedule_origin = control.start.checked_sub(config.warmup).unwrap_or(control.start);
    loop {
        // When this request is due: now (closed loop) or its schedule slot (open).
        let intended = match state.interval {
            None => Instant::now(),
            Some(interval) => {
                let slot = state.next_slot.get();
                state.next_slot.set(slot + 1);
                // A slot beyond what an `Instant` can hold is beyond any end.
                let offset = std::time::Duration::try_from_secs_f64(interval.as_secs_f64() * slot as f64).ok();
                match offset.and_then(|offset| schedule_origin.checked_add(offset)) {
                    Some(at) => at,
                    None => return,
                }
            }
        };
        if control.over(intended) {
            return;
        }
        let measured = intended >= control.start;
        if !control.claim(config.requests, measured) {
            control.stop.store(true, Ordering::Relaxed);
            return;
        }
        if let Some(pacer) = &state.pacer
            && intended > Instant::now()
        {
            pacer.until(intended).await;
            // An idle HTTP/1.1 connection is not polled, so a close by the server is
            // noticed only now; a closed one is replaced below rather than sent into.
            if let Some(connection) = sender.as_mut() {
                connection.check_idle();
            }
        }
        if measured {
            state.measuring();
        }
        let mut waited = state.pacer.is_some();
        match sender.take() {
            Some(s) if !s.is_closed() => sender = Some(s),
            _ => match open(config, control, state).await {
                Some(s) => {
                    sender = Some(s);
                    waited = true;
                }
                None => return,
            },
        }
        let Some(connection) = sender.as_mut() else { return };
        let planned = next_request(config, state);
        // Closed loop: nothing waited since `intended` was read, so it is the send time
        // (one clock read less per request).
        let sent = if waited { Instant::now() } else { intended };
        // Writes keep their body: a 409 names the current version.
        let keep_body = planned.write.is_some();
        // One timer per worker, moved forward per request: cheaper than a new
        // `timeout` (a timer wheel insert and remove) on every request.
        deadline.as_mut().reset(tokio::time::Instant::from_std(sent + config.timeout));
        let send = connection.send(&state.template, &planned, &mut scratch, keep_body);
        let outcome = tokio::select! {
            biased;
            outcome = send => outcome,
            () = &mut deadline => Err(ErrorKind::Timeout),
        };
        let done = Instant::now();
        if let Err(ErrorKind::Timeout | ErrorKind::Reset | ErrorKind::Protocol) = &outcome
            && sender.as_ref().is_some_and(|s| matches!(s, Sender::H1(_)) || s.is_closed())
        {
            // An HTTP/1.1 connection with an unanswered request cannot be reused.
            sender = None;
        }
        if !measured {
            continue;
        }
        state.last.set(done);
        // Decoding may await; no recorder borrow is held across it. Most answers are
        // not encoded and need no decoding future at all.
        let outcome = match outcome {
            Ok(answer) if answer.content_encoding.is_none() => Ok((answer.body_len, answer)),
            Ok(answer) => decoded(&answer).await.map(|decoded| (decoded, answer)),
            Err(kind) => Err(kind),
        };
        let (decoded, answer) = match outcome {
            Err(kind) => {
                state.recorder.borrow_mut().error(kind);
                continue;
            }
            Ok(answered) => answered,
        };
        {
            let mut recorder = state.recorder.borrow_mut();
            recorder.response(planned.kind, answer.status, done - intended, intended - control.start);
            if state.interval.is_some() {
                recorder.uncorrected(planned.kind, done - sent);
                recorder.lag(sent.saturating_duration_since(intended));
            }
            recorder.wire_bytes += answer.body_len;
            recorder.decoded_bytes += decoded;
            if planned.write.is_some() {
                match answer.status {
                    409 => recorder.conflicts += 1,
                    422 => recorder.rejected += 1,
                    _ => {}
                }
            }
        }
        if let Some((flight, _, _)) = &planned.write {
            learn_version(state, *flight, &answer);
        }
        control.completed.fetch_add(1, Ordering::Relaxed);
    }
}

fn next_request(config: &LoadConfig, state: &ThreadState) -> Planned {
    let url = || Planned { kind: RequestKind::Url, method: http::Method::GET, path: String::new(), write: None };
    match (&config.workload, state.planner.borrow_mut().as_mut()) {
        (Workload::Mix { .. }, Some(planner)) => planner.next(&mut *state.rng.borrow_mut()),
        // The template holds the parsed URI; the path is not needed per request. (A
        // mix always has its planner: `run_thread` makes one for it.)
        _ => url(),
    }
}

/// The decoded size of a body with a `Content-Encoding`; a body in a coding the
/// generator does not know, or that does not decode, is an error.
async fn decoded(answer: &Answer) -> Result<u64, ErrorKind> {
    let coding = match answer.content_encoding.as_ref().map(|v| v.to_str()) {
        None => return Ok(answer.body_len),
        Some(Ok(token)) => token.trim().parse::<Encoding>().map_err(|_| ErrorKind::Decode)?,
        Some(Err(_)) => return Err(ErrorKind::Decode),
    };
    let body = answer.body.as_deref().unwrap_or_default();
    decoded_len(coding, body).await.map_err(|_| ErrorKind::Decode)
}

/// A 201 carries the new version in its `ETag`; a 409 in its problem body.
fn learn_version(state: &ThreadState, flight: crate::domain::FlightId, answer: &Answer) {
    let version = match answer.status {
        201 => answer.etag.as_ref().and_then(|e| e.to_str().ok()).and_then(|e| e.trim_matches('"').parse::<i64>().ok()),
        409 => serde_json::from_slice::<serde_json::Value>(answer.body.as_deref().unwrap_or_default())
            .ok()
            .and_then(|v| v["current_version"].as_i64()),
        _ => None,
    };
    if let (Some(version), Some(planner)) = (version, state.planner.borrow_mut().as_mut()) {
        planner.learn(flight, version);
    }
}
