//! Keys: the verification keys of a JSON Web Key Set (RFC 7517), and the signing keys
//! `flightbench keys` writes and `flightbench token` signs with. Every operation is
//! `ring`'s, the one crypto provider of the crate (rustls and rcgen use it too).

use super::token::{Alg, decode, encode};
use ring::signature::{self, KeyPair};
use serde_json::Value;

/// A public key a token's signature can be checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyKey {
    /// Modulus and exponent, big-endian.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point `04 ‖ x ‖ y`.
    P256 {
        point: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

impl VerifyKey {
    /// The one algorithm this key verifies: an RS256 key never checks an ES256 or
    /// HS256 signature, whatever the token's header says.
    pub fn alg(&self) -> Alg {
        match self {
            VerifyKey::Rsa { .. } => Alg::Rs256,
            VerifyKey::P256 { .. } => Alg::Es256,
            VerifyKey::Ed25519 { .. } => Alg::EdDsa,
        }
    }

    /// Whether `signature` over `signed` is this key's.
    pub fn verifies(&self, signed: &[u8], signature: &[u8]) -> bool {
        match self {
            VerifyKey::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, signature)
                .is_ok(),
            VerifyKey::P256 { point } => signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, signature)
                .is_ok(),
            VerifyKey::Ed25519 { x } => {
                signature::UnparsedPublicKey::new(&signature::ED25519, x).verify(signed, signature).is_ok()
            }
        }
    }

    /// The key as a JWK (public members only).
    pub fn to_jwk(&self, kid: &str) -> Value {
        let mut jwk = match self {
            VerifyKey::Rsa { n, e } => serde_json::json!({"kty": "RSA", "n": encode(n), "e": encode(e)}),
            VerifyKey::P256 { point } => serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": encode(&point[1..33]), "y": encode(&point[33..65]),
            }),
            VerifyKey::Ed25519 { x } => serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": encode(x)}),
        };
        jwk["kid"] = kid.into();
        jwk["alg"] = self.alg().as_str().into();
        jwk["use"] = "sig".into();
        jwk
    }
}

/// A key set: signature keys by `kid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<(Option<String>, VerifyKey)>,
    /// Keys of the document this set could not use, with why (logged, never fatal: a
    /// provider may publish encryption keys or algorithms this service does not take).
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error("not a JSON Web Key Set: {0}")]
    Format(String),
    #[error("the key set has no signature key this service can use ({})", .0.join("; "))]
    Empty(Vec<String>),
}

impl KeySet {
    /// Reads a JWKS document. Keys that are not for signatures, of a type or curve
    /// this service does not verify, symmetric (`oct`: a shared secret is never taken
    /// from a published set) or malformed are skipped and listed; a set left with no
    /// key is an error.
    pub fn from_jwks(json: &[u8]) -> Result<Self, KeySetError> {
        let document: Value = serde_json::from_slice(json).map_err(|e| KeySetError::Format(e.to_string()))?;
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| KeySetError::Format("no \"keys\" array".into()))?;
        let mut set = KeySet::default();
        for (i, jwk) in keys.iter().enumerate() {
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
            match key_of(jwk) {
                Ok(key) => set.keys.push((kid, key)),
                Err(why) => set.skipped.push(format!("key {} ({}): {why}", i, kid.as_deref().unwrap_or("no kid"))),
            }
        }
        if set.keys.is_empty() { Err(KeySetError::Empty(set.skipped)) } else { Ok(set) }
    }

    /// The key a token names, or (a token without `kid`) the set's only key for its
    /// algorithm. `None`: no such key.
    pub fn find(&self, kid: Option<&str>, alg: Alg) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|(k, _)| k.as_deref() == Some(kid)).map(|(_, key)| key),
            None => {
                let mut of_alg = self.keys.iter().filter(|(_, key)| key.alg() == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some((_, key)), None) => Some(key),
                    _ => None,
                }
            }
        }
    }

    pub fn to_jwks(&self) -> Value {
        let keys: Vec<Value> =
            self.keys.iter().map(|(kid, key)| key.to_jwk(kid.as_deref().unwrap_or_default())).collect();
        serde_json::json!({ "keys": keys })
    }
}

fn key_of(jwk: &Value) -> Result<VerifyKey, String> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        decode(text(name).ok_or_else(|| format!("no \"{name}\""))?).map_err(|_| format!("\"{name}\" is not base64url"))
    };
    if text("use").is_some_and(|u| u != "sig") {
        return Err(format!("use {:?}, not sig", text("use").unwrap_or_default()));
    }
    let key = match (text("kty"), text("crv")) {
        (Some("RSA"), _) => {
            let (n, e) = (bytes("n")?, bytes("e")?);
            // ring takes 2048 to 8192 bits; refuse others here, where it can be said.
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if !(2048..=8192).contains(&bits) {
                return Err(format!("RSA modulus of about {bits} bits (2048 to 8192 are taken)"));
            }
            VerifyKey::Rsa { n, e }
        }
        (Some("EC"), Some("P-256")) => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            VerifyKey::P256 { point: [&[4u8][..], &x, &y].concat() }
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("an Ed25519 key is 32 bytes".into());
            }
            VerifyKey::Ed25519 { x }
        }
        (Some("oct"), _) => return Err("symmetric keys are never taken from a key set".into()),
        (kty, crv) => return Err(format!("unsupported key type {kty:?} (curve {crv:?})")),
    };
    // A key that declares its algorithm must declare the one it verifies.
    match text("alg") {
        Some(alg) if alg != key.alg().as_str() => Err(format!("declares alg {alg} for a {} key", key.alg())),
        _ => Ok(key),
    }
}

/// A private key that signs tokens, with its `kid`.
pub struct SigningKey {
    pub kid: String,
    key: Signer,
}

enum Signer {
    Rsa(signature::RsaKeyPair),
    P256(signature::EcdsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
    Hmac(ring::hmac::Key),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{0} keys cannot be generated here (ring generates EC and Ed25519 keys only); make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem` and pass --import key.pem"
    )]
    NoGenerator(Alg),
    #[error("not a PKCS#8 private key for {alg}: {why}")]
    Rejected { alg: Alg, why: String },
    #[error("an HS256 secret must be at least 32 bytes (it has {0})")]
    ShortSecret(usize),
}

impl SigningKey {
    /// A new key pair as PKCS#8 DER.
    pub fn generate_pkcs8(alg: Alg) -> Result<Vec<u8>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let rejected = |e: ring::error::Unspecified| KeyError::Rejected { alg, why: e.to_string() };
        Ok(match alg {
            Alg::Es256 => signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(rejected)?
                .as_ref()
                .to_vec(),
            Alg::EdDsa => signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(rejected)?.as_ref().to_vec(),
            Alg::Rs256 | Alg::Hs256 => return Err(KeyError::NoGenerator(alg)),
        })
    }

    /// A key from PKCS#8 DER; the algorithm follows from the key.
    pub fn from_pkcs8(kid: &str, der: &[u8]) -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let key = if let Ok(key) = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            Signer::Ed25519(key)
        } else if let Ok(key) =
            signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
        {
            Signer::P256(key)
        } else {
            let key = signature::RsaKeyPair::from_pkcs8(der)
                .map_err(|e| KeyError::Rejected { alg: Alg::Rs256, why: format!("not Ed25519, P-256 or RSA ({e})") })?;
            Signer::Rsa(key)
        };
        Ok(Self { kid: kid.to_owned(), key })
    }

    /// An HS256 key from a shared secret (at least 32 bytes: RFC 7518 §3.2).
    pub fn hmac(kid: &str, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        Ok(Self { kid: kid.to_owned(), key: Signer::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)) })
    }

    pub fn alg(&self) -> Alg {
        match &self.key {
            Signer::Rsa(_) => Alg::Rs256,
            Signer::P256(_) => Alg::Es256,
            Signer::Ed25519(_) => Alg::EdDsa,
            Signer::Hmac(_) => Alg::Hs256,
        }
    }

    /// The public half (`None` for a shared secret).
    pub fn public(&self) -> Option<VerifyKey> {
        match &self.key {
            Signer::Rsa(key) => {
                let components: signature::RsaPublicKeyComponents<Vec<u8>> = key.public().into();
                Some(VerifyKey::Rsa { n: components.n, e: components.e })
            }
            Signer::P256(key) => Some(VerifyKey::P256 { point: key.public_key().as_ref().to_vec() }),
            Signer::Ed25519(key) => Some(VerifyKey::Ed25519 { x: key.public_key().as_ref().to_vec() }),
            Signer::Hmac(_) => None,
        }
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        match &self.key {
            Signer::Rsa(key) => {
                let mut out = vec![0; key.public().modulus_len()];
                // Cannot fail: the buffer is the modulus' length and the RNG is the system's.
                key.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out).expect("RSA signing");
                out
            }
            // Cannot fail but for a broken system RNG.
            Signer::P256(key) => key.sign(&rng, message).expect("ECDSA signing").as_ref().to_vec(),
            Signer::Ed25519(key) => key.sign(message).as_ref().to_vec(),
            Signer::Hmac(key) => ring::hmac::sign(key, message).as_ref().to_vec(),
        }
    }

    /// A compact JWS of `claims`, with this key's `alg` and `kid` in the header.
    pub fn token(&self, claims: &Value) -> String {
        let header = serde_json::json!({"alg": self.alg().as_str(), "typ": "JWT", "kid": self.kid});
        sign_parts(&header, claims, |m| self.sign(m))
    }
}

/// `header.payload.signature` for any header, so tests can forge what no honest
/// signer writes.
pub fn sign_parts(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let signed = format!("{}.{}", encode(header.to_string().as_bytes()), encode(claims.to_string().as_bytes()));
    let signature = sign(signed.as_bytes());
    format!("{signed}.{}", encode(&signature))
}

/// PEM armour for a DER document (`label`: "PRIVATE KEY").
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The DER inside a PKCS#8 `PRIVATE KEY` PEM.
pub fn pkcs8_from_pem(text: &[u8]) -> Result<Vec<u8>, String> {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject;
    PrivatePkcs8KeyDer::from_pem_slice(text).map(|k| k.secret_pkcs8_der().to_vec()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_what_their_public_half_verifies_and_nothing_else() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            let der = SigningKey::generate_pkcs8(alg).unwrap();
            let key = SigningKey::from_pkcs8("k", &der).unwrap();
            assert_eq!(key.alg(), alg);
            let public = key.public().unwrap();
            let signature = key.sign(b"message");
            assert!(public.verifies(b"message", &signature));
            assert!(!public.verifies(b"messagf", &signature));
            // Round trip through a JWKS.
            let set = KeySet::from_jwks(
                KeySet { keys: vec![(Some("k".into()), public.clone())], skipped: vec![] }
                    .to_jwks()
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
            assert_eq!(set.find(Some("k"), alg), Some(&public));
            assert_eq!(
                SigningKey::from_pkcs8("k", &pkcs8_from_pem(pem("PRIVATE KEY", &der).as_bytes()).unwrap())
                    .unwrap()
                    .alg(),
                alg
            );
        }
        assert!(matches!(SigningKey::generate_pkcs8(Alg::Rs256), Err(KeyError::NoGenerator(Alg::Rs256))));
        assert!(matches!(SigningKey::hmac("h", b"short"), Err(KeyError::ShortSecret(5))));
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason_and_an_empty_set_is_an_error() {
        let es = SigningKey::from_pkcs8("e", &SigningKey::generate_pkcs8(Alg::Es256).unwrap()).unwrap();
        let mut good = es.public().unwrap().to_jwk("e");
        let mut wrong_alg = good.clone();
        wrong_alg["alg"] = "RS256".into();
        wrong_alg["kid"] = "w".into();
        let mut enc = good.clone();
        enc["use"] = "enc".into();
        let document = serde_json::json!({"keys": [
            good.clone(),
            wrong_alg,
            enc,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "o"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"},
        ]});
        let set = KeySet::from_jwks(document.to_string().as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1, "{:?}", set.skipped);
        assert_eq!(set.skipped.len(), 5, "{:?}", set.skipped);
        assert!(set.skipped.iter().any(|s| s.contains("symmetric keys are never taken")));
        assert!(set.skipped.iter().any(|s| s.contains("declares alg RS256 for a ES256 key")));
        good["kty"] = "oct".into();
        assert!(matches!(
            KeySet::from_jwks(serde_json::json!({"keys": [good]}).to_string().as_bytes()),
            Err(KeySetError::Empty(_))
        ));
        assert!(matches!(KeySet::from_jwks(b"{}"), Err(KeySetError::Format(_))));
    }

    #[test]
    fn a_token_without_kid_takes_the_only_key_of_its_algorithm() {
        let pair =
            |alg| SigningKey::from_pkcs8("x", &SigningKey::generate_pkcs8(alg).unwrap()).unwrap().public().unwrap();
        let (es, ed, es2) = (pair(Alg::Es256), pair(Alg::EdDsa), pair(Alg::Es256));
        let mut set =
            KeySet { keys: vec![(Some("a".into()), es.clone()), (Some("b".into()), ed.clone())], skipped: vec![] };
        assert_eq!(set.find(None, Alg::Es256), Some(&es));
        assert_eq!(set.find(None, Alg::Rs256), None);
        assert_eq!(set.find(Some("zz"), Alg::Es256), None);
        set.keys.push((Some("c".into()), es2));
        assert_eq!(set.find(None, Alg::Es256), None, "two ES256 keys: a kid is needed");
    }
}
