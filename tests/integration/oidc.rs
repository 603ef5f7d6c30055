//! Against a real OpenID Provider: panva's `oidc-provider` (OpenID Certified), run by
//! Node from `scripts/oidc/` (`scripts/test.sh` installs it from its lockfile). Tokens
//! come from its token endpoint by the client-credentials grant, as a service would
//! get them; `flightbench serve --auth oidc` finds the keys by discovery; the provider
//! rotates its keys mid-test and the server follows without a restart.

use crate::app::ServeProcess;
use crate::client::{Proto, Reply, current_version, get, post_delay, send, with_bearer};
use crate::helpers::{Kind, dataset, spec};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// The provider process and where it listens.
struct Provider {
    child: Child,
    issuer: String,
    addr: SocketAddr,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Provider {
    async fn start() -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/oidc");
        assert!(
            std::path::Path::new(dir).join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run scripts/test.sh (it runs `npm ci` in scripts/oidc)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg("provider.mjs")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (scripts/test.sh installs Node.js)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = next_line(&mut stdout).await;
        let issuer = line.strip_prefix("issuer ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
        let addr = issuer.trim_start_matches("http://").parse().unwrap();
        Provider { child, issuer, addr, stdout }
    }

    /// An access token for `client` with `scope`, signed with `alg`.
    async fn token(&self, client: &str, scope: &str, alg: &str) -> String {
        let secret = match client {
            "reporter-client" => "reporter-secret-0123456789abcdef",
            "reader-client" => "reader-secret-0123456789abcdef",
            _ => "admin-secret-0123456789abcdef",
        };
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
        let body = format!("grant_type=client_credentials&scope={scope}&resource=urn:flightbench:{alg}");
        let request = http::Request::post("/token")
            .header("host", self.addr.to_string())
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let reply = send(self.addr, Proto::H1, request).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
        let json = reply.json();
        assert_eq!(json["token_type"], "Bearer");
        json["access_token"].as_str().unwrap().to_owned()
    }

    /// Replaces every key of the provider with new ones (new kids).
    async fn rotate(&mut self) {
        let pid = self.child.id().unwrap() as i32;
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR2) }, 0);
        // The provider may print notices first.
        loop {
            let line = next_line(&mut self.stdout).await;
            if line.starts_with("rotated to generation 2") {
                return;
            }
        }
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the provider prints within 30 s")
        .unwrap()
        .expect("the provider printed a line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_certified_provider_are_honoured_by_role_and_survive_its_key_rotation() {
    let ds = dataset(Kind::Sqlite, spec(71, 500, 10), 1).await;
    let mut provider = Provider::start().await;
    let args = [
        "--auth",
        "oidc",
        "--oidc-issuer",
        &provider.issuer,
        "--audience",
        "flightbench",
        "--roles-claim",
        "scope",
        "--jwks-min-refresh",
        "100ms",
        "--admin-addr",
        "127.0.0.1:0",
    ];
    let server = ServeProcess::start(ds.dir(), &[], &args, false).await;
    // One flight that takes events, written again and again from its current version.
    let id = ds.all_expected().into_iter().find(|v| !v.status.state.is_terminal()).unwrap().flight.id.get();
    let api = server.api;
    let write = async |proto: Proto, token: &str| -> (Reply, i64) {
        let version = current_version(api, proto, id).await;
        let body = r#"{"kind":"reported","delay_minutes":12,"reason":"de-icing"}"#;
        (send(api, proto, with_bearer(post_delay(id, Some(&format!("\"{version}\"")), body), token)).await, id)
    };

    for alg in ["RS256", "ES256", "EdDSA"] {
        for proto in [Proto::H1, Proto::H2c] {
            let reporter = provider.token("reporter-client", "reporter", alg).await;
            let (created, id) = write(proto, &reporter).await;
            assert_eq!(
                created.status,
                StatusCode::CREATED,
                "{alg} {proto:?}: {}",
                String::from_utf8_lossy(&created.body)
            );
            let events = send(api, proto, get(&format!("/flights/{id}/events")).body(Full::default()).unwrap()).await;
            let last = events.json().as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["reported_by"], "reporter-client", "{alg}: {last}");
            // A reader client may read with its token, not report.
            let reader = provider.token("reader-client", "reader", alg).await;
            let read = send(api, proto, with_bearer(get("/flights/1").body(Full::default()).unwrap(), &reader)).await;
            assert_eq!(read.status, StatusCode::OK);
            let (refused, _) = write(proto, &reader).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{alg}");
            assert!(refused.header("www-authenticate").unwrap().contains("insufficient_scope"));
        }
    }
    // Only an admin client's token opens the admin listener.
    let admin = provider.token("admin-client", "admin", "ES256").await;
    let reporter = provider.token("reporter-client", "reporter", "ES256").await;
    let profile = || get("/debug/pprof/profile?seconds=1&format=folded").body(Full::default()).unwrap();
    let admin_addr = server.admin.unwrap();
    assert_eq!(send(admin_addr, Proto::H1, with_bearer(profile(), &reporter)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send(admin_addr, Proto::H1, with_bearer(profile(), &admin)).await.status, StatusCode::OK);

    // The provider rotates every key. A token signed with a new kid works at once (the
    // unknown kid fetches the set again); tokens signed with the old keys stop working.
    let old = provider.token("reporter-client", "reporter", "EdDSA").await;
    assert_eq!(write(Proto::H1, &old).await.0.status, StatusCode::CREATED);
    provider.rotate().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = provider.token("reporter-client", "reporter", "EdDSA").await;
    assert_eq!(write(Proto::H1, &new).await.0.status, StatusCode::CREATED, "the rotated key is not taken");
    let (refused, _) = write(Proto::H1, &old).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "a removed key still verifies");
    assert!(refused.header("www-authenticate").unwrap().contains("invalid_token"));
}
