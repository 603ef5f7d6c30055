//! `serve`'s auth flags, `flightbench keys` and `flightbench token`.

use super::{Refuse, ensure_usage, parse_duration};
use crate::auth::remote::{RemoteConfig, RemoteKeys};
use crate::auth::{Alg, KeySet, Keys, Role, Rules, Verifier, keydir};
use crate::failure::Failure;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

crate::choices! {
    /// Who may call `serve`.
    #[derive(Debug)]
    pub enum AuthMode as "auth mode", default Off {
        /// Anyone may do anything (the embedded default).
        Off = "off",
        /// Bearer tokens from the OpenID Connect provider at --oidc-issuer: its keys
        /// by discovery, fetched again on a schedule and on an unknown kid.
        Oidc = "oidc",
        /// Bearer tokens signed by the keys in --jwks FILE (and HS256 with
        /// --jwt-secret-file), issued by --oidc-issuer.
        Jwks = "jwks",
    }
}

/// The largest leeway taken: more would accept tokens long expired.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct AuthArgs {
    /// Who may call: off, oidc or jwks. With auth on, anyone may read, `reporter` may
    /// post delay reports, `admin` may use the admin endpoints; /healthz, /readyz and
    /// /metrics stay open.
    #[arg(long, value_parser = super::choice::<AuthMode>(), default_value = "off")]
    pub auth: AuthMode,
    /// The issuer: tokens' `iss` must equal it exactly; with --auth oidc its
    /// /.well-known/openid-configuration names the key set.
    #[arg(long, value_name = "URL", alias = "issuer")]
    pub oidc_issuer: Option<String>,
    /// The audience: one of each token's `aud` values must equal it.
    #[arg(long)]
    pub audience: Option<String>,
    /// A static JWKS file (--auth jwks), e.g. shards/keys/jwks.json from `flightbench keys`.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// A shared secret (at least 32 bytes) for HS256: the only way HS256 is accepted.
    #[arg(long, value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Signature algorithms accepted (comma-separated; HS256 needs --jwt-secret-file).
    #[arg(long, value_parser = super::choice::<Alg>(), value_delimiter = ',', default_value = "RS256,ES256,EdDSA")]
    pub algorithms: Vec<Alg>,
    /// Clock skew allowed on `exp` and `nbf` (at most 5m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub leeway: Duration,
    /// The claim with the roles: an array of names, or a space-separated string such
    /// as OAuth's `scope`.
    #[arg(long, default_value = "roles")]
    pub roles_claim: String,
    /// Fetch the provider's key set again this often (--auth oidc).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub jwks_refresh: Duration,
    /// A token with an unknown kid fetches the key set again at most this often.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub jwks_min_refresh: Duration,
    /// CA certificates (PEM) for an https issuer.
    #[arg(long, value_name = "FILE")]
    pub oidc_ca: Option<PathBuf>,
    /// Verified tokens kept (by their hash) so a client's next request skips the
    /// signature check; emptied whenever the key set changes. 0: verify every request.
    #[arg(long, default_value_t = 10_000)]
    pub token_cache: usize,
}

impl AuthArgs {
    /// The verifier, or `None` with auth off. With --auth oidc this fetches the
    /// provider's discovery document and key set, so a wrong issuer fails at start.
    pub async fn verifier(&self) -> anyhow::Result<Option<Arc<Verifier>>> {
        if self.auth == AuthMode::Off {
            let set = [
                ("--oidc-issuer", self.oidc_issuer.is_some()),
                ("--audience", self.audience.is_some()),
                ("--jwks", self.jwks.is_some()),
                ("--jwt-secret-file", self.jwt_secret_file.is_some()),
            ];
            if let Some((flag, _)) = set.iter().find(|(_, given)| *given) {
                return Err(super::usage!("{flag} has no effect with --auth off; add --auth oidc or --auth jwks"));
            }
            return Ok(None);
        }
        let mode = self.auth;
        let issuer =
            self.oidc_issuer.clone().refused(Failure::Usage, || format!("--auth {mode} needs --oidc-issuer URL"))?;
        let audience = self.audience.clone().refused(Failure::Usage, || format!("--auth {mode} needs --audience"))?;
        ensure_usage!(self.leeway <= MAX_LEEWAY, "--leeway {:?} is more than {MAX_LEEWAY:?}", self.leeway);
        ensure_usage!(
            !self.algorithms.contains(&Alg::Hs256) || self.jwt_secret_file.is_some(),
            "HS256 is accepted only with a shared secret: add --jwt-secret-file"
        );
        let secret = match &self.jwt_secret_file {
            Some(path) => {
                let secret = std::fs::read(path)
                    .refused(Failure::BadInput, || format!("--jwt-secret-file {}", path.display()))?;
                let secret = secret.trim_ascii().to_vec();
                ensure_usage!(
                    secret.len() >= 32,
                    "--jwt-secret-file {}: an HS256 secret must be at least 32 bytes",
                    path.display()
                );
                Some(secret)
            }
            None => None,
        };
        let keys = match mode {
            AuthMode::Oidc => {
                ensure_usage!(self.jwks.is_none(), "--jwks is for --auth jwks; --auth oidc takes the provider's keys");
                let tls = match &self.oidc_ca {
                    Some(path) => {
                        Some(crate::auth::remote::tls_roots(path).refused(Failure::BadInput, || "--oidc-ca".into())?)
                    }
                    None => None,
                };
                let config = RemoteConfig { refresh_every: self.jwks_refresh, min_refresh: self.jwks_min_refresh, tls };
                let remote = RemoteKeys::discover(&issuer, config)
                    .await
                    .refused(Failure::Unreachable, || format!("discovering the keys of {issuer}"))?;
                log_skipped(&remote.current());
                Keys::Remote(remote)
            }
            AuthMode::Jwks => {
                let set = match &self.jwks {
                    Some(path) => {
                        let text =
                            std::fs::read(path).refused(Failure::BadInput, || format!("--jwks {}", path.display()))?;
                        KeySet::from_jwks(&text).refused(Failure::BadInput, || format!("--jwks {}", path.display()))?
                    }
                    None => {
                        ensure_usage!(secret.is_some(), "--auth jwks needs --jwks FILE or --jwt-secret-file FILE");
                        KeySet::default()
                    }
                };
                log_skipped(&set);
                Keys::Static(Arc::new(set))
            }
            AuthMode::Off => unreachable!("handled above"),
        };
        let rules = Rules {
            issuer,
            audience,
            algorithms: self.algorithms.clone(),
            leeway_s: self.leeway.as_secs(),
            roles_claim: self.roles_claim.clone(),
        };
        Ok(Some(Arc::new(Verifier::new(rules, keys, secret.as_deref()).with_cache(self.token_cache))))
    }
}

fn log_skipped(set: &KeySet) {
    for skipped in &set.skipped {
        tracing::warn!("key set: {skipped}");
    }
}

/// Where development keys live by default (not committed: `shards/` is ignored).
const KEY_DIR: &str = "shards/keys";
/// What `flightbench token` puts in `iss` and `aud` unless told otherwise; `serve
/// --auth jwks` needs the same (the README's example does).
const DEV_ISSUER: &str = "flightbench-dev";
const DEV_AUDIENCE: &str = "flightbench";

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
    /// The key directory.
    #[arg(long, global = true, env = "FLIGHTBENCH_KEYS", default_value = KEY_DIR)]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a signing key (and rewrite the directory's jwks.json).
    New {
        /// ES256 or EdDSA are generated; RS256 needs --import (ring makes no RSA keys).
        #[arg(long, value_parser = super::choice::<Alg>(), default_value = "ES256")]
        alg: Alg,
        /// The key's id (default: the algorithm and the time).
        #[arg(long)]
        kid: Option<String>,
        /// A PKCS#8 PEM private key to add instead of a new one.
        #[arg(long, value_name = "FILE")]
        import: Option<PathBuf>,
    },
    /// Remove a key: tokens it signed stop verifying once a server reads the new set.
    Remove { kid: String },
    /// Add a key-encryption key to FILE (made, owner-only, if missing), as the new
    /// primary; `keys rotate` then re-wraps the data keys under it.
    KekNew {
        #[arg(long, value_name = "FILE", env = "FLIGHTBENCH_KEK_FILE")]
        kek_file: PathBuf,
    },
    /// Re-wrap every data key under the newest key-encryption key, with the server
    /// stopped (a running server rotates on POST /admin/keys/rotate, without downtime).
    Rotate {
        #[command(flatten)]
        seal: super::gdpr::SealArgs,
        /// The dataset whose key store to rotate (when --key-store is not given).
        #[arg(long, env = "FLIGHTBENCH_DIR", default_value = "shards")]
        dataset: PathBuf,
    },
    /// List the keys.
    List,
}

pub async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::New { alg, kid, import } => {
            ensure_usage!(
                alg != Alg::Hs256,
                "HS256 uses a shared secret, not a key pair: write 32 or more random bytes to a file and pass it to serve --jwt-secret-file"
            );
            let kid = kid.unwrap_or_else(|| format!("{}-{}", alg.as_str().to_ascii_lowercase(), crate::auth::now()));
            let path = keydir::add(&args.dir, alg, &kid, import.as_deref())?;
            println!("{}", path.display());
            println!("public keys: {}", args.dir.join(keydir::JWKS_FILE).display());
        }
        KeysCommand::Remove { kid } => {
            keydir::remove(&args.dir, &kid)?;
            println!("removed {kid}; public keys: {}", args.dir.join(keydir::JWKS_FILE).display());
        }
        KeysCommand::KekNew { kek_file } => {
            let id = crate::seal::kek::add_to_file(&kek_file)?;
            println!("added key-encryption key {id} to {} (the primary from now on)", kek_file.display());
        }
        KeysCommand::Rotate { seal, dataset } => {
            let sealer = seal.required(&dataset, "keys rotate")?;
            // The key store alone, without the dataset: audited as the operator.
            let change = super::gdpr::operator();
            let draft = (!seal.no_audit).then(|| {
                crate::audit::Draft::new(
                    &change.request_id,
                    &change.role,
                    crate::audit::action::ROTATE,
                    String::new(),
                    (None, None),
                )
            });
            let rotation = sealer.rotate(draft).await?;
            println!("re-wrapped {} data key(s) under {}", rotation.rewrapped, rotation.primary);
            for (kek, count) in &rotation.still_under {
                println!("{count} data key(s) still wrapped under {kek}: keep it in the ring");
            }
        }
        KeysCommand::List => {
            for key in keydir::keys(&args.dir)? {
                println!("{}\t{}", key.kid, key.alg());
            }
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Roles (comma-separated): reader, reporter, admin.
    #[arg(long, value_parser = super::choice::<Role>(), value_delimiter = ',', default_value = "reporter")]
    pub role: Vec<Role>,
    /// The subject (`sub`): who the token speaks for.
    #[arg(long, default_value = "dev-user")]
    pub sub: String,
    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Sign with this key (default: the newest in --dir).
    #[arg(long)]
    pub kid: Option<String>,
    /// The key directory.
    #[arg(long, env = "FLIGHTBENCH_KEYS", default_value = KEY_DIR)]
    pub dir: PathBuf,
    /// Sign HS256 with this shared secret instead of a key of --dir.
    #[arg(long, value_name = "FILE", conflicts_with = "kid")]
    pub secret_file: Option<PathBuf>,
    #[arg(long, default_value = DEV_ISSUER)]
    pub issuer: String,
    #[arg(long, default_value = DEV_AUDIENCE)]
    pub audience: String,
}

pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    crate::domain::SubjectId::parse(&args.sub).refused(Failure::Usage, || "--sub".into())?;
    let key = match &args.secret_file {
        Some(path) => {
            let secret =
                std::fs::read(path).refused(Failure::BadInput, || format!("--secret-file {}", path.display()))?;
            crate::auth::SigningKey::hmac("hs256", secret.trim_ascii())
                .refused(Failure::Usage, || "--secret-file".into())?
        }
        None => keydir::signing_key(&args.dir, args.kid.as_deref())?,
    };
    let claims = crate::auth::claims(&args.issuer, &args.audience, &args.sub, &args.role, args.ttl, crate::auth::now());
    println!("{}", key.token(&claims));
    Ok(())
}
