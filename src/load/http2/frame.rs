//! HTTP/2 frames as the load generator writes and reads them (RFC 9113 §4, §6), and the
//! HPACK encoding of its requests (RFC 7541). Requests are encoded without the dynamic
//! table: every field is an indexed static entry or a literal "without indexing", so
//! the same request always encodes to the same bytes and `--url` encodes it once.
//! Responses are decoded by `hpack`.

/// Sent first on every connection (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADER_LEN: usize = 9;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// RST_STREAM error code for a request the client gave up on (a timeout).
pub const CANCEL: u32 = 0x8;
/// The window every connection and stream starts with (RFC 9113 §6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;
/// The largest frame payload the generator accepts (the protocol's default; it
/// advertises no other).
pub const MAX_FRAME: usize = 16_384;

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub length: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Header {
    /// Reads a header from the start of `buf`, if 9 bytes are there.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let b: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Self {
            length: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        })
    }
}

/// Appends a frame header; the payload follows.
pub fn put_header(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream: u32) {
    // Cannot truncate: payloads are at most MAX_FRAME (or the peer's max, < 2^24).
    let length = (length as u32).to_be_bytes();
    out.extend_from_slice(&[length[1], length[2], length[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Appends a frame with its whole payload.
pub fn put_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    put_header(out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
}

pub fn put_settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    put_header(out, settings.len() * 6, SETTINGS, 0, 0);
    for (id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_frame(out, WINDOW_UPDATE, 0, stream, &increment.to_be_bytes());
}

/// A payload without its padding (the PADDED flag: a length byte, then padding at
/// the end), and for HEADERS without its priority fields.
pub fn unpadded(header: &Header, payload: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    let mut end = payload.len();
    if header.flags & PADDED != 0 {
        let pad = usize::from(*payload.first()?);
        start = 1;
        end = end.checked_sub(pad)?;
    }
    if header.kind == HEADERS && header.flags & PRIORITY != 0 {
        start += 5;
    }
    (start <= end).then_some(start..end)
}

/// One request's header block, as HPACK without the dynamic table.
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub https: bool,
    pub authority: &'a str,
    pub path: &'a str,
    /// Regular fields, names in lower case.
    pub fields: &'a [(&'a [u8], &'a [u8])],
}

/// Appends the HPACK block of `head` to `out`.
pub fn encode_head(head: &RequestHead<'_>, out: &mut Vec<u8>) {
    // Static table indices (RFC 7541 Appendix A): 1 :authority, 2 :method GET,
    // 3 :method POST, 4 :path /, 6 :scheme http, 7 :scheme https.
    match head.method {
        "GET" => out.push(0x80 | 2),
        "POST" => out.push(0x80 | 3),
        other => literal_with_name_index(out, 2, other.as_bytes()),
    }
    out.push(0x80 | if head.https { 7 } else { 6 });
    if head.path == "/" {
        out.push(0x80 | 4);
    } else {
        literal_with_name_index(out, 4, head.path.as_bytes());
    }
    literal_with_name_index(out, 1, head.authority.as_bytes());
    for (name, value) in head.fields {
        // Literal without indexing, new name (RFC 7541 §6.2.2).
        out.push(0);
        string(out, name);
        string(out, value);
    }
}

/// A literal without indexing whose name is static entry `index` (< 15).
fn literal_with_name_index(out: &mut Vec<u8>, index: u8, value: &[u8]) {
    out.push(index);
    string(out, value);
}

/// A string literal, not Huffman-coded.
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    integer(out, bytes.len(), 7, 0);
    out.extend_from_slice(bytes);
}

/// An HPACK integer with an N-bit prefix (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, mut value: usize, prefix_bits: u32, flags: u8) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        // Cannot truncate: value < max <= 127.
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(block: &[u8]) -> Vec<(String, String)> {
        let mut decoder = loona_hpack::Decoder::new();
        let fields = decoder.decode(block).expect("a valid HPACK block");
        fields
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).expect("utf8"), String::from_utf8(v).expect("utf8")))
            .collect()
    }

    #[test]
    fn requests_decode_back_to_their_fields() {
        let long_path = format!("/airports/ATL/departures?{}", "x".repeat(300));
        let fields: &[(&[u8], &[u8])] = &[(b"accept-encoding", b"br"), (b"if-match", b"\"3\"")];
        for (method, https, path) in
            [("GET", false, "/"), ("POST", true, "/flights/7/delays"), ("PUT", false, &*long_path)]
        {
            let mut block = Vec::new();
            encode_head(&RequestHead { method, https, authority: "127.0.0.1:8080", path, fields }, &mut block);
            let scheme = if https { "https" } else { "http" };
            let want: Vec<(String, String)> = [
                (":method", method),
                (":scheme", scheme),
                (":path", path),
                (":authority", "127.0.0.1:8080"),
                ("accept-encoding", "br"),
                ("if-match", "\"3\""),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
            assert_eq!(decode(&block), want, "{method} {path}");
        }
    }

    #[test]
    fn integers_use_their_prefix_then_continuation_bytes() {
        // RFC 7541 C.1: 10 and 1337 with a 5-bit prefix.
        for (value, want) in [(10, &[0x0a][..]), (1337, &[0x1f, 0x9a, 0x0a]), (31, &[0x1f, 0x00])] {
            let mut out = Vec::new();
            integer(&mut out, value, 5, 0);
            assert_eq!(out, want, "{value}");
        }
    }

    #[test]
    fn frame_headers_round_trip_and_padding_is_stripped() {
        let mut out = Vec::new();
        put_header(&mut out, 70_000, HEADERS, END_HEADERS | PADDED, 0x8000_0003);
        assert_eq!(Header::parse(&out), Some(Header { length: 70_000, kind: HEADERS, flags: 0x0c, stream: 3 }));
        assert_eq!(Header::parse(&out[..8]), None);
        let padded = Header { length: 8, kind: DATA, flags: PADDED, stream: 1 };
        assert_eq!(unpadded(&padded, &[2, b'a', b'b', b'c', b'd', b'e', 0, 0]), Some(1..6));
        assert_eq!(unpadded(&padded, &[9, b'a']), None, "padding longer than the payload");
        let prioritised = Header { length: 7, kind: HEADERS, flags: PRIORITY, stream: 1 };
        assert_eq!(unpadded(&prioritised, &[0, 0, 0, 0, 16, 0x88, 0x89]), Some(5..7));
    }
}
