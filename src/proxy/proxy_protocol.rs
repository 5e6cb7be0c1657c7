//! The PROXY protocol (v1 text, v2 binary) sent by load balancers listed in
//! `[proxy] proxy_protocol_from`: read exactly the header, never a byte of
//! the request after it, and return the real client address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

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
/// balancer speaks for; `Ok(None)` means the header said `UNKNOWN`/`LOCAL`
/// (keep the peer's address).
pub(crate) async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await?;
    match first[0] {
        b'P' => read_v1(stream).await,
        b'\r' => read_v2(stream).await,
        _ => Err(ProxyHeaderError::Malformed),
    }
}

async fn read_v1<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    // Byte by byte: the request follows right after the line.
    let mut line = vec![b'P'];
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyHeaderError::Malformed);
        }
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        line.push(byte[0]);
    }
    parse_v1(&line)
}

fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::Malformed)?;
    let text = text.strip_suffix("\r\n").ok_or(ProxyHeaderError::Malformed)?;
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            if (*family == "TCP4") != ip.is_ipv4() {
                return Err(ProxyHeaderError::Malformed);
            }
            let port: u16 = sport.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(ProxyHeaderError::Malformed),
    }
}

async fn read_v2<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut fixed = [0u8; 15];
    stream.read_exact(&mut fixed).await?;
    if fixed[..11] != V2_SIGNATURE[1..] {
        return Err(ProxyHeaderError::Malformed);
    }
    let (version_command, family) = (fixed[11], fixed[12]);
    let length = usize::from(u16::from_be_bytes([fixed[13], fixed[14]]));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    parse_v2(version_command, family, &body)
}

fn parse_v2(version_command: u8, family: u8, body: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed);
    }
    match version_command & 0x0f {
        0 => return Ok(None), // LOCAL: the balancer's own health check
        1 => {}
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
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let result = read_header(&mut cursor).await;
        let mut rest = Vec::new();
        cursor.read_to_end(&mut rest).await.unwrap();
        (result, rest)
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
}
