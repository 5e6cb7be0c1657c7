//! Reading the server name (SNI) from the first bytes of a tunnel: a TLS
//! ClientHello is parsed just far enough to find the `server_name`
//! extension. Nothing here does I/O; `tunnel` feeds it bytes.

/// What the first bytes of a tunnel are, so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peek {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// Not a TLS handshake.
    NotTls,
    /// A ClientHello, with the server name it asks for (if any).
    ClientHello(Option<String>),
}

/// The largest TLS record (2^14 bytes of payload plus expansion).
pub(crate) const MAX_RECORD: usize = 5 + 16384 + 2048;

/// Looks at the bytes a client sent first. Only the first TLS record is
/// read; a ClientHello split across records yields no name.
pub(crate) fn peek(bytes: &[u8]) -> Peek {
    let Some(&content_type) = bytes.first() else { return Peek::NeedMore };
    if content_type != 0x16 {
        return Peek::NotTls;
    }
    if bytes.len() < 5 {
        return if bytes.get(1).is_some_and(|&major| major != 3) { Peek::NotTls } else { Peek::NeedMore };
    }
    if bytes[1] != 3 {
        return Peek::NotTls;
    }
    let length = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
    let Some(record) = bytes.get(5..5 + length) else { return Peek::NeedMore };
    match record.first() {
        Some(1) => Peek::ClientHello(server_name(record)),
        _ => Peek::NotTls,
    }
}

/// A cursor over a byte slice that never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// The `server_name` (host_name) in a ClientHello handshake message.
fn server_name(handshake: &[u8]) -> Option<String> {
    let mut r = Reader(handshake);
    r.u8()?; // msg_type = client_hello
    let body_len = r.u24()?;
    // The message may be longer than this record; parse what is here.
    let mut r = Reader(r.0.get(..body_len.min(r.0.len()))?);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    let n = r.u8()?;
    r.take(n)?; // legacy_session_id
    let n = r.u16()?;
    r.take(n)?; // cipher_suites
    let n = r.u8()?;
    r.take(n)?; // legacy_compression_methods
    let n = r.u16()?;
    let mut extensions = Reader(r.take(n)?);
    while let (Some(kind), Some(len)) = (extensions.u16(), extensions.u16()) {
        let data = extensions.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(data);
        let n = list.u16()?;
        let mut names = Reader(list.take(n)?);
        while let Some(name_type) = names.u8() {
            let n = names.u16()?;
            let name = names.take(n)?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().map(str::to_owned);
            }
        }
        return None;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A real ClientHello from rustls for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn the_server_name_is_read_from_a_client_hello() {
        let hello = client_hello("www.facebook.com");
        assert_eq!(peek(&hello), Peek::ClientHello(Some("www.facebook.com".into())));
    }

    #[test]
    fn partial_hellos_ask_for_more_and_other_bytes_are_not_tls() {
        let hello = client_hello("example.test");
        for cut in [0, 1, 3, 5, 40, hello.len() - 1] {
            assert_eq!(peek(&hello[..cut]), Peek::NeedMore, "cut at {cut}");
        }
        assert_eq!(peek(b"GET / HTTP/1.1\r\n"), Peek::NotTls);
        assert_eq!(peek(b"SSH-2.0-OpenSSH"), Peek::NotTls);
        assert_eq!(peek(&[0x16, 0x07, 0, 0, 0]), Peek::NotTls);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let hello = client_hello("example.test");
        for i in 5..hello.len() {
            let mut broken = hello.clone();
            broken[i] ^= 0xff;
            let _ = peek(&broken);
            let _ = peek(&hello[..i]);
        }
        let _ = peek(&[0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn an_ip_literal_hello_has_no_name() {
        let hello = client_hello("127.0.0.1");
        assert_eq!(peek(&hello), Peek::ClientHello(None));
    }
}
