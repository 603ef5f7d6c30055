//! The negative matrix: every forged, tampered or mis-issued token a resource server
//! must refuse, each with the exact rejection expected.

use super::*;
use crate::auth::keys::{SigningKey, VerifyKey, pkcs8_from_pem, sign_parts};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "flightbench";
const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-shared";

fn rsa(kid: &str, file: &[u8]) -> SigningKey {
    SigningKey::from_pkcs8(kid, &pkcs8_from_pem(file).unwrap()).unwrap()
}

struct Fixture {
    rsa_a: SigningKey,
    rsa_b: SigningKey,
    es: SigningKey,
    ed: SigningKey,
    /// A key nobody published.
    attacker: SigningKey,
}

impl Fixture {
    fn new() -> Self {
        let generated = |kid, alg| SigningKey::from_pkcs8(kid, &SigningKey::generate_pkcs8(alg).unwrap()).unwrap();
        Fixture {
            rsa_a: rsa("rsa-a", include_bytes!("testdata/rsa-a.pem")),
            rsa_b: rsa("rsa-b", include_bytes!("testdata/rsa-b.pem")),
            es: generated("es", Alg::Es256),
            ed: generated("ed", Alg::EdDsa),
            attacker: generated("es", Alg::Es256),
        }
    }

    /// rsa-a, es and ed are published; rsa-b is not.
    fn verifier(&self, secret: Option<&[u8]>) -> Verifier {
        let keys = [&self.rsa_a, &self.es, &self.ed].map(|k| (Some(k.kid.clone()), k.public().unwrap())).to_vec();
        Verifier::new(Rules::new(ISSUER, AUDIENCE), Keys::Static(Arc::new(KeySet { keys, skipped: vec![] })), secret)
    }
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 300, "sub": "alice", "roles": ["reporter", "openid"]})
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(name);
    } else {
        claims[name] = value;
    }
    claims
}

fn verify(verifier: &Verifier, token: &str) -> Result<Verified, Rejection> {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(verifier.verify(token, NOW))
}

#[test]
fn tokens_signed_by_each_published_key_are_accepted_with_their_subject_and_roles() {
    let f = Fixture::new();
    let verifier = f.verifier(None);
    for key in [&f.rsa_a, &f.es, &f.ed] {
        let verified = verify(&verifier, &key.token(&claims())).unwrap_or_else(|e| panic!("{}: {e:?}", key.alg()));
        assert_eq!(verified.subject.as_ref().map(|s| s.as_str()), Some("alice"));
        assert!(verified.roles.contains(Role::Reporter) && !verified.roles.contains(Role::Admin));
        assert_eq!(verified.expires_at, NOW + 300);
    }
    // HS256 with the operator's secret; `scope` as a space-separated roles claim.
    let mut scoped = f.verifier(Some(SECRET));
    scoped.rules.roles_claim = "scope".into();
    let token = SigningKey::hmac("s", SECRET).unwrap().token(&with(claims(), "scope", "admin reporter".into()));
    let verified = verify(&scoped, &token).unwrap();
    assert!(verified.roles.contains(Role::Admin) && verified.roles.contains(Role::Reporter));
    // Client-credentials tokens name the client instead of a subject.
    let token = f.es.token(&with(with(claims(), "sub", Value::Null), "client_id", "svc".into()));
    assert_eq!(verify(&verifier, &token).unwrap().subject.unwrap().as_str(), "svc");
}

#[test]
fn algorithm_attacks_are_refused() {
    let f = Fixture::new();
    let verifier = f.verifier(None);
    let forged = |header: Value, sign: &dyn Fn(&[u8]) -> Vec<u8>| sign_parts(&header, &claims(), |m| sign(m));
    // alg none, with and without a signature; a missing alg.
    let none = forged(json!({"alg": "none"}), &|_| Vec::new());
    assert_eq!(verify(&verifier, &none), Err(Rejection::AlgNotAllowed));
    assert_eq!(verify(&verifier, &format!("{}.", none.trim_end_matches('.'))), Err(Rejection::AlgNotAllowed));
    assert_eq!(verify(&verifier, &forged(json!({"alg": "none"}), &|_| b"x".to_vec())), Err(Rejection::AlgNotAllowed));
    assert_eq!(verify(&verifier, &forged(json!({"typ": "JWT"}), &|m| f.es.sign(m))), Err(Rejection::MissingAlg));
    // Key confusion: HS256 "signed" with a published public key as the HMAC secret.
    // Without a configured secret HS256 is not even allowed; with one, the signature
    // is checked against that secret only.
    let rsa_public: &[u8] = include_bytes!("testdata/rsa-a.pub.pem");
    let ec_public = match f.es.public().unwrap() {
        VerifyKey::P256 { point } => point,
        other => panic!("{other:?}"),
    };
    for public in [rsa_public, &ec_public] {
        let confused = forged(json!({"alg": "HS256", "kid": "rsa-a"}), &|m| {
            ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public), m).as_ref().to_vec()
        });
        assert_eq!(verify(&verifier, &confused), Err(Rejection::AlgNotAllowed));
        assert_eq!(verify(&f.verifier(Some(SECRET)), &confused), Err(Rejection::BadSignature));
    }
    // A header that claims RS256 for the EC key, and ES256 for the RSA key.
    assert_eq!(
        verify(&verifier, &forged(json!({"alg": "RS256", "kid": "es"}), &|m| f.rsa_a.sign(m))),
        Err(Rejection::KeyMismatch)
    );
    assert_eq!(
        verify(&verifier, &forged(json!({"alg": "ES256", "kid": "rsa-a"}), &|m| f.es.sign(m))),
        Err(Rejection::KeyMismatch)
    );
}

#[test]
fn wrong_unknown_and_smuggled_keys_are_refused() {
    let f = Fixture::new();
    let verifier = f.verifier(None);
    // Signed by a key nobody published, under a published kid.
    assert_eq!(verify(&verifier, &f.attacker.token(&claims())), Err(Rejection::BadSignature));
    // kid of key A with key B's signature.
    let header = json!({"alg": "RS256", "kid": "rsa-a"});
    assert_eq!(verify(&verifier, &sign_parts(&header, &claims(), |m| f.rsa_b.sign(m))), Err(Rejection::BadSignature));
    // An unknown kid (rsa-b is not in the set); a static set is never fetched again.
    assert_eq!(verify(&verifier, &f.rsa_b.token(&claims())), Err(Rejection::UnknownKey));
    // The attacker's key in a `jwk` header, with and without a kid, and `jku`/`x5u`
    // pointing at the attacker: never read.
    let attacker_jwk = f.attacker.public().unwrap().to_jwk("evil");
    for header in [
        json!({"alg": "ES256", "jwk": attacker_jwk}),
        json!({"alg": "ES256", "kid": "evil", "jwk": attacker_jwk}),
        json!({"alg": "ES256", "kid": "evil", "jku": "http://127.0.0.1:1/jwks"}),
        json!({"alg": "ES256", "kid": "evil", "x5u": "http://127.0.0.1:1/cert"}),
    ] {
        let expected = if header.get("kid").is_some() { Rejection::UnknownKey } else { Rejection::BadSignature };
        assert_eq!(
            verify(&verifier, &sign_parts(&header, &claims(), |m| f.attacker.sign(m))),
            Err(expected),
            "{header}"
        );
    }
}

#[test]
fn tampered_signatures_and_encodings_are_refused() {
    let f = Fixture::new();
    let verifier = f.verifier(None);
    for key in [&f.rsa_a, &f.es, &f.ed] {
        let token = key.token(&claims());
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let bytes = crate::auth::token::decode(signature).unwrap();
        let encode = crate::auth::token::encode;
        let cases = [
            (format!("{signed}."), Rejection::BadSignature),
            (format!("{signed}.{}", encode(&bytes[..bytes.len() - 3])), Rejection::BadSignature),
            (format!("{signed}.{}", encode(&[bytes.clone(), bytes.clone()].concat())), Rejection::BadSignature),
            (format!("{signed}.{signature}{signature}"), Rejection::BadSignature),
            (format!("{signed}.{signature}="), Rejection::Malformed("base64url")),
            (format!("{signed}.{}", signature.replace(['-', '_'], "+")), Rejection::Malformed("base64url")),
            // The payload changed after signing.
            (
                format!(
                    "{}.{}.{signature}",
                    signed.split('.').next().unwrap(),
                    encode(with(claims(), "roles", json!(["admin"])).to_string().as_bytes())
                ),
                Rejection::BadSignature,
            ),
            (format!("{}.@@@.{signature}", signed.split('.').next().unwrap()), Rejection::Malformed("base64url")),
            (format!("{token}{}", "A".repeat(16 * 1024)), Rejection::TooLarge),
        ];
        for (tampered, expected) in cases {
            // A replacement that changed nothing (no - or _ in the signature) proves nothing.
            if tampered == token {
                continue;
            }
            assert_eq!(verify(&verifier, &tampered), Err(expected), "{}: {tampered:.80}", key.alg());
        }
    }
    // A signed payload that is not a JSON object.
    let token = sign_parts(&json!({"alg": "EdDSA", "kid": "ed"}), &json!(["not", "claims"]), |m| f.ed.sign(m));
    assert_eq!(verify(&verifier, &token), Err(Rejection::Malformed("payload")));
}

#[test]
fn claims_are_required_checked_and_timed_with_the_leeway() {
    let f = Fixture::new();
    let verifier = f.verifier(None);
    let check = |claims: Value| verify(&verifier, &f.es.token(&claims)).map(|v| v.expires_at);
    let cases = [
        // keats/jsonwebtoken #493: a token without aud or iss must not pass a check of them.
        (with(claims(), "aud", Value::Null), Err(Rejection::MissingClaim("aud"))),
        (with(claims(), "iss", Value::Null), Err(Rejection::MissingClaim("iss"))),
        (with(claims(), "exp", Value::Null), Err(Rejection::MissingClaim("exp"))),
        (with(claims(), "aud", "other".into()), Err(Rejection::WrongAudience)),
        (with(claims(), "aud", json!(["other", "another"])), Err(Rejection::WrongAudience)),
        (with(claims(), "aud", json!(["other", AUDIENCE])), Ok(NOW + 300)),
        (with(claims(), "aud", json!([1])), Err(Rejection::BadClaim("aud"))),
        (with(claims(), "iss", "https://issuer.test/".into()), Err(Rejection::WrongIssuer)),
        (with(claims(), "iss", json!(7)), Err(Rejection::BadClaim("iss"))),
        (with(claims(), "exp", "tomorrow".into()), Err(Rejection::BadClaim("exp"))),
        (with(claims(), "sub", json!(5)), Err(Rejection::BadClaim("sub"))),
        (with(claims(), "roles", json!({"admin": true})), Err(Rejection::BadClaim("roles"))),
        // exp: expired at NOW - 30 with a 30 s leeway; still good a second later.
        (with(claims(), "exp", json!(NOW - 31)), Err(Rejection::Expired)),
        (with(claims(), "exp", json!(NOW - 30)), Err(Rejection::Expired)),
        (with(claims(), "exp", json!(NOW - 29)), Ok(NOW - 29)),
        (with(claims(), "exp", json!(NOW as f64 + 0.5)), Ok(NOW)),
        // nbf: in the future beyond the leeway, or just within it.
        (with(claims(), "nbf", json!(NOW + 31)), Err(Rejection::NotYetValid)),
        (with(claims(), "nbf", json!(NOW + 30)), Ok(NOW + 300)),
        (with(claims(), "nbf", "soon".into()), Err(Rejection::BadClaim("nbf"))),
    ];
    for (claims, expected) in cases {
        assert_eq!(check(claims.clone()), expected, "{claims}");
    }
}

#[test]
fn the_client_learns_a_coarse_reason_only() {
    for signature_trouble in
        [Rejection::BadSignature, Rejection::UnknownKey, Rejection::KeyMismatch, Rejection::AlgNotAllowed]
    {
        assert_eq!(signature_trouble.public(), "the bearer token could not be verified");
    }
    assert_eq!(Rejection::Expired.public(), "the bearer token has expired");
}

#[test]
fn the_token_cache_answers_what_verification_would_and_still_expires_tokens() {
    let f = Fixture::new();
    let verifier = f.verifier(None).with_cache(16);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let at = |token: &str, now: i64| runtime.block_on(verifier.verify(token, now));
    let token = f.es.token(&with(claims(), "exp", json!(NOW + 60)));
    let first = at(&token, NOW).unwrap();
    assert_eq!(at(&token, NOW + 1), Ok(first.clone()), "a hit gives the same caller");
    // Refusals are not cached; a changed byte is another token.
    let forged = f.attacker.token(&claims());
    assert_eq!(at(&forged, NOW), Err(Rejection::BadSignature));
    assert_eq!(at(&forged, NOW), Err(Rejection::BadSignature));
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = format!(
        "{signed}.{}{}",
        &signature[..signature.len() - 2],
        if signature.ends_with("AA") { "AQ" } else { "AA" }
    );
    assert!(at(&flipped, NOW + 1).is_err());
    // The cached token expires on time: exp + leeway.
    assert!(at(&token, NOW + 89).is_ok());
    assert_eq!(at(&token, NOW + 90), Err(Rejection::Expired));
    assert_eq!(at(&token, NOW + 91), Err(Rejection::Expired));
}
