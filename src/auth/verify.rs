//! Verifying a bearer token: the algorithm against the allow-list, the key by `kid`
//! and by type, the signature, and only then the claims (`iss`, `aud` and `exp`
//! required, `nbf` honoured, with a leeway). Every way a token is refused is a
//! [`Rejection`]; the client learns only its coarse [`Rejection::public`] reason.

use super::keys::KeySet;
use super::remote::RemoteKeys;
use super::token::{self, Alg};
use super::{Role, Roles};
use crate::domain::SubjectId;
use serde_json::Value;
use std::sync::Arc;

/// Why a token was refused. Tests name the exact one; logs and metrics use
/// [`Rejection::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    TooLarge,
    Malformed(&'static str),
    MissingAlg,
    /// `none`, or an algorithm outside the allow-list.
    AlgNotAllowed,
    /// No key with the token's `kid` (after a refresh, where the keys come from a
    /// provider), or no `kid` and not exactly one key of the algorithm.
    UnknownKey,
    /// The key named is of another type than the algorithm (RS256 header, EC key).
    KeyMismatch,
    BadSignature,
    MissingClaim(&'static str),
    BadClaim(&'static str),
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
}

impl Rejection {
    /// What the client is told (in the problem document): enough to act on, nothing
    /// about keys or signatures an attacker could steer by.
    pub fn public(self) -> &'static str {
        match self {
            Rejection::Expired => "the bearer token has expired",
            Rejection::NotYetValid => "the bearer token is not valid yet",
            Rejection::WrongIssuer | Rejection::WrongAudience | Rejection::MissingClaim(_) | Rejection::BadClaim(_) => {
                "the bearer token was not issued for this service"
            }
            _ => "the bearer token could not be verified",
        }
    }

    /// A stable name for logs and the `flightbench_auth_rejections_total` metric.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::TooLarge => "too_large",
            Rejection::Malformed(_) => "malformed",
            Rejection::MissingAlg | Rejection::AlgNotAllowed => "algorithm",
            Rejection::UnknownKey => "unknown_key",
            Rejection::KeyMismatch => "key_mismatch",
            Rejection::BadSignature => "signature",
            Rejection::MissingClaim(_) | Rejection::BadClaim(_) => "claims",
            Rejection::WrongIssuer => "issuer",
            Rejection::WrongAudience => "audience",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
        }
    }
}

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The exact `iss`.
    pub issuer: String,
    /// One of `aud`'s values.
    pub audience: String,
    /// The allow-list. HS256 is only ever in it with a shared secret.
    pub algorithms: Vec<Alg>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
    /// The claim holding the roles: an array of names, or one space-separated string
    /// (OAuth's `scope`).
    pub roles_claim: String,
}

impl Rules {
    /// `serve`'s defaults for the rest: RS256, ES256 and EdDSA, a 30 s leeway, roles
    /// in `roles`.
    pub fn new(issuer: &str, audience: &str) -> Self {
        Rules {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            algorithms: vec![Alg::Rs256, Alg::Es256, Alg::EdDsa],
            leeway_s: 30,
            roles_claim: "roles".to_owned(),
        }
    }
}

/// A verified token's caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `sub` (for client-credentials tokens without one, `client_id`).
    pub subject: Option<SubjectId>,
    pub roles: Roles,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

/// Where the verification keys come from.
pub enum Keys {
    /// A key set read once (`--jwks FILE`, or none with only a shared secret).
    Static(Arc<KeySet>),
    /// A provider's published set, refreshed on a schedule and on an unknown `kid`.
    Remote(Arc<RemoteKeys>),
}

/// Checks tokens against the rules with the keys.
pub struct Verifier {
    pub rules: Rules,
    keys: Keys,
    secret: Option<ring::hmac::Key>,
    /// Tokens verified before, by the BLAKE3 hash of their bytes (`with_cache`).
    cache: Option<quick_cache::sync::Cache<[u8; 32], Cached>>,
}

/// A verified token as the cache keeps it: valid while the key set it was verified
/// against is the current one and its `exp` (with the leeway) is ahead.
#[derive(Clone)]
struct Cached {
    verified: Verified,
    keys_generation: u64,
}

/// The rules and where the keys come from; never the keys or the secret.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Static(set) => format!("{} static keys", set.keys.len()),
            Keys::Remote(remote) => format!("keys from {}", remote.jwks_uri),
        };
        f.debug_struct("Verifier").field("rules", &self.rules).field("keys", &keys).finish_non_exhaustive()
    }
}

impl Verifier {
    /// `secret`: the HS256 shared secret, which also puts HS256 in the allow-list
    /// (and nothing else does).
    pub fn new(mut rules: Rules, keys: Keys, secret: Option<&[u8]>) -> Self {
        rules.algorithms.retain(|a| *a != Alg::Hs256);
        if secret.is_some() {
            rules.algorithms.push(Alg::Hs256);
        }
        let secret = secret.map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s));
        Self { rules, keys, secret, cache: None }
    }

    /// Keeps up to `capacity` verified tokens, so a client that sends the same token
    /// again pays a hash and a lookup (0.45–0.63 µs) instead of a signature check
    /// (ring on the 2-core VM: RS256 18 µs, EdDSA 33, ES256 49; results/security.md).
    /// Identical bytes verify identically under the same
    /// keys, so only what changes with time is checked again (`exp`), and every entry
    /// is dropped when the key set is replaced (a removed key ends its tokens at once).
    /// 0: no cache.
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity));
        self
    }

    /// Verifies `token` at `now` (seconds since the epoch).
    pub async fn verify(&self, token: &str, now: i64) -> Result<Verified, Rejection> {
        let Some(cache) = &self.cache else { return self.verify_uncached(token, now).await };
        let key = *blake3::hash(token.as_bytes()).as_bytes();
        let generation = self.keys_generation();
        if let Some(hit) = cache.get(&key).filter(|c| c.keys_generation == generation) {
            if now >= hit.verified.expires_at.saturating_add(self.rules.leeway_s as i64) {
                cache.remove(&key);
                return Err(Rejection::Expired);
            }
            return Ok(hit.verified);
        }
        let verified = self.verify_uncached(token, now).await?;
        // The generation from before the check: a set replaced meanwhile makes the
        // entry stale at once rather than vouch for the new set.
        cache.insert(key, Cached { verified: verified.clone(), keys_generation: generation });
        Ok(verified)
    }

    /// Changes whenever the key set is replaced.
    fn keys_generation(&self) -> u64 {
        match &self.keys {
            Keys::Static(_) => 0,
            Keys::Remote(remote) => remote.generation(),
        }
    }

    async fn verify_uncached(&self, token: &str, now: i64) -> Result<Verified, Rejection> {
        let parsed = token::parse(token, &self.rules.algorithms)?;
        if parsed.alg == Alg::Hs256 {
            let secret = self.secret.as_ref().ok_or(Rejection::AlgNotAllowed)?;
            ring::hmac::verify(secret, parsed.signed, &parsed.signature).map_err(|_| Rejection::BadSignature)?;
        } else {
            let set = self.key_set();
            let key = match set.find(parsed.kid.as_deref(), parsed.alg) {
                Some(key) => key.clone(),
                None => self.refreshed_key(parsed.kid.as_deref(), parsed.alg).await?,
            };
            if key.alg() != parsed.alg {
                return Err(Rejection::KeyMismatch);
            }
            if !key.verifies(parsed.signed, &parsed.signature) {
                return Err(Rejection::BadSignature);
            }
        }
        claims(&parsed.payload, &self.rules, now)
    }

    fn key_set(&self) -> Arc<KeySet> {
        match &self.keys {
            Keys::Static(set) => set.clone(),
            Keys::Remote(remote) => remote.current(),
        }
    }

    /// An unknown `kid`: the provider may have rotated its keys, so its set is fetched
    /// again (at most once per its minimum interval) and looked in once more.
    async fn refreshed_key(&self, kid: Option<&str>, alg: Alg) -> Result<super::keys::VerifyKey, Rejection> {
        let Keys::Remote(remote) = &self.keys else { return Err(Rejection::UnknownKey) };
        if kid.is_none() {
            return Err(Rejection::UnknownKey);
        }
        remote.refresh_for_unknown_kid().await;
        remote.current().find(kid, alg).cloned().ok_or(Rejection::UnknownKey)
    }

    pub fn remote(&self) -> Option<&Arc<RemoteKeys>> {
        match &self.keys {
            Keys::Remote(remote) => Some(remote),
            Keys::Static(_) => None,
        }
    }
}

/// The claims of a token whose signature has been verified.
fn claims(payload: &[u8], rules: &Rules, now: i64) -> Result<Verified, Rejection> {
    let claims: serde_json::Map<String, Value> =
        serde_json::from_slice(payload).map_err(|_| Rejection::Malformed("payload"))?;
    match claims.get("iss") {
        None => return Err(Rejection::MissingClaim("iss")),
        Some(Value::String(iss)) if *iss == rules.issuer => {}
        Some(Value::String(_)) => return Err(Rejection::WrongIssuer),
        Some(_) => return Err(Rejection::BadClaim("iss")),
    }
    let audience_matches = match claims.get("aud") {
        None => return Err(Rejection::MissingClaim("aud")),
        Some(Value::String(aud)) => *aud == rules.audience,
        Some(Value::Array(auds)) if auds.iter().all(Value::is_string) => {
            auds.iter().any(|a| a.as_str() == Some(&rules.audience))
        }
        Some(_) => return Err(Rejection::BadClaim("aud")),
    };
    if !audience_matches {
        return Err(Rejection::WrongAudience);
    }
    let time = |name: &'static str| -> Result<Option<i64>, Rejection> {
        match claims.get(name) {
            None => Ok(None),
            // NumericDate may have a fraction (RFC 7519 §2); whole seconds are enough.
            Some(Value::Number(n)) => {
                n.as_f64().filter(|t| t.is_finite()).map(|t| Some(t as i64)).ok_or(Rejection::BadClaim(name))
            }
            Some(_) => Err(Rejection::BadClaim(name)),
        }
    };
    let leeway = rules.leeway_s as i64;
    let expires_at = time("exp")?.ok_or(Rejection::MissingClaim("exp"))?;
    // "The current time MUST be before" exp (RFC 7519 §4.1.4).
    if now >= expires_at.saturating_add(leeway) {
        return Err(Rejection::Expired);
    }
    if time("nbf")?.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(Rejection::NotYetValid);
    }
    let subject = match claims.get("sub").or_else(|| claims.get("client_id")) {
        None => None,
        Some(Value::String(sub)) => Some(SubjectId::parse(sub).map_err(|_| Rejection::BadClaim("sub"))?),
        Some(_) => return Err(Rejection::BadClaim("sub")),
    };
    let names: Vec<&str> = match claims.get(&rules.roles_claim) {
        None => Vec::new(),
        Some(Value::String(scope)) => scope.split(' ').collect(),
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(Rejection::BadClaim("roles")),
    };
    // Names this service does not define (other APIs' scopes, `openid`) are ignored.
    let roles = names.iter().filter_map(|n| n.parse::<Role>().ok()).collect();
    Ok(Verified { subject, roles, expires_at })
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
