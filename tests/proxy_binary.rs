//! The real binary: `socialgate run` logs its bound address, serves a
//! request, and on SIGTERM drains, flushes the access log and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::binary::{Binary, addr_after};
use support::{Client, Company, EchoOrigin, bounded, wait_for_records};

#[tokio::test]
async fn sigterm_drains_flushes_the_log_and_exits_zero() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = Company::new();
        let proxy = Binary::start(&company.write(&[443])).await;

        let mut client = Client::connect(proxy.addr, "127.0.0.3").await;
        let reply = client.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        drop(client);

        let status = proxy.terminate().await;
        assert!(status.success(), "exit status {status:?}");
        let records = wait_for_records(&company.dir().join("access.log"), 1).await;
        assert_eq!(records[0]["status"], 200);
        assert_eq!(records[0]["department"], "engineering");
    })
    .await;
}

#[tokio::test]
async fn an_edited_department_file_is_reloaded_within_two_seconds() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = Company::new();
        let proxy = Binary::start(&company.write(&[443])).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());
        assert_eq!(Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[]).await.status, 403);

        let edited = Instant::now();
        std::fs::write(company.dir().join("departments").join("default.toml"), "default = \"allow\"\n").unwrap();
        loop {
            if Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[]).await.status == 200 {
                break;
            }
            assert!(edited.elapsed() < Duration::from_secs(5), "the edit was not picked up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // An invalid edit keeps the running config: wait out the whole
        // reload window (a negative has no condition to poll for).
        std::fs::write(company.dir().join("departments").join("default.toml"), "default = \"alow\"\n").unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[]).await.status, 200);

        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// Started from a shell with `ulimit -n 256` (hard limit 512), the proxy
/// raises its own limit to 512, says so, warns that the default
/// `max_connections` (10,000) needs more, and serves 300 clients at once,
/// more than 256 descriptors could hold.
#[tokio::test]
async fn a_low_open_file_limit_is_raised_and_a_too_low_one_is_reported() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = Company::new();
        let proxy = Binary::start_under_ulimit(&company.write(&[443]), 256, 512).await;

        let raised = proxy.start_log.iter().find(|l| l.contains("open-file limit raised")).map(String::as_str);
        let raised = raised.unwrap_or_else(|| panic!("no line about raising the limit in {:#?}", proxy.start_log));
        assert!(raised.contains("from=256") && raised.contains("to=512"), "{raised}");
        let warned = proxy.start_log.iter().find(|l| l.contains("WARN") && l.contains("max_connections=10000"));
        let warned = warned.unwrap_or_else(|| panic!("no warning about max_connections in {:#?}", proxy.start_log));
        assert!(warned.contains("limit=512") && warned.contains("needed=20064"), "{warned}");

        // 300 clients held open at once, then one more that is served.
        let mut held = Vec::new();
        for _ in 0..300 {
            held.push(Client::connect(proxy.addr, "127.0.0.3").await);
        }
        let mut last = Client::connect(proxy.addr, "127.0.0.3").await;
        let reply = last.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        // Every held client was accepted too: each gets an answer.
        for client in held.iter_mut().step_by(50) {
            assert_eq!(client.get(&format!("http://example.test:{}/", origin.port()), &[]).await.status, 200);
        }
        drop(held);
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// Out of descriptors altogether (`ulimit -n 64`, soft and hard), the proxy
/// tells the admin what to do instead of failing silently, and serves
/// again once clients leave.
#[tokio::test]
async fn running_out_of_descriptors_is_logged_with_the_remedy_and_survived() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = Company::new();
        let proxy = Binary::start_under_ulimit(&company.write(&[443]), 64, 64).await;

        // More idle clients than 64 descriptors can hold.
        let mut held = Vec::new();
        for _ in 0..80 {
            held.push(Client::connect(proxy.addr, "127.0.0.3").await);
        }
        let line = proxy.logged("cannot accept a client").await;
        assert!(line.contains("WARN") && line.contains("LimitNOFILE"), "{line}");

        drop(held);
        let mut client = Client::connect(proxy.addr, "127.0.0.3").await;
        let reply = client.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// Editing `[proxy] listen` in the running binary's main file binds the
/// new address and closes the dropped one within seconds, saying so; an
/// address already taken fails the reload, logged with the address and
/// the OS error, and the proxy keeps serving where it did.
#[tokio::test]
async fn an_edited_listen_address_is_bound_and_dropped_and_logged() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let url = format!("http://example.test:{}/", origin.port());
        let company = Company::new();
        let proxy = Binary::start(&company.write(&[443])).await;

        let edited = Instant::now();
        let company = company.listen(&["127.0.0.1:0", "127.0.0.2:0"]);
        company.write(&[443]);
        let added = addr_after(&proxy.logged("now listening on 127.0.0.2:").await, "now listening on ");
        assert!(edited.elapsed() < Duration::from_secs(5), "the edit took {:?}", edited.elapsed());
        assert_eq!(Client::connect(added, "127.0.0.3").await.get(&url, &[]).await.status, 200);
        assert_eq!(Client::connect(proxy.addr, "127.0.0.3").await.get(&url, &[]).await.status, 200);

        let company = company.listen(&["127.0.0.1:0"]);
        company.write(&[443]);
        proxy.logged(&format!("stopped listening on {added}")).await;
        support::refuses_connections(added).await;

        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = squatter.local_addr().unwrap().to_string();
        let company = company.listen(&["127.0.0.1:0", &taken]);
        company.write(&[443]);
        let failed = proxy.logged(&format!("cannot listen on {taken}")).await;
        assert!(failed.contains("ERROR") && failed.contains("reload failed") && failed.contains("in use"), "{failed}");
        assert_eq!(Client::connect(proxy.addr, "127.0.0.3").await.get(&url, &[]).await.status, 200);
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// Replacing the `[proxy.tls]` certificate and key files makes the
/// running binary serve the new certificate to new handshakes.
#[tokio::test]
async fn a_replaced_tls_certificate_file_is_served_to_new_handshakes() {
    bounded(async {
        let company = Company::new().with_tls_listener();
        let proxy = Binary::start(&company.write(&[443])).await;
        let tls_addr = addr_after(&proxy.logged("proxy listening (TLS)").await, "proxy listening (TLS) ");
        let old = company.tls_cert_der();
        assert_eq!(served_cert(tls_addr, std::slice::from_ref(&old)).await, old);

        let company = company.with_tls_listener();
        company.write(&[443]);
        let new = company.tls_cert_der();
        let replaced = Instant::now();
        while served_cert(tls_addr, &[old.clone(), new.clone()]).await != new {
            assert!(replaced.elapsed() < Duration::from_secs(5), "the new certificate was not picked up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// Completes a TLS handshake with the proxy's TLS listener, trusting
/// `certs`; returns the certificate it served.
async fn served_cert(
    addr: SocketAddr,
    certs: &[rustls_pki_types::CertificateDer<'static>],
) -> rustls_pki_types::CertificateDer<'static> {
    let tcp = Client::connect(addr, "127.0.0.3").await.stream;
    let connector = tokio_rustls::TlsConnector::from(support::trusting(certs));
    let name = rustls_pki_types::ServerName::try_from("proxy.test").unwrap();
    let tls = tokio::time::timeout(support::WAIT, connector.connect(name, tcp)).await.unwrap().unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// Runs the binary on `main`, which must fail to start; its exit code and
/// stderr.
fn failed_start(main: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .arg("--config")
        .arg(main)
        .arg("run")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the proxy started although it cannot");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

/// A start-up failure is one line naming what failed and the OS error once
/// (it used to read "... (os error 2): No such file or directory (os error 2)").
#[test]
fn a_start_failure_names_the_os_error_once_and_exits_one() {
    let company = Company::new();
    let main = company.write(&[443]);
    let text = std::fs::read_to_string(&main).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let broken = text.replace("listen = [\"127.0.0.1:0\"]", &format!("listen = [\"{addr}\"]"));
    assert_ne!(text, broken, "the test company's listen line changed");
    std::fs::write(&main, broken).unwrap();
    let (code, stderr) = failed_start(&main);
    assert_eq!(code, Some(1), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: cannot listen on")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(&addr.to_string()), "{line}");
    assert_eq!(line.matches("os error").count(), 1, "{line}");
}

/// An access log that cannot be opened is a config error, reported as
/// `check` reports it, before anything starts.
#[test]
fn an_access_log_folder_that_does_not_exist_fails_the_start_as_check_does() {
    let company = Company::new();
    let main = company.write(&[443]);
    let text = std::fs::read_to_string(&main).unwrap();
    let broken = text.replace("access_log = \"access.log\"", "access_log = \"no-such-folder/access.log\"");
    assert_ne!(text, broken, "the test company's access_log line changed");
    std::fs::write(&main, broken).unwrap();
    let (code, stderr) = failed_start(&main);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("socialgate.toml:")
            && stderr.contains("error: cannot create `access_log` `")
            && stderr.contains("no-such-folder` does not exist"),
        "{stderr}"
    );
}
