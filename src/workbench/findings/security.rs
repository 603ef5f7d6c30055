//! The security part's findings: a bearer token's check per algorithm, the token
//! cache, TLS, and sealing and auditing writes, each against the same requests
//! without it.

use super::{count, figures, ratio, times, versus};
use crate::workbench::cell::{AtRest, CellId, Signing, Wire};
use crate::workbench::data::{Cell, RunData};

/// The server CPU a request costs more than `base`'s, in µs: `+12.3 µs`.
fn extra_cpu(cell: &Cell, base: &Cell) -> String {
    match (cell.server_cpu_us_per_request, base.server_cpu_us_per_request) {
        (Some(a), Some(b)) => format!("{:+.1} µs of server CPU per request", a - b),
        _ => "server CPU not measured".to_owned(),
    }
}

/// What verifying a token on every request costs, per algorithm, against no auth.
pub(super) fn token_verification(run: &RunData) -> Option<String> {
    let off = run.cell(CellId::Auth(Signing::Off))?;
    let each = [Signing::Rs256, Signing::Es256, Signing::EdDsa, Signing::Hs256]
        .iter()
        .map(|&signing| {
            let cell = run.cell(CellId::Auth(signing))?;
            Some(format!(
                "{} {} ({})",
                signing.as_str().to_uppercase().replace("EDDSA", "EdDSA"),
                versus(&format!("{signing}/off"), cell, off),
                extra_cpu(cell, off)
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(format!(
        "Verifying a bearer token on every cached point read, against no auth ({} req/s): {}. Published single-signature costs to compare the CPU with: ring verifies RSA-2048 in about 10 µs, ECDSA P-256 in about 26 µs and Ed25519 in about 18 µs; jsonwebtoken validates HS256 in about 1.7 µs.",
        count(off.requests_per_s),
        each.join("; ")
    ))
}

/// What the verified-token cache buys when a client sends the same token again.
pub(super) fn token_cache(run: &RunData) -> Option<String> {
    let (off, every, cached) = (
        run.cell(CellId::Auth(Signing::Off))?,
        run.cell(CellId::Auth(Signing::Es256))?,
        run.cell(CellId::Auth(Signing::Es256Cached))?,
    );
    Some(format!(
        "With the verified-token cache (one token for every request, the cache's best case) ES256 ran at {} of ES256 verified every time ({} vs {} req/s) and {} of no auth ({}).",
        versus("es256-cached/es256", cached, every),
        count(cached.requests_per_s),
        count(every.requests_per_s),
        times(ratio(cached, off)),
        extra_cpu(cached, off)
    ))
}

/// What TLS costs on connections kept open: the record layer, not handshakes.
pub(super) fn tls(run: &RunData) -> Option<String> {
    let transport = |wire, tls| run.cell(CellId::Transport { wire, tls });
    let (h1_clear, h1_tls) = (run.cell(CellId::Auth(Signing::Off))?, transport(Wire::H1, true)?);
    let (h2_clear, h2_tls) = (transport(Wire::H2c, false)?, transport(Wire::H2c, true)?);
    Some(format!(
        "TLS (1.3, rustls on ring) against cleartext on the same cached point reads, connections kept open (so the record layer's cost, not handshakes): HTTP/1.1 {} ({}; {}); HTTP/2 {} ({}; {}).",
        versus("h1-tls/h1", h1_tls, h1_clear),
        figures(h1_tls, h1_clear),
        extra_cpu(h1_tls, h1_clear),
        versus("h2-tls/h2c", h2_tls, h2_clear),
        figures(h2_tls, h2_clear),
        extra_cpu(h2_tls, h2_clear),
    ))
}

/// What sealing the personal fields and auditing cost signed delay reports, against
/// storing them in clear, and what each chain scope adds.
pub(super) fn at_rest(run: &RunData) -> Option<String> {
    let cell = |a| run.cell(CellId::Writes(a));
    let (clear, sealed) = (cell(AtRest::Clear)?, cell(AtRest::Sealed)?);
    let scopes =
        [(AtRest::AuditFlight, "per flight"), (AtRest::AuditShard, "per shard"), (AtRest::AuditGlobal, "global")];
    let audited = scopes.iter().map(|&(a, name)| Some((name, cell(a)?))).collect::<Option<Vec<_>>>()?;
    let committed = |c: &Cell| c.acknowledged_writes_per_s.map_or_else(|| "?".to_owned(), count);
    let each = audited
        .iter()
        .map(|(name, c)| {
            format!(
                "{name} {} ({}; {} committed writes/s)",
                versus(&format!("audit-{name}/clear"), c, clear),
                extra_cpu(c, clear),
                committed(c)
            )
        })
        .collect::<Vec<_>>();
    let (fastest, _) = audited.iter().max_by(|a, b| a.1.requests_per_s.total_cmp(&b.1.requests_per_s))?;
    Some(format!(
        "Signed delay reports, write-only load, against storing them in clear ({} req/s, {} committed writes/s): sealing the reason and reporter (AES-256-GCM under the reporter's data key) {} ({}); sealing and auditing, by chain scope: {}. The fastest scope here was {fastest}.",
        count(clear.requests_per_s),
        committed(clear),
        versus("sealed/clear", sealed, clear),
        extra_cpu(sealed, clear),
        each.join("; "),
    ))
}
