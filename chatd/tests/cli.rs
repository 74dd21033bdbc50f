//! The real `chatd` binary: flags, one-line errors, signals (SIGHUP reload, SIGTERM exit 0),
//! and the redirect listener.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use std::time::Duration;

use common::tls::{temp_dir, write_pair, TestCa};
use common::Running;

const BIN: &str = env!("CARGO_BIN_EXE_chatd");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A port that was free a moment ago (the binary takes an address, not a listener).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn help_explains_every_flag() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--listen",
        "--cert",
        "--key",
        "--allow-origin",
        "--http-redirect",
        "--acme-webroot",
        "--rate-limit",
        "--max-connections",
        "--max-connections-per-ip",
        "--history",
        "--max-text",
        "--max-frame",
        "--queue-messages",
        "--handshake-timeout",
        "--domain",
        "--data-dir",
        "--acme-email",
        "--acme-directory",
        "--acme-challenge",
        "--acme-ca-root",
        "--redis",
        "--node-expiry",
    ] {
        assert!(out.contains(flag), "--help does not mention {flag}");
    }
    assert!(out.contains("[default: 0.0.0.0:8080]"));
}

#[test]
fn bad_input_is_one_line_and_a_non_zero_exit() {
    let one_line = |(code, _, err): (i32, String, String), want: &str| {
        assert_ne!(code, 0, "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        assert!(err.starts_with("chatd: ") && err.contains(want), "{err:?}");
    };
    one_line(run(&["--bogus"]), "--bogus");
    one_line(run(&["--rate-limit", "lots"]), "lots");
    one_line(run(&["--cert", "/nonexistent/fullchain.pem"]), "--key");
    one_line(run(&["--cert", "/nonexistent/a.pem", "--key", "/nonexistent/b.pem"]), "/nonexistent/a.pem");
    one_line(run(&["--acme-webroot", "/tmp"]), "--http-redirect");
    // ACME flags: each mistake is caught before anything is bound or ordered.
    one_line(run(&["--domain", "chat.example.com"]), "--domain needs --data-dir");
    let acme_dir = temp_dir("cli-acme");
    let data = acme_dir.join("data");
    let data = data.to_str().unwrap();
    one_line(run(&["--domain", "*.example.com", "--data-dir", data]), "no wildcards");
    one_line(run(&["--domain", "localhost", "--data-dir", data]), "not a DNS name");
    one_line(run(&["--domain", "chat.example.com", "--data-dir", data, "--acme-challenge", "dns-01"]), "dns-01");
    one_line(
        run(&["--domain", "chat.example.com", "--data-dir", data, "--acme-challenge", "http-01"]),
        "needs --http-redirect",
    );
    one_line(run(&["--domain", "chat.example.com", "--data-dir", "/proc/chatd"]), "cannot create the data directory");
    std::fs::remove_dir_all(acme_dir).unwrap();
    let ca = TestCa::new();
    let dir = temp_dir("cli-bad");
    let (cert, _) = write_pair(&dir, &ca.issue());
    std::fs::write(dir.join("other.pem"), ca.issue().key_pem).unwrap();
    one_line(
        run(&["--cert", cert.to_str().unwrap(), "--key", dir.join("other.pem").to_str().unwrap()]),
        "does not match",
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    one_line(run(&["--listen", &addr]), "already in use");
    std::fs::remove_dir_all(dir).unwrap();
    // --redis: a malformed URL, and a Redis that isn't there (a port nothing listens on).
    one_line(run(&["--redis", "localhost:6379"]), "is not a Redis URL");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("redis://{closed}");
    one_line(run(&["--listen", "127.0.0.1:0", "--redis", &url]), "cannot reach Redis");
    one_line(run(&["--redis", "redis://127.0.0.1:1", "--node-expiry", "0"]), "--node-expiry");
}

#[tokio::test]
async fn sighup_reloads_redirect_works_and_sigterm_exits_zero() {
    let ca = TestCa::new();
    let dir = temp_dir("cli-run");
    let (cert, key) = write_pair(&dir, &ca.issue());
    let https = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let webroot = dir.join("webroot");
    std::fs::create_dir_all(webroot.join(".well-known/acme-challenge")).unwrap();
    std::fs::write(webroot.join(".well-known/acme-challenge/abc_DEF-1"), "abc_DEF-1.key").unwrap();
    let mut server = Running::start(&[
        "--listen",
        &https,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--http-redirect",
        &http,
        "--acme-webroot",
        webroot.to_str().unwrap(),
    ]);
    server.wait_for("listening on https://");
    let addr: std::net::SocketAddr = https.parse().unwrap();

    // A client connected before the reload.
    let tls = ca.connect(addr).await.unwrap();
    let mut old = common::open(tls, "localhost", "/ws?room=r&nick=old", None).await.unwrap();
    common::next(&mut old).await;

    let renewed = ca.issue();
    write_pair(&dir, &renewed);
    server.signal("HUP");
    server.wait_for("certificate reloaded (SIGHUP)");
    let tls = ca.connect(addr).await.unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec(), renewed.der);
    old.send_text(common::say("r", "still here")).await.unwrap();
    assert_eq!(common::next_of(&mut old, "message").await["text"], "still here");

    // The plain listener: 301 to https, ACME challenges from the webroot.
    let mut tcp = tokio::net::TcpStream::connect(&http).await.unwrap();
    let response = common::http_get(&mut tcp, "/?room=x").await;
    assert!(response.starts_with("HTTP/1.1 301 "), "{response}");
    let port = addr.port();
    assert!(response.contains(&format!("Location: https://test:{port}/?room=x\r\n")), "{response}");
    let mut tcp = tokio::net::TcpStream::connect(&http).await.unwrap();
    let response = common::http_get(&mut tcp, "/.well-known/acme-challenge/abc_DEF-1").await;
    assert!(response.starts_with("HTTP/1.1 200 ") && response.ends_with("abc_DEF-1.key"), "{response}");

    // SIGTERM: the client is told 1001, the process exits 0.
    server.signal("TERM");
    assert_eq!(common::close_of(&mut old).await.code, wsproto::CloseCode::GoingAway);
    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(status) = server.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit status after SIGTERM");
    std::fs::remove_dir_all(dir).unwrap();
}

/// With a low file-descriptor limit the accept loop hits EMFILE; it must keep running and serve
/// again once descriptors are free.
#[tokio::test]
async fn the_accept_loop_survives_running_out_of_file_descriptors() {
    let addr = format!("127.0.0.1:{}", free_port());
    let script = format!("ulimit -n 64 && exec {BIN} --listen {addr} --max-connections-per-ip 0");
    let mut command = Command::new("sh");
    command.args(["-c", &script]).env("RUST_LOG", "chatd=info,warn");
    let mut server = Running::spawn(command);
    server.wait_for("listening on http://");
    let mut idle = Vec::new();
    for _ in 0..120 {
        if let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await {
            idle.push(tcp);
        }
    }
    server.wait_for("accept failed");
    drop(idle);
    // Served again once the idle connections are gone.
    let mut served = false;
    for _ in 0..100 {
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await {
            if common::http_get(&mut tcp, "/healthz").await.ends_with("ok\n") {
                served = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "chatd serves again after EMFILE");
}
