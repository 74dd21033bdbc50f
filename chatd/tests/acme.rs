//! Automatic certificates against Pebble, Let's Encrypt's ACME test server, for real: the chatd
//! binary orders, answers TLS-ALPN-01 or HTTP-01, serves wss with the certificate, renews it at
//! two thirds of its lifetime while a connection stays open, and reuses it after a restart.
//!
//! Needs `pebble` and `pebble-challtestsrv` (Debian package `pebble`) on PATH, so these tests are
//! ignored by a plain `cargo test`; `scripts/test` installs the package and runs them with
//! `--ignored`. Pebble's validation ports are set to the ports chatd listens on; its DNS is
//! `pebble-challtestsrv`, which answers every A query with 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::tls::{temp_dir, TestCa};
use common::{next_of, say};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const DOMAIN: &str = "chat.pebble.test";

/// A free loopback port. Pebble and chatd must agree on ports before either starts, so the port
/// is released here and bound again by its user a moment later.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Lines a child writes, as they come.
fn lines(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; panics with what was seen if it does not come.
async fn expect_line(lines: &mut mpsc::UnboundedReceiver<String>, needle: &str, within: Duration) -> String {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(within, async {
        while let Some(line) = lines.recv().await {
            if line.contains(needle) {
                return Some(line);
            }
            seen.push(line);
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        _ => panic!("no line with {needle:?} within {within:?}; saw:\n{}", seen.join("\n")),
    }
}

/// Pebble and its mock DNS, on free loopback ports.
struct Pebble {
    directory: String,
    /// The CA that signed Pebble's own HTTPS certificate (chatd's --acme-ca-root).
    https_ca: PathBuf,
    /// Pebble's issuing root, which clients of chatd trust.
    root: CertificateDer<'static>,
    // Both are killed when dropped (kill_on_drop), also when a test panics.
    _dns: tokio::process::Child,
    _pebble: tokio::process::Child,
}

impl Pebble {
    /// Validates TLS-ALPN-01 on `tls_port` and HTTP-01 on `http_port`; certificates live
    /// `validity` seconds.
    async fn start(dir: &Path, tls_port: u16, http_port: u16, validity: u64) -> Pebble {
        let ca = TestCa::new();
        let leaf = ca.issue();
        std::fs::write(dir.join("pebble-cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.join("pebble-key.pem"), &leaf.key_pem).unwrap();
        std::fs::write(dir.join("https-ca.pem"), ca.pem()).unwrap();
        let (acme, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble-cert.pem"),
            "privateKey": dir.join("pebble-key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();

        let mut dns_child = tokio::process::Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}"), "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pebble-challtestsrv on PATH (Debian package pebble; scripts/test installs it)");
        let mut dns_lines = lines(dns_child.stdout.take().unwrap());
        expect_line(&mut dns_lines, "Starting management server", Duration::from_secs(10)).await;

        let mut pebble = tokio::process::Command::new("pebble")
            .args(["-config", dir.join("pebble.json").to_str().unwrap()])
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pebble on PATH (Debian package pebble; scripts/test installs it)");
        let mut pebble_lines = lines(pebble.stdout.take().unwrap());
        expect_line(&mut pebble_lines, "ACME directory available", Duration::from_secs(10)).await;
        tokio::spawn(async move { while pebble_lines.recv().await.is_some() {} });
        tokio::spawn(async move { while dns_lines.recv().await.is_some() {} });

        // Pebble makes a new root at every start; fetch it from the management interface.
        let root_pem = https_get(&ca, SocketAddr::from(([127, 0, 0, 1], management)), "/roots/0").await;
        let root = CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap().into_owned();
        Pebble {
            directory: format!("https://127.0.0.1:{acme}/dir"),
            https_ca: dir.join("https-ca.pem"),
            root,
            _dns: dns_child,
            _pebble: pebble,
        }
    }

    /// A TLS connection to chatd at `addr` as [`DOMAIN`], verified against Pebble's root.
    async fn connect(&self, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(common::tls::client_config_trusting(self.root.clone()));
        connector.connect(ServerName::try_from(DOMAIN).unwrap(), tcp).await.expect("a certificate Pebble issued")
    }
}

/// `GET path` over HTTPS to a server whose certificate `ca` signed; the body.
async fn https_get(ca: &TestCa, addr: SocketAddr, path: &str) -> String {
    // Pebble logs "listening" just before it listens: connection refused can mean "not yet".
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut tls = loop {
        match ca.connect(addr).await {
            Ok(tls) => break tls,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("Pebble's management interface at {addr}: {e}"),
        }
    };
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response).await;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

/// The chatd binary with ACME flags, its stderr as lines.
struct Chatd {
    child: tokio::process::Child,
    log: mpsc::UnboundedReceiver<String>,
    addr: SocketAddr,
}

impl Chatd {
    fn start(pebble: &Pebble, data_dir: &Path, tls_port: u16, extra: &[&str]) -> Chatd {
        let addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args(["--listen", &addr.to_string(), "--domain", DOMAIN, "--acme-email", "ops@pebble.test"])
            .args(["--data-dir", data_dir.to_str().unwrap(), "--acme-directory", &pebble.directory])
            .args(["--acme-ca-root", pebble.https_ca.to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", "chatd=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = lines(child.stderr.take().unwrap());
        Chatd { child, log, addr }
    }

    async fn expect(&mut self, needle: &str, within: Duration) -> String {
        expect_line(&mut self.log, needle, within).await
    }

    /// SIGTERM, then the exit status must be success.
    async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let _ = tokio::process::Command::new("kill").args(["-s", "TERM", &pid]).status().await;
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "chatd exited with {status}");
    }
}

/// The certificate a new TLS connection to chatd is served.
async fn served(pebble: &Pebble, addr: SocketAddr) -> Vec<u8> {
    let tls = pebble.connect(addr).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pebble: scripts/test installs it and runs this"]
async fn tls_alpn_01_obtains_then_renews_while_a_connection_stays_open() {
    let dir = temp_dir("acme-alpn");
    let tls_port = free_port();
    // 24-second certificates: renewal is due 16 s after issuance.
    let pebble = Pebble::start(&dir, tls_port, free_port(), 24).await;
    let data = dir.join("data");
    let mut chatd = Chatd::start(&pebble, &data, tls_port, &[]);
    let installed = chatd.expect("certificate for chat.pebble.test installed", Duration::from_secs(60)).await;
    assert!(installed.contains("renewal in 1"), "renewal at 2/3 of 24 s: {installed}");

    // wss with a client that trusts only Pebble's root.
    let first = served(&pebble, chatd.addr).await;
    let tls = pebble.connect(chatd.addr).await;
    let mut alice = common::open(tls, DOMAIN, "/ws?room=r&nick=alice", None).await.unwrap();
    next_of(&mut alice, "hello").await;
    alice.send_text(say("r", "before renewal")).await.unwrap();
    assert_eq!(next_of(&mut alice, "message").await["text"], "before renewal");

    // The renewal swaps the certificate for new handshakes; the open connection carries on.
    chatd.expect("certificate for chat.pebble.test installed", Duration::from_secs(60)).await;
    let second = served(&pebble, chatd.addr).await;
    assert_ne!(first, second, "a renewal serves a new certificate");
    alice.send_text(say("r", "after renewal")).await.unwrap();
    assert_eq!(next_of(&mut alice, "message").await["text"], "after renewal");

    // Storage: directories 0700, files 0600.
    let store = chatd::acme::Store::path(&data, &pebble.directory);
    assert_eq!((mode(&data), mode(&data.join("acme")), mode(&store)), (0o700, 0o700, 0o700));
    for file in ["account.json", "certificate.pem", "key.pem"] {
        assert_eq!(mode(&store.join(file)), 0o600, "{file}");
    }
    drop(alice);
    chatd.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pebble: scripts/test installs it and runs this"]
async fn http_01_on_the_redirect_port_and_a_restart_reuses_the_stored_certificate() {
    let dir = temp_dir("acme-http");
    let http_port = free_port();
    // Pebble's tls-alpn-01 port is left unused: only http-01 can succeed.
    let pebble = Pebble::start(&dir, free_port(), http_port, 3600).await;
    let data = dir.join("data");
    let redirect = format!("127.0.0.1:{http_port}");
    let flags = ["--acme-challenge", "http-01", "--http-redirect", redirect.as_str()];
    let mut chatd = Chatd::start(&pebble, &data, free_port(), &flags);
    chatd.expect("registered ACME account", Duration::from_secs(30)).await;
    chatd.expect("certificate for chat.pebble.test installed", Duration::from_secs(60)).await;
    let issued = served(&pebble, chatd.addr).await;
    let tls = pebble.connect(chatd.addr).await;
    let mut bob = common::open(tls, DOMAIN, "/ws?room=r&nick=bob", None).await.unwrap();
    next_of(&mut bob, "hello").await;
    drop(bob);
    chatd.stop().await;

    // Same data dir: the stored account and certificate are used, nothing is ordered.
    let chatd = Chatd::start(&pebble, &data, free_port(), &flags);
    let mut chatd = chatd;
    chatd.expect("listening on https", Duration::from_secs(10)).await;
    assert_eq!(served(&pebble, chatd.addr).await, issued, "the stored certificate, not a new one");
    chatd.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pebble: scripts/test installs it and runs this"]
async fn a_failed_validation_says_what_to_check_and_retries() {
    let dir = temp_dir("acme-fail");
    // Pebble validates on ports where nothing listens: chatd is elsewhere.
    let pebble = Pebble::start(&dir, free_port(), free_port(), 3600).await;
    let mut chatd = Chatd::start(&pebble, &dir.join("data"), free_port(), &[]);
    let line = chatd.expect("ACME order for chat.pebble.test", Duration::from_secs(60)).await;
    for needle in ["failed", "A/AAAA records of chat.pebble.test", "port 443", "Retrying in 60 s", "no certificate yet"]
    {
        assert!(line.contains(needle), "{needle:?} in {line}");
    }
    assert!(chatd.child.try_wait().unwrap().is_none(), "chatd keeps running");
    chatd.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
