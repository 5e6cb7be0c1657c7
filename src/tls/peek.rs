//! Reading a TLS ClientHello's server name (SNI) from the first bytes of a
//! CONNECT tunnel, before any byte is passed to the origin.
//!
//! The parser is pure and incremental: feed it everything read so far and
//! it answers whether it needs more, found a ClientHello (with or without
//! SNI), or is looking at something else. The ClientHello may arrive split
//! across any number of reads and across several TLS records; the total is
//! bounded by [`MAX_HELLO_BYTES`].
//!
//! Bytes that look like TLS records are judged as TLS, never as "some other
//! protocol": a stream whose first record is an alert, a ChangeCipherSpec or
//! application data, or a handshake record with a version other than 3.x,
//! is [`Peek::Malformed`] (the tunnel fails closed). Some TLS servers accept
//! such a record before the ClientHello (Go's `crypto/tls` drops a warning
//! alert and takes any record version below 0x1000), so letting it through
//! as non-TLS would let the ClientHello behind it pass undecided.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes read while looking for a complete ClientHello.
pub const MAX_HELLO_BYTES: usize = 32 * 1024;

/// What the bytes read so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// A prefix of a TLS handshake: read more.
    NeedMore,
    /// Not TLS at all (some other protocol): the first byte is no TLS
    /// record type, or an alert/ChangeCipherSpec/application-data type
    /// followed by a version no TLS stack accepts.
    NotTls,
    /// A complete ClientHello; `sni` is the `host_name` it asks for.
    ClientHello {
        /// The server name, as sent (not yet normalised).
        sni: Option<String>,
    },
    /// A TLS record that cannot be a valid ClientHello.
    Malformed(&'static str),
}

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
/// A first record's major version byte from here on is no TLS (3 is; Go's
/// `crypto/tls`, the most lenient stack known, refuses 0x10 and above).
const VERSION_MAJOR_NOT_TLS: u8 = 0x10;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;

/// Inspects the bytes read so far from a client.
pub fn peek(buf: &[u8]) -> Peek {
    peek_needing(buf).0
}

/// Like [`peek`], and with `NeedMore` also the buffer length below which
/// another look cannot answer differently (so a client trickling bytes
/// does not make the reader re-parse after every byte).
fn peek_needing(buf: &[u8]) -> (Peek, usize) {
    let (peek, need) = gather(buf);
    (peek, need.max(buf.len() + 1))
}

fn gather(buf: &[u8]) -> (Peek, usize) {
    // Gather the handshake bytes carried by consecutive handshake records.
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = buf;
    loop {
        let offset = buf.len() - rest.len();
        if rest.is_empty() {
            return (Peek::NeedMore, 0);
        }
        // Handshake records always carry bytes, so an empty `handshake`
        // means this is the stream's first record.
        let first = handshake.is_empty();
        let kind = rest[0];
        if !(CONTENT_CHANGE_CIPHER_SPEC..=CONTENT_APPLICATION_DATA).contains(&kind) {
            let verdict =
                if first { Peek::NotTls } else { Peek::Malformed("non-handshake record inside a ClientHello") };
            return (verdict, 0);
        }
        if kind != CONTENT_HANDSHAKE {
            if !first {
                return (Peek::Malformed("non-handshake record inside a ClientHello"), 0);
            }
            // An alert, ChangeCipherSpec or application-data record first:
            // TLS (fail closed), unless the version says it cannot be.
            return match rest.get(1) {
                None => (Peek::NeedMore, offset + 2),
                Some(&major) if major >= VERSION_MAJOR_NOT_TLS => (Peek::NotTls, 0),
                Some(_) => (Peek::Malformed("a TLS record other than a ClientHello came first"), 0),
            };
        }
        if rest.len() >= 2 && rest[1] != 3 {
            return (Peek::Malformed("bad record version"), 0);
        }
        if rest.len() < 5 {
            return (Peek::NeedMore, offset + 5);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 16384 + 2048 {
            return (Peek::Malformed("bad record length"), 0);
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            handshake.extend_from_slice(&rest[5..]);
            return match check_header(&handshake) {
                Err(bad) => (bad, 0),
                Ok(_) => (Peek::NeedMore, offset + 5 + len),
            };
        };
        handshake.extend_from_slice(fragment);
        rest = &rest[5 + len..];
        match check_header(&handshake) {
            Err(bad) => return (bad, 0),
            Ok(Some(total)) if handshake.len() >= total => return (parse_client_hello(&handshake[4..total]), 0),
            Ok(_) => {}
        }
    }
}

/// Validates the handshake header; returns the message's total length once known.
fn check_header(handshake: &[u8]) -> Result<Option<usize>, Peek> {
    if let Some(&kind) = handshake.first()
        && kind != HANDSHAKE_CLIENT_HELLO
    {
        return Err(Peek::Malformed("first handshake message is not a ClientHello"));
    }
    if handshake.len() < 4 {
        return Ok(None);
    }
    let len = (usize::from(handshake[1]) << 16) | (usize::from(handshake[2]) << 8) | usize::from(handshake[3]);
    if len + 4 > MAX_HELLO_BYTES {
        return Err(Peek::Malformed("ClientHello too large"));
    }
    Ok(Some(len + 4))
}

/// A cursor over a byte slice that never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

fn parse_client_hello(body: &[u8]) -> Peek {
    match parse_body(body) {
        Some(sni) => Peek::ClientHello { sni },
        None => Peek::Malformed("truncated or inconsistent ClientHello"),
    }
}

/// `Some(sni)` for a well-formed body, `None` when malformed.
fn parse_body(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Some(None); // no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    let mut sni = None;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind == EXT_SERVER_NAME {
            if sni.is_some() {
                return None; // duplicate extension
            }
            let mut list = Reader(Reader(data).vec16()?);
            while !list.0.is_empty() {
                let name_type = list.u8()?;
                let name = list.vec16()?;
                if name_type == 0 {
                    // RFC 6066 allows one host_name; with two, a server
                    // could take the one not decided (OpenSSL takes the
                    // first, others may not), so the hello fails closed.
                    if sni.is_some() {
                        return None;
                    }
                    let name = std::str::from_utf8(name).ok()?;
                    if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
                        return None;
                    }
                    sni = Some(name.to_owned());
                }
            }
        }
    }
    Some(sni)
}

/// What [`read_client_hello`] found, with every byte it read kept in `buf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeked {
    /// A complete ClientHello.
    ClientHello {
        /// Its SNI name, if any.
        sni: Option<String>,
    },
    /// The first bytes are not TLS (or none arrived before the deadline).
    NotTls,
    /// TLS-looking bytes that are not a valid ClientHello (or a truncated
    /// one when the client closed or the deadline passed).
    Malformed(&'static str),
    /// The client closed before sending anything.
    Closed,
}

/// Most bytes one read of the ClientHello asks for.
const READ_CHUNK: usize = 4096;

/// Reads from `client` into `buf` until the bytes are a complete ClientHello,
/// clearly not TLS, malformed, over [`MAX_HELLO_BYTES`], or `wait` passes.
/// Every byte read stays in `buf`, to be sent on to the origin.
pub async fn read_client_hello<R: AsyncRead + Unpin>(
    client: &mut R,
    buf: &mut Vec<u8>,
    wait: Duration,
) -> std::io::Result<Peeked> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut need = 0;
    loop {
        let verdict = if buf.len() < need {
            Peek::NeedMore
        } else {
            let (verdict, more) = peek_needing(buf);
            need = more;
            verdict
        };
        match verdict {
            Peek::ClientHello { sni } => return Ok(Peeked::ClientHello { sni }),
            Peek::NotTls => return Ok(Peeked::NotTls),
            Peek::Malformed(why) => return Ok(Peeked::Malformed(why)),
            Peek::NeedMore if buf.len() >= MAX_HELLO_BYTES => return Ok(Peeked::Malformed("ClientHello too large")),
            Peek::NeedMore => {}
        }
        // Read straight into the heap buffer (not a stack chunk, which
        // would sit in the tunnel task's future for the tunnel's whole life).
        let start = buf.len();
        let room = (MAX_HELLO_BYTES - start).min(READ_CHUNK);
        buf.resize(start + room, 0);
        let read = tokio::time::timeout_at(deadline, client.read(buf.get_mut(start..).unwrap_or_default())).await;
        let got = match &read {
            Ok(Ok(n)) => *n,
            _ => 0,
        };
        buf.truncate(start + got);
        match read {
            Err(_elapsed) if buf.is_empty() => return Ok(Peeked::NotTls),
            Err(_elapsed) => return Ok(Peeked::Malformed("ClientHello incomplete before the deadline")),
            Ok(Ok(0)) if buf.is_empty() => return Ok(Peeked::Closed),
            Ok(Ok(0)) => return Ok(Peeked::Malformed("client closed inside a ClientHello")),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(err),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A real ClientHello from rustls for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn finds_sni_in_a_real_client_hello() {
        let hello = client_hello("www.facebook.com");
        assert_eq!(peek(&hello), Peek::ClientHello { sni: Some("www.facebook.com".into()) });
    }

    #[test]
    fn every_prefix_needs_more() {
        let hello = client_hello("www.youtube.com");
        for cut in 0..hello.len() {
            assert_eq!(peek(&hello[..cut]), Peek::NeedMore, "prefix of {cut} bytes");
        }
    }

    #[test]
    fn a_hello_split_across_records_is_reassembled() {
        let hello = client_hello("m.facebook.com");
        let body = &hello[5..];
        let mut split = Vec::new();
        for chunk in body.chunks(7) {
            split.extend_from_slice(&[22, 3, 1]);
            split.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            split.extend_from_slice(chunk);
        }
        assert_eq!(peek(&split), Peek::ClientHello { sni: Some("m.facebook.com".into()) });
    }

    #[test]
    fn a_second_host_name_in_the_list_is_malformed() {
        // rustls's hello for a 16-byte name, its server-name list grown by a
        // second host_name entry (every enclosing length fixed up).
        let hello = client_hello("www.example.test");
        let entry = [&[0u8, 0, 16][..], b"www.example.test"].concat();
        let at = hello.windows(entry.len()).position(|w| w == entry.as_slice()).unwrap();
        let second = [&[0u8, 0, 16][..], b"www.facebook.com"].concat();
        let mut grown = hello.clone();
        grown.splice(at + entry.len()..at + entry.len(), second.iter().copied());
        let grow = |bytes: &mut Vec<u8>, at: usize, width: usize| {
            let old = bytes[at..at + width].iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
            let new = (old + second.len()).to_be_bytes();
            bytes[at..at + width].copy_from_slice(&new[new.len() - width..]);
        };
        grow(&mut grown, at - 2, 2); // server name list
        grow(&mut grown, at - 4, 2); // extension data
        let exts = 5 + 4 + 2 + 32 + 1 + usize::from(hello[5 + 4 + 2 + 32]);
        let suites = usize::from(u16::from_be_bytes([hello[exts], hello[exts + 1]]));
        let exts = exts + 2 + suites + 1 + usize::from(hello[exts + 2 + suites]);
        grow(&mut grown, exts, 2); // extensions
        grow(&mut grown, 6, 3); // handshake
        grow(&mut grown, 3, 2); // record
        assert_eq!(peek(&hello), Peek::ClientHello { sni: Some("www.example.test".into()) });
        assert!(matches!(peek(&grown), Peek::Malformed(_)), "{:?}", peek(&grown));
    }

    #[test]
    fn other_protocols_are_not_tls() {
        assert_eq!(peek(b"GET / HTTP/1.1\r\n"), Peek::NotTls);
        assert_eq!(peek(b"SSH-2.0-OpenSSH_9.6\r\n"), Peek::NotTls);
        assert_eq!(peek(&[0, 0, 0, 1]), Peek::NotTls);
        // A TLS record type followed by a version no TLS stack accepts.
        assert_eq!(peek(&[21, b'A', b'B']), Peek::NotTls);
        assert_eq!(peek(&[23, 0x10, 0, 0, 0]), Peek::NotTls);
    }

    /// `hello` behind one record of `kind` with `version` and `fragment`.
    fn after_record(kind: u8, version: [u8; 2], fragment: &[u8], hello: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, version[0], version[1]];
        out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
        out.extend_from_slice(fragment);
        out.extend_from_slice(hello);
        out
    }

    /// Regression (audit F2): TLS-looking records before the ClientHello,
    /// which a Go TLS server accepts, made the stream "not TLS", so the
    /// blocked SNI behind them was never decided. They fail closed now.
    #[test]
    fn tls_records_before_the_hello_are_tls_and_malformed() {
        let hello = client_hello("www.facebook.com");
        let firsts = [
            ("warning alert", after_record(21, [3, 1], &[1, 90], &hello)),
            ("fatal alert, TLS 1.2 version", after_record(21, [3, 3], &[2, 0], &hello)),
            ("ChangeCipherSpec", after_record(20, [3, 1], &[1], &hello)),
            ("empty application data", after_record(23, [3, 1], &[], &hello)),
            ("application data", after_record(23, [3, 3], b"xyz", &hello)),
            ("alert with version 2.0 (Go accepts it)", after_record(21, [2, 0], &[1, 0], &hello)),
        ];
        for (what, bytes) in firsts {
            assert!(matches!(peek(&bytes), Peek::Malformed(_)), "{what}: {:?}", peek(&bytes));
            // Judged as soon as the version byte is in, whatever follows.
            assert!(matches!(peek(&bytes[..2]), Peek::Malformed(_)), "{what}");
            assert_eq!(peek(&bytes[..1]), Peek::NeedMore, "{what}");
        }
    }

    /// Regression (audit F2): a handshake record with a version other than
    /// 3.x is malformed TLS, not another protocol.
    #[test]
    fn a_handshake_record_with_another_version_is_malformed() {
        let hello = client_hello("www.facebook.com");
        for version in [[2, 1], [0, 0], [9, 9], [0x7f, 0x7f]] {
            let mut bad = hello.clone();
            bad[1..3].copy_from_slice(&version);
            assert!(matches!(peek(&bad), Peek::Malformed(_)), "{version:?}: {:?}", peek(&bad));
        }
        assert!(matches!(peek(&[22, 9]), Peek::Malformed(_)));
    }

    #[test]
    fn records_after_a_complete_hello_do_not_matter() {
        // TLS 1.3 middlebox compatibility and early data: a ChangeCipherSpec
        // and application data may follow the ClientHello at once.
        let mut bytes = client_hello("www.youtube.com");
        bytes.extend_from_slice(&[20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xab, 0xcd]);
        assert_eq!(peek(&bytes), Peek::ClientHello { sni: Some("www.youtube.com".into()) });
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        assert!(matches!(peek(&[22, 3, 1, 0, 0]), Peek::Malformed(_)));
        assert!(matches!(peek(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Peek::Malformed(_)));
        // A handshake header claiming a 16 MiB ClientHello.
        assert!(matches!(peek(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]), Peek::Malformed(_)));
        // A complete but inconsistent body.
        let mut bad = vec![22, 3, 1, 0, 8, 1, 0, 0, 4];
        bad.extend_from_slice(&[3, 3, 0xff, 0xff]);
        assert!(matches!(peek(&bad), Peek::Malformed(_)));
        // Every truncation and every single-byte corruption of a real hello.
        let hello = client_hello("www.linkedin.com");
        for i in 0..hello.len() {
            let mut c = hello.clone();
            c[i] ^= 0xa5;
            let _ = peek(&c);
        }
    }

    #[tokio::test]
    async fn reads_a_hello_arriving_one_byte_at_a_time() {
        let hello = client_hello("www.twitter.com");
        let (mut client, mut server) = tokio::io::duplex(64);
        let sent = hello.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for b in sent {
                client.write_all(&[b]).await.unwrap();
                client.flush().await.unwrap();
            }
            client
        });
        let mut buf = Vec::new();
        let got = read_client_hello(&mut server, &mut buf, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, Peeked::ClientHello { sni: Some("www.twitter.com".into()) });
        assert_eq!(buf, hello, "every byte kept for the origin");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn silence_is_not_tls_and_a_stalled_hello_is_malformed() {
        let (_client, mut server) = tokio::io::duplex(64);
        let mut buf = Vec::new();
        let got = read_client_hello(&mut server, &mut buf, Duration::from_millis(50)).await.unwrap();
        assert_eq!(got, Peeked::NotTls);

        let (mut client, mut server) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        client.write_all(&client_hello("x.test")[..10]).await.unwrap();
        let mut buf = Vec::new();
        let got = read_client_hello(&mut server, &mut buf, Duration::from_millis(50)).await.unwrap();
        assert!(matches!(got, Peeked::Malformed(_)), "{got:?}");
        drop(client);
    }
}
