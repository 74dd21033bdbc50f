//! chatd end to end over plain TCP on 127.0.0.1:0: chat, history, nicks, limits, shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{close_of, config, next, next_of, say, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsproto::CloseCode;

#[tokio::test]
async fn two_clients_chat_and_the_server_stamps_nick_and_seq() {
    let server = Server::start(config()).await;
    let mut alice = server.client("/ws?room=lobby&nick=alice").await;
    let hello = next(&mut alice).await;
    assert_eq!(
        (hello["type"].as_str(), hello["you"].as_str(), hello["seq"].as_u64()),
        (Some("hello"), Some("alice"), Some(0))
    );
    let mut bob = server.client("/ws?room=lobby&nick=bob").await;
    let hello = next(&mut bob).await;
    assert_eq!(hello["members"], serde_json::json!(["alice", "bob"]));
    assert_eq!(next(&mut alice).await, serde_json::json!({"type": "join", "room": "lobby", "nick": "bob"}));

    alice.send_text(say("lobby", "hi bob")).await.unwrap();
    for ws in [&mut alice, &mut bob] {
        let m = next(ws).await;
        assert_eq!(
            (m["nick"].as_str(), m["text"].as_str(), m["seq"].as_u64()),
            (Some("alice"), Some("hi bob"), Some(1))
        );
        assert!(m["ts"].as_u64().unwrap() > 1_700_000_000_000);
    }
    // Plain text (websocat style) goes to the first room, stamped the same way.
    bob.send_text("plain words").await.unwrap();
    let m = next(&mut alice).await;
    assert_eq!(
        (m["nick"].as_str(), m["text"].as_str(), m["seq"].as_u64()),
        (Some("bob"), Some("plain words"), Some(2))
    );
    drop(bob);
    assert_eq!(next(&mut alice).await, serde_json::json!({"type": "leave", "room": "lobby", "nick": "bob"}));
}

#[tokio::test]
async fn history_and_since_recovery() {
    let server = Server::start(chatd::Config { history: 3, ..config() }).await;
    let mut alice = server.client("/ws?room=r&nick=alice").await;
    next(&mut alice).await;
    for i in 1..=5 {
        alice.send_text(say("r", &format!("m{i}"))).await.unwrap();
        next(&mut alice).await;
    }
    // Missed 4 and 5: both still kept.
    let mut bob = server.client("/ws?room=r&nick=bob&since=3").await;
    let hello = next(&mut bob).await;
    assert_eq!(hello["recovered"], true);
    let texts: Vec<&str> = hello["history"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["m4", "m5"]);
    // Missed 2..5, but 2 is gone: recovered false, the whole (3-message) history.
    let mut carol = server.client("/ws?room=r&nick=carol&since=1").await;
    let hello = next(&mut carol).await;
    assert_eq!(hello["recovered"], false);
    assert_eq!(hello["history"].as_array().unwrap().len(), 3);
    // The same through a join request on an open connection.
    carol.send_text(r#"{"type":"join","room":"other","since":0}"#).await.unwrap();
    let hello = next_of(&mut carol, "hello").await;
    assert_eq!((hello["room"].as_str(), hello["recovered"].as_bool()), (Some("other"), Some(true)));
}

#[tokio::test]
async fn nicks_are_unique_per_room_and_cannot_be_spoofed() {
    let server = Server::start(config()).await;
    let mut alice = server.client("/ws?room=r&nick=alice").await;
    next(&mut alice).await;
    let mut impostor = server.client("/ws?room=r&nick=alice").await;
    let err = next(&mut impostor).await;
    assert_eq!(err["code"], "nick_taken");
    assert_eq!(close_of(&mut impostor).await.code, CloseCode::PolicyViolation);
    // The same nick in another room is fine.
    let mut other = server.client("/ws?room=elsewhere&nick=alice").await;
    assert_eq!(next(&mut other).await["type"], "hello");

    let mut bob = server.client("/ws?room=r&nick=bob").await;
    next(&mut bob).await;
    next(&mut alice).await; // bob joined
    bob.send_text(r#"{"type":"message","room":"r","text":"x","nick":"alice"}"#).await.unwrap();
    assert_eq!(next(&mut bob).await["code"], "bad_request");
    bob.send_text(r#"{"type":"nick","nick":"alice"}"#).await.unwrap();
    assert_eq!(next(&mut bob).await["code"], "nick_taken");
    bob.send_text(r#"{"type":"nick","nick":"robert"}"#).await.unwrap();
    assert_eq!(next(&mut alice).await, serde_json::json!({"type":"nick","room":"r","old":"bob","new":"robert"}));
    bob.send_text(say("r", "it's me")).await.unwrap();
    assert_eq!(next_of(&mut alice, "message").await["nick"], "robert");
    // Invalid names are refused before the upgrade.
    let refused = common::connect(server.addr, "/ws?room=r&nick=al%20ice", None).await;
    assert!(matches!(refused, Err(wsproto::Error::Handshake(wsproto::HandshakeError::UnexpectedStatus(400)))));
}

#[tokio::test]
async fn a_stalled_client_is_dropped_with_1013_and_the_room_keeps_flowing() {
    // Loopback sockets buffer megabytes, so send well past what the kernel absorbs.
    let cfg = chatd::Config {
        queue_messages: 64,
        queue_bytes: 256 * 1024,
        shutdown_grace: Duration::from_secs(10),
        ..config()
    };
    let server = Server::start(cfg).await;
    // The staller: a tiny receive buffer, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let mut staller = common::open(tcp, &server.addr.to_string(), "/ws?room=r&nick=staller", None).await.unwrap();
    let mut reader = server.client("/ws?room=r&nick=reader").await;
    next(&mut reader).await;
    let mut sender = server.client("/ws?room=r&nick=sender").await;
    next(&mut sender).await;
    let text = "x".repeat(4000);
    let reader_task = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 3000 {
            let m = next(&mut reader).await;
            if m["type"] == "message" {
                seen += 1;
                assert_eq!(m["seq"].as_u64(), Some(seen));
            }
        }
        reader
    });
    // The sender reads its own echoes on the side, like a real client.
    let (mut echoes, writer) = sender.split();
    tokio::spawn(async move { while let Ok(Some(_)) = echoes.recv().await {} });
    for _ in 0..3000 {
        writer.send_text(say("r", &text)).await.unwrap();
    }
    let _reader =
        tokio::time::timeout(Duration::from_secs(20), reader_task).await.expect("the reader got all 3000").unwrap();
    assert_eq!(server.metric("chatd_slow_consumer_disconnects_total").await, 1);
    // Now the staller reads: the backlog was dropped, its close says why.
    assert_eq!(close_of(&mut staller).await.code, CloseCode::TryAgainLater);
}

#[tokio::test]
async fn rate_limit_warns_then_closes_with_1008() {
    let server = Server::start(chatd::Config { rate_limit: 10, rate_burst: 20, ..config() }).await;
    let mut ws = server.client("/ws?room=r&nick=flood").await;
    next(&mut ws).await;
    for i in 0..100 {
        if ws.send_text(say("r", &format!("{i}"))).await.is_err() {
            break;
        }
    }
    let mut messages = 0;
    let mut warnings = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.unwrap() {
            Ok(Some(wsproto::Event::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("message") => messages += 1,
                    Some("error") => {
                        assert_eq!(v["code"], "rate_limited");
                        warnings += 1;
                    }
                    _ => {}
                }
            }
            Ok(Some(wsproto::Event::Close(frame))) => break frame.code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::PolicyViolation);
    assert!((20..=22).contains(&messages), "the burst gets through: {messages}");
    assert!(warnings >= 1);
    assert!(server.metric("chatd_rate_limited_total").await >= 21);
}

#[tokio::test]
async fn foreign_origins_get_403_unless_allowed() {
    let server = Server::start(chatd::Config { allow_origins: vec!["https://app.example".into()], ..config() }).await;
    let addr = server.addr;
    let evil = common::connect(addr, "/ws", Some("https://evil.example")).await;
    assert!(matches!(evil, Err(wsproto::Error::Handshake(wsproto::HandshakeError::UnexpectedStatus(403)))));
    let same = format!("http://{addr}");
    assert!(common::connect(addr, "/ws", Some(&same)).await.is_ok());
    assert!(common::connect(addr, "/ws", Some("https://app.example")).await.is_ok());
    assert!(common::connect(addr, "/ws", None).await.is_ok(), "no Origin: not a browser");
    assert_eq!(server.metric("chatd_rejected_total{reason=\"origin\"}").await, 1);
}

#[tokio::test]
async fn oversize_frames_close_with_1009_and_long_text_is_refused() {
    let server = Server::start(config()).await;
    let mut ws = server.client("/ws?room=r&nick=big").await;
    next(&mut ws).await;
    ws.send_text(say("r", &"y".repeat(5000))).await.unwrap();
    assert_eq!(next(&mut ws).await["code"], "too_long");
    ws.send_text("z".repeat(70 * 1024)).await.unwrap();
    assert_eq!(close_of(&mut ws).await.code, CloseCode::MessageTooBig);
    // Another client is unaffected.
    let mut other = server.client("/ws?room=r&nick=other").await;
    assert_eq!(next(&mut other).await["type"], "hello");
}

#[tokio::test]
async fn binary_frames_close_with_1003() {
    let server = Server::start(config()).await;
    let mut ws = server.client("/ws?room=r&nick=bin").await;
    next(&mut ws).await;
    ws.send_binary(vec![1u8, 2, 3]).await.unwrap();
    assert_eq!(close_of(&mut ws).await.code, CloseCode::UnsupportedData);
}

#[tokio::test]
async fn graceful_shutdown_sends_1001_and_returns() {
    let mut server = Server::start(config()).await;
    let mut a = server.client("/ws?room=r&nick=a").await;
    next(&mut a).await;
    let mut b = server.client("/ws?room=q&nick=b").await;
    next(&mut b).await;
    server.shutdown();
    assert_eq!(close_of(&mut a).await.code, CloseCode::GoingAway);
    assert_eq!(close_of(&mut b).await.code, CloseCode::GoingAway);
    let result = tokio::time::timeout(Duration::from_secs(10), &mut server.task).await.expect("run returns");
    assert!(result.unwrap().is_ok());
}

#[tokio::test]
async fn page_health_metrics_and_errors() {
    let server = Server::start(config()).await;
    let page = server.get("/").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n") && page.contains("<title>chatd</title>"));
    assert!(page.contains("Content-Security-Policy:"));
    assert!(server.get("/app.js").await.contains("new WebSocket"));
    assert!(server.get("/healthz").await.ends_with("\r\n\r\nok\n"));
    let metrics = server.get("/metrics").await;
    assert!(metrics.contains("# TYPE chatd_connections gauge"));
    assert!(server.get("/nope").await.starts_with("HTTP/1.1 404 "));
    assert!(server.get("/ws").await.starts_with("HTTP/1.1 426 "), "a plain GET to /ws is told to upgrade");
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 405 "));
}

#[tokio::test]
async fn a_silent_connection_is_cut_at_the_handshake_deadline() {
    let server = Server::start(chatd::Config { handshake_timeout: Duration::from_millis(300), ..config() }).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut out = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut out)).await;
    assert!(read.is_ok(), "the server hung up");
    assert!(out.starts_with("HTTP/1.1 408 "), "{out:?}");
    // Others are served meanwhile and after.
    assert!(server.get("/healthz").await.ends_with("ok\n"));
}

#[tokio::test]
async fn connection_limits_answer_503_and_429() {
    let server = Server::start(chatd::Config { max_connections_per_ip: 2, ..config() }).await;
    let _a = server.client("/ws?nick=a").await;
    let _b = server.client("/ws?nick=b").await;
    assert!(server.get("/healthz").await.starts_with("HTTP/1.1 429 "));
    let server = Server::start(chatd::Config { max_connections: 1, ..config() }).await;
    let _a = server.client("/ws?nick=a").await;
    assert!(server.get("/healthz").await.starts_with("HTTP/1.1 503 "));
}

#[tokio::test]
async fn rooms_per_connection_are_limited() {
    let server = Server::start(chatd::Config { max_rooms_per_connection: 2, ..config() }).await;
    let mut ws = server.client("/ws?room=one&nick=roamer").await;
    next(&mut ws).await;
    ws.send_text(r#"{"type":"join","room":"two"}"#).await.unwrap();
    assert_eq!(next_of(&mut ws, "hello").await["room"], "two");
    ws.send_text(r#"{"type":"join","room":"three"}"#).await.unwrap();
    assert_eq!(next_of(&mut ws, "error").await["code"], "too_many_rooms");
    // Leaving one makes room for another.
    ws.send_text(r#"{"type":"leave","room":"one"}"#).await.unwrap();
    ws.send_text(r#"{"type":"join","room":"three"}"#).await.unwrap();
    assert_eq!(next_of(&mut ws, "hello").await["room"], "three");
    ws.send_text(r#"{"type":"join","room":"bad room"}"#).await.unwrap();
    assert_eq!(next_of(&mut ws, "error").await["code"], "bad_room");
}

#[tokio::test]
async fn deflate_members_get_one_compressed_copy_and_plain_members_the_plain_one() {
    let server = Server::start(config()).await;
    let mut zipped = server.deflate_client("/ws?room=z&nick=zip").await;
    let agreed = *zipped.connection().deflate().expect("chatd accepts permessage-deflate");
    assert!(agreed.server_no_context_takeover && agreed.accepts_shared_frames());
    assert!(agreed.client_no_context_takeover, "no decompressor memory kept between messages");
    next(&mut zipped).await;
    let text = "the same words again and again, ".repeat(100); // 3,200 bytes of text
    let before = server.metric("chatd_bytes_out_total").await;
    zipped.send_text(say("z", &text)).await.unwrap();
    assert_eq!(next_of(&mut zipped, "message").await["text"], text.as_str());
    let compressed = server.metric("chatd_bytes_out_total").await - before;
    assert!(compressed < 300, "one compressed delivery: {compressed} bytes");

    // A member without deflate in the same room gets the plain frame of the same message.
    let mut plain = server.client("/ws?room=z&nick=plain").await;
    assert!(plain.connection().deflate().is_none());
    next(&mut plain).await;
    next_of(&mut zipped, "join").await;
    let before = server.metric("chatd_bytes_out_total").await;
    zipped.send_text(say("z", &text)).await.unwrap();
    for ws in [&mut zipped, &mut plain] {
        assert_eq!(next_of(ws, "message").await["text"], text.as_str());
    }
    let both = server.metric("chatd_bytes_out_total").await - before;
    assert!(both > text.len() as u64 && both < text.len() as u64 + 400, "plain + compressed: {both} bytes");

    // --no-deflate: the offer is declined.
    let off = Server::start(chatd::Config { deflate: false, ..config() }).await;
    assert!(off.deflate_client("/ws?room=z&nick=zip").await.connection().deflate().is_none());
}
