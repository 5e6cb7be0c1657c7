//! Host names as the engine compares them: lowercase ASCII, IDN in punycode,
//! no trailing dot, IP literals recognised (never matching a domain).
//!
//! Parsing follows what browsers do with the host of a URL (WHATWG URL host
//! parsing), so that a name the proxy decides on is the name the browser
//! meant: percent-decoding, UTS #46 mapping to punycode (fullwidth dots,
//! case folding), and the legacy IPv4 forms (`127.1`, `0x7f.1`,
//! `2130706433`). A name whose last label is numeric is an IPv4 address or an
//! error, never a DNS name, so `1.2.3.256` cannot slip past an IP rule.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A normalised host: a DNS name (lowercase, punycode, no trailing dot) or an
/// IP literal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host {
    name: Box<str>,
    ip: Option<IpAddr>,
}

/// Why a string is not a usable host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Empty, or only dots.
    #[error("empty host name")]
    Empty,
    /// A character that cannot appear in a host name.
    #[error("invalid character {0:?} in host name")]
    InvalidChar(char),
    /// An empty label (`a..b`), a label longer than 63 bytes, or a numeric
    /// last label that is not a valid IPv4 address (`1.2.3.256`).
    #[error("invalid label in host name")]
    InvalidLabel,
    /// The whole name is longer than 253 bytes.
    #[error("host name too long")]
    TooLong,
    /// IDNA processing failed.
    #[error("invalid internationalised host name")]
    Idna,
}

/// Longest DNS name, without the trailing dot.
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

impl Host {
    /// Parses and normalises a host (no port). Accepts bracketed or bare IPv6
    /// literals, IPv4 literals (also in the legacy forms browsers accept),
    /// and DNS names in any case, with one trailing dot, percent-encoded or
    /// in Unicode. IPv4-mapped IPv6 literals become the IPv4 address.
    pub fn parse(input: &str) -> Result<Host, HostError> {
        let input = input.trim_matches(|c: char| c.is_ascii_whitespace());
        if input.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(rest) = input.strip_prefix('[') {
            let inner = rest.strip_suffix(']').ok_or(HostError::InvalidChar('['))?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::from_ip(IpAddr::V6(ip)))
                .map_err(|_| HostError::InvalidChar('['));
        }
        if input.contains(':') {
            // Only an IPv6 literal may contain a colon (a port is not part of a host).
            return input
                .parse::<Ipv6Addr>()
                .map(|ip| Host::from_ip(IpAddr::V6(ip)))
                .map_err(|_| HostError::InvalidChar(':'));
        }
        let decoded;
        let input = if input.contains('%') {
            decoded = percent_decode(input)?;
            decoded.as_str()
        } else {
            input
        };
        let ascii = to_ascii_lowercase(input)?;
        let name = ascii.strip_suffix('.').unwrap_or(&ascii);
        if name.bytes().all(|b| b == b'.') {
            return Err(HostError::Empty);
        }
        if let Some(c) = name.chars().find(|&c| !is_name_char(c)) {
            return Err(HostError::InvalidChar(c));
        }
        if ends_in_number(name) {
            return parse_ipv4(name).map(|ip| Host::from_ip(IpAddr::V4(ip))).ok_or(HostError::InvalidLabel);
        }
        if name.len() > MAX_NAME {
            return Err(HostError::TooLong);
        }
        if name.split('.').any(|label| label.is_empty() || label.len() > MAX_LABEL) {
            return Err(HostError::InvalidLabel);
        }
        Ok(Host { name: name.into(), ip: None })
    }

    /// The host for an IP address. IPv4-mapped IPv6 addresses
    /// (`::ffff:1.2.3.4`) become the IPv4 address they carry.
    pub fn from_ip(ip: IpAddr) -> Host {
        let ip = ip.to_canonical();
        Host { name: ip.to_string().into_boxed_str(), ip: Some(ip) }
    }

    /// The normalised name (an IP literal is written without brackets).
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The address, if the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl std::str::FromStr for Host {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Host::parse(s)
    }
}

/// Bytes a normalised DNS name may hold. `_` is not valid in a host name
/// per RFC 952, but it occurs in the wild and browsers send it.
fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_')
}

/// Lowercases an ASCII name, or maps a Unicode one to punycode (UTS #46, as
/// browsers do). ASCII names with `xn--` labels are checked to decode.
fn to_ascii_lowercase(input: &str) -> Result<Cow<'_, str>, HostError> {
    if input.is_ascii() {
        if let Some(c) = input.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))) {
            return Err(HostError::InvalidChar(c));
        }
        let lower = if input.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(input.to_ascii_lowercase())
        } else {
            Cow::Borrowed(input)
        };
        if lower.split('.').any(|label| label.starts_with("xn--")) {
            idna::domain_to_ascii_cow(lower.as_bytes(), idna::AsciiDenyList::URL).map_err(|_| HostError::Idna)?;
        }
        return Ok(lower);
    }
    // ASCII characters that cannot be in a name are reported as themselves,
    // before IDNA gets a chance to fail with a vaguer error.
    if let Some(c) =
        input.chars().find(|&c| c.is_ascii() && !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(HostError::InvalidChar(c));
    }
    idna::domain_to_ascii_cow(input.as_bytes(), idna::AsciiDenyList::URL)
        .map(|cow| Cow::Owned(cow.into_owned()))
        .map_err(|_| HostError::Idna)
}

fn percent_decode(input: &str) -> Result<String, HostError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(HostError::InvalidChar('%'))?;
            let hi = hex_value(hex.first().copied()).ok_or(HostError::InvalidChar('%'))?;
            let lo = hex_value(hex.get(1).copied()).ok_or(HostError::InvalidChar('%'))?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| HostError::Idna)
}

fn hex_value(b: Option<u8>) -> Option<u8> {
    char::from(b?).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// WHATWG "ends in a number": the last label is all digits, or `0x` and hex
/// digits. Such a name must be an IPv4 address.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x").is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The WHATWG URL IPv4 forms browsers and `inet_aton` accept: one to four
/// dot-separated parts, each decimal, `0x` hex or `0`-prefixed octal, the
/// last part filling the remaining bytes (`127.1`, `2130706433`, `0x7f.0.0.1`).
/// `None` when the name is not a valid address.
fn parse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u64; 4];
    let mut count = 0;
    for part in name.split('.') {
        *parts.get_mut(count)? = parse_ipv4_part(part)?;
        count += 1;
    }
    let (last, init) = parts.get(..count)?.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    let last_bits = 8 * (5 - count as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value |= n << (8 * (3 - i as u32));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn parse_ipv4_part(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if let Some(oct) = part.strip_prefix('0').filter(|rest| !rest.is_empty()) {
        (oct, 8)
    } else {
        (part, 10)
    };
    let mut value: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        // Saturate: anything past u32 is rejected by the caller anyway.
        value = value.saturating_mul(u64::from(radix)).saturating_add(u64::from(d));
    }
    Some(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        match Host::parse(input) {
            Ok(h) => h.as_str().to_owned(),
            Err(e) => panic!("{input:?} should parse, got {e}"),
        }
    }

    #[test]
    fn normalises_names() {
        let table: &[(&str, &str)] = &[
            ("facebook.com", "facebook.com"),
            ("FaceBook.COM", "facebook.com"),
            ("facebook.com.", "facebook.com"),
            ("  facebook.com\t", "facebook.com"),
            ("\r\nfacebook.com \n", "facebook.com"),
            ("www.facebook.com", "www.facebook.com"),
            ("_dmarc.example.com", "_dmarc.example.com"),
            ("a-b.example", "a-b.example"),
            ("localhost", "localhost"),
            ("com", "com"),
            // percent-encoding
            ("faceb%6Fok.com", "facebook.com"),
            ("faceb%6fok.com", "facebook.com"),
            ("%46%41%43%45book.com", "facebook.com"),
            ("b%C3%BCcher.example", "xn--bcher-kva.example"),
            // IDN
            ("bücher.example", "xn--bcher-kva.example"),
            ("BÜCHER.example", "xn--bcher-kva.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
            ("bücher.example.", "xn--bcher-kva.example"),
            // fullwidth and ideographic dots, fullwidth letters
            ("bücher\u{FF0E}example", "xn--bcher-kva.example"),
            ("bücher\u{3002}example", "xn--bcher-kva.example"),
            ("ｆａｃｅｂｏｏｋ.com", "facebook.com"),
            ("ｆａｃｅｂｏｏｋ\u{FF0E}ｃｏｍ", "facebook.com"),
            ("ｆａｃｅｂｏｏｋ\u{FF0E}ｃｏｍ\u{3002}", "facebook.com"),
            ("ß.de", "xn--zca.de"),
            ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
            // 63-char label is fine
            (&"a".repeat(63), &"a".repeat(63)),
        ];
        for (input, want) in table {
            assert_eq!(ok(input), *want, "input {input:?}");
            assert!(Host::parse(input).unwrap().ip().is_none(), "input {input:?} is a name");
        }
    }

    #[test]
    fn parses_ip_literals() {
        let table: &[(&str, &str)] = &[
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0X7F.0.0.1", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0177.1", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("00000000000000000000177.0.0.1", "127.0.0.1"),
            ("0127.0.0.1", "87.0.0.1"),
            ("0x", "0.0.0.0"),
            ("0", "0.0.0.0"),
            ("1.2.3.4", "1.2.3.4"),
            ("255.255.255.255", "255.255.255.255"),
            ("4294967295", "255.255.255.255"),
            ("1.16777215", "1.255.255.255"),
            ("%31%32%37.0.0.1", "127.0.0.1"),
            ("１２７．０．０．１", "127.0.0.1"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("[2001:DB8::1]", "2001:db8::1"),
            ("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
            (" [::1] ", "::1"),
            // IPv4-mapped IPv6 is the IPv4 address
            ("[::ffff:127.0.0.1]", "127.0.0.1"),
            ("::ffff:7f00:1", "127.0.0.1"),
            ("[::ffff:169.254.169.254]", "169.254.169.254"),
        ];
        for (input, want) in table {
            let host = Host::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(host.as_str(), *want, "input {input:?}");
            assert_eq!(host.ip().map(|ip| ip.to_string()).as_deref(), Some(*want), "input {input:?}");
        }
    }

    #[test]
    fn rejects_hostile_input() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        let table: &[(&str, HostError)] = &[
            ("", HostError::Empty),
            ("   ", HostError::Empty),
            (".", HostError::Empty),
            ("..", HostError::Empty),
            ("...", HostError::Empty),
            ("a..", HostError::InvalidLabel),
            ("a..b", HostError::InvalidLabel),
            (".a", HostError::InvalidLabel),
            ("facebook.com..", HostError::InvalidLabel),
            (&long_label, HostError::InvalidLabel),
            (&long_name, HostError::TooLong),
            ("face book.com", HostError::InvalidChar(' ')),
            ("face\tbook.com", HostError::InvalidChar('\t')),
            ("facebook.com/evil", HostError::InvalidChar('/')),
            ("user@facebook.com", HostError::InvalidChar('@')),
            ("facebook.com:443", HostError::InvalidChar(':')),
            ("facebook.com\0", HostError::InvalidChar('\0')),
            ("face\0book.com", HostError::InvalidChar('\0')),
            ("faceb%00ok.com", HostError::InvalidChar('\0')),
            ("faceb%2Fok.com", HostError::InvalidChar('/')),
            ("face%20book.com", HostError::InvalidChar(' ')),
            ("facebook.com%2e%2e", HostError::InvalidLabel),
            ("faceb%6", HostError::InvalidChar('%')),
            ("faceb%zzok.com", HostError::InvalidChar('%')),
            ("faceb%ffok.com", HostError::Idna),
            ("a*b.com", HostError::InvalidChar('*')),
            ("bü*cher.com", HostError::InvalidChar('*')),
            ("a\\b.com", HostError::InvalidChar('\\')),
            ("[::1", HostError::InvalidChar('[')),
            ("[facebook.com]", HostError::InvalidChar('[')),
            ("[1.2.3.4]", HostError::InvalidChar('[')),
            ("[fe80::1%25eth0]", HostError::InvalidChar('[')),
            ("::1::2", HostError::InvalidChar(':')),
            // numeric last label: an IPv4 address or nothing
            ("1.2.3.256", HostError::InvalidLabel),
            ("256.1.1.1", HostError::InvalidLabel),
            ("1.2.3.4.5", HostError::InvalidLabel),
            ("4294967296", HostError::InvalidLabel),
            ("99999999999999999999999", HostError::InvalidLabel),
            ("08.0.0.1", HostError::InvalidLabel),
            ("1.2.3.09", HostError::InvalidLabel),
            ("example.123", HostError::InvalidLabel),
            ("1..2.3", HostError::InvalidLabel),
            ("0xfg.1", HostError::InvalidLabel),
            // fullwidth solidus maps to `/` under UTS #46
            ("face\u{FF0F}book.com", HostError::Idna),
            ("face\u{00A0}book.com", HostError::Idna),
            ("xn--zz.example", HostError::Idna),
        ];
        for (input, want) in table {
            assert_eq!(Host::parse(input).as_ref().err(), Some(want), "input {input:?}");
        }
    }

    #[test]
    fn label_and_name_limits_are_inclusive() {
        let name = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        assert_eq!(name.len(), 253);
        assert_eq!(ok(&name), name);
        assert_eq!(ok(&format!("{name}.")), name);
        assert_eq!(Host::parse(&format!("x{name}")), Err(HostError::TooLong));
    }

    #[test]
    fn hex_and_alpha_labels_are_names() {
        // Only a numeric *last* label makes an address.
        assert!(Host::parse("0x7f.example").unwrap().ip().is_none());
        assert!(Host::parse("1.2.3.com").unwrap().ip().is_none());
        assert!(Host::parse("0xg").unwrap().ip().is_none());
        assert_eq!(ok("123.example"), "123.example");
    }

    #[test]
    fn from_ip_canonicalises_mapped_addresses() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let host = Host::from_ip(mapped);
        assert_eq!(host.ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(host, Host::parse("10.0.0.1").unwrap());
    }
}
