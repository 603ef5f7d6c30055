//! Bearer tokens over HTTP/1.1, h2c and TLS, with the server in-process: who may read,
//! report and profile; every forged token of the negative matrix answered 401 (never
//! a 500); and a provider's key rotation taken without a restart. The exact reason
//! for each rejection is asserted in the unit tests (`auth::verify`); here, what the
//! client sees.

use crate::app;
use crate::client::{Proto, Reply, Transport, current_version, get, post_delay, send, with_bearer};
use crate::helpers::{Kind, TestDataset, dataset, spec, test_tls};
use flightbench::auth::keys::{SigningKey, pkcs8_from_pem, sign_parts};
use flightbench::auth::remote::{RemoteConfig, RemoteKeys};
use flightbench::auth::{Alg, KeySet, Keys, Role, Rules, Verifier, claims};
use flightbench::http::ServerConfig;
use http::StatusCode;
use http_body_util::Full;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "flightbench";

fn rules() -> Rules {
    Rules::new(ISSUER, AUDIENCE)
}

fn generated(kid: &str, alg: Alg) -> SigningKey {
    SigningKey::from_pkcs8(kid, &SigningKey::generate_pkcs8(alg).unwrap()).unwrap()
}

fn rsa(kid: &str, file: &str) -> SigningKey {
    let path = format!("{}/src/auth/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
    SigningKey::from_pkcs8(kid, &pkcs8_from_pem(&std::fs::read(path).unwrap()).unwrap()).unwrap()
}

fn token(key: &SigningKey, roles: &[Role]) -> String {
    key.token(&claims(ISSUER, AUDIENCE, "alice", roles, Duration::from_secs(300), flightbench::auth::now()))
}

/// `request`, with a bearer token when there is one.
fn bearer(request: http::Request<Full<bytes::Bytes>>, token: Option<&str>) -> http::Request<Full<bytes::Bytes>> {
    match token {
        Some(token) => with_bearer(request, token),
        None => request,
    }
}

async fn read(addr: std::net::SocketAddr, transport: &Transport, path: &str, token: Option<&str>) -> Reply {
    send(addr, transport.clone(), bearer(get(path).body(Full::default()).unwrap(), token)).await
}

/// A write of a flight that takes events, with its current version.
async fn report(ds: &TestDataset, addr: std::net::SocketAddr, transport: &Transport, token: Option<&str>) -> Reply {
    let id = ds.all_expected().into_iter().find(|v| !v.status.state.is_terminal()).unwrap().flight.id.get();
    let version = current_version(addr, transport.clone(), id).await;
    let request =
        post_delay(id, Some(&format!("\"{version}\"")), r#"{"kind":"reported","delay_minutes":7,"reason":"crew"}"#);
    send(addr, transport.clone(), bearer(request, token)).await
}

fn assert_refused(reply: &Reply, status: StatusCode, challenge: &str, case: &str) {
    assert_eq!(reply.status, status, "{case}: {:?}", String::from_utf8_lossy(&reply.body));
    let header = reply.header("www-authenticate").unwrap_or_else(|| panic!("{case}: no WWW-Authenticate"));
    assert!(header.starts_with("Bearer realm=\"flightbench\"") && header.contains(challenge), "{case}: {header}");
    assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{case}");
    assert_eq!(reply.json()["status"], status.as_u16(), "{case}");
}

#[tokio::test]
async fn roles_decide_who_reads_reports_and_profiles_over_every_transport() {
    let ds = dataset(Kind::Sqlite, spec(61, 1_000, 10), 2).await;
    let (es, ed, rs) = (generated("es", Alg::Es256), generated("ed", Alg::EdDsa), rsa("rs", "rsa-a.pem"));
    let keys = [&es, &ed, &rs].map(|k| (Some(k.kid.clone()), k.public().unwrap())).to_vec();
    let verifier = Arc::new(Verifier::new(rules(), Keys::Static(Arc::new(KeySet { keys, skipped: vec![] })), None));
    let config = || ServerConfig { auth: Some(verifier.clone()), ..ServerConfig::default() };
    let tls = test_tls();
    let plain = app::spawn_app(&ds, config(), None).await;
    let secure = app::spawn_app(&ds, config(), Some(tls.acceptor.clone())).await;
    let transports = [
        (plain.addr, Transport::Plain(Proto::H1), "h1"),
        (plain.addr, Transport::Plain(Proto::H2c), "h2c"),
        (secure.addr, Transport::tls(&tls.cert_pem, Proto::H1), "tls h1"),
        (secure.addr, Transport::tls(&tls.cert_pem, Proto::H2c), "tls h2"),
    ];
    for (addr, transport, name) in &transports {
        // Anyone reads; a reader's token reads; a token sent must still be valid.
        assert_eq!(read(*addr, transport, "/flights/1", None).await.status, StatusCode::OK, "{name}");
        assert_eq!(
            read(*addr, transport, "/flights/1", Some(&token(&es, &[Role::Reader]))).await.status,
            StatusCode::OK
        );
        let garbage = read(*addr, transport, "/flights/1", Some("not.a.token")).await;
        assert_refused(&garbage, StatusCode::UNAUTHORIZED, r#"error="invalid_token""#, name);
        assert_eq!(garbage.json()["detail"], "the bearer token could not be verified");
        let basic = send(
            *addr,
            transport.clone(),
            get("/flights/1").header("authorization", "Basic YTpi").body(Full::default()).unwrap(),
        )
        .await;
        assert_refused(&basic, StatusCode::UNAUTHORIZED, r#"error="invalid_token""#, name);
        // Probes stay open even to a bad token.
        let probe = send(
            *addr,
            transport.clone(),
            get("/healthz").header("authorization", "Bearer x").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(probe.status, StatusCode::OK, "{name}");

        // Reports need the reporter role: no token 401 without an error code (RFC 6750
        // §3.1), a reader's or admin's token 403, a reporter's 201 with the subject
        // recorded as the reporter.
        let anonymous = report(&ds, *addr, transport, None).await;
        assert_refused(&anonymous, StatusCode::UNAUTHORIZED, r#"scope="reporter""#, name);
        assert!(!anonymous.header("www-authenticate").unwrap().contains("error="), "{name}");
        for roles in [&[Role::Reader][..], &[Role::Admin], &[]] {
            let forbidden = report(&ds, *addr, transport, Some(&token(&ed, roles))).await;
            assert_refused(&forbidden, StatusCode::FORBIDDEN, r#"error="insufficient_scope", scope="reporter""#, name);
        }
        for key in [&es, &ed, &rs] {
            let created = report(&ds, *addr, transport, Some(&token(key, &[Role::Reporter]))).await;
            assert_eq!(created.status, StatusCode::CREATED, "{name} {}: {:?}", key.alg(), created.json());
            let events = read(*addr, transport, created.header("location").unwrap(), None).await.json();
            let last = events.as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["reported_by"], "alice", "{name}: {last}");
        }
    }
    // Refusals are counted by reason.
    let metrics = read(plain.addr, &Transport::Plain(Proto::H1), "/metrics", None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    for reason in ["missing", "insufficient_scope", "malformed"] {
        assert!(
            text.contains(&format!("flightbench_auth_refused_total{{reason=\"{reason}\"}}")),
            "{reason}: {text:.2000}"
        );
    }
    plain.shutdown().await;
    secure.shutdown().await;
}

#[tokio::test]
async fn every_forged_token_is_answered_401_and_never_500() {
    let ds = dataset(Kind::Sqlite, spec(62, 500, 10), 1).await;
    let (es, rs_a, rs_b) = (generated("es", Alg::Es256), rsa("rs-a", "rsa-a.pem"), rsa("rs-b", "rsa-b.pem"));
    let attacker = generated("es", Alg::Es256);
    let keys = [&es, &rs_a].map(|k| (Some(k.kid.clone()), k.public().unwrap())).to_vec();
    let verifier = Arc::new(Verifier::new(rules(), Keys::Static(Arc::new(KeySet { keys, skipped: vec![] })), None));
    let app = app::spawn_app(&ds, ServerConfig { auth: Some(verifier), ..ServerConfig::default() }, None).await;

    let now = flightbench::auth::now();
    let good = claims(ISSUER, AUDIENCE, "mallory", &[Role::Reporter], Duration::from_secs(300), now);
    let with = |name: &str, value: Value| {
        let mut c = good.clone();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(name);
        } else {
            c[name] = value;
        }
        c
    };
    let es_header = json!({"alg": "ES256", "kid": "es"});
    let valid = es.token(&good);
    let (signed, signature) = valid.rsplit_once('.').unwrap();
    let rsa_public = std::fs::read(format!("{}/src/auth/testdata/rsa-a.pub.pem", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let hmac = |secret: &[u8], message: &[u8]| {
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), message).as_ref().to_vec()
    };
    let cases: Vec<(&str, String)> = vec![
        ("alg none", sign_parts(&json!({"alg": "none"}), &good, |_| Vec::new())),
        ("missing alg", sign_parts(&json!({"kid": "es"}), &good, |m| es.sign(m))),
        (
            "HS256 with the RSA public key",
            sign_parts(&json!({"alg": "HS256", "kid": "rs-a"}), &good, |m| hmac(&rsa_public, m)),
        ),
        ("wrong key", attacker.token(&good)),
        ("unknown kid", rs_b.token(&good)),
        ("kid of A, signature of B", sign_parts(&json!({"alg": "RS256", "kid": "rs-a"}), &good, |m| rs_b.sign(m))),
        ("exp in the past", es.token(&with("exp", json!(now - 60)))),
        ("missing exp", es.token(&with("exp", Value::Null))),
        ("nbf in the future", es.token(&with("nbf", json!(now + 120)))),
        ("wrong aud", es.token(&with("aud", json!("someone-else")))),
        ("missing aud", es.token(&with("aud", Value::Null))),
        ("wrong iss", es.token(&with("iss", json!("https://evil.test")))),
        ("missing iss", es.token(&with("iss", Value::Null))),
        ("empty signature", format!("{signed}.")),
        ("truncated signature", format!("{signed}.{}", &signature[..signature.len() - 8])),
        ("doubled signature", format!("{signed}.{signature}{signature}")),
        ("bad base64", format!("{signed}.{}", signature.replace(|c: char| c.is_ascii_alphabetic(), "*"))),
        ("16 KB token", format!("{valid}{}", "A".repeat(16 * 1024))),
        (
            "attacker's jwk header",
            sign_parts(&json!({"alg": "ES256", "jwk": attacker.public().unwrap().to_jwk("x")}), &good, |m| {
                attacker.sign(m)
            }),
        ),
        ("roles raised after signing", {
            let payload =
                flightbench::auth::token::encode(with("roles", json!(["reporter", "admin"])).to_string().as_bytes());
            format!("{}.{payload}.{signature}", signed.split('.').next().unwrap())
        }),
    ];
    assert_eq!(
        report(&ds, app.addr, &Transport::Plain(Proto::H1), Some(&sign_parts(&es_header, &good, |m| es.sign(m))))
            .await
            .status,
        StatusCode::CREATED,
        "the honest token works"
    );
    for proto in [Proto::H1, Proto::H2c] {
        for (case, forged) in &cases {
            let reply = report(&ds, app.addr, &Transport::Plain(proto), Some(forged)).await;
            assert_refused(&reply, StatusCode::UNAUTHORIZED, r#"error="invalid_token""#, case);
            let detail = reply.json()["detail"].as_str().unwrap().to_owned();
            assert!(!detail.contains("signature") && !detail.contains("kid"), "{case}: {detail}");
        }
    }
    app.shutdown().await;
}

/// A stand-in provider whose published set the test changes: discovery and a JWKS,
/// counting fetches of the set.
struct KeyServer {
    issuer: String,
    published: Arc<std::sync::Mutex<Value>>,
    fetches: Arc<std::sync::atomic::AtomicU64>,
}

impl KeyServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let server = KeyServer {
            issuer: issuer.clone(),
            published: Arc::new(std::sync::Mutex::new(json!({"keys": []}))),
            fetches: Arc::default(),
        };
        let (published, fetches) = (server.published.clone(), server.fetches.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (issuer, published, fetches) = (issuer.clone(), published.clone(), fetches.clone());
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let body = if request.uri().path() == "/.well-known/openid-configuration" {
                        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})
                    } else {
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        published.lock().unwrap().clone()
                    };
                    let response = http::Response::new(Full::new(bytes::Bytes::from(body.to_string())));
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::spawn(connection);
            }
        });
        server
    }

    fn publish(&self, keys: &[&SigningKey]) {
        let keys = keys.iter().map(|k| (Some(k.kid.clone()), k.public().unwrap())).collect();
        *self.published.lock().unwrap() = KeySet { keys, skipped: vec![] }.to_jwks();
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn reader_token(key: &SigningKey) -> String {
    token(key, &[Role::Reader])
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_providers_keys_again_at_most_once_per_interval() {
    let provider = KeyServer::start().await;
    let (old, new) = (generated("old", Alg::Es256), generated("new", Alg::EdDsa));
    provider.publish(&[&old]);
    let min_refresh = Duration::from_millis(400);
    let config = RemoteConfig { refresh_every: Duration::from_secs(3600), min_refresh, tls: None };
    let remote = RemoteKeys::discover(&provider.issuer, config).await.unwrap();
    let verifier = Verifier::new(rules(), Keys::Remote(remote), None);
    let now = flightbench::auth::now();
    assert!(verifier.verify(&reader_token(&old), now).await.is_ok());
    assert_eq!(provider.fetches(), 1);

    // The provider adds a key. Within the interval, its kid is unknown and nothing is
    // fetched; a flood of made-up kids fetches nothing either.
    provider.publish(&[&old, &new]);
    assert_eq!(verifier.verify(&reader_token(&new), now).await.unwrap_err(), flightbench::auth::Rejection::UnknownKey);
    for i in 0..50 {
        let made_up = sign_parts(&json!({"alg": "ES256", "kid": format!("made-up-{i}")}), &json!({}), |m| old.sign(m));
        assert_eq!(verifier.verify(&made_up, now).await.unwrap_err(), flightbench::auth::Rejection::UnknownKey);
    }
    assert_eq!(provider.fetches(), 1, "unknown kids within the interval fetched the set");
    // After it, the new kid fetches the set once and verifies: no restart.
    tokio::time::sleep(min_refresh).await;
    assert!(verifier.verify(&reader_token(&new), now).await.is_ok());
    assert_eq!(provider.fetches(), 2);
    for i in 0..50 {
        let made_up = sign_parts(&json!({"alg": "ES256", "kid": format!("again-{i}")}), &json!({}), |m| old.sign(m));
        assert!(verifier.verify(&made_up, now).await.is_err());
    }
    assert_eq!(provider.fetches(), 2, "a flood right after a fetch fetched again");
    // The provider drops the old key; the next fetch takes it out.
    provider.publish(&[&new]);
    tokio::time::sleep(min_refresh).await;
    let nudge = sign_parts(&json!({"alg": "ES256", "kid": "nudge"}), &json!({}), |m| old.sign(m));
    assert!(verifier.verify(&nudge, now).await.is_err());
    assert_eq!(verifier.verify(&reader_token(&old), now).await.unwrap_err(), flightbench::auth::Rejection::UnknownKey);
    assert!(verifier.verify(&reader_token(&new), now).await.is_ok());
}

#[tokio::test]
async fn a_removed_key_stops_working_at_the_scheduled_refresh_while_serving() {
    let ds = dataset(Kind::Sqlite, spec(63, 500, 10), 1).await;
    let provider = KeyServer::start().await;
    let (old, new) = (generated("old", Alg::Es256), generated("new", Alg::Es256));
    provider.publish(&[&old, &new]);
    let config =
        RemoteConfig { refresh_every: Duration::from_millis(300), min_refresh: Duration::from_secs(3600), tls: None };
    let remote = RemoteKeys::discover(&provider.issuer, config).await.unwrap();
    // With the token cache (serve's default): a token verified before the rotation
    // must not outlive its key in the cache.
    let verifier = Arc::new(Verifier::new(rules(), Keys::Remote(remote), None).with_cache(100));
    let app = app::spawn_app(&ds, ServerConfig { auth: Some(verifier), ..ServerConfig::default() }, None).await;
    let h1 = Transport::Plain(Proto::H1);
    let status = async |key: &SigningKey| read(app.addr, &h1, "/flights/1", Some(&reader_token(key))).await.status;
    assert_eq!((status(&old).await, status(&new).await), (StatusCode::OK, StatusCode::OK));
    provider.publish(&[&new]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status(&old).await != StatusCode::UNAUTHORIZED {
        assert!(std::time::Instant::now() < deadline, "the removed kid still verifies after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(&new).await, StatusCode::OK);
    assert!(provider.fetches() >= 2);
    app.shutdown().await;
}

/// Runs `flightbench ARGS` to success and returns its stdout.
/// `serve`'s flags for tokens from `flightbench token`, checked against the key
/// directory's `jwks.json`.
fn local_jwks_auth(jwks: &str) -> [&str; 8] {
    ["--auth", "jwks", "--jwks", jwks, "--oidc-issuer", "flightbench-dev", "--audience", "flightbench"]
}

async fn flightbench(args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightbench")).args(args).output().await.unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The JSON report of `flightbench load` against `url` with the token in `token_file`.
async fn load_statuses(
    url: &str,
    token_file: &std::path::Path,
    out: &std::path::Path,
) -> serde_json::Map<String, Value> {
    let token_file = token_file.to_str().unwrap();
    flightbench(&[
        "load",
        "--url",
        url,
        "-c",
        "2",
        "--requests",
        "200",
        "--warmup",
        "0",
        "--quiet",
        "--token-file",
        token_file,
        "--json",
        out.to_str().unwrap(),
    ])
    .await;
    let report: Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    report["status_counts"].as_object().unwrap().clone()
}

/// The commands a person uses: `keys new`, `token`, `serve --auth jwks`, `load
/// --token-file`, and the admin listener, which only an admin's token opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_tokens_from_the_cli_open_what_their_roles_allow() {
    let ds = dataset(Kind::Sqlite, spec(64, 500, 10), 1).await;
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    let k = keys.to_str().unwrap();
    flightbench(&["keys", "--dir", k, "new", "--alg", "EdDSA", "--kid", "ed1"]).await;
    let rsa = format!("{}/src/auth/testdata/rsa-b.pem", env!("CARGO_MANIFEST_DIR"));
    flightbench(&["keys", "--dir", k, "new", "--alg", "RS256", "--kid", "rs1", "--import", &rsa]).await;
    assert_eq!(flightbench(&["keys", "--dir", k, "list"]).await.lines().count(), 2);
    let mint =
        async |extra: &[&str]| flightbench(&[&["token", "--dir", k][..], extra].concat()).await.trim().to_owned();
    let (admin, reporter, reader) = (
        mint(&["--role", "admin", "--sub", "root"]).await,
        mint(&["--role", "reporter", "--sub", "carol", "--kid", "rs1"]).await,
        mint(&["--role", "reader"]).await,
    );
    let jwks = keys.join("jwks.json");
    let args = local_jwks_auth(jwks.to_str().unwrap());
    let server =
        crate::app::ServeProcess::start(ds.dir(), &[], &[&args[..], &["--admin-addr", "127.0.0.1:0"]].concat(), false)
            .await;
    let (api, admin_addr) = (server.api, server.admin.unwrap());
    let h1 = Transport::Plain(Proto::H1);

    // The admin listener: 401 without a token, 403 for a reporter, a profile for an admin.
    let profile = "/debug/pprof/profile?seconds=1&format=folded";
    assert_refused(
        &read(admin_addr, &h1, profile, None).await,
        StatusCode::UNAUTHORIZED,
        r#"scope="admin""#,
        "admin, no token",
    );
    assert_refused(
        &read(admin_addr, &h1, profile, Some(&reporter)).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "admin, reporter",
    );
    assert_eq!(read(admin_addr, &h1, profile, Some(&admin)).await.status, StatusCode::OK);

    // A reporter's RS256 token writes as carol; the reader's cannot.
    assert_eq!(report(&ds, api, &h1, Some(&reader)).await.status, StatusCode::FORBIDDEN);
    let created = report(&ds, api, &h1, Some(&reporter)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json());
    let events = read(api, &h1, created.header("location").unwrap(), None).await.json();
    assert_eq!(events.as_array().unwrap().last().unwrap()["reported_by"], "carol");

    // The load generator sends the token with every request.
    let token_file = work.path().join("token");
    let json = work.path().join("load.json");
    std::fs::write(&token_file, format!("{reader}\n")).unwrap();
    let url = format!("http://{api}/flights/1");
    assert_eq!(load_statuses(&url, &token_file, &json).await.get("200"), Some(&json!(200)));
    // Removing the key ends its tokens once the server reads the set again: a static
    // set is read at start, so a restart would be needed; what the file says changes
    // at once.
    flightbench(&["keys", "--dir", k, "remove", "rs1"]).await;
    let set = KeySet::from_jwks(&std::fs::read(&jwks).unwrap()).unwrap();
    assert!(set.find(Some("rs1"), Alg::Rs256).is_none() && set.find(Some("ed1"), Alg::EdDsa).is_some());
    std::fs::write(&token_file, "forged.token.here").unwrap();
    assert_eq!(load_statuses(&url, &token_file, &json).await.get("401"), Some(&json!(200)));
}

/// `--auth` on the gateway alone: it checks each request's token as the service would,
/// before forwarding. A write without a token, with a reader's, or with a payload
/// swapped under another token's signature is refused at the edge with the service's
/// own answer (the service behind has no auth here and would have taken it); a
/// reporter's goes through, its token with it; reads stay public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_checks_tokens_at_the_edge() {
    let ds = dataset(Kind::Sqlite, spec(65, 500, 10), 1).await;
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    let k = keys.to_str().unwrap();
    flightbench(&["keys", "--dir", k, "new", "--alg", "EdDSA", "--kid", "ed1"]).await;
    let mint =
        async |role: &str| flightbench(&["token", "--dir", k, "--role", role, "--sub", "dora"]).await.trim().to_owned();
    let (reporter, reader) = (mint("reporter").await, mint("reader").await);
    let part = |token: &str, i: usize| token.split('.').nth(i).unwrap().to_owned();
    let swapped = format!("{}.{}.{}", part(&reader, 0), part(&reporter, 1), part(&reader, 2));

    let service = app::ServeProcess::start(ds.dir(), &[], &["--no-admin"], false).await;
    let config = work.path().join("gateway.json");
    let to_service = json!({ "destinations": [format!("http://{}", service.api)] });
    let file = json!({ "services": { "query": to_service, "command": to_service, "notify": to_service } });
    std::fs::write(&config, file.to_string()).unwrap();
    let jwks = keys.join("jwks.json");
    let gateway_args = ["--role", "gateway", "--gateway-config", config.to_str().unwrap(), "--no-admin"];
    let gateway_args = [&gateway_args[..], &local_jwks_auth(jwks.to_str().unwrap())].concat();
    let gateway = app::ServeProcess::start(ds.dir(), &[], &gateway_args, false).await;
    let h1 = Transport::Plain(Proto::H1);

    let writes_seen = async || {
        let text = String::from_utf8(read(service.api, &h1, "/metrics", None).await.body.to_vec()).unwrap();
        text.lines()
            .filter(|l| l.starts_with("flightbench_http_request_duration_seconds_count") && l.contains("POST"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = writes_seen().await;
    assert_refused(
        &report(&ds, gateway.api, &h1, None).await,
        StatusCode::UNAUTHORIZED,
        r#"scope="reporter""#,
        "no token",
    );
    assert_refused(
        &report(&ds, gateway.api, &h1, Some(&reader)).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "a reader's token",
    );
    assert_refused(
        &report(&ds, gateway.api, &h1, Some(&swapped)).await,
        StatusCode::UNAUTHORIZED,
        r#"error="invalid_token""#,
        "a reporter's claims under a reader's signature",
    );
    assert_eq!(writes_seen().await, before, "a refused write reached the service");
    let created = report(&ds, gateway.api, &h1, Some(&reporter)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json());
    assert_eq!(writes_seen().await, before + 1.0);
    assert_eq!(read(gateway.api, &h1, "/flights/1", None).await.status, StatusCode::OK, "reads are public");

    let metrics = String::from_utf8(read(gateway.api, &h1, "/metrics", None).await.body.to_vec()).unwrap();
    assert!(metrics.lines().any(|l| l == "flightbench_gateway_auth_refused_total 3"), "{metrics}");
}
