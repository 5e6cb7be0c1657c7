//! The PROXY protocol (v1 text, v2 binary) sent by load balancers listed in
//! `[proxy] proxy_protocol_from`: read exactly the header, never a byte of
//! the request after it, and return the real client address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// A stream whose unread bytes can be looked at without taking them, so the
/// v1 line is found in one look and read exactly, with never a byte of the
/// request after it taken.
pub(crate) trait Peek: AsyncRead + Unpin {
    /// Copies unread bytes into `buf` (waiting for at least one) and leaves
    /// them unread; 0 at the end of the stream.
    async fn peek(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl Peek for TcpStream {
    async fn peek(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        TcpStream::peek(self, buf).await
    }
}

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included.
const V1_MAX: usize = 107;

/// Why a PROXY header was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    #[error("connection closed or failed while reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed PROXY header")]
    Malformed,
}

/// Reads a PROXY header from `stream`. `Ok(Some(addr))` is the client the
/// balancer speaks for, IPv4-mapped IPv6 addresses given as IPv4 (as every
/// other client address is matched and logged); `Ok(None)` means the header
/// said `UNKNOWN`/`LOCAL` or named no IP family (keep the peer's address).
pub(crate) async fn read_header<S: Peek>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await?;
    let client = match first[0] {
        b'P' => read_v1(stream).await?,
        b'\r' => read_v2(stream).await?,
        _ => return Err(ProxyHeaderError::Malformed),
    };
    Ok(client.map(|addr| SocketAddr::new(addr.ip().to_canonical(), addr.port())))
}

async fn read_v1<S: Peek>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    // Look at what has arrived and take exactly the line: a few system calls
    // for the whole line rather than one per byte.
    let mut line = Vec::with_capacity(V1_MAX);
    line.push(b'P');
    let mut seen = [0u8; V1_MAX];
    loop {
        let n = stream.peek(&mut seen[..V1_MAX - line.len()]).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let seen = &seen[..n];
        // Where the line ends in what was seen (its CR may have come before).
        let end = if line.ends_with(b"\r") && seen[0] == b'\n' {
            Some(1)
        } else {
            seen.windows(2).position(|w| w == b"\r\n").map(|at| at + 2)
        };
        let take = end.unwrap_or(n);
        let start = line.len();
        line.resize(start + take, 0);
        stream.read_exact(&mut line[start..]).await?;
        if end.is_some() {
            return parse_v1(&line);
        }
        if line.len() >= V1_MAX {
            return Err(ProxyHeaderError::Malformed);
        }
    }
}

fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::Malformed)?;
    let text = text.strip_suffix("\r\n").ok_or(ProxyHeaderError::Malformed)?;
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *family == "TCP4";
            let ip: IpAddr = src.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            let dst: IpAddr = dst.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            if ip.is_ipv4() != v4 || dst.is_ipv4() != v4 {
                return Err(ProxyHeaderError::Malformed);
            }
            let port = v1_port(sport)?;
            v1_port(dport)?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(ProxyHeaderError::Malformed),
    }
}

/// A v1 port: decimal digits without a sign or a leading zero (the
/// haproxy spec), which `u16::from_str` alone would let through (`+80`,
/// `080`).
fn v1_port(s: &str) -> Result<u16, ProxyHeaderError> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(ProxyHeaderError::Malformed);
    }
    s.parse().map_err(|_| ProxyHeaderError::Malformed)
}

async fn read_v2<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut fixed = [0u8; 15];
    stream.read_exact(&mut fixed).await?;
    if fixed[..11] != V2_SIGNATURE[1..] {
        return Err(ProxyHeaderError::Malformed);
    }
    let (version_command, family) = (fixed[11], fixed[12]);
    // Refused before its body is read: a header with a wrong version or
    // command is not worth waiting for up to 64 KiB of.
    if version_command >> 4 != 2 || version_command & 0x0f > 1 {
        return Err(ProxyHeaderError::Malformed);
    }
    // So is a PROXY header's family past the spec's values (address family
    // 0-3, transport 0-2), which "must be rejected as invalid by receivers"
    // (LOCAL ignores the family).
    if version_command & 0x0f == 1 && (family >> 4 > 3 || family & 0x0f > 2) {
        return Err(ProxyHeaderError::Malformed);
    }
    let length = usize::from(u16::from_be_bytes([fixed[13], fixed[14]]));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    parse_v2(version_command, family, &body)
}

fn parse_v2(version_command: u8, family: u8, body: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    match version_command {
        0x20 => return Ok(None), // LOCAL: the balancer's own health check
        0x21 => {}
        _ => return Err(ProxyHeaderError::Malformed),
    }
    match family >> 4 {
        1 => {
            let b = body.get(..12).ok_or(ProxyHeaderError::Malformed)?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([b[8], b[9]]))))
        }
        2 => {
            let b = body.get(..36).ok_or(ProxyHeaderError::Malformed)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[..16]);
            Ok(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), u16::from_be_bytes([b[32], b[33]]))))
        }
        // AF_UNSPEC, AF_UNIX: no usable client address.
        _ => Ok(None),
    }
}

#[cfg(test)]
#[path = "proxy_protocol_props.rs"]
mod props;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Bytes that arrive `step` at a time: each look sees at most the next
    /// `step` unread bytes, as when a header comes in several segments.
    struct Trickle {
        data: std::io::Cursor<Vec<u8>>,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.data).poll_read(cx, buf)
        }
    }

    impl Peek for Trickle {
        async fn peek(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let at = usize::try_from(self.data.position()).unwrap();
            let rest = &self.data.get_ref()[at..];
            let n = rest.len().min(buf.len()).min(self.step);
            buf[..n].copy_from_slice(&rest[..n]);
            Ok(n)
        }
    }

    async fn read_in_steps(bytes: &[u8], step: usize) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut stream = Trickle { data: std::io::Cursor::new(bytes.to_vec()), step };
        let result = read_header(&mut stream).await;
        let mut rest = Vec::new();
        stream.data.read_to_end(&mut rest).await.unwrap();
        (result, rest)
    }

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        read_in_steps(bytes, usize::MAX).await
    }

    /// However the line is cut into segments (the CR and LF apart among
    /// them), exactly the line is taken and the request is left whole; a
    /// line with no end is refused at the v1 limit.
    #[tokio::test]
    async fn a_v1_line_in_any_number_of_pieces_is_read_exactly() {
        let header = b"PROXY TCP4 10.20.4.17 10.0.0.1 51234 3128\r\n";
        let request = b"GET http://a/ HTTP/1.1\r\n\r\n";
        let whole = [&header[..], &request[..]].concat();
        for step in 1..=whole.len() {
            let (addr, rest) = read_in_steps(&whole, step).await;
            assert_eq!(addr.unwrap(), Some("10.20.4.17:51234".parse().unwrap()), "step {step}");
            assert_eq!(rest, request, "step {step}");
        }
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        for step in [1, 7, 200] {
            assert!(matches!(read_in_steps(&endless, step).await.0, Err(ProxyHeaderError::Malformed)), "step {step}");
        }
        assert!(matches!(read_in_steps(b"PROXY TCP4 1.2.3.4", 3).await.0, Err(ProxyHeaderError::Io(_))));
    }

    #[tokio::test]
    async fn v1_gives_the_client_and_leaves_the_request() {
        let (addr, rest) = read(b"PROXY TCP4 10.20.4.17 10.0.0.1 51234 3128\r\nGET http://a/ HTTP/1.1\r\n").await;
        assert_eq!(addr.unwrap(), Some("10.20.4.17:51234".parse().unwrap()));
        assert_eq!(rest, b"GET http://a/ HTTP/1.1\r\n");
        let (addr, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n").await;
        assert_eq!(addr.unwrap(), Some("[2001:db8::1]:1".parse().unwrap()));
        assert_eq!(read(b"PROXY UNKNOWN\r\nGET").await.0.unwrap(), None);
    }

    #[tokio::test]
    async fn v2_gives_the_client_and_leaves_the_request() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12, 10, 20, 4, 17, 10, 0, 0, 1, 0xc8, 0x22, 0x0c, 0x38]);
        header.extend_from_slice(b"GET");
        let (addr, rest) = read(&header).await;
        assert_eq!(addr.unwrap(), Some("10.20.4.17:51234".parse().unwrap()));
        assert_eq!(rest, b"GET");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).await.0.unwrap(), None);
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 10.0.0.1",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04abcd",
        ] {
            assert!(read(bad).await.0.is_err(), "{bad:?}");
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(read(long.as_bytes()).await.0.is_err());
    }

    /// Regression: a v1 header was taken with a signed or zero-padded port
    /// (`+80`, `080`) and any destination, even one of the other family;
    /// the haproxy spec allows neither.
    #[tokio::test]
    async fn v1_ports_are_plain_decimal_and_both_addresses_match_the_family() {
        for bad in [
            &b"PROXY TCP4 10.0.0.1 10.0.0.2 +80 3128\r\n"[..],
            b"PROXY TCP4 10.0.0.1 10.0.0.2 080 3128\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 80 -1\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 80 65536\r\n",
            b"PROXY TCP4 10.0.0.1 ::1 80 3128\r\n",
            b"PROXY TCP6 2001:db8::1 10.0.0.2 80 3128\r\n",
            b"PROXY TCP4 10.0.0.1 example.test 80 3128\r\n",
        ] {
            assert!(read(bad).await.0.is_err(), "{bad:?}");
        }
        let (addr, _) = read(b"PROXY TCP4 10.0.0.1 10.0.0.2 0 65535\r\n").await;
        assert_eq!(addr.unwrap(), Some("10.0.0.1:0".parse().unwrap()));
    }

    /// Regression: an IPv4-mapped client address (`::ffff:10.20.4.17`, sent
    /// by balancers listening dual-stack) came out as IPv6, so it matched no
    /// IPv4 `auth_exempt_networks` entry and was logged unlike the same
    /// client connecting directly.
    #[tokio::test]
    async fn a_mapped_client_address_is_given_as_ipv4() {
        let (addr, rest) = read(b"PROXY TCP6 ::ffff:10.20.4.17 ::ffff:10.0.0.1 51234 3128\r\nGET").await;
        assert_eq!(addr.unwrap(), Some("10.20.4.17:51234".parse().unwrap()));
        assert_eq!(rest, b"GET");
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x21, 0, 36]);
        v2.extend_from_slice(&"::ffff:10.20.4.17".parse::<Ipv6Addr>().unwrap().octets());
        v2.extend_from_slice(&"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
        v2.extend_from_slice(&[0xc8, 0x22, 0x0c, 0x38]);
        assert_eq!(read(&v2).await.0.unwrap(), Some("10.20.4.17:51234".parse().unwrap()));
    }

    /// Regression: a v2 header with a wrong version or command was refused
    /// only after its declared body (up to 64 KiB) had arrived, so a
    /// balancer holding the connection open kept it waiting for that.
    #[tokio::test]
    async fn a_bad_v2_version_or_command_is_refused_before_the_body() {
        for version_command in [0x11u8, 0x22, 0x2f] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut balancer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (mut proxy_side, _) = listener.accept().await.unwrap();
            let mut header = V2_SIGNATURE.to_vec();
            header.extend_from_slice(&[version_command, 0x11, 0xff, 0xff]);
            tokio::io::AsyncWriteExt::write_all(&mut balancer, &header).await.unwrap();
            let result = tokio::time::timeout(std::time::Duration::from_secs(5), read_header(&mut proxy_side))
                .await
                .expect("waited for a body that will never come");
            assert!(matches!(result, Err(ProxyHeaderError::Malformed)), "{version_command:#x}: {result:?}");
            drop(balancer);
        }
    }

    /// Regression (found by `props::v2_headers_of_any_shape_are_read_as_the_spec_says`):
    /// a PROXY v2 header with an address family or transport the spec does
    /// not define (`0x03`, `0x41`, `0xff`) was taken, as if it named no
    /// address, where the spec says to refuse it.
    #[tokio::test]
    async fn a_v2_family_or_transport_the_spec_does_not_define_is_refused() {
        for family in [0x03u8, 0x13, 0x41, 0xf1, 0xff] {
            let mut header = V2_SIGNATURE.to_vec();
            header.extend_from_slice(&[0x21, family, 0, 12, 10, 20, 4, 17, 10, 0, 0, 1, 0xc8, 0x22, 0x0c, 0x38]);
            assert!(matches!(read(&header).await.0, Err(ProxyHeaderError::Malformed)), "{family:#x}");
            // LOCAL ignores the family.
            header[12] = 0x20;
            assert_eq!(read(&header).await.0.unwrap(), None, "{family:#x}");
        }
    }

    /// What the haproxy spec says a receiver does with the other shapes of
    /// header: TLVs after the addresses are skipped (and never eat the
    /// request), `LOCAL` and `AF_UNSPEC`/`AF_UNIX` keep the peer's address,
    /// and addresses shorter than their family needs are refused.
    #[tokio::test]
    async fn v2_tlvs_local_and_other_families() {
        let mut tlvs = V2_SIGNATURE.to_vec();
        let tlv: &[u8] = &[0x02, 0, 9, b'p', b'r', b'o', b'x', b'y', b'.', b'l', b'b', b'x'];
        let length = 12 + tlv.len() as u16;
        tlvs.extend_from_slice(&[0x21, 0x11]);
        tlvs.extend_from_slice(&length.to_be_bytes());
        tlvs.extend_from_slice(&[10, 20, 4, 17, 10, 0, 0, 1, 0xc8, 0x22, 0x0c, 0x38]);
        tlvs.extend_from_slice(tlv);
        tlvs.extend_from_slice(b"GET");
        let (addr, rest) = read(&tlvs).await;
        assert_eq!(addr.unwrap(), Some("10.20.4.17:51234".parse().unwrap()));
        assert_eq!(rest, b"GET");

        // LOCAL with addresses all the same: the peer's own.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x11, 0, 12, 10, 20, 4, 17, 10, 0, 0, 1, 0, 1, 0, 2]);
        assert_eq!(read(&local).await.0.unwrap(), None);
        for family in [0x00u8, 0x31] {
            let mut unspec = V2_SIGNATURE.to_vec();
            unspec.extend_from_slice(&[0x21, family, 0, 0]);
            unspec.extend_from_slice(b"GET");
            let (addr, rest) = read(&unspec).await;
            assert_eq!(addr.unwrap(), None, "{family:#x}");
            assert_eq!(rest, b"GET");
        }
        let mut short6 = V2_SIGNATURE.to_vec();
        short6.extend_from_slice(&[0x21, 0x21, 0, 12, 10, 20, 4, 17, 10, 0, 0, 1, 0, 1, 0, 2]);
        assert!(read(&short6).await.0.is_err());
        assert_eq!(read(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nGET").await.0.unwrap(), None);
    }
}
