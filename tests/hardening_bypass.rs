//! Bypass attempts against a department that blocks a service: every row of
//! [`HTTP_CASES`] and [`CONNECT_CASES`] is a raw request that must be
//! blocked (403 naming the rule) or rejected (400), with nothing reaching
//! the origin and one access-log record each; a few rows are positive
//! controls that must pass. To add an attempt, add a row. Below the tables:
//! pipelining, keep-alive across a reload, and SNI on an IP-literal tunnel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, CountingOrigin, bounded};

/// The default department (127.0.0.1): facebook blocked by `[services]`,
/// an internationalised domain blocked by `rules[0]`.
const DEFAULT_DEPT: &str = "default = \"allow\"\n[services]\nfacebook = \"block\"\n\n[[rules]]\ndomains = [\"bücher.example\"]\naction = \"block\"\n";

/// What a row must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `403` whose `Proxy-Status` details name this rule.
    Blocked(&'static str),
    /// Refused as a malformed request with this status.
    Rejected(u16),
    /// A positive control: passes (200), and the origin sees the request.
    Allowed,
}

/// One bypass attempt: `raw` is the whole request head; `{P}` is replaced
/// by the origin's port (which is also the only CONNECT port).
struct Case {
    name: &'static str,
    raw: &'static str,
    expect: Expect,
}

const FB: Expect = Expect::Blocked("services.facebook");
const IDN: Expect = Expect::Blocked("rules[0]");
/// A percent-encoded authority: `http::Uri` does not accept `%` there, so
/// the head is refused before any decision (browsers never send one; they
/// decode and map the host themselves). Refused is as good as blocked.
const PCT: Expect = Expect::Rejected(400);

/// Absolute-form `http://` attempts.
const HTTP_CASES: &[Case] = &[
    Case {
        name: "baseline",
        raw: "GET http://www.facebook.com:{P}/ HTTP/1.1\r\nHost: www.facebook.com:{P}\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "bare domain",
        raw: "GET http://facebook.com:{P}/ HTTP/1.1\r\nHost: facebook.com\r\n\r\n",
        expect: FB,
    },
    Case { name: "catalogue alias", raw: "GET http://m.fb.com:{P}/ HTTP/1.1\r\nHost: m.fb.com\r\n\r\n", expect: FB },
    Case {
        name: "default port 80",
        raw: "GET http://www.facebook.com/ HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "mixed case",
        raw: "GET http://WwW.FaceBook.CoM:{P}/ HTTP/1.1\r\nHost: WwW.FaceBook.CoM\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "upper-case scheme",
        raw: "GET HTTP://www.facebook.com:{P}/ HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "trailing dot",
        raw: "GET http://www.facebook.com.:{P}/ HTTP/1.1\r\nHost: www.facebook.com.\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "two trailing dots",
        raw: "GET http://www.facebook.com..:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "leading dot",
        raw: "GET http://.www.facebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "leading encoded space",
        raw: "GET http://%20www.facebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "trailing encoded tab",
        raw: "GET http://www.facebook.com%09:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "encoded NUL",
        raw: "GET http://www.facebook.com%00.example.test:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "port twice",
        raw: "GET http://www.facebook.com:{P}:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "port with leading zero",
        raw: "GET http://www.facebook.com:0{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: FB,
    },
    Case {
        // An allowed host, so only the port's spelling can refuse it.
        name: "signed port",
        raw: "GET http://example.test:+{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "percent-encoded letter",
        raw: "GET http://www.%66acebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: PCT,
    },
    Case {
        name: "percent-encoded dot",
        raw: "GET http://www.facebook%2Ecom:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: PCT,
    },
    Case {
        name: "fullwidth letter (encoded)",
        raw: "GET http://www.%EF%BD%86acebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: PCT,
    },
    Case {
        name: "ideographic full stop (encoded)",
        raw: "GET http://www.facebook%E3%80%82com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: PCT,
    },
    Case {
        name: "raw UTF-8 in the URI",
        raw: "GET http://www.ｆacebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "IDN in punycode",
        raw: "GET http://www.xn--bcher-kva.example:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: IDN,
    },
    Case {
        name: "IDN in upper-case punycode",
        raw: "GET http://XN--BCHER-KVA.EXAMPLE:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: IDN,
    },
    Case {
        name: "IDN percent-encoded UTF-8",
        raw: "GET http://b%C3%BCcher.example:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: PCT,
    },
    Case {
        name: "IDN upper-case Unicode",
        raw: "GET http://B%C3%9CCHER.example.:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: PCT,
    },
    Case {
        name: "Host header disagrees (URI wins)",
        raw: "GET http://www.facebook.com:{P}/ HTTP/1.1\r\nHost: example.test:{P}\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "two Host headers",
        raw: "GET http://www.facebook.com:{P}/ HTTP/1.1\r\nHost: example.test\r\nHost: example.test\r\n\r\n",
        expect: FB,
    },
    Case { name: "userinfo", raw: "GET http://x@www.facebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n", expect: FB },
    Case {
        name: "userinfo that looks like a host",
        raw: "GET http://example.test:{P}@www.facebook.com:{P}/ HTTP/1.1\r\nHost: example.test\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "backslash before @",
        raw: "GET http://example.test\\@www.facebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "fragment before @",
        raw: "GET http://www.facebook.com:{P}#@example.test/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: FB,
    },
    Case { name: "HTTP/1.0", raw: "GET http://www.facebook.com:{P}/ HTTP/1.0\r\n\r\n", expect: FB },
    Case {
        name: "HTTP/1.0 origin form with a blocked Host",
        raw: "GET / HTTP/1.0\r\nHost: www.facebook.com\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "origin form with a blocked Host",
        raw: "GET / HTTP/1.1\r\nHost: www.facebook.com:{P}\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "https scheme in plain HTTP",
        raw: "GET https://www.facebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "Proxy-Connection and Connection naming Host",
        raw: "GET http://www.facebook.com:{P}/ HTTP/1.1\r\nHost: example.test\r\nProxy-Connection: keep-alive\r\nConnection: Host, Proxy-Authorization\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "Proxy-Connection: close",
        raw: "GET http://www.facebook.com:{P}/ HTTP/1.1\r\nHost: www.facebook.com\r\nProxy-Connection: close\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "POST with a body",
        raw: "POST http://www.facebook.com:{P}/login HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        expect: FB,
    },
    Case { name: "no path", raw: "GET http://www.facebook.com:{P} HTTP/1.1\r\nHost: x\r\n\r\n", expect: FB },
    Case {
        name: "status host as userinfo",
        raw: "GET http://socialgate.status@www.facebook.com:{P}/ HTTP/1.1\r\nHost: socialgate.status\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "PAC path on a blocked host",
        raw: "GET http://www.facebook.com:{P}/proxy.pac HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: FB,
    },
    Case { name: "other method", raw: "OPTIONS http://www.facebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n", expect: FB },
    Case {
        name: "control: an allowed host passes",
        raw: "GET http://example.test:{P}/ HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n",
        expect: Expect::Allowed,
    },
    Case {
        name: "control: a look-alike passes",
        raw: "GET http://notfacebook.com:{P}/ HTTP/1.1\r\nHost: notfacebook.com\r\n\r\n",
        expect: Expect::Allowed,
    },
];

/// CONNECT attempts.
const CONNECT_CASES: &[Case] = &[
    Case {
        name: "baseline",
        raw: "CONNECT www.facebook.com:{P} HTTP/1.1\r\nHost: www.facebook.com:{P}\r\n\r\n",
        expect: FB,
    },
    Case { name: "mixed case", raw: "CONNECT WWW.FACEBOOK.com:{P} HTTP/1.1\r\nHost: x\r\n\r\n", expect: FB },
    Case { name: "trailing dot", raw: "CONNECT www.facebook.com.:{P} HTTP/1.1\r\nHost: x\r\n\r\n", expect: FB },
    Case {
        name: "no port",
        raw: "CONNECT www.facebook.com HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "port twice",
        raw: "CONNECT www.facebook.com:{P}:{P} HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "port with leading zero",
        raw: "CONNECT www.facebook.com:0{P} HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: FB,
    },
    Case {
        // An allowed host, so only the port's spelling can refuse it.
        name: "signed port",
        raw: "CONNECT example.test:+{P} HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "percent-encoded letter",
        raw: "CONNECT %77ww.facebook.com:{P} HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: PCT,
    },
    Case {
        name: "leading encoded space",
        raw: "CONNECT %20www.facebook.com:{P} HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: Expect::Rejected(400),
    },
    Case {
        name: "fullwidth letter (encoded)",
        raw: "CONNECT %EF%BD%86acebook.com:{P} HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: PCT,
    },
    Case { name: "IDN in punycode", raw: "CONNECT xn--bcher-kva.example:{P} HTTP/1.1\r\nHost: x\r\n\r\n", expect: IDN },
    Case {
        name: "IDN percent-encoded UTF-8",
        raw: "CONNECT b%C3%BCcher.example:{P} HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: PCT,
    },
    Case { name: "userinfo", raw: "CONNECT x@www.facebook.com:{P} HTTP/1.1\r\nHost: x\r\n\r\n", expect: FB },
    Case {
        name: "absolute URI as target",
        raw: "CONNECT http://www.facebook.com:{P}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        expect: FB,
    },
    Case { name: "HTTP/1.0", raw: "CONNECT www.facebook.com:{P} HTTP/1.0\r\n\r\n", expect: FB },
    Case {
        name: "Proxy-Connection: keep-alive",
        raw: "CONNECT www.facebook.com:{P} HTTP/1.1\r\nHost: x\r\nProxy-Connection: keep-alive\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "Host header disagrees (URI wins)",
        raw: "CONNECT www.facebook.com:{P} HTTP/1.1\r\nHost: example.test:{P}\r\n\r\n",
        expect: FB,
    },
    Case {
        name: "control: URI wins the other way",
        raw: "CONNECT example.test:{P} HTTP/1.1\r\nHost: www.facebook.com:{P}\r\n\r\n",
        expect: Expect::Allowed,
    },
];

async fn run_table(cases: &[Case], connect: bool) {
    let origin = CountingOrigin::start().await;
    let port = origin.port().to_string();
    let proxy = Company::new().department("default", DEFAULT_DEPT).start(&[origin.port()]).await;
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let raw = case.raw.replace("{P}", &port);
        let (heads, conns) = (origin.heads(), origin.connections());
        let mut client = proxy.client().await;
        client.send(&raw).await;
        let reply = client.reply(!(connect && matches!(case.expect, Expect::Allowed))).await;
        let details = reply.header("proxy-status").unwrap_or("").to_owned();
        let mut problems = Vec::new();
        match case.expect {
            Expect::Blocked(rule) => {
                if reply.status != 403 || !details.contains(&format!("details=\"{rule}\"")) {
                    problems.push(format!("want 403 by {rule}, got {} ({details})", reply.status));
                }
            }
            Expect::Rejected(status) => {
                if reply.status != status || details != "socialgate; error=http_request_error; details=\"request\"" {
                    problems.push(format!("want {status}, got {} ({details})", reply.status));
                }
            }
            Expect::Allowed => {
                if reply.status != 200 {
                    problems.push(format!("want 200, got {} ({details})", reply.status));
                }
                if !connect
                    && !reply.body.contains(&format!("host: example.test:{port}"))
                    && !reply.body.contains("notfacebook")
                {
                    problems.push(format!("the origin saw another Host: {}", reply.body));
                }
            }
        }
        if !matches!(case.expect, Expect::Allowed) && (origin.heads() != heads || origin.connections() != conns) {
            problems.push("the request reached the origin".to_owned());
        }
        drop(client);
        // One record per attempt, written once it ends.
        let records = proxy.whole_records(i + 1).await;
        let record = &records[i];
        let want_status = match case.expect {
            Expect::Blocked(_) => 403,
            Expect::Rejected(status) => status,
            Expect::Allowed => 200,
        };
        if record["status"] != want_status {
            problems.push(format!("logged as {record}"));
        }
        let logged_rule = match case.expect {
            Expect::Blocked(rule) => Some(rule),
            Expect::Rejected(_) => Some("request"),
            Expect::Allowed => None,
        };
        if let Some(rule) = logged_rule
            && (record["rule"] != rule || record["action"] != "block")
        {
            problems.push(format!("logged as {record}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(proxy.records_now().len() == cases.len(), "more records than attempts: {:?}", proxy.records_now());
    proxy.stop().await;
    assert!(failures.is_empty(), "bypass rows failed:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn http_bypass_attempts_are_blocked() {
    bounded(run_table(HTTP_CASES, false)).await;
}

#[tokio::test]
async fn connect_bypass_attempts_are_blocked() {
    bounded(run_table(CONNECT_CASES, true)).await;
}

#[tokio::test]
async fn pipelined_requests_are_each_decided_on_their_own() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut client = proxy.client().await;
        let p = origin.port();
        client
            .send(&format!(
                "GET http://example.test:{p}/first HTTP/1.1\r\nHost: example.test\r\n\r\n\
                 GET http://www.facebook.com:{p}/second HTTP/1.1\r\nHost: example.test\r\n\r\n\
                 GET http://example.test:{p}/third HTTP/1.1\r\nHost: example.test\r\n\r\n"
            ))
            .await;
        let first = client.reply(true).await;
        let second = client.reply(true).await;
        assert_eq!(first.status, 200);
        assert!(first.body.starts_with("GET /first"), "{}", first.body);
        assert_eq!(second.status, 403, "the second, pipelined request rode on the first: {second:?}");
        // A block need not end the connection; if it stays open, the third
        // is answered on its own merits.
        let lines = origin.counts.lines.lock().unwrap().clone();
        assert!(lines.iter().all(|l| !l.contains("/second")), "the origin saw the blocked request: {lines:?}");
        let records = proxy.whole_records(2).await;
        assert_eq!(records[1]["host"], "www.facebook.com");
        assert_eq!(records[1]["action"], "block");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_blocked_request_first_does_not_poison_the_connection() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut client = proxy.client().await;
        let p = origin.port();
        client
            .send(&format!(
                "GET http://www.facebook.com:{p}/a HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n\
                 GET http://www.facebook.com.:{p}/b HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n"
            ))
            .await;
        assert_eq!(client.reply(true).await.status, 403);
        // Either the connection closed after the block, or the second is
        // blocked too; never forwarded.
        if let Some(second) = client.reply_or_closed().await {
            assert_eq!(second.status, 403, "the second pipelined request was not blocked");
        }
        assert_eq!(origin.heads(), 0);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_keep_alive_connection_follows_a_reload_both_ways() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let mut proxy = Company::new().start(&[origin.port()]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());
        let mut engineer = proxy.client_from("127.0.0.3").await;
        let mut visitor = proxy.client_from("127.0.0.1").await;
        assert_eq!(engineer.get(&url, &[]).await.status, 200);
        assert_eq!(visitor.get(&url, &[]).await.status, 403);

        // Engineering now blocks facebook; default now allows it.
        proxy.reload(|company| {
            company
                .department(
                    "engineering",
                    "networks = [\"127.0.0.3/32\"]\nusers = [\"bob\"]\ndefault = \"allow\"\n[services]\nfacebook = \"block\"\n",
                )
                .department("default", "default = \"allow\"\n")
        });

        let after = engineer.get(&url, &[]).await;
        assert_eq!(after.status, 403, "a keep-alive connection kept its old policy: {after:?}");
        assert_eq!(visitor.get(&url, &[]).await.status, 200, "a keep-alive connection kept its old block");
        assert_eq!(origin.heads(), 2);
        let records = proxy.whole_records(4).await;
        assert_eq!(records.iter().filter(|r| r["action"] == "block").count(), 2, "{records:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_blocked_sni_inside_an_ip_literal_tunnel_is_cut() {
    bounded(async {
        let origin = support::TlsOrigin::start().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut visitor = proxy.client().await;
        // The IP literal matches no service: the CONNECT itself is allowed.
        let reply = visitor.connect_to(&format!("127.0.0.1:{}", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        // The ClientHello names a blocked host: the tunnel must close
        // before the handshake completes.
        let connector = tokio_rustls::TlsConnector::from(origin.client_config.clone());
        let name = rustls_pki_types::ServerName::try_from("www.facebook.com").unwrap();
        let handshake = tokio::time::timeout(support::WAIT, connector.connect(name, visitor.stream)).await.unwrap();
        assert!(handshake.is_err(), "a TLS session to a blocked SNI was established");
        let r = &proxy.whole_records(1).await[0];
        assert_eq!(r["sni"], "www.facebook.com");
        assert_eq!(r["service"], "facebook");
        assert_eq!(r["action"], "block");
        assert_eq!(r["status"], 403);
        assert_eq!(r["closed_by"], "policy");
        proxy.stop().await;
    })
    .await;
}

/// An origin that counts the bytes it receives on every connection.
async fn byte_counting_origin() -> (support::ScriptedOrigin, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let received = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let origin = support::ScriptedOrigin::start(false, move |mut stream| {
        let counter = counter.clone();
        async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                counter.fetch_add(n, Ordering::SeqCst);
            }
        }
    })
    .await;
    (origin, received)
}

/// Sends `hello` through a tunnel to `authority` and expects the tunnel to
/// be cut by the SNI decision with nothing reaching the origin.
async fn assert_hello_cut(
    proxy: &support::Proxy,
    authority: &str,
    hello: &[u8],
    received: &std::sync::atomic::AtomicUsize,
) {
    let mut visitor = proxy.client().await;
    let reply = visitor.connect_to(authority, &[]).await;
    assert_eq!(reply.status, 200);
    visitor.send_bytes(hello).await;
    assert!(visitor.closed().await, "the tunnel stayed open");
    let r = &proxy.whole_records(1).await[0];
    assert_eq!(r["sni"], "www.facebook.com", "{r}");
    assert_eq!(r["action"], "block", "{r}");
    assert_eq!(r["status"], 403, "{r}");
    assert_eq!(r["closed_by"], "policy", "{r}");
    // bytes_up counts what the client sent (SPEC 4); none of it went on.
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0, "the origin received the ClientHello");
}

#[tokio::test]
async fn a_blocked_sni_sent_raw_through_an_allowed_name_is_cut_before_the_origin_sees_it() {
    bounded(async {
        let (origin, received) = byte_counting_origin().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let hello = support::client_hello("www.facebook.com");
        assert_hello_cut(&proxy, &format!("example.test:{}", origin.port()), &hello, &received).await;
        proxy.stop().await;
    })
    .await;
}

/// `hello` (one TLS record) re-framed as two records, cut in the middle of
/// the handshake message: valid TLS (RFC 8446 5.1 allows a handshake
/// message to span records; rustls and OpenSSL servers accept it).
fn split_in_two_records(hello: &[u8]) -> Vec<u8> {
    let message = &hello[5..];
    let (a, b) = message.split_at(message.len() / 2);
    let mut out = Vec::new();
    for part in [a, b] {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[tokio::test]
async fn a_blocked_sni_in_a_hello_split_across_records_is_cut() {
    bounded(async {
        let (origin, received) = byte_counting_origin().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let hello = split_in_two_records(&support::client_hello("www.facebook.com"));
        // socialgate's own peeker finds the name in this (so the bytes are right).
        assert_eq!(
            socialgate::tls::peek::peek(&hello),
            socialgate::tls::peek::Peek::ClientHello { sni: Some("www.facebook.com".into()) }
        );
        assert_hello_cut(&proxy, &format!("127.0.0.1:{}", origin.port()), &hello, &received).await;
        proxy.stop().await;
    })
    .await;
}

/// `hello` behind one TLS record of type `kind` carrying `fragment`.
fn behind_a_record(kind: u8, fragment: &[u8], hello: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, 3, 1];
    out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
    out.extend_from_slice(fragment);
    out.extend_from_slice(hello);
    out
}

/// Regression (audit F2): a ClientHello naming a blocked host behind a TLS
/// alert, a ChangeCipherSpec or an empty application-data record (Go's TLS
/// servers accept the first two and go on to the handshake), or in a record
/// whose version is not 3.x, was taken for "not TLS" and, with the default
/// `non_tls_tunnels = "allow"`, passed to the origin undecided. It is TLS
/// that cannot be decided: the tunnel is cut before any byte goes on, and
/// the record says it was refused.
#[tokio::test]
async fn tls_records_before_a_blocked_hello_do_not_make_it_non_tls() {
    bounded(async {
        let (origin, received) = byte_counting_origin().await;
        let tls = support::TlsOrigin::start().await;
        let proxy = Company::new().start(&[origin.port(), tls.port()]).await;
        let hello = support::client_hello("www.facebook.com");
        let mut odd_version = hello.clone();
        odd_version[1..3].copy_from_slice(&[2, 1]);
        let mut no_version = hello.clone();
        no_version[1..3].copy_from_slice(&[0, 0]);
        let variants = [
            ("a warning alert first", behind_a_record(21, &[1, 90], &hello)),
            ("a ChangeCipherSpec first", behind_a_record(20, &[1], &hello)),
            ("an empty application-data record first", behind_a_record(23, &[], &hello)),
            ("record version 2.1", odd_version),
            ("record version 0.0", no_version),
        ];
        for (i, (what, bytes)) in variants.iter().enumerate() {
            let mut visitor = proxy.client().await;
            assert_eq!(visitor.connect_to(&format!("127.0.0.1:{}", origin.port()), &[]).await.status, 200, "{what}");
            visitor.send_bytes(bytes).await;
            assert!(visitor.closed().await, "{what}: the tunnel stayed open");
            let records = proxy.whole_records(i + 1).await;
            let r = &records[i];
            assert_eq!(
                (r["status"].as_u64(), r["action"].as_str(), r["rule"].as_str(), r["closed_by"].as_str()),
                (Some(400), Some("block"), Some("request"), Some("proxy")),
                "{what}: {r}"
            );
            assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0, "{what}: the origin received the bytes");
        }
        // Real TLS still goes through, and there is exactly one record each.
        let mut visitor = proxy.client().await;
        assert_eq!(visitor.connect_to(&format!("127.0.0.1:{}", tls.port()), &[]).await.status, 200);
        assert_eq!(visitor.tls_exchange(&tls, "example.test", "hi").await, "pong: hi\n");
        let records = proxy.whole_records(variants.len() + 1).await;
        assert_eq!(records.len(), variants.len() + 1, "{records:?}");
        assert_eq!(records[variants.len()]["status"].as_u64(), Some(200));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn with_non_tls_tunnels_refused_a_hello_stalled_past_the_peek_timeout_is_cut() {
    bounded(async {
        let (origin, received) = byte_counting_origin().await;
        let proxy = Company::new()
            .proxy("non_tls_tunnels = \"refuse\"")
            .limit("sni_peek_timeout = \"300ms\"")
            .start(&[origin.port()])
            .await;
        let hello = support::client_hello("www.facebook.com");
        let mut visitor = proxy.client().await;
        assert_eq!(visitor.connect_to(&format!("127.0.0.1:{}", origin.port()), &[]).await.status, 200);
        // Three bytes, then silence past the peek timeout, then the rest.
        visitor.send_bytes(&hello[..3]).await;
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let _ = tokio::io::AsyncWriteExt::write_all(&mut visitor.stream, &hello[3..]).await;
        assert!(visitor.closed().await, "the tunnel stayed open");
        let r = &proxy.whole_records(1).await[0];
        assert_eq!((r["action"].as_str(), r["status"].as_u64()), (Some("block"), Some(403)), "{r}");
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0, "the origin received the ClientHello");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_matching_sni_through_an_allowed_tunnel_still_works() {
    bounded(async {
        let origin = support::TlsOrigin::start().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut visitor = proxy.client().await;
        assert_eq!(visitor.connect_to(&format!("127.0.0.1:{}", origin.port()), &[]).await.status, 200);
        assert_eq!(visitor.tls_exchange(&origin, "example.test", "hi").await, "pong: hi\n");
        proxy.stop().await;
    })
    .await;
}

/// A rustls ClientHello whose SNI bytes are replaced by `sni` (same length
/// as `template`), to send names rustls itself would not.
fn hello_with_raw_sni(template: &str, sni: &str) -> Vec<u8> {
    assert_eq!(template.len(), sni.len());
    let mut hello = support::client_hello(template);
    let at = hello.windows(template.len()).position(|w| w == template.as_bytes()).unwrap();
    hello[at..at + sni.len()].copy_from_slice(sni.as_bytes());
    hello
}

#[tokio::test]
async fn an_sni_in_another_spelling_of_a_blocked_name_is_cut() {
    bounded(async {
        let (origin, received) = byte_counting_origin().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let hello = hello_with_raw_sni("www.facebook.xyz", "WWW.FACEBOOK.COM");
        let mut visitor = proxy.client().await;
        assert_eq!(visitor.connect_to(&format!("127.0.0.1:{}", origin.port()), &[]).await.status, 200);
        visitor.send_bytes(&hello).await;
        assert!(visitor.closed().await, "the tunnel stayed open");
        let r = &proxy.whole_records(1).await[0];
        assert_eq!((r["action"].as_str(), r["status"].as_u64()), (Some("block"), Some(403)), "{r}");
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unparseable_sni_close_to_a_blocked_name_is_not_let_through() {
    bounded(async {
        let (origin, received) = byte_counting_origin().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let hello = hello_with_raw_sni("www.facebook.comxx", "www.facebook.com..");
        let mut visitor = proxy.client().await;
        assert_eq!(visitor.connect_to(&format!("127.0.0.1:{}", origin.port()), &[]).await.status, 200);
        visitor.send_bytes(&hello).await;
        assert!(visitor.closed().await, "the tunnel stayed open");
        let r = &proxy.whole_records(1).await[0];
        assert_eq!(r["action"], "block", "{r}");
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0);
        proxy.stop().await;
    })
    .await;
}

/// A minimal ClientHello (TLS 1.2 layout, one record) whose only
/// extension is a server name list holding each of `names` as a
/// `host_name` (RFC 6066 allows one).
fn hello_naming(names: &[&str]) -> Vec<u8> {
    let be16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let mut list = Vec::new();
    for name in names {
        list.push(0u8);
        list.extend(be16(name.len()));
        list.extend_from_slice(name.as_bytes());
    }
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend(be16(list.len() + 6));
    body.extend([0, 0]);
    body.extend(be16(list.len() + 2));
    body.extend(be16(list.len()));
    body.extend(list);
    let mut handshake = vec![1, 0];
    handshake.extend(be16(body.len()));
    handshake.extend(body);
    let mut record = vec![22, 3, 1];
    record.extend(be16(handshake.len()));
    record.extend(handshake);
    record
}

/// Found by `prop_client::well_formed_requests_never_reach_a_blocked_origin`.
#[tokio::test]
async fn a_blocked_sni_second_in_the_name_list_is_not_let_through() {
    bounded(async {
        let (origin, received) = byte_counting_origin().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut visitor = proxy.client().await;
        assert_eq!(visitor.connect_to(&format!("example.test:{}", origin.port()), &[]).await.status, 200);
        visitor.send_bytes(&hello_naming(&["example.test", "www.facebook.com"])).await;
        assert!(visitor.closed().await, "the tunnel stayed open");
        let r = &proxy.whole_records(1).await[0];
        assert_eq!(r["action"], "block", "{r}");
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_connect_pipelined_after_an_allowed_request_is_decided_on_its_own() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let p = origin.port();
        let mut client = proxy.client().await;
        client
            .send(&format!(
                "GET http://example.test:{p}/ HTTP/1.1\r\nHost: example.test\r\n\r\n\
                 CONNECT www.facebook.com:{p} HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n"
            ))
            .await;
        assert_eq!(client.reply(true).await.status, 200);
        let second = client.reply(true).await;
        assert_eq!(second.status, 403, "{second:?}");
        assert_eq!(origin.heads(), 1);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bytes_sent_with_the_connect_head_go_through_the_tunnel_not_the_parser() {
    bounded(async {
        let (origin, received) = byte_counting_origin().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut client = proxy.client().await;
        let early = "GET http://www.facebook.com/ HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n";
        client
            .send(&format!("CONNECT example.test:{} HTTP/1.1\r\nHost: example.test\r\n\r\n{early}", origin.port()))
            .await;
        assert_eq!(client.reply(false).await.status, 200);
        // The early bytes are tunnel payload for the allowed origin: all of
        // them arrive there, and no second decision or record appears.
        support::eventually("the early bytes reached the origin", || {
            received.load(std::sync::atomic::Ordering::SeqCst) == early.len()
        })
        .await;
        drop(client);
        let records = proxy.whole_records(1).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(proxy.records_now().len(), 1, "{records:?}");
        assert_eq!(records[0]["host"], "example.test");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_out_of_range_port_is_refused_not_replaced() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        // 65536 + port would wrap to the origin's port if truncated; 99999
        // must not become the default port 80 either.
        for port in [format!("{}", 65536 + u32::from(origin.port())), "99999".to_owned()] {
            let mut client = proxy.client().await;
            client.send(&format!("GET http://example.test:{port}/ HTTP/1.1\r\nHost: example.test\r\n\r\n")).await;
            let reply = client.reply(true).await;
            assert_eq!(reply.status, 400, "port {port}: {reply:?}");
        }
        assert_eq!(origin.connections(), 0);
        proxy.stop().await;
    })
    .await;
}
