//! HPACK decoding of response header blocks (RFC 7541), with the Huffman code from
//! `httlib-huffman`.
//!
//! Why not an HPACK crate: `loona-hpack` (and the `hpack` crate it forks) builds a
//! hash map of the Huffman code for every Huffman-coded string, about 200,000
//! instructions for a `content-length` value that hyper's server sends Huffman-coded
//! in every response; `httlib-hpack` copies every field into fresh vectors and drains
//! its input from the front. The `h2` crate's decoder is private. What is left to
//! write is small: the static table, integers, strings and the dynamic table; the
//! tests check all of it against `loona-hpack` as the reference.

use std::collections::VecDeque;

/// The dynamic table's size limit: the protocol's default, which the generator never
/// changes in its SETTINGS.
pub const MAX_TABLE_SIZE: usize = 4096;

/// The static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// A malformed header block; the connection cannot go on (its table is unknown).
#[derive(Debug, PartialEq)]
pub struct Malformed;

/// One connection's decoder: the server's dynamic table as it built it.
pub struct Decoder {
    /// Newest entry first, as HPACK numbers them.
    dynamic: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// The table's size as HPACK counts it: each entry's name and value plus 32.
    size: usize,
    max_size: usize,
    /// Decoded Huffman strings, reused.
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: MAX_TABLE_SIZE,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }
}

/// Where a literal's string lives once read: in the block, or in a decode buffer.
#[derive(Clone, Copy)]
enum Text {
    Raw(usize, usize),
    Decoded,
}

impl Decoder {
    /// Decodes `block`, calling `field` with each name and value in order.
    pub fn decode(&mut self, block: &[u8], mut field: impl FnMut(&[u8], &[u8])) -> Result<(), Malformed> {
        let mut at = 0;
        while at < block.len() {
            let first = block[at];
            if first & 0x80 != 0 {
                let index = integer(block, &mut at, 7)?;
                let (name, value) = entry(&self.dynamic, index)?;
                field(name, value);
            } else if first & 0xc0 == 0x40 {
                let (name, value) = self.literal(block, &mut at, 6)?;
                let (name, value) = (self.text(block, name, true), self.text(block, value, false));
                field(name, value);
                let entry = (name.to_vec(), value.to_vec());
                self.insert(entry);
            } else if first & 0xe0 == 0x20 {
                let size = integer(block, &mut at, 5)?;
                if size > MAX_TABLE_SIZE {
                    return Err(Malformed);
                }
                self.max_size = size;
                self.evict(0);
            } else {
                // Without indexing (0000) or never indexed (0001): both 4-bit prefixes.
                let (name, value) = self.literal(block, &mut at, 4)?;
                field(self.text(block, name, true), self.text(block, value, false));
            }
        }
        Ok(())
    }

    /// Reads a literal's name (indexed or a string) and value; a decoded name is in
    /// `name_buf`, a decoded value in `value_buf`.
    fn literal(&mut self, block: &[u8], at: &mut usize, prefix: u32) -> Result<(Text, Text), Malformed> {
        let index = integer(block, at, prefix)?;
        let name = if index == 0 {
            self.string(block, at, true)?
        } else {
            let (name, _) = entry(&self.dynamic, index)?;
            self.name_buf.clear();
            self.name_buf.extend_from_slice(name);
            Text::Decoded
        };
        let value = self.string(block, at, false)?;
        Ok((name, value))
    }

    fn text<'a>(&'a self, block: &'a [u8], text: Text, is_name: bool) -> &'a [u8] {
        match (text, is_name) {
            (Text::Raw(start, end), _) => &block[start..end],
            (Text::Decoded, true) => &self.name_buf,
            (Text::Decoded, false) => &self.value_buf,
        }
    }

    /// A string literal: raw bytes stay in the block, Huffman-coded ones are decoded.
    fn string(&mut self, block: &[u8], at: &mut usize, is_name: bool) -> Result<Text, Malformed> {
        let huffman = block.get(*at).ok_or(Malformed)? & 0x80 != 0;
        let length = integer(block, at, 7)?;
        let end = at.checked_add(length).filter(|&end| end <= block.len()).ok_or(Malformed)?;
        let start = std::mem::replace(at, end);
        if !huffman {
            return Ok(Text::Raw(start, end));
        }
        let out = if is_name { &mut self.name_buf } else { &mut self.value_buf };
        out.clear();
        httlib_huffman::decode(&block[start..end], out, httlib_huffman::DecoderSpeed::FourBits)
            .map_err(|_| Malformed)?;
        Ok(Text::Decoded)
    }

    fn insert(&mut self, entry: (Vec<u8>, Vec<u8>)) {
        let size = entry.0.len() + entry.1.len() + 32;
        // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
        self.evict(size.min(self.max_size + 1));
        if size <= self.max_size {
            self.size += size;
            self.dynamic.push_front(entry);
        }
    }

    /// Drops the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((name, value)) = self.dynamic.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= name.len() + value.len() + 32;
        }
    }
}

/// Entry `index` of the static table (1 to 61), then of the dynamic table.
fn entry(dynamic: &VecDeque<(Vec<u8>, Vec<u8>)>, index: usize) -> Result<(&[u8], &[u8]), Malformed> {
    match index {
        0 => Err(Malformed),
        1..=61 => Ok(STATIC[index - 1]),
        _ => dynamic.get(index - 62).map(|(n, v)| (n.as_slice(), v.as_slice())).ok_or(Malformed),
    }
}

/// An HPACK integer with an N-bit prefix (RFC 7541 §5.1), advancing `at`.
fn integer(block: &[u8], at: &mut usize, prefix: u32) -> Result<usize, Malformed> {
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(*block.get(*at).ok_or(Malformed)?) & max;
    *at += 1;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let byte = *block.get(*at).ok_or(Malformed)?;
        *at += 1;
        // Larger than any header this client accepts: refuse rather than overflow.
        if shift > 21 {
            return Err(Malformed);
        }
        value += usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64): `below(n)` is in `0..n`.
    struct Draws(u64);

    impl Draws {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn ours(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, Malformed> {
        let mut fields = Vec::new();
        decoder.decode(block, |n, v| fields.push((n.to_vec(), v.to_vec())))?;
        Ok(fields)
    }

    #[test]
    fn every_static_entry_matches_the_reference() {
        let mut reference = loona_hpack::Decoder::new();
        let mut decoder = Decoder::default();
        for index in 1..=61u8 {
            let block = [0x80 | index];
            assert_eq!(ours(&mut decoder, &block), Ok(reference.decode(&block).expect("reference")), "index {index}");
        }
        assert_eq!(ours(&mut decoder, &[0x80]), Err(Malformed), "index 0");
        assert_eq!(ours(&mut decoder, &[0x80 | 62]), Err(Malformed), "an empty dynamic table");
    }

    #[test]
    fn huffman_strings_of_every_byte_match_the_reference() {
        let mut rng = Draws(7);
        let mut reference = loona_hpack::Decoder::new();
        let mut decoder = Decoder::default();
        for round in 0..300 {
            let value: Vec<u8> = if round == 0 {
                (0..=255).collect()
            } else {
                (0..rng.below(60)).map(|_| rng.below(256) as u8).collect()
            };
            let mut coded = Vec::new();
            httlib_huffman::encode(&value, &mut coded).expect("encodable");
            // Literal without indexing, name `etag` (static 34 > 15: 0x0f then 19),
            // then the value, Huffman-coded.
            let mut block = vec![0x0f, 34 - 15];
            put_length(&mut block, coded.len(), 0x80);
            block.extend_from_slice(&coded);
            let want = reference.decode(&block).expect("reference");
            assert_eq!(want[0].1, value, "the reference decodes what was encoded");
            assert_eq!(ours(&mut decoder, &block), Ok(want), "round {round}");
        }
    }

    /// An HPACK string length with a 7-bit prefix and the Huffman flag in `flags`.
    fn put_length(out: &mut Vec<u8>, length: usize, flags: u8) {
        if length < 127 {
            out.push(flags | length as u8);
        } else {
            out.push(flags | 127);
            let mut rest = length - 127;
            while rest >= 128 {
                out.push((rest % 128) as u8 | 0x80);
                rest /= 128;
            }
            out.push(rest as u8);
        }
    }

    #[test]
    fn a_long_session_with_evictions_matches_the_reference() {
        let mut rng = Draws(11);
        let mut encoder = loona_hpack::Encoder::new();
        let mut reference = loona_hpack::Decoder::new();
        let mut decoder = Decoder::default();
        for round in 0..2_000 {
            // Names and values repeat often enough to be indexed and evicted.
            let fields: Fields = (0..1 + rng.below(5))
                .map(|_| {
                    let name = format!("x-{}", rng.below(40)).into_bytes();
                    let value = "v".repeat(rng.below(200) as usize).into_bytes();
                    (name, value)
                })
                .chain([(b":status".to_vec(), b"200".to_vec()), (b"content-length".to_vec(), b"270".to_vec())])
                .collect();
            let block = encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
            let want = reference.decode(&block).expect("reference");
            assert_eq!(want, fields);
            assert_eq!(ours(&mut decoder, &block), Ok(want), "round {round}");
        }
        assert!(decoder.size <= MAX_TABLE_SIZE && !decoder.dynamic.is_empty());
    }

    #[test]
    fn size_updates_shrink_the_table_and_bad_blocks_are_refused() {
        let mut decoder = Decoder::default();
        // Literal with incremental indexing, new name "a", value "b"; then index 62.
        let block = [0x40, 1, b'a', 1, b'b', 0x80 | 62];
        assert_eq!(ours(&mut decoder, &block), Ok(vec![(b"a".to_vec(), b"b".to_vec()); 2]));
        // A size update to 0 empties the table.
        assert_eq!(ours(&mut decoder, &[0x20]), Ok(vec![]));
        assert_eq!(ours(&mut decoder, &[0x80 | 62]), Err(Malformed));
        for bad in [&[0x3f, 0xe2, 0x1f][..], &[0x40, 5, b'a'], &[0xff], &[0x0f, 0xff, 0xff, 0xff, 0xff, 0x7f]] {
            assert_eq!(ours(&mut Decoder::default(), bad), Err(Malformed), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Any header block a server may send: fields or `Malformed`, never a panic.
        #[test]
        fn arbitrary_header_blocks_never_panic(block in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut decoder = Decoder::default();
            let _ = decoder.decode(&block, |_, _| {});
            let _ = decoder.decode(&block, |_, _| {});
        }
    }
}
