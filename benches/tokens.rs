//! What checking a bearer token costs on this machine, per algorithm: ring's signature
//! check alone, and the whole `Verifier::verify` (split, base64, header, key lookup,
//! signature, claims) on the same token; with the verified-token cache, a hit. The
//! workbench's `security` part measures the same tokens under load; this separates
//! the signature from the rest. Every arm's token is checked to verify before timing.
//!
//!     cargo bench --bench tokens

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flightbench::auth::keys::pkcs8_from_pem;
use flightbench::auth::{Alg, KeySet, Keys, Role, Rules, SigningKey, Verifier, claims, now, token};
use std::hint::black_box;
use std::sync::Arc;

const SECRET: &[u8] = b"flightbench benchmark shared secret, 32+ bytes";

fn key(alg: Alg) -> SigningKey {
    match alg {
        Alg::Rs256 => {
            let der = pkcs8_from_pem(include_bytes!("../src/workbench/bench-rsa-2048.pem")).unwrap();
            SigningKey::from_pkcs8("k", &der).unwrap()
        }
        Alg::Hs256 => SigningKey::hmac("k", SECRET).unwrap(),
        alg => SigningKey::from_pkcs8("k", &SigningKey::generate_pkcs8(alg).unwrap()).unwrap(),
    }
}

fn tokens(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut g = c.benchmark_group("tokens");
    for alg in [Alg::Rs256, Alg::Es256, Alg::EdDsa, Alg::Hs256] {
        let key = key(alg);
        let token =
            key.token(&claims("iss", "aud", "bench", &[Role::Reader], std::time::Duration::from_secs(3600), now()));
        let keys = key.public().map(|p| (Some(key.kid.clone()), p)).into_iter().collect();
        let set = Arc::new(KeySet { keys, skipped: Vec::new() });
        let secret = (alg == Alg::Hs256).then_some(SECRET);
        let verifier = Verifier::new(Rules::new("iss", "aud"), Keys::Static(set.clone()), secret);
        let cached = Verifier::new(Rules::new("iss", "aud"), Keys::Static(set), secret).with_cache(16);
        let at = now();
        assert!(runtime.block_on(verifier.verify(&token, at)).is_ok(), "{alg}");
        assert!(runtime.block_on(cached.verify(&token, at)).is_ok(), "{alg}");
        if let Some(public) = key.public() {
            let parsed = token::parse(&token, &[alg]).unwrap();
            assert!(public.verifies(parsed.signed, &parsed.signature));
            g.bench_function(BenchmarkId::new("signature", alg.as_str()), |b| {
                b.iter(|| public.verifies(black_box(parsed.signed), black_box(&parsed.signature)))
            });
        }
        g.bench_function(BenchmarkId::new("verify", alg.as_str()), |b| {
            b.iter(|| runtime.block_on(verifier.verify(black_box(&token), at)))
        });
        g.bench_function(BenchmarkId::new("verify_cached", alg.as_str()), |b| {
            b.iter(|| runtime.block_on(cached.verify(black_box(&token), at)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = tokens
}
criterion_main!(benches);
