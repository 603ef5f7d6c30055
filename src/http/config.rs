//! Server settings: limits, timeouts, compression, the default query path. Built once
//! from the CLI (`flightbench serve --help` lists them) and passed down.

use crate::compression::Encoding;
use crate::store::{ProbeConfig, QueryPath};
use std::time::Duration;

/// Levels per codec; defaults from [`Encoding::default_level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionLevels {
    br: i32,
    zstd: i32,
    gzip: i32,
    deflate: i32,
}

impl Default for CompressionLevels {
    fn default() -> Self {
        Self {
            br: Encoding::Br.default_level(),
            zstd: Encoding::Zstd.default_level(),
            gzip: Encoding::Gzip.default_level(),
            deflate: Encoding::Deflate.default_level(),
        }
    }
}

impl CompressionLevels {
    pub fn level(&self, encoding: Encoding) -> i32 {
        match encoding {
            Encoding::Identity => 0,
            Encoding::Br => self.br,
            Encoding::Zstd => self.zstd,
            Encoding::Gzip => self.gzip,
            Encoding::Deflate => self.deflate,
        }
    }

    /// Applies `codec=level` (e.g. `br=5`), checking the level is one the codec takes.
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (codec, level) = spec.split_once('=').ok_or_else(|| format!("{spec:?} is not codec=level, e.g. br=4"))?;
        let encoding = match codec.trim() {
            "br" => Encoding::Br,
            "zstd" => Encoding::Zstd,
            "gzip" => Encoding::Gzip,
            "deflate" => Encoding::Deflate,
            other => return Err(format!("unknown codec {other:?} (br, zstd, gzip or deflate)")),
        };
        let level: i32 = level.trim().parse().map_err(|_| format!("level {level:?} is not a number"))?;
        if !encoding.levels().contains(&level) {
            let range = encoding.levels();
            return Err(format!("{encoding} level {level} is outside {}..={}", range.start(), range.end()));
        }
        match encoding {
            Encoding::Br => self.br = level,
            Encoding::Zstd => self.zstd = level,
            Encoding::Gzip => self.gzip = level,
            Encoding::Deflate => self.deflate = level,
            Encoding::Identity => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Which routes this process answers (`serve --role`); `All` by default.
    pub role: super::ServiceRole,
    /// Query path when a request does not choose one with `x-query-path`.
    pub default_path: QueryPath,
    /// Bodies smaller than this are sent uncompressed (when identity is acceptable).
    pub compression_min_bytes: usize,
    /// Compressed bodies at least this large are encoded as a stream.
    pub stream_min_bytes: usize,
    pub levels: CompressionLevels,
    /// Largest request body accepted (413 beyond, for fixed-length, chunked and h2).
    pub max_body_bytes: usize,
    /// Largest request head (HTTP/1.1 read buffer, HTTP/2 header list). 32 KiB: an
    /// oversized bearer token (the auth check refuses those over 8 KiB) must reach the
    /// check and get its 401, not be cut off with a 431 first.
    pub max_header_bytes: usize,
    /// A connection must deliver a complete request head within this time.
    pub header_read_timeout: Duration,
    /// HTTP/2 connections are pinged after this long without traffic and closed if the
    /// ping goes unanswered for as long again.
    pub idle_timeout: Duration,
    pub max_concurrent_streams: u32,
    /// Requests handled at once; beyond it the server answers 503 at once rather than
    /// queueing without bound.
    pub max_in_flight: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// What `/readyz` probes and its thresholds.
    pub probes: ProbeConfig,
    /// Record Prometheus metrics and serve `GET /metrics`.
    pub metrics: bool,
    /// With traces on: the fraction of requests whose spans are built. The choice is
    /// made per request before any span exists, so an unsampled request builds none.
    /// `None` (traces off): spans exist only if a log filter asks for debug.
    pub trace_sample_ratio: Option<f64>,
    /// Flights the point-read cache holds; 0 turns the cache off.
    pub cache_capacity: usize,
    /// Concurrent `/live` subscribers; more are refused with 503. Each costs a
    /// connection and a few kilobytes: 1,000 on loopback took about 20 MB and no CPU
    /// while idle (`results/projections.md`).
    pub max_live_subscribers: u64,
    /// A connection whose peer has read nothing of what the server is writing for
    /// this long is closed (`stall`): a `/live` subscriber that stopped reading, or a
    /// client that sent requests and never reads the answers.
    pub write_stall_timeout: Duration,
    /// The read models kept inline: a delay report is answered only once the
    /// in-process runner has applied it to each of them (at most `INLINE_WAIT`
    /// later). Empty: answered at the commit, the models follow.
    pub inline_read_models: Vec<crate::projection::ReadModel>,
    /// Bearer-token checks (`--auth`); `None`: anyone may do anything.
    pub auth: Option<std::sync::Arc<crate::auth::Verifier>>,
    /// `Strict-Transport-Security` for every response (a TLS server's; `tls::HSTS`).
    pub hsts: Option<http::HeaderValue>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            role: super::ServiceRole::All,
            default_path: QueryPath::Raw,
            compression_min_bytes: 1_024,
            stream_min_bytes: 256 * 1_024,
            levels: CompressionLevels::default(),
            max_body_bytes: 16 * 1_024,
            max_header_bytes: 32 * 1_024,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_streams: 128,
            max_in_flight: 1_024,
            shutdown_grace: Duration::from_secs(10),
            probes: ProbeConfig::default(),
            metrics: true,
            trace_sample_ratio: None,
            cache_capacity: 100_000,
            max_live_subscribers: 10_000,
            write_stall_timeout: Duration::from_secs(30),
            inline_read_models: Vec::new(),
            auth: None,
            hsts: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_validate() {
        let mut levels = CompressionLevels::default();
        assert_eq!(levels.level(Encoding::Br), Encoding::Br.default_level());
        levels.set("br=5").unwrap();
        levels.set("zstd=19").unwrap();
        assert_eq!((levels.level(Encoding::Br), levels.level(Encoding::Zstd)), (5, 19));
        for bad in ["br", "br=12", "gzip=0", "lz4=1", "zstd=fast"] {
            assert!(levels.set(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn level_specs_set_a_valid_level_or_are_refused(spec in "(br|zstd|gzip|deflate|identity|x)=[-0-9]{0,12}|\\PC{0,16}") {
            let mut levels = CompressionLevels::default();
            if levels.set(&spec).is_ok() {
                for encoding in Encoding::COMPRESSED {
                    proptest::prop_assert!(encoding.levels().contains(&levels.level(encoding)));
                }
            }
        }
    }
}
