//! A cell's identity: the part it belongs to and what sets it apart within the part.
//!
//! Ids are values of [`CellId`], not strings: a finding, a comparison or the mixed
//! part's rate names a cell by its variant, so renaming a label cannot silently drop
//! a finding, and a cell that does not exist cannot be named (a test runs every
//! finding over a run of every cell the plan makes). [`CellId::of`] is the one list of
//! a part's cells: the plan counts and runs exactly those.

use super::plan::{CODECS, PROJECTION_SHARDS, Part, SHARD_SERIES};
use crate::compression::Encoding;
use crate::load::conn::Protocol;
use crate::projection::ReadModel;
use crate::store::QueryPath;
use std::fmt;

crate::choices! {
    /// The protocol of a `protocols` cell; a run serves cleartext only.
    #[derive(Debug, Hash, PartialOrd, Ord)]
    pub enum Wire as "wire protocol" {
        /// HTTP/1.1.
        H1 = "h1",
        /// HTTP/2 over cleartext with prior knowledge.
        H2c = "h2c",
    }
}

impl Wire {
    pub fn protocol(self) -> Protocol {
        match self {
            Wire::H1 => Protocol::H1,
            Wire::H2c => Protocol::H2,
        }
    }
}

crate::choices! {
    /// Who keeps the read models during a `projections` write cell.
    #[derive(Debug, Hash, PartialOrd, Ord)]
    pub enum Keeping as "read-model keeping" {
        /// No runner: what the writes cost alone.
        Off = "off",
        /// The in-process runner follows the commits (`serve`'s default).
        Async = "async",
        /// Each write is answered once the runner has applied it to every read model
        /// (`--read-models inline`).
        Inline = "inline",
        /// Only the departures board inline, the others async.
        InlineBoard = "inline-board",
        /// Only the per-airport-hour tallies inline.
        InlineHours = "inline-hours",
        /// Only the per-carrier tallies inline.
        InlineCarrier = "inline-carrier",
    }
}

impl Keeping {
    /// The read models writes wait for.
    pub fn inline_models(self) -> Vec<ReadModel> {
        match self {
            Keeping::Off | Keeping::Async => Vec::new(),
            Keeping::Inline => ReadModel::ALL.to_vec(),
            Keeping::InlineBoard => vec![ReadModel::DeparturesBoard],
            Keeping::InlineHours => vec![ReadModel::AirportHours],
            Keeping::InlineCarrier => vec![ReadModel::CarrierOnTime],
        }
    }
}

crate::choices! {
    /// How a `security` cell's requests carry a bearer token, and how the server
    /// verifies it.
    #[derive(Debug, Hash, PartialOrd, Ord)]
    pub enum Signing as "token signing" {
        /// No token, auth off: the baseline.
        Off = "off",
        /// RS256 (RSA-2048), verified on every request.
        Rs256 = "rs256",
        /// ES256 (P-256), verified on every request.
        Es256 = "es256",
        /// EdDSA (Ed25519), verified on every request.
        EdDsa = "eddsa",
        /// HS256 with a shared secret, verified on every request.
        Hs256 = "hs256",
        /// ES256 with the server's verified-token cache (one token for every request:
        /// the cache's best case).
        Es256Cached = "es256-cached",
    }
}

crate::choices! {
    /// What a `security` write cell does to the personal data in each delay report.
    #[derive(Debug, Hash, PartialOrd, Ord)]
    pub enum AtRest as "protection at rest" {
        /// Stored in clear, no audit log: the baseline.
        Clear = "clear",
        /// Reason and reporter sealed under the reporter's data key (`seal`).
        Sealed = "sealed",
        /// Sealed, and audited in one chain per flight.
        AuditFlight = "audit-flight",
        /// Sealed, and audited in one chain per shard.
        AuditShard = "audit-shard",
        /// Sealed, and audited in one chain for every write.
        AuditGlobal = "audit-global",
    }
}

/// One configuration of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellId {
    /// `paths/<path>`: uncached point reads through one query path.
    Path(QueryPath),
    /// `protocols/h1|h2c`: cached point reads over one protocol.
    Protocol(Wire),
    /// `compression/<coding>`: departures with one `Accept-Encoding`.
    Codec(Encoding),
    /// `shards/read-<n>`: point reads on an `n`-shard dataset.
    ShardReads(u32),
    /// `shards/departures-<n>`: the scatter-gather departures query on `n` shards.
    ShardDepartures(u32),
    /// `cache/on|off`: Zipf-skewed point reads with the flight cache on or off.
    Cache(bool),
    /// `mixed/open-loop`: the read/departures/write mix at a fixed rate.
    OpenLoop,
    /// `projections/writes-<keeping>`: delay reports with the read models kept so.
    ProjectionWrites(Keeping),
    /// `projections/mix-async`: the mixed part's read/departures/write mix, closed
    /// loop, with the runner following the commits: the lag readers meet.
    ProjectionMix,
    /// `projections/board-16` (the airport-keyed read model) or `projections/scatter-16`
    /// (departures merged from every shard), on the 16-shard dataset.
    Board { read_model: bool },
    /// `security/<signing>`: cached point reads carrying a token signed so.
    Auth(Signing),
    /// `security/h1-tls`, `security/h2c`, `security/h2-tls`: cached point reads
    /// without a token over a protocol, in cleartext or TLS (HTTP/1.1 in cleartext is
    /// `security/off`).
    Transport { wire: Wire, tls: bool },
    /// `security/writes-<at rest>`: signed delay reports, stored as `AtRest` says.
    Writes(AtRest),
}

impl CellId {
    /// The cells of `part`, in the order they run (the profile part has none).
    pub fn of(part: Part) -> Vec<CellId> {
        match part {
            Part::Paths => QueryPath::ALL.iter().map(|&p| CellId::Path(p)).collect(),
            Part::Protocols => Wire::ALL.iter().map(|&w| CellId::Protocol(w)).collect(),
            Part::Compression => CODECS.iter().map(|&c| CellId::Codec(c)).collect(),
            Part::Shards => {
                SHARD_SERIES.iter().flat_map(|&n| [CellId::ShardReads(n), CellId::ShardDepartures(n)]).collect()
            }
            Part::Cache => vec![CellId::Cache(false), CellId::Cache(true)],
            Part::Mixed => vec![CellId::OpenLoop],
            Part::Projections => Keeping::ALL
                .iter()
                .map(|&k| CellId::ProjectionWrites(k))
                .chain([CellId::ProjectionMix, CellId::Board { read_model: false }, CellId::Board { read_model: true }])
                .collect(),
            Part::Security => Signing::ALL
                .iter()
                .map(|&s| CellId::Auth(s))
                .chain([
                    CellId::Transport { wire: Wire::H1, tls: true },
                    CellId::Transport { wire: Wire::H2c, tls: false },
                    CellId::Transport { wire: Wire::H2c, tls: true },
                ])
                .chain(AtRest::ALL.iter().map(|&a| CellId::Writes(a)))
                .collect(),
            Part::Reshard | Part::Topology | Part::Profile => Vec::new(),
        }
    }

    /// Every cell a full run measures.
    pub fn all() -> impl Iterator<Item = CellId> {
        Part::ALL.iter().flat_map(|&part| CellId::of(part))
    }

    pub fn part(self) -> Part {
        match self {
            CellId::Path(_) => Part::Paths,
            CellId::Protocol(_) => Part::Protocols,
            CellId::Codec(_) => Part::Compression,
            CellId::ShardReads(_) | CellId::ShardDepartures(_) => Part::Shards,
            CellId::Cache(_) => Part::Cache,
            CellId::OpenLoop => Part::Mixed,
            CellId::ProjectionWrites(_) | CellId::ProjectionMix | CellId::Board { .. } => Part::Projections,
            CellId::Auth(_) | CellId::Transport { .. } | CellId::Writes(_) => Part::Security,
        }
    }

    /// What sets the cell apart within its part: `raw`, `h2c`, `read-16`, `on`.
    pub fn label(self) -> Label {
        Label(self)
    }
}

/// A cell's label, written without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Label(CellId);

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            CellId::Path(path) => f.write_str(path.as_str()),
            CellId::Protocol(wire) => f.write_str(wire.as_str()),
            CellId::Codec(coding) => f.write_str(coding.as_str()),
            CellId::ShardReads(n) => write!(f, "read-{n}"),
            CellId::ShardDepartures(n) => write!(f, "departures-{n}"),
            CellId::Cache(on) => f.write_str(if on { "on" } else { "off" }),
            CellId::OpenLoop => f.write_str("open-loop"),
            CellId::ProjectionWrites(keeping) => write!(f, "writes-{keeping}"),
            CellId::ProjectionMix => f.write_str("mix-async"),
            CellId::Auth(signing) => f.write_str(signing.as_str()),
            CellId::Writes(at_rest) => write!(f, "writes-{at_rest}"),
            CellId::Transport { wire, tls } => f.write_str(match (wire, tls) {
                (Wire::H1, false) => "h1",
                (Wire::H1, true) => "h1-tls",
                (Wire::H2c, false) => "h2c",
                (Wire::H2c, true) => "h2-tls",
            }),
            CellId::Board { read_model } => {
                write!(f, "{}-{PROJECTION_SHARDS}", if read_model { "board" } else { "scatter" })
            }
        }
    }
}

/// `part/label`, stable across runs: what `run.json` and `compare` use.
impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.part(), self.label())
    }
}

/// Only ids of cells a run can make.
impl std::str::FromStr for CellId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        CellId::all().find(|id| id.to_string() == text).ok_or_else(|| format!("no run has a cell {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_alike_and_are_unique() {
        let all: Vec<CellId> = CellId::all().collect();
        let texts: std::collections::BTreeSet<String> = all.iter().map(|id| id.to_string()).collect();
        assert_eq!(texts.len(), all.len(), "two cells share an id");
        for id in &all {
            assert_eq!(id.to_string().parse::<CellId>(), Ok(*id));
            assert_eq!(id.to_string(), format!("{}/{}", id.part(), id.label()));
            assert!(CellId::of(id.part()).contains(id));
        }
        assert_eq!(CellId::Path(QueryPath::Raw).to_string(), "paths/raw");
        assert_eq!(CellId::ShardDepartures(16).to_string(), "shards/departures-16");
        assert_eq!(CellId::Protocol(Wire::H2c).to_string(), "protocols/h2c");
        assert_eq!(CellId::ProjectionWrites(Keeping::Inline).to_string(), "projections/writes-inline");
        assert_eq!(CellId::Board { read_model: true }.to_string(), "projections/board-16");
        assert_eq!(CellId::ProjectionMix.to_string(), "projections/mix-async");
        assert_eq!(CellId::Auth(Signing::Es256Cached).to_string(), "security/es256-cached");
        for bad in ["paths/fast", "shards/read-2", "compression/deflate", "cache", ""] {
            assert!(bad.parse::<CellId>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_planned_cell_or_refused(text in "[a-z]{0,12}/[a-z0-9-]{0,12}|\\PC{0,20}") {
            if let Ok(id) = text.parse::<CellId>() {
                proptest::prop_assert_eq!(id.to_string(), text.clone());
                proptest::prop_assert!(CellId::all().any(|c| c == id));
            }
        }
    }
}
