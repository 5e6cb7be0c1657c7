//! Property tests for the PROXY header reader against a model of the
//! haproxy spec (proxy-protocol.txt): it never panics or waits on bytes it
//! has, never takes a byte past the header, reads well-formed v1 and v2
//! headers back to the address written, refuses what the spec says to
//! refuse, and keeps to the v1 line limit (107 bytes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::*;

/// A stream whose bytes arrive in segments of the sizes in `steps` (in
/// turn): each look or read sees at most the next segment.
struct Arrivals {
    data: Vec<u8>,
    at: usize,
    steps: Vec<usize>,
    turn: usize,
}

impl Arrivals {
    fn next_step(&mut self) -> usize {
        let step = self.steps.get(self.turn % self.steps.len().max(1)).copied().unwrap_or(usize::MAX);
        self.turn += 1;
        step.max(1)
    }
}

impl AsyncRead for Arrivals {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let step = self.next_step();
        let n = (self.data.len() - self.at).min(buf.remaining()).min(step);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        std::task::Poll::Ready(Ok(()))
    }
}

impl Peek for Arrivals {
    async fn peek(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let step = self.next_step();
        let n = (self.data.len() - self.at).min(buf.len()).min(step);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        Ok(n)
    }
}

/// What `read_header` gives for `bytes` arriving in `steps`, and the bytes
/// it left unread.
fn read(bytes: &[u8], steps: &[usize]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut stream = Arrivals { data: bytes.to_vec(), at: 0, steps: steps.to_vec(), turn: 0 };
    let result = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(2), read_header(&mut stream)).await })
        .expect("the reader waited though every byte had arrived");
    (result, bytes[stream.at..].to_vec())
}

/// The spec's answer: the client address (if the header names one) and the
/// header's length, or `None` when the header is to be refused (malformed,
/// or cut off before its end).
type Verdict = Option<(Option<SocketAddr>, usize)>;

fn model(bytes: &[u8]) -> Verdict {
    if bytes.starts_with(&V2_SIGNATURE) { model_v2(bytes) } else { model_v1(bytes) }
}

/// v1: `PROXY UNKNOWN` and anything up to CRLF, or `PROXY TCP4|TCP6 src dst
/// sport dport` CRLF with both addresses of the family and ports in plain
/// decimal; at most 107 bytes with the CRLF.
fn model_v1(bytes: &[u8]) -> Verdict {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let end = window.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    let fields: Vec<&str> = line.split(' ').collect();
    let port = |s: &str| -> Option<u16> {
        let plain = s == "0" || (s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() && !s.starts_with('0'));
        plain.then(|| s.parse().ok()).flatten()
    };
    let client = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", "TCP4", src, dst, sport, dport] => {
            let src: Ipv4Addr = src.parse().ok()?;
            dst.parse::<Ipv4Addr>().ok()?;
            port(dport)?;
            Some(SocketAddr::new(IpAddr::V4(src), port(sport)?))
        }
        ["PROXY", "TCP6", src, dst, sport, dport] => {
            let src: Ipv6Addr = src.parse().ok()?;
            dst.parse::<Ipv6Addr>().ok()?;
            port(dport)?;
            Some(SocketAddr::new(IpAddr::V6(src).to_canonical(), port(sport)?))
        }
        _ => return None,
    };
    Some((client, end + 2))
}

/// v2: version 2; command LOCAL (0, the block and its family ignored) or
/// PROXY (1); for PROXY an address family of 0-3 and a transport of 0-2
/// ("other values ... must be rejected as invalid by receivers"), and an
/// address block long enough for an IPv4 (12 bytes) or IPv6 (36) family.
/// UNSPEC and AF_UNIX keep the peer's address.
///
/// AF_INET/AF_INET6 with an UNSPEC transport (`0x10`, `0x20`) gives its
/// address: the spec's "should ignore address information" is a SHOULD,
/// and a balancer that names an IP family names a real client.
fn model_v2(bytes: &[u8]) -> Verdict {
    let fixed = bytes.get(..16)?;
    let (version_command, family) = (fixed[12], fixed[13]);
    let length = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let block = bytes.get(16..16 + length)?;
    if version_command >> 4 != 2 {
        return None;
    }
    let client = match (version_command & 0x0f, family >> 4, family & 0x0f) {
        (0, _, _) => None,
        (1, _, transport) if transport > 2 => return None,
        (1, 0 | 3, _) => None,
        (1, 1, _) => {
            let b = block.get(..12)?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])), u16::from_be_bytes([b[8], b[9]])))
        }
        (1, 2, _) => {
            let b = block.get(..36)?;
            let ip: [u8; 16] = b[..16].try_into().unwrap();
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)).to_canonical(), u16::from_be_bytes([b[32], b[33]])))
        }
        _ => return None,
    };
    Some((client, 16 + length))
}

/// Checks the reader against the model for `bytes` arriving in `steps`.
fn agrees(bytes: &[u8], steps: &[usize]) -> Result<(), TestCaseError> {
    let (result, rest) = read(bytes, steps);
    match (model(bytes), result) {
        (Some((client, len)), Ok(read)) => {
            prop_assert_eq!(read, client);
            prop_assert_eq!(rest, &bytes[len..], "the bytes after the header were not all left");
        }
        (None, Err(_)) => {}
        (expected, got) => prop_assert!(false, "model {:?}, reader {:?}", expected, got),
    }
    Ok(())
}

fn steps() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![Just(vec![usize::MAX]), vec(1..40usize, 1..6)]
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![any::<[u8; 4]>().prop_map(Ipv4Addr::from), Just(Ipv4Addr::UNSPECIFIED), Just(Ipv4Addr::BROADCAST)]
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(Ipv6Addr::from),
        ipv4().prop_map(|v4| v4.to_ipv6_mapped()),
        Just(Ipv6Addr::UNSPECIFIED),
        Just(Ipv6Addr::LOCALHOST),
    ]
}

/// A v1 header line for a TCP4 or TCP6 connection, with the client.
fn v1_line() -> impl Strategy<Value = (Vec<u8>, SocketAddr)> {
    let v4 = (ipv4(), ipv4()).prop_map(|(s, d)| ("TCP4", IpAddr::V4(s), IpAddr::V4(d)));
    let v6 = (ipv6(), ipv6()).prop_map(|(s, d)| ("TCP6", IpAddr::V6(s), IpAddr::V6(d)));
    (prop_oneof![v4, v6], any::<u16>(), any::<u16>()).prop_map(|((family, src, dst), sport, dport)| {
        let line = format!("PROXY {family} {src} {dst} {sport} {dport}\r\n").into_bytes();
        (line, SocketAddr::new(src.to_canonical(), sport))
    })
}

/// A v2 header with the PROXY command for TCP over IPv4 or IPv6, TLVs (any
/// bytes: the reader skips them) after the addresses, and the client.
fn v2_header() -> impl Strategy<Value = (Vec<u8>, SocketAddr)> {
    let v4 = (ipv4(), ipv4()).prop_map(|(s, d)| (0x11u8, [s.octets(), d.octets()].concat(), IpAddr::V4(s)));
    let v6 = (ipv6(), ipv6()).prop_map(|(s, d)| (0x21u8, [s.octets(), d.octets()].concat(), IpAddr::V6(s)));
    (prop_oneof![v4, v6], any::<u16>(), any::<u16>(), vec(any::<u8>(), 0..80)).prop_map(
        |((family, addresses, src), sport, dport, tlvs)| {
            let block = [&addresses[..], &sport.to_be_bytes(), &dport.to_be_bytes(), &tlvs].concat();
            let length = u16::try_from(block.len()).unwrap().to_be_bytes();
            let header = [&V2_SIGNATURE[..], &[0x21, family], &length, &block].concat();
            (header, SocketAddr::new(src.to_canonical(), sport))
        },
    )
}

/// The bytes after a header: the start of the request, anything at all.
fn after() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(b"GET http://a.test/ HTTP/1.1\r\n\r\n".to_vec()), vec(any::<u8>(), 0..24)]
}

/// Bytes biased to what a v1 parser looks at.
fn v1ish() -> impl Strategy<Value = u8> {
    prop_oneof![3 => select(b"0123456789abcdef.: \r\nPROXYTCP46UNKW+-".to_vec()), 1 => any::<u8>()]
}

/// One change to a header: replace, insert or remove a byte.
fn edit() -> impl Strategy<Value = (Index, u8, u8)> {
    (any::<Index>(), 0..3u8, v1ish())
}

fn apply(mut bytes: Vec<u8>, (at, op, byte): (Index, u8, u8)) -> Vec<u8> {
    match op {
        0 => {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        1 => bytes.insert(at.index(bytes.len() + 1), byte),
        _ => {
            bytes.remove(at.index(bytes.len()));
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever arrives (starting the way a header starts, or not), the
    /// reader does not panic or hang, and agrees with the model.
    #[test]
    fn arbitrary_bytes_are_read_as_the_spec_says(
        start in select(vec![
            &b""[..], b"P", b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN",
            &V2_SIGNATURE[..], &V2_SIGNATURE[..11], b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c",
        ]),
        tail in prop_oneof![vec(v1ish(), 0..120), vec(any::<u8>(), 0..40)],
        steps in steps(),
    ) {
        agrees(&[start, &tail].concat(), &steps)?;
    }

    /// A well-formed v1 line gives its client (IPv4-mapped as IPv4) and
    /// leaves every byte after it, however the bytes arrive.
    #[test]
    fn v1_headers_round_trip((line, client) in v1_line(), after in after(), steps in steps()) {
        let (result, rest) = read(&[&line[..], &after].concat(), &steps);
        prop_assert_eq!(result.unwrap(), Some(client));
        prop_assert_eq!(rest, after);
    }

    /// A v1 line with a byte changed, added or removed is read exactly as
    /// the model reads it: refused unless it is still a valid line.
    #[test]
    fn edited_v1_headers_are_read_as_the_spec_says((line, _) in v1_line(), edits in vec(edit(), 1..3), after in after(), steps in steps()) {
        let line = edits.into_iter().fold(line, apply);
        agrees(&[&line[..], &after].concat(), &steps)?;
    }

    /// A well-formed v2 header (TLVs included) gives its client and leaves
    /// every byte after it; as LOCAL it keeps the peer's address.
    #[test]
    fn v2_headers_round_trip((header, client) in v2_header(), after in after(), steps in steps()) {
        let (result, rest) = read(&[&header[..], &after].concat(), &steps);
        prop_assert_eq!(result.unwrap(), Some(client));
        prop_assert_eq!(&rest, &after);
        let mut local = header;
        local[12] = 0x20;
        let (result, rest) = read(&[&local[..], &after].concat(), &steps);
        prop_assert_eq!(result.unwrap(), None);
        prop_assert_eq!(rest, after);
    }

    /// A v2 header with any version/command, family/transport and address
    /// block, its length right or not: read as the model reads it.
    #[test]
    fn v2_headers_of_any_shape_are_read_as_the_spec_says(
        version_command in prop_oneof![3 => select(vec![0x20u8, 0x21]), 1 => any::<u8>()],
        family in prop_oneof![3 => select(vec![0x00u8, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]), 1 => any::<u8>()],
        block in vec(any::<u8>(), 0..60),
        declared in prop_oneof![3 => Just(None), 1 => any::<u16>().prop_map(Some)],
        after in after(),
        steps in steps(),
    ) {
        let length = declared.unwrap_or(u16::try_from(block.len()).unwrap()).to_be_bytes();
        let header = [&V2_SIGNATURE[..], &[version_command, family], &length, &block].concat();
        agrees(&[&header[..], &after].concat(), &steps)?;
    }

    /// The v1 line limit: 107 bytes with its CRLF are read, 108 are not
    /// (and the reader stops there, never reading on for the CRLF).
    #[test]
    fn v1_lines_are_limited_to_107_bytes(len in 16usize..=130, after in after(), steps in steps()) {
        let line = format!("PROXY UNKNOWN {}\r\n", "x".repeat(len - 16)).into_bytes();
        prop_assert_eq!(line.len(), len);
        let bytes = [&line[..], &after].concat();
        let (result, rest) = read(&bytes, &steps);
        if len <= V1_MAX {
            prop_assert_eq!(result.unwrap(), None);
            prop_assert_eq!(rest, after);
        } else {
            prop_assert!(matches!(result, Err(ProxyHeaderError::Malformed)), "{:?}", result);
            prop_assert!(bytes.len() - rest.len() <= V1_MAX);
        }
    }

    /// The v2 length field is honoured to its largest value (64 KiB of
    /// TLVs), and not a byte further.
    #[test]
    fn v2_blocks_are_read_to_their_declared_length(extra in prop_oneof![Just(65_535usize - 12), 0..2000usize], after in after()) {
        let block = [&[10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0x0c, 0x38][..], &vec![0xee; extra]].concat();
        let length = u16::try_from(block.len()).unwrap().to_be_bytes();
        let header = [&V2_SIGNATURE[..], &[0x21, 0x11], &length, &block].concat();
        let (result, rest) = read(&[&header[..], &after].concat(), &[]);
        prop_assert_eq!(result.unwrap(), Some("10.0.0.1:8080".parse().unwrap()));
        prop_assert_eq!(rest, after);
    }
}
