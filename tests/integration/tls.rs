//! TLS in transit: `serve --tls-min 1.3` refuses a TLS 1.2 client and takes a 1.3 one,
//! over both ALPN protocols, and a TLS server's every answer carries HSTS while a
//! cleartext server's does not.

use crate::app::ServeProcess;
use crate::client::{Proto, Transport, get, send, try_send};
use crate::helpers::{Kind, dataset, spec};
use http::StatusCode;
use http_body_util::Full;

fn client(cert_pem: &str, proto: Proto, versions: &[&'static rustls::SupportedProtocolVersion]) -> Transport {
    Transport::tls_versions(cert_pem, proto, versions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_3_only_refuses_1_2_and_every_tls_answer_carries_hsts() {
    let ds = dataset(Kind::Sqlite, spec(81, 300, 5), 1).await;
    let work = tempfile::tempdir().unwrap();
    let (cert, key) = flightbench::http::tls::self_signed(&["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (work.path().join("cert.pem"), work.path().join("key.pem"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let tls_args = ["--no-admin", "--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()];
    let strict = ServeProcess::start(ds.dir(), &[], &[&tls_args[..], &["--tls-min", "1.3"]].concat(), false).await;
    let lenient = ServeProcess::start(ds.dir(), &[], &tls_args, false).await;
    let cleartext = ServeProcess::start(ds.dir(), &[], &["--no-admin"], false).await;
    let request = || get("/flights/1").body(Full::default()).unwrap();
    let (v12, v13) = (&[&rustls::version::TLS12][..], &[&rustls::version::TLS13][..]);
    for proto in [Proto::H1, Proto::H2c] {
        let refused = try_send(strict.api, client(&cert, proto, v12), request()).await;
        assert!(refused.is_err(), "{proto:?}: a TLS 1.2 client was served by --tls-min 1.3");
        for (server, versions) in [(&strict, v13), (&lenient, v12), (&lenient, v13)] {
            let reply = send(server.api, client(&cert, proto, versions), request()).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.header("strict-transport-security"), Some("max-age=31536000"), "{proto:?}");
        }
        // Problem documents too: HSTS is on every answer, not only the happy ones.
        let missing =
            send(strict.api, client(&cert, proto, v13), get("/flights/999999").body(Full::default()).unwrap()).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing.header("strict-transport-security").is_some());
        let plain = send(cleartext.api, proto, request()).await;
        assert_eq!(plain.status, StatusCode::OK);
        assert_eq!(plain.header("strict-transport-security"), None, "HSTS over cleartext means nothing");
    }
}
