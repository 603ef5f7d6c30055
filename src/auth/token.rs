//! A JWS in compact serialisation (RFC 7515 §7.1), taken apart before anything in it
//! is trusted: three base64url segments, a JSON header with an allowed `alg`, and the
//! bytes the signature covers. Nothing here checks a signature or a claim; `verify`
//! does, in that order.

use super::verify::Rejection;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The longest token accepted, in bytes. The largest real access tokens (Azure AD
/// with group claims) run to about 4 KB; 8 KB leaves room and refuses a 16 KB token
/// before any base64 or JSON work is spent on it.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

crate::choices! {
    /// A JWS algorithm this service can verify (RFC 7518 names).
    #[derive(Debug, Hash, PartialOrd, Ord)]
    pub enum Alg as "JWS algorithm" {
        /// RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192-bit keys.
        Rs256 = "RS256",
        /// ECDSA on P-256 with SHA-256, fixed-length (r‖s) signatures.
        Es256 = "ES256",
        /// Ed25519 (RFC 8037).
        EdDsa = "EdDSA",
        /// HMAC with SHA-256: only with a shared secret the operator gave explicitly.
        Hs256 = "HS256",
    }
}

/// The header fields that matter. `jwk`, `jku`, `x5u`, `x5c` are never read: a key
/// named or carried by the token itself is the attacker's key.
#[derive(Debug, serde::Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    /// Extensions the verifier must understand (RFC 7515 §4.1.11); it understands none.
    crit: Option<serde_json::Value>,
}

/// A token split and its header read.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    /// `header.payload`, the bytes the signature is over.
    pub signed: &'a [u8],
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Splits `token` and reads its header. `allowed` is the allow-list: `none` and any
/// algorithm outside it are refused here, before a key is looked at.
pub fn parse<'a>(token: &'a str, allowed: &[Alg]) -> Result<Parsed<'a>, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed("not three dot-separated segments"));
    };
    let header: RawHeader = serde_json::from_slice(&decode(header)?).map_err(|_| Rejection::Malformed("header"))?;
    if header.crit.is_some() {
        return Err(Rejection::Malformed("critical header extensions"));
    }
    let alg = match header.alg.as_deref() {
        None => return Err(Rejection::MissingAlg),
        Some(name) => name.parse::<Alg>().ok().filter(|a| allowed.contains(a)).ok_or(Rejection::AlgNotAllowed)?,
    };
    let signature = decode(signature)?;
    if signature.is_empty() {
        return Err(Rejection::BadSignature);
    }
    let signed = &token.as_bytes()[..token.len() - signature_len(token)];
    Ok(Parsed { alg, kid: header.kid, signed, payload: decode(payload)?, signature })
}

/// The length of the last segment with its dot.
fn signature_len(token: &str) -> usize {
    token.rsplit('.').next().map_or(0, |s| s.len() + 1)
}

/// Strict base64url without padding (RFC 7515 §2): padding, `+`, `/` and stray bits
/// are malformed.
pub fn decode(segment: &str) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| Rejection::Malformed("base64url"))
}

pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Alg; 3] = [Alg::Rs256, Alg::Es256, Alg::EdDsa];

    fn token(header: &str, payload: &str, signature: &[u8]) -> String {
        format!("{}.{}.{}", encode(header.as_bytes()), encode(payload.as_bytes()), encode(signature))
    }

    #[test]
    fn a_well_formed_token_splits_and_the_signed_part_is_header_dot_payload() {
        let t = token(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#, r#"{"sub":"a"}"#, b"sig");
        let parsed = parse(&t, &ALL).unwrap();
        assert_eq!((parsed.alg, parsed.kid.as_deref()), (Alg::Es256, Some("k1")));
        assert_eq!(parsed.signed, t.rsplit_once('.').unwrap().0.as_bytes());
        assert_eq!((parsed.payload.as_slice(), parsed.signature.as_slice()), (&br#"{"sub":"a"}"#[..], &b"sig"[..]));
    }

    #[test]
    fn algorithms_outside_the_allow_list_and_none_are_refused_before_any_key() {
        for alg in ["none", "None", "HS256", "RS384", "PS256", "ES256K", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}", b"s");
            assert_eq!(parse(&t, &ALL).unwrap_err(), Rejection::AlgNotAllowed, "{alg}");
        }
        assert_eq!(parse(&token(r#"{"typ":"JWT"}"#, "{}", b"s"), &ALL).unwrap_err(), Rejection::MissingAlg);
        assert_eq!(parse(&token(r#"{"alg":null}"#, "{}", b"s"), &ALL).unwrap_err(), Rejection::MissingAlg);
        let hs = token(r#"{"alg":"HS256"}"#, "{}", b"s");
        assert_eq!(parse(&hs, &[Alg::Hs256]).unwrap().alg, Alg::Hs256);
    }

    #[test]
    fn malformed_tokens_are_refused_by_name() {
        let good = token(r#"{"alg":"ES256"}"#, "{}", b"s");
        let cases = [
            (String::new(), Rejection::Malformed("not three dot-separated segments")),
            ("a.b".to_owned(), Rejection::Malformed("not three dot-separated segments")),
            (format!("{good}.x"), Rejection::Malformed("not three dot-separated segments")),
            (format!("!!.{}", &good[good.find('.').unwrap() + 1..]), Rejection::Malformed("base64url")),
            (format!("{good}="), Rejection::Malformed("base64url")),
            (token("not json", "{}", b"s"), Rejection::Malformed("header")),
            (
                token(r#"{"alg":"ES256","crit":["exp"]}"#, "{}", b"s"),
                Rejection::Malformed("critical header extensions"),
            ),
            (token(r#"{"alg":"ES256"}"#, "{}", b""), Rejection::BadSignature),
            ("x".repeat(16 * 1024), Rejection::TooLarge),
        ];
        for (t, expected) in cases {
            assert_eq!(parse(&t, &ALL).unwrap_err(), expected, "{t:.60}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(text in "\\PC{0,300}") {
            let _ = parse(&text, &ALL);
        }
    }
}
