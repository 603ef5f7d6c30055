//! Who is calling: bearer tokens (RFC 6750) from an OpenID Connect provider or a
//! static key set, verified on `ring`, and the roles they carry.
//!
//! With auth on, anyone may read the public API (a token, when sent, must still be
//! valid), `reporter` may post delay reports, `admin` may use the admin endpoints.
//! Probes (`/healthz`, `/readyz`) and `/metrics` stay open: orchestrators and scrapers
//! carry no user's token.

pub mod keydir;
pub mod keys;
pub mod remote;
pub mod token;
pub mod verify;

use crate::domain::SubjectId;
pub use keys::{KeySet, SigningKey, VerifyKey};
pub use token::Alg;
pub use verify::{Keys, Rejection, Rules, Verified, Verifier};

crate::choices! {
    /// What a caller may do.
    #[derive(Debug, Hash, PartialOrd, Ord)]
    pub enum Role as "role" {
        /// Read the public API (what anonymous callers may do too).
        Reader = "reader",
        /// Post delay reports.
        Reporter = "reporter",
        /// The admin endpoints: CPU profiles, audit export, erasure, subject export.
        Admin = "admin",
    }
}

/// A set of roles. Roles do not imply each other: an admin token that should also
/// report carries both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    fn bit(role: Role) -> u8 {
        1 << role as u8
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        Roles(roles.into_iter().fold(0, |bits, role| bits | Roles::bit(role)))
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing, and a token is not even looked at (probes, metrics).
    Open,
    /// Anyone; a token sent along must be valid.
    Public,
    /// A valid token with this role.
    Needs(Role),
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401 without an error code (RFC 6750 §3.1: the request had no credentials).
    #[error("this request needs a bearer token (Authorization: Bearer …) with the {0} role")]
    Missing(Role),
    /// 401 `invalid_token`.
    #[error("{}", .0.public())]
    Invalid(Rejection),
    /// 403 `insufficient_scope`.
    #[error("the bearer token does not carry the {0} role this request needs")]
    Forbidden(Role),
}

/// The caller of a request that got through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The verified `sub`, when a token was sent.
    pub subject: Option<SubjectId>,
}

/// Checks the `Authorization` header of a request against what it needs.
pub async fn authorize(
    verifier: &Verifier,
    access: Access,
    authorization: Option<&http::HeaderValue>,
    now: i64,
) -> Result<Caller, AuthError> {
    if access == Access::Open {
        return Ok(Caller::default());
    }
    let Some(header) = authorization else {
        return match access {
            Access::Needs(role) => Err(AuthError::Missing(role)),
            _ => Ok(Caller::default()),
        };
    };
    let token = bearer(header).ok_or(AuthError::Invalid(Rejection::Malformed("Authorization is not Bearer")))?;
    let verified = verifier.verify(token, now).await.map_err(AuthError::Invalid)?;
    if let Access::Needs(role) = access
        && !verified.roles.contains(role)
    {
        return Err(AuthError::Forbidden(role));
    }
    Ok(Caller { subject: verified.subject })
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1).
fn bearer(header: &http::HeaderValue) -> Option<&str> {
    let text = header.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The claims of a token `flightbench token` mints: the roles both as a `roles`
/// array and as a space-separated `scope`, so either `--roles-claim` reads them.
pub fn claims(
    issuer: &str,
    audience: &str,
    subject: &str,
    roles: &[Role],
    lifetime: std::time::Duration,
    now: i64,
) -> serde_json::Value {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "roles": names,
        "scope": names.join(" "),
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(lifetime.as_secs() as i64),
    })
}

/// Seconds since the epoch now.
pub fn now() -> i64 {
    crate::machine::unix_seconds()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_independent_and_parse_by_name() {
        let roles: Roles = [Role::Reporter].into_iter().collect();
        assert!(roles.contains(Role::Reporter) && !roles.contains(Role::Admin) && !roles.contains(Role::Reader));
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn only_a_bearer_header_yields_a_token() {
        let value = |s: &'static str| http::HeaderValue::from_static(s);
        assert_eq!(bearer(&value("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&value("bearer  abc")), Some("abc"));
        for bad in ["Basic abc", "Bearer", "Bearer ", "abc", "Bearerabc"] {
            assert_eq!(bearer(&value(bad)), None, "{bad}");
        }
    }
}
