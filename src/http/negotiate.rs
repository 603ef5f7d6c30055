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

/// The server's preference among compressed codings, best first.
const PREFERENCE: [Encoding; 4] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip, Encoding::Deflate];

/// A parsed `Accept-Encoding` header.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptEncoding {
    /// (coding, q) for each coding this server knows; q in thousandths.
    named: Vec<(Encoding, u16)>,
    /// q of `*`, if present.
    wildcard: Option<u16>,
    /// Was the header present at all?
    present: bool,
    /// The header as sent, for error messages.
    raw: String,
}

impl std::fmt::Display for AcceptEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

impl AcceptEncoding {
    /// Parses the header value(s). Unknown codings are ignored; a malformed q-value
    /// makes that element count as q = 0 rather than failing the request.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut parsed = AcceptEncoding { named: Vec::new(), wildcard: None, present: false, raw: String::new() };
        for value in values {
            if parsed.present {
                parsed.raw.push_str(", ");
            }
            parsed.present = true;
            parsed.raw.push_str(value);
            for element in value.split(',') {
                let mut parts = element.split(';');
                let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
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
                let encoding = match coding.as_str() {
                    "*" => {
                        parsed.wildcard = Some(q);
                        continue;
                    }
                    "identity" => Encoding::Identity,
                    "br" => Encoding::Br,
                    "zstd" => Encoding::Zstd,
                    "gzip" | "x-gzip" => Encoding::Gzip,
                    "deflate" => Encoding::Deflate,
                    _ => continue,
                };
                parsed.named.push((encoding, q));
            }
        }
        parsed
    }

    fn q(&self, encoding: Encoding) -> u16 {
        if let Some(&(_, q)) = self.named.iter().find(|(e, _)| *e == encoding) {
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
    let frac_value: u16 = format!("{frac:0<3}").parse().ok()?;
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

    fn choose(header: Option<&str>, len: usize) -> Option<Encoding> {
        AcceptEncoding::parse(header).choose(len, 1024)
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
}
