//! Response compression codecs: the encodings the server negotiates and the levels it
//! uses for dynamic JSON. `benches/compression.rs` measures every codec and level on
//! real response bodies; the defaults below are chosen from those figures (see
//! `results/benchmarks.md`).
//!
//! HTTP's `deflate` is the zlib format (RFC 1950), not raw deflate, so it is encoded
//! with a zlib encoder.

use async_compression::Level;
use async_compression::tokio::bufread::{
    BrotliDecoder, BrotliEncoder, GzipDecoder, GzipEncoder, ZlibDecoder, ZlibEncoder, ZstdDecoder, ZstdEncoder,
};

use tokio::io::AsyncReadExt;

crate::choices! {
    /// A content coding (RFC 9110 §8.4.1); its name is the `Content-Encoding` token.
    #[derive(Debug, Hash)]
    pub enum Encoding as "content coding" {
        /// No compression.
        Identity = "identity",
        /// Brotli.
        Br = "br",
        /// Zstandard.
        Zstd = "zstd",
        /// gzip (RFC 1952).
        Gzip = "gzip",
        /// The zlib format (RFC 1950), as HTTP's `deflate` means it.
        Deflate = "deflate",
    }
}

impl Encoding {
    pub const COMPRESSED: [Encoding; 4] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip, Encoding::Deflate];

    /// The level used when none is configured: per codec, the cheapest measured level
    /// whose output on a typical response (50 departures) is within 15% of the
    /// codec's smallest, as `flightbench bench-report` computes it from
    /// `benches/compression.rs` (`results/benchmarks.md`, "What the benches found").
    /// On this machine the rule picked br 6 (br 11, brotli's own default, took 114× as
    /// long for 12% less output; br 4 is about half br 6's CPU for 11% more bytes),
    /// zstd 1 (smaller *and* faster than 3 on these bodies), gzip 9 (level 6 is within
    /// noise of it in both size and time) and deflate 6. `--compression-level` overrides.
    pub fn default_level(self) -> i32 {
        match self {
            Encoding::Identity => 0,
            Encoding::Br => 6,
            Encoding::Zstd => 1,
            Encoding::Gzip => 9,
            Encoding::Deflate => 6,
        }
    }

    /// The levels the codec accepts.
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Encoding::Identity => 0..=0,
            Encoding::Br => 0..=11,
            Encoding::Zstd => 1..=19,
            Encoding::Gzip | Encoding::Deflate => 1..=9,
        }
    }
}

/// Compresses a whole body.
pub async fn compress(encoding: Encoding, level: i32, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() / 4 + 64);
    let level = Level::Precise(level);
    match encoding {
        Encoding::Identity => out.extend_from_slice(body),
        Encoding::Br => _ = BrotliEncoder::with_quality(body, level).read_to_end(&mut out).await?,
        Encoding::Zstd => _ = ZstdEncoder::with_quality(body, level).read_to_end(&mut out).await?,
        Encoding::Gzip => _ = GzipEncoder::with_quality(body, level).read_to_end(&mut out).await?,
        Encoding::Deflate => _ = ZlibEncoder::with_quality(body, level).read_to_end(&mut out).await?,
    }
    Ok(out)
}

/// Decompresses a whole body (tests and the load generator's decoded-bytes count).
pub async fn decompress(encoding: Encoding, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() * 4);
    match encoding {
        Encoding::Identity => out.extend_from_slice(body),
        Encoding::Br => _ = BrotliDecoder::new(body).read_to_end(&mut out).await?,
        Encoding::Zstd => _ = ZstdDecoder::new(body).read_to_end(&mut out).await?,
        Encoding::Gzip => _ = GzipDecoder::new(body).read_to_end(&mut out).await?,
        Encoding::Deflate => _ = ZlibDecoder::new(body).read_to_end(&mut out).await?,
    }
    Ok(out)
}

/// The decoded size of a whole body, streamed into a counting sink: no buffer for the
/// decoded bytes, however much a small body expands. A body that does not decode
/// (truncated, corrupt, not in `encoding` at all) is an error.
pub async fn decoded_len(encoding: Encoding, body: &[u8]) -> std::io::Result<u64> {
    let mut sink = tokio::io::sink();
    match encoding {
        Encoding::Identity => Ok(body.len() as u64),
        Encoding::Br => tokio::io::copy(&mut BrotliDecoder::new(body), &mut sink).await,
        Encoding::Zstd => tokio::io::copy(&mut ZstdDecoder::new(body), &mut sink).await,
        Encoding::Gzip => tokio::io::copy(&mut GzipDecoder::new(body), &mut sink).await,
        Encoding::Deflate => tokio::io::copy(&mut ZlibDecoder::new(body), &mut sink).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_codec_round_trips_at_every_level_and_shrinks_json() {
        let body = serde_json::to_vec(
            &(0..500).map(|i| format!("{{\"flight\":{i},\"state\":\"delayed\"}}")).collect::<Vec<_>>(),
        )
        .unwrap();
        for encoding in Encoding::COMPRESSED {
            for level in [*encoding.levels().start(), encoding.default_level(), *encoding.levels().end()] {
                let packed = compress(encoding, level, &body).await.unwrap();
                assert!(packed.len() < body.len() / 3, "{encoding} level {level}: {} of {}", packed.len(), body.len());
                assert_eq!(decompress(encoding, &packed).await.unwrap(), body, "{encoding} level {level}");
            }
            assert!(encoding.levels().contains(&encoding.default_level()));
        }
        assert_eq!(compress(Encoding::Identity, 0, &body).await.unwrap(), body);
    }

    #[tokio::test]
    async fn decoded_lengths_are_counted_and_bad_bodies_refused() {
        let body = vec![b'a'; 100_000];
        for encoding in Encoding::COMPRESSED {
            let packed = compress(encoding, encoding.default_level(), &body).await.unwrap();
            assert_eq!(decoded_len(encoding, &packed).await.unwrap(), 100_000, "{encoding}");
            let truncated = &packed[..packed.len() / 2];
            assert!(decoded_len(encoding, truncated).await.is_err(), "{encoding}: a truncated body must not decode");
            assert!(decoded_len(encoding, b"plain text, not compressed").await.is_err(), "{encoding}: garbage");
        }
        assert_eq!(decoded_len(Encoding::Identity, b"abc").await.unwrap(), 3);
    }

    #[tokio::test]
    async fn deflate_is_zlib_wrapped() {
        let packed = compress(Encoding::Deflate, 6, b"hello hello hello").await.unwrap();
        // zlib header: CM = 8 (deflate), and the first two bytes are a multiple of 31.
        assert_eq!(packed[0] & 0x0f, 8);
        assert_eq!((u16::from(packed[0]) << 8 | u16::from(packed[1])) % 31, 0);
    }
}
