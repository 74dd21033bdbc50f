//! chatd over TLS with a CA made at test time: wss chat, ALPN, reloads, the handshake deadline.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::tls::{temp_dir, write_pair, TestCa};
use common::{config, next, say, Server};
use rustls_pki_types::pem::PemObject;
use tokio::io::AsyncReadExt;

fn tls_config(cert: std::path::PathBuf, key: std::path::PathBuf) -> chatd::Config {
    chatd::Config {
        tls: Some(chatd::TlsFiles { cert, key }),
        cert_check_interval: Duration::from_millis(50),
        ..config()
    }
}

/// One metric, read over TLS.
async fn metric(ca: &TestCa, addr: std::net::SocketAddr, name: &str) -> u64 {
    let mut tls = ca.connect(addr).await.unwrap();
    common::parse_metric(&common::http_get(&mut tls, "/metrics").await, name)
}

/// The certificate a new connection is served.
async fn served_cert(ca: &TestCa, addr: std::net::SocketAddr) -> Vec<u8> {
    let tls = ca.connect(addr).await.unwrap();
    let (_, session) = tls.get_ref();
    session.peer_certificates().unwrap()[0].to_vec()
}

/// Waits (bounded) until `check` holds, polling the server.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn wss_chat_with_alpn_http11() {
    let ca = TestCa::new();
    let dir = temp_dir("wss");
    let (cert, key) = write_pair(&dir, &ca.issue());
    let server = Server::start(tls_config(cert, key)).await;
    let tls = ca.connect(server.addr).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut alice = common::open(tls, "localhost", "/ws?room=r&nick=alice", None).await.unwrap();
    next(&mut alice).await;
    let tls = ca.connect(server.addr).await.unwrap();
    let mut bob = common::open(tls, "localhost", "/ws?room=r&nick=bob", Some("https://localhost")).await.unwrap();
    next(&mut bob).await;
    bob.send_text(say("r", "over tls")).await.unwrap();
    assert_eq!(common::next_of(&mut alice, "message").await["text"], "over tls");
    // The page is served over https too.
    let mut tls = ca.connect(server.addr).await.unwrap();
    assert!(common::http_get(&mut tls, "/").await.starts_with("HTTP/1.1 200 OK"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn certificate_reload_on_file_change_keeps_open_connections() {
    let ca = TestCa::new();
    let dir = temp_dir("reload");
    let first = ca.issue();
    let (cert, key) = write_pair(&dir, &first);
    let server = Server::start(tls_config(cert.clone(), key.clone())).await;
    assert_eq!(served_cert(&ca, server.addr).await, first.der);
    let tls = ca.connect(server.addr).await.unwrap();
    let mut old = common::open(tls, "localhost", "/ws?room=r&nick=old", None).await.unwrap();
    next(&mut old).await;

    let second = ca.issue();
    write_pair(&dir, &second);
    let addr = server.addr;
    eventually("the new certificate", || async { served_cert(&ca, addr).await == second.der }).await;
    // The connection opened before the renewal still chats.
    old.send_text(say("r", "still here")).await.unwrap();
    assert_eq!(common::next_of(&mut old, "message").await["text"], "still here");

    // A broken pair (key of another certificate) is refused; the good one stays.
    let third = ca.issue();
    std::fs::write(&cert, &third.cert_pem).unwrap();
    eventually("a failed reload", || async { metric(&ca, server.addr, "chatd_tls_reload_failures_total").await >= 1 })
        .await;
    assert_eq!(served_cert(&ca, addr).await, second.der);
    old.send_text(say("r", "and still")).await.unwrap();
    assert_eq!(common::next_of(&mut old, "message").await["text"], "and still");
    assert!(metric(&ca, server.addr, "chatd_tls_reloads_total").await >= 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_client_that_never_finishes_its_hello_is_cut_at_the_deadline() {
    let ca = TestCa::new();
    let dir = temp_dir("slowtls");
    let (cert, key) = write_pair(&dir, &ca.issue());
    let server =
        Server::start(chatd::Config { handshake_timeout: Duration::from_millis(300), ..tls_config(cert, key) }).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server hung up on a silent TLS client");
    assert_eq!(metric(&ca, server.addr, "chatd_rejected_total{reason=\"timeout\"}").await, 1);
    // A plain-HTTP request on the TLS port fails the handshake without harming anyone.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let _ = common::http_get(&mut tcp, "/").await;
    assert_eq!(metric(&ca, server.addr, "chatd_rejected_total{reason=\"tls\"}").await, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unusable_pairs_are_one_line_errors() {
    let ca = TestCa::new();
    let dir = temp_dir("bad");
    let (cert, key) = write_pair(&dir, &ca.issue());
    let check = |cert: &std::path::Path, key: &std::path::Path| {
        let config = chatd::Config { tls: Some(chatd::TlsFiles { cert: cert.into(), key: key.into() }), ..config() };
        chatd::preflight(&config).map(|_| ()).unwrap_err().to_string()
    };
    let missing = check(&dir.join("nope.pem"), &key);
    assert!(missing.contains("nope.pem") && missing.contains("No such file"), "{missing}");
    let other = ca.issue();
    std::fs::write(dir.join("other-key.pem"), &other.key_pem).unwrap();
    let mismatch = check(&cert, &dir.join("other-key.pem"));
    assert!(mismatch.contains("does not match"), "{mismatch}");
    std::fs::write(dir.join("garbage.pem"), "not a pem file").unwrap();
    let garbage = check(&dir.join("garbage.pem"), &key);
    assert!(garbage.contains("no certificate found"), "{garbage}");
    for e in [missing, mismatch, garbage] {
        assert!(!e.contains('\n'));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Keys in the two traditional PEM forms (RSA PKCS#1, EC SEC1), made by openssl as an operator
/// would, load and serve.
#[tokio::test]
async fn rsa_and_sec1_ec_keys_are_accepted() {
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl").args(args).stderr(std::process::Stdio::null()).status();
        assert!(status.expect("openssl is installed").success(), "openssl {args:?}");
    };
    let dir = temp_dir("keyforms");
    let forms: [(&str, &[&str], &str); 2] = [
        ("rsa", &["genrsa", "-traditional", "-out", "KEY", "2048"], "BEGIN RSA PRIVATE KEY"),
        ("ec", &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "KEY"], "BEGIN EC PRIVATE KEY"),
    ];
    for (name, keygen, header) in forms {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.pem"));
        let key_s = key.to_str().unwrap();
        let keygen: Vec<&str> = keygen.iter().map(|a| if *a == "KEY" { key_s } else { a }).collect();
        openssl(&keygen);
        assert!(std::fs::read_to_string(&key).unwrap().contains(header));
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            key_s,
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-out",
            cert.to_str().unwrap(),
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ]);
        let server = Server::start(tls_config(cert.clone(), key.clone())).await;
        // Trust the self-signed certificate itself.
        let mut roots = rustls::RootCertStore::empty();
        let der = rustls_pki_types::CertificateDer::pem_file_iter(&cert).unwrap().next().unwrap().unwrap();
        roots.add(der).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name_ = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client)).connect(name_, tcp).await.unwrap();
        assert!(common::http_get(&mut tls, "/healthz").await.ends_with("ok\n"), "{name} key");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
