//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3): which content coding a response
//! gets, from the client's list with q-values and the server's preference.
//!
//! Rules, in order:
//! - a coding the client names with q > 0 is acceptable; `*` covers every coding it
//!   does not name; q = 0 (for a name or via `*`) rules a coding out;
//! - `identity` is acceptable unless ruled out by `identity;q=0` or by `*;q=0` without
//!   an explicit `identity` entry;
//! - no header at all means "anything", and the server then sends identity (RFC 9110:
//!   the server may choose; identity is the safe choice for clients that said nothing);
//! - among acceptable compressed codings the highest q wins, ties broken by the
//!   server's order (br, zstd, gzip, deflate);
//! - bodies below the size threshold are sent as identity when identity is acceptable;
//! - when nothing is acceptable the answer is 406.

use crate::compression::Encoding;
use http::HeaderValue;

/// The server's preference among compressed codings, best first.
const PREFERENCE: [Encoding; 4] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip, Encoding::Deflate];

/// A parsed `Accept-Encoding` header, built without allocating: it is parsed on every
/// request, and most point reads answer below the compression threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptEncoding {
    /// q (thousandths) of each coding the client names, by `Encoding` index.
    named: [Option<u16>; 5],
    /// q of `*`, if present.
    wildcard: Option<u16>,
    /// Was the header present at all?
    present: bool,
    /// The header's first value as sent, for error messages (a shared reference to the
    /// request's bytes, not a copy), and whether more values followed it.
    raw: Option<HeaderValue>,
    more: bool,
}

impl std::fmt::Display for AcceptEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let raw = self.raw.as_ref().map_or("", |v| v.to_str().unwrap_or("<not ASCII>"));
        write!(f, "{raw}{}", if self.more { ", …" } else { "" })
    }
}

fn index(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Identity => 0,
        Encoding::Br => 1,
        Encoding::Zstd => 2,
        Encoding::Gzip => 3,
        Encoding::Deflate => 4,
    }
}

impl AcceptEncoding {
    /// Parses the header's values. Unknown codings are ignored; a malformed q-value
    /// makes that element count as q = 0 rather than failing the request; a value that
    /// is not ASCII names nothing.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut parsed = AcceptEncoding { named: [None; 5], wildcard: None, present: false, raw: None, more: false };
        for value in values {
            if parsed.present {
                parsed.more = true;
            } else {
                parsed.present = true;
                parsed.raw = Some(value.clone());
            }
            let Ok(value) = value.to_str() else { continue };
            for element in value.split(',') {
                let mut parts = element.split(';');
                let coding = parts.next().unwrap_or_default().trim();
                if coding.is_empty() {
                    continue;
                }
                let q = parts
                    .find_map(|p| {
                        let (k, v) = p.split_once('=')?;
                        (k.trim().eq_ignore_ascii_case("q")).then(|| parse_q(v.trim()))
                    })
                    .unwrap_or(Some(1000))
                    .unwrap_or(0);
                let known = |name: &str| coding.eq_ignore_ascii_case(name);
                let encoding = if coding == "*" {
                    parsed.wildcard = Some(q);
                    continue;
                } else if known("identity") {
                    Encoding::Identity
                } else if known("br") {
                    Encoding::Br
                } else if known("zstd") {
                    Encoding::Zstd
                } else if known("gzip") || known("x-gzip") {
                    Encoding::Gzip
                } else if known("deflate") {
                    Encoding::Deflate
                } else {
                    continue;
                };
                // The first mention of a coding counts, as it did when kept in a list.
                parsed.named[index(encoding)].get_or_insert(q);
            }
        }
        parsed
    }

    fn q(&self, encoding: Encoding) -> u16 {
        if let Some(q) = self.named[index(encoding)] {
            return q;
        }
        match (encoding, self.wildcard) {
            (_, Some(q)) => q,
            // Identity is acceptable unless ruled out explicitly.
            (Encoding::Identity, None) => 1,
            (_, None) => 0,
        }
    }

    /// The coding for a body of `len` bytes, or `None` for 406 Not Acceptable.
    pub fn choose(&self, len: usize, min_compress: usize) -> Option<Encoding> {
        let identity_ok = self.q(Encoding::Identity) > 0;
        if !self.present || (len < min_compress && identity_ok) {
            return Some(Encoding::Identity);
        }
        let best = PREFERENCE
            .iter()
            .copied()
            .filter(|&e| self.q(e) > 0)
            // max_by_key keeps the last maximum; reverse so ties go to the preferred.
            .rev()
            .max_by_key(|&e| self.q(e));
        best.or(identity_ok.then_some(Encoding::Identity))
    }
}

/// A q-value: `0`, `1`, `0.xyz`, `1.000`, in thousandths; `None` if malformed.
fn parse_q(text: &str) -> Option<u16> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value: u16 = frac.bytes().zip([100, 10, 1]).map(|(digit, place)| u16::from(digit - b'0') * place).sum();
    match whole {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    fn choose(header: Option<&'static str>, len: usize) -> Option<Encoding> {
        AcceptEncoding::parse(header.map(HeaderValue::from_static).as_ref()).choose(len, 1024)
    }

    #[test]
    fn picks_by_q_then_server_preference() {
        let big = 10_000;
        let cases: &[(Option<&str>, Option<Encoding>)] = &[
            (None, Some(Identity)),
            (Some(""), Some(Identity)),
            (Some("gzip"), Some(Gzip)),
            (Some("gzip, deflate, br, zstd"), Some(Br)),
            (Some("gzip;q=1.0, br;q=0.5"), Some(Gzip)),
            (Some("br;q=0.8, zstd;q=0.8"), Some(Br)),
            (Some("zstd, gzip;q=0.9"), Some(Zstd)),
            (Some("*"), Some(Br)),
            (Some("*;q=0.5, gzip;q=0.9"), Some(Gzip)),
            (Some("br;q=0, *"), Some(Zstd)),
            (Some("GZIP"), Some(Gzip)),
            (Some("x-gzip"), Some(Gzip)),
            (Some("compress, sdch"), Some(Identity)),
            (Some("identity"), Some(Identity)),
            (Some("identity;q=0"), None),
            (Some("identity;q=0, gzip"), Some(Gzip)),
            (Some("*;q=0"), None),
            (Some("*;q=0, identity"), Some(Identity)),
            (Some("gzip;q=0, identity;q=0"), None),
            (Some("gzip;q=banana"), Some(Identity)),
            (Some("br;q=1.5"), Some(Identity)),
            (Some(" br ; q=0.001 "), Some(Br)),
        ];
        for (header, want) in cases {
            assert_eq!(choose(*header, big), *want, "{header:?}");
        }
    }

    #[test]
    fn small_bodies_stay_identity_unless_identity_is_refused() {
        assert_eq!(choose(Some("br"), 100), Some(Identity));
        assert_eq!(choose(Some("br, identity;q=0"), 100), Some(Br));
        assert_eq!(choose(Some("identity;q=0"), 100), None);
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1.000"), Some(1000));
        for bad in ["1.1", "2", "0.1234", "-0", "", "x"] {
            assert_eq!(parse_q(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Any header bytes a client can send: a choice or a 406, never a panic; a
        /// chosen coding is always one the header allows.
        #[test]
        fn any_header_gives_an_acceptable_choice(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            len in 0usize..5_000,
        ) {
            let Ok(value) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
            let accept = AcceptEncoding::parse([&value]);
            if let Some(chosen) = accept.choose(len, 1024) {
                proptest::prop_assert!(
                    accept.q(chosen) > 0 || chosen == Encoding::Identity,
                    "{value:?} chose {chosen:?}"
                );
            }
            let _ = accept.to_string();
        }

        #[test]
        fn q_values_are_thousandths(text in "[0-9.]{0,6}") {
            if let Some(q) = parse_q(&text) {
                proptest::prop_assert!(q <= 1000);
            }
        }
    }
}
