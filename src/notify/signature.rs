//! Webhook signatures, the way large webhook providers sign (Stripe's
//! `Stripe-Signature`, the Standard Webhooks spec): an HMAC-SHA256 over the delivery's
//! timestamp and its exact body, sent in one header,
//! `flightbench-signature: t=<unix seconds>,v1=<hex>`.
//!
//! The timestamp is inside the MAC, so a receiver that refuses signatures older than
//! a few minutes ([`verify`]'s `tolerance`) cannot be replayed a captured delivery
//! later; the body is the exact bytes sent, so a receiver verifies before parsing.

use ring::hmac;

/// The header a delivery's signature travels in.
pub const HEADER: &str = "flightbench-signature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no t=<seconds>,v1=<hex> signature in the header")]
    Malformed,
    #[error("signed at {signed}, {age} s from now: outside the {tolerance} s tolerance")]
    Stale { signed: i64, age: i64, tolerance: i64 },
    #[error("the signature does not match the body")]
    Mismatch,
}

/// The header value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(&key(secret), &signed_payload(timestamp, body));
    format!("t={timestamp},v1={}", hex(tag.as_ref()))
}

/// Checks a delivery as a receiver should: the header parses, its time is within
/// `tolerance` seconds of `now`, and its MAC over (time, body) matches, compared in
/// constant time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(unhex(v).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let signed = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let age = now - signed;
    if age.abs() > tolerance {
        return Err(SignatureError::Stale { signed, age, tolerance });
    }
    let payload = signed_payload(signed, body);
    // Any v1 may match: a sender rotating its secret signs with both for a while.
    if signatures.iter().any(|s| hmac::verify(&key(secret), &payload, s).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut payload = format!("{timestamp}.").into_bytes();
    payload.extend_from_slice(body);
    payload
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_0123456789abcdef";

    #[test]
    fn a_signed_body_verifies_and_anything_changed_does_not() {
        let body = br#"{"flight_id":7,"version":3}"#;
        let header = sign(SECRET, 1_800_000_000, body);
        assert!(header.starts_with("t=1800000000,v1="), "{header}");
        assert_eq!(verify(SECRET, &header, body, 1_800_000_010, 300), Ok(()));
        // A tampered body, another secret, a moved timestamp: each refused.
        let tampered = br#"{"flight_id":7,"version":4}"#;
        assert_eq!(verify(SECRET, &header, tampered, 1_800_000_010, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"another secret", &header, body, 1_800_000_010, 300), Err(SignatureError::Mismatch));
        let moved = header.replace("t=1800000000", "t=1800000005");
        assert_eq!(verify(SECRET, &moved, body, 1_800_000_010, 300), Err(SignatureError::Mismatch));
        // A replay ten minutes later.
        let stale = verify(SECRET, &header, body, 1_800_000_600, 300);
        assert_eq!(stale, Err(SignatureError::Stale { signed: 1_800_000_000, age: 600, tolerance: 300 }));
        for malformed in ["", "t=1800000000", "v1=00", "t=x,v1=00", "t=1800000000,v1=0g"] {
            assert_eq!(
                verify(SECRET, malformed, body, 1_800_000_000, 300),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn the_mac_is_hmac_sha256_over_time_dot_body() {
        // Computed apart, with Python: hmac.new(b"Jefe", b"0.body", hashlib.sha256).hexdigest()
        assert_eq!(
            sign(b"Jefe", 0, b"body"),
            "t=0,v1=d3326e399d2f2a7516e1b2ec9cfd9c5c187ce9676bff6005e08faa2a6de2f1e4"
        );
    }
}
