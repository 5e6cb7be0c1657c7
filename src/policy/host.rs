//! Host names as the engine compares them: lowercase ASCII, IDN in punycode,
//! no trailing dot, IP literals recognised (never matching a domain).

use std::net::IpAddr;

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
    /// An empty label (`a..b`) or a label longer than 63 bytes.
    #[error("invalid label in host name")]
    InvalidLabel,
    /// The whole name is longer than 253 bytes.
    #[error("host name too long")]
    TooLong,
    /// IDNA processing failed.
    #[error("invalid internationalised host name")]
    Idna,
}

impl Host {
    /// Parses and normalises a host (no port). Accepts bracketed or bare IPv6
    /// literals, IPv4 literals, and DNS names in any case, with one trailing
    /// dot, percent-encoded or in Unicode.
    pub fn parse(input: &str) -> Result<Host, HostError> {
        let input = input.trim_matches(|c: char| c.is_ascii_whitespace());
        if let Some(inner) = input.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            return inner
                .parse::<std::net::Ipv6Addr>()
                .map(|ip| Host::from_ip(IpAddr::V6(ip)))
                .map_err(|_| HostError::InvalidChar('['));
        }
        if let Ok(ip) = input.parse::<std::net::Ipv6Addr>() {
            return Ok(Host::from_ip(IpAddr::V6(ip)));
        }
        let decoded;
        let input = if input.contains('%') {
            decoded = percent_decode(input)?;
            decoded.as_str()
        } else {
            input
        };
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(HostError::Empty);
        }
        let ascii: String = if trimmed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            trimmed.to_ascii_lowercase()
        } else if let Some(c) =
            trimmed.chars().find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(HostError::InvalidChar(c));
        } else {
            idna::domain_to_ascii(trimmed).map_err(|_| HostError::Idna)?
        };
        if let Some(v4) = parse_ipv4_forms(&ascii) {
            return Ok(Host::from_ip(IpAddr::V4(v4)));
        }
        if ascii.len() > 253 {
            return Err(HostError::TooLong);
        }
        if ascii.split('.').any(|label| label.is_empty() || label.len() > 63) {
            return Err(HostError::InvalidLabel);
        }
        Ok(Host { name: ascii.into_boxed_str(), ip: None })
    }

    /// The host for an IP address.
    pub fn from_ip(ip: IpAddr) -> Host {
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

fn percent_decode(input: &str) -> Result<String, HostError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(HostError::InvalidChar('%'))?;
            let hex = std::str::from_utf8(hex).map_err(|_| HostError::InvalidChar('%'))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| HostError::InvalidChar('%'))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| HostError::Idna)
}

/// The WHATWG URL IPv4 forms browsers and `inet_aton` accept: one to four
/// dot-separated parts, each decimal, `0x` hex or `0`-prefixed octal, the
/// last part filling the remaining bytes (`127.1`, `2130706433`, `0x7f.0.0.1`).
/// Returns `None` when the name is not numeric (a DNS name).
fn parse_ipv4_forms(name: &str) -> Option<std::net::Ipv4Addr> {
    let last = name.rsplit('.').next()?;
    parse_ipv4_part(last)?;
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for part in &parts {
        nums.push(parse_ipv4_part(part)?);
    }
    let (last, init) = nums.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    let remaining_bytes = 4 - init.len() as u32;
    if remaining_bytes < 4 && *last >= 1u64 << (8 * remaining_bytes) {
        return None;
    }
    if *last > u64::from(u32::MAX) {
        return None;
    }
    let mut value: u64 = *last;
    for (i, n) in init.iter().enumerate() {
        value |= n << (8 * (3 - i as u32));
    }
    u32::try_from(value).ok().map(std::net::Ipv4Addr::from)
}

fn parse_ipv4_part(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}
