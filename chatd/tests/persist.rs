//! History that survives restarts (`--data-dir`): an orderly restart continues exactly, a client
//! reconnecting with `since` gets exactly what it missed; after SIGKILL the numbering jumps
//! rather than repeat; a damaged store stops chatd at start with one line.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::tls::temp_dir;
use common::{config, next, next_of, say, Running, Server};

fn texts(hello: &serde_json::Value) -> Vec<(u64, String)> {
    hello["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["seq"].as_u64().unwrap(), m["text"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn an_orderly_restart_keeps_history_and_numbering() {
    let dir = temp_dir("persist-restart");
    let persisted = || chatd::Config { data_dir: Some(dir.clone()), history: 50, ..config() };
    let mut server = Server::start(persisted()).await;
    let mut alice = server.client("/ws?room=r&nick=alice").await;
    next(&mut alice).await;
    let mut bob = server.client("/ws?room=r&nick=bob").await;
    next(&mut bob).await;
    next_of(&mut alice, "join").await;
    for i in 1..=2 {
        alice.send_text(say("r", &format!("seen {i}"))).await.unwrap();
        next_of(&mut bob, "message").await;
        next_of(&mut alice, "message").await;
    }
    drop(bob); // bob has seen up to seq 2
    for i in 3..=5 {
        alice.send_text(say("r", &format!("missed {i}"))).await.unwrap();
        assert_eq!(next_of(&mut alice, "message").await["seq"], i);
    }
    // Like SIGTERM: every client is closed with 1001, the store is flushed and marked clean.
    server.shutdown();
    server.task.await.unwrap().unwrap();
    drop(alice);

    let server = Server::start(persisted()).await;
    let mut bob = server.client("/ws?room=r&nick=bob&since=2").await;
    let hello = next(&mut bob).await;
    assert_eq!(hello["recovered"], true);
    assert_eq!(hello["seq"], 5);
    let missed: Vec<(u64, String)> = (3..=5).map(|i| (i, format!("missed {i}"))).collect();
    assert_eq!(texts(&hello), missed, "exactly the missed messages");
    bob.send_text(say("r", "after the restart")).await.unwrap();
    assert_eq!(next_of(&mut bob, "message").await["seq"], 6, "numbering continues");
    std::fs::remove_dir_all(dir).unwrap();
}

/// chatd on a free port with `--data-dir`, once it listens.
fn start(data_dir: &std::path::Path) -> (Running, std::net::SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut running = Running::start(&["--listen", &addr.to_string(), "--data-dir", data_dir.to_str().unwrap()]);
    running.wait_for("listening on http://");
    (running, addr)
}

#[tokio::test]
async fn sigterm_then_sigkill_with_the_binary() {
    let dir = temp_dir("persist-binary");
    let (mut chatd, addr) = start(&dir);
    let mut alice = common::connect(addr, "/ws?room=r&nick=alice", None).await.unwrap();
    next(&mut alice).await;
    alice.send_text(say("r", "one")).await.unwrap();
    assert_eq!(next_of(&mut alice, "message").await["seq"], 1);
    // SIGTERM: exit 0, everything stored.
    chatd.signal("TERM");
    assert!(chatd.child.wait().unwrap().success());
    drop(alice);

    let (mut chatd, addr) = start(&dir);
    let mut alice = common::connect(addr, "/ws?room=r&nick=alice&since=0", None).await.unwrap();
    let hello = next(&mut alice).await;
    assert_eq!(texts(&hello), [(1, "one".to_owned())]);
    alice.send_text(say("r", "two")).await.unwrap();
    assert_eq!(next_of(&mut alice, "message").await["seq"], 2);
    // SIGKILL: "two" may or may not have been committed; either way no number may repeat.
    chatd.child.kill().unwrap();
    chatd.child.wait().unwrap();
    drop(alice);

    let (mut chatd, addr) = start(&dir);
    chatd.wait_for("was not closed cleanly");
    let mut alice = common::connect(addr, "/ws?room=r&nick=alice&since=0", None).await.unwrap();
    let hello = next(&mut alice).await;
    let seq = hello["seq"].as_u64().unwrap();
    assert!(seq > chatd::store::CRASH_GAP, "numbering jumped past the crash: {seq}");
    assert_eq!(hello["recovered"], false, "messages may have been lost: not claimed complete");
    let history = texts(&hello);
    assert_eq!(history[0], (1, "one".to_owned()), "the orderly stop's message is kept");
    alice.send_text(say("r", "three")).await.unwrap();
    assert_eq!(next_of(&mut alice, "message").await["seq"], seq + 1);
    drop(chatd);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_damaged_store_stops_chatd_with_one_line() {
    let dir = temp_dir("persist-damaged");
    std::fs::write(dir.join("history.redb"), vec![0x5a; 8192]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir", dir.to_str().unwrap()])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("chatd: the history store") && err.contains("left it untouched"), "{err}");
    assert_eq!(std::fs::read(dir.join("history.redb")).unwrap(), vec![0x5a; 8192], "not replaced");
    std::fs::remove_dir_all(dir).unwrap();
}
