//! The security part's tokens and the verifiers that check them: real keys (ES256 and
//! EdDSA made for the run, RS256 from a 2048-bit benchmark key, an HS256 secret), so a
//! cell measures the accepting path; a synthetic key would measure only the reject.

use super::cell::Signing;
use crate::auth::{Alg, KeySet, Keys, Role, Rules, SigningKey, Verifier};
use http::HeaderValue;
use std::sync::Arc;

/// A benchmark-only RSA-2048 key (`openssl genpkey`): ring generates no RSA keys. It
/// signs the RS256 cell's token and protects nothing.
const BENCH_RSA: &[u8] = include_bytes!("bench-rsa-2048.pem");
const ISSUER: &str = "flightbench-workbench";
const AUDIENCE: &str = "flightbench";
/// The token outlives any run (a full run is under an hour).
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The cached cell's cache, `serve`'s default size.
const CACHE: usize = 10_000;

/// The server's verifier and the `Authorization` header for `signing` (none for `Off`),
/// the token carrying `role`.
pub(super) fn auth(signing: Signing, role: Role) -> Result<Option<(Arc<Verifier>, HeaderValue)>, String> {
    let rules = Rules::new(ISSUER, AUDIENCE);
    let generated = |alg| -> Result<SigningKey, String> {
        let der = SigningKey::generate_pkcs8(alg).map_err(|e| e.to_string())?;
        SigningKey::from_pkcs8("bench", &der).map_err(|e| e.to_string())
    };
    let (key, secret) = match signing {
        Signing::Off => return Ok(None),
        Signing::Rs256 => {
            let der = crate::auth::keys::pkcs8_from_pem(BENCH_RSA)?;
            (SigningKey::from_pkcs8("bench", &der).map_err(|e| e.to_string())?, None)
        }
        Signing::Es256 | Signing::Es256Cached => (generated(Alg::Es256)?, None),
        Signing::EdDsa => (generated(Alg::EdDsa)?, None),
        Signing::Hs256 => {
            let secret = *blake3::hash(b"flightbench workbench HS256 secret").as_bytes();
            (SigningKey::hmac("bench", &secret).map_err(|e| e.to_string())?, Some(secret))
        }
    };
    let keys = key.public().map(|public| (Some(key.kid.clone()), public)).into_iter().collect();
    let verifier = Verifier::new(
        rules,
        Keys::Static(Arc::new(KeySet { keys, skipped: Vec::new() })),
        secret.as_ref().map(|s| &s[..]),
    );
    let verifier = if signing == Signing::Es256Cached { verifier.with_cache(CACHE) } else { verifier };
    let claims = crate::auth::claims(ISSUER, AUDIENCE, "workbench", &[role], LIFETIME, crate::auth::now());
    let header = HeaderValue::from_str(&format!("Bearer {}", key.token(&claims))).map_err(|e| e.to_string())?;
    Ok(Some((Arc::new(verifier), header)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cell's token is accepted by its verifier, as the reader it claims to be:
    /// the cells measure verification, not rejection.
    #[tokio::test]
    async fn every_cells_token_verifies() {
        assert!(auth(Signing::Off, Role::Reader).unwrap().is_none());
        for &signing in &Signing::ALL[1..] {
            let (verifier, header) = auth(signing, Role::Reader).unwrap().unwrap();
            let token = header.to_str().unwrap().strip_prefix("Bearer ").unwrap();
            let verified =
                verifier.verify(token, crate::auth::now()).await.unwrap_or_else(|e| panic!("{signing}: {e:?}"));
            assert!(verified.roles.contains(Role::Reader), "{signing}");
        }
    }
}
