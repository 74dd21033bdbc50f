//! The tokio layer over in-memory duplex pipes, with paused time for every timeout.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use std::time::Duration;

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use wsproto::handshake::client::ClientRequest;
use wsproto::handshake::server::Accept;
use wsproto::stream::{accept, accept_with, connect, WebSocket};
use wsproto::{CloseCode, Config, Error, Event, HandshakeError, ProtocolError};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

async fn pair(config: Config) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = duplex(64 * 1024);
    let server = tokio::spawn(accept(b, config.clone()));
    let request = ClientRequest::new("x", "/").unwrap();
    let (client, _) = connect(a, &request, config).await.unwrap();
    (client, server.await.unwrap().unwrap())
}

async fn read_all(mut io: DuplexStream) -> String {
    let mut out = Vec::new();
    let _ = io.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(start_paused = true)]
async fn silent_peer_is_cut_at_the_handshake_deadline_with_408() {
    let (mut client, server_io) = duplex(4096);
    let server = tokio::spawn(accept(server_io, Config::default()));
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let result = server.await.unwrap();
    assert!(matches!(result, Err(Error::Handshake(HandshakeError::Timeout))));
    assert!(read_all(client).await.starts_with("HTTP/1.1 408 "));
}

#[tokio::test]
async fn bytes_pipelined_after_the_head_reach_the_frame_parser() {
    let (mut client, server_io) = duplex(4096);
    let mut bytes = REQUEST.to_vec();
    bytes.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    client.write_all(&bytes).await.unwrap();
    let mut ws = accept(server_io, Config::default()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Event::Text("hi".into())));
}

#[tokio::test]
async fn hook_sees_the_request_and_can_refuse_with_403() {
    let (mut client, server_io) = duplex(4096);
    client.write_all(&[&REQUEST[..REQUEST.len() - 2], b"Origin: https://evil.example\r\n\r\n"].concat()).await.unwrap();
    let result = accept_with(server_io, Config::default(), |req| {
        if req.origin() == Some("https://evil.example") {
            Err(403)
        } else {
            Ok(Accept::new())
        }
    })
    .await;
    assert!(matches!(result, Err(Error::Handshake(HandshakeError::Rejected(403)))));
    assert!(read_all(client).await.starts_with("HTTP/1.1 403 Forbidden\r\n"));
}

#[tokio::test]
async fn invalid_request_gets_its_status_before_the_hook() {
    let (mut client, server_io) = duplex(4096);
    client.write_all(&REQUEST.to_vec().replace_version()).await.unwrap();
    let result = accept_with(server_io, Config::default(), |_| panic!("the hook sees only valid requests")).await;
    assert!(matches!(result, Err(Error::Handshake(HandshakeError::UnsupportedVersion))));
    let response = read_all(client).await;
    assert!(response.starts_with("HTTP/1.1 426 ") && response.contains("Sec-WebSocket-Version: 13\r\n"));
}

trait ReplaceVersion {
    fn replace_version(self) -> Vec<u8>;
}
impl ReplaceVersion for Vec<u8> {
    fn replace_version(self) -> Vec<u8> {
        String::from_utf8(self).unwrap().replace("Version: 13", "Version: 7").into_bytes()
    }
}

#[tokio::test]
async fn close_handshake_from_the_client_ends_both_sides_cleanly() {
    let (mut client, mut server) = pair(Config::default()).await;
    let server_task = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = server.recv().await.unwrap() {
            events.push(event);
        }
        events
    });
    client.send_text("bye soon").await.unwrap();
    client.close(CloseCode::Normal, "done").await.unwrap();
    assert!(matches!(client.recv().await.unwrap(), Some(Event::Close(f)) if f.code == CloseCode::Normal));
    assert_eq!(client.recv().await.unwrap(), None);
    let events = server_task.await.unwrap();
    assert_eq!(events[0], Event::Text("bye soon".into()));
    assert!(matches!(&events[1], Event::Close(f) if f.code == CloseCode::Normal && f.reason == "done"));
}

#[tokio::test(start_paused = true)]
async fn keepalive_keeps_a_live_peer_and_cuts_a_dead_one() {
    let config = Config::builder()
        .ping_interval(Some(Duration::from_secs(20)))
        .pong_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // A live client answers pings from inside recv(); the server stays up for 5 minutes.
    let (mut client, mut server) = pair(config.clone()).await;
    tokio::spawn(async move { while let Ok(Some(_)) = client.recv().await {} });
    let outcome = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            match server.recv().await {
                // The client's own keepalive pings, and the answers to ours.
                Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(outcome.is_err(), "no message and no error while the peer answers pings: {outcome:?}");

    // A dead client (never reads, never writes): ping after 20 s, failure 20 s later.
    let (client, mut server) = pair(config).await;
    let started = tokio::time::Instant::now();
    let result = server.recv().await;
    assert!(matches!(result, Err(Error::Protocol(ProtocolError::PongTimeout))), "{result:?}");
    assert_eq!(ProtocolError::PongTimeout.close_code(), CloseCode::InternalError);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(40) && waited < Duration::from_secs(46), "{waited:?}");
    drop(client);
}

#[tokio::test]
async fn split_reader_alone_still_answers_pings() {
    let (mut client, server) = pair(Config::default()).await;
    let (mut reader, writer) = server.split();
    // Only the reader is polled; the writer sits unused.
    let reader_task = tokio::spawn(async move { reader.recv().await });
    client.ping(&b"hello?"[..]).await.unwrap();
    assert_eq!(client.recv().await.unwrap(), Some(Event::Pong(bytes::Bytes::from_static(b"hello?"))));
    assert!(matches!(reader_task.await.unwrap(), Ok(Some(Event::Ping(_)))));
    writer.send_text("from the writer").await.unwrap();
    assert_eq!(client.recv().await.unwrap(), Some(Event::Text("from the writer".into())));
}

#[tokio::test]
async fn split_halves_work_from_different_tasks() {
    let (mut client, server) = pair(Config::default()).await;
    let (mut reader, writer) = server.split();
    let echo = tokio::spawn(async move {
        while let Ok(Some(Event::Text(text))) = reader.recv().await {
            writer.send_text(text).await.unwrap();
        }
    });
    for i in 0..100 {
        client.send_text(&format!("m{i}")).await.unwrap();
        assert_eq!(client.recv().await.unwrap(), Some(Event::Text(format!("m{i}"))));
    }
    client.close(CloseCode::Normal, "").await.unwrap();
    while let Ok(Some(_)) = client.recv().await {}
    echo.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn writer_applies_backpressure_to_a_peer_that_never_reads() {
    let config = Config::builder().write_buffer_limit(64 * 1024).ping_interval(None).build().unwrap();
    let (client, mut server) = pair(config).await;
    let chunk = bytes::Bytes::from(vec![0u8; 16 * 1024]);
    let mut sent = 0usize;
    let blocked = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            server.send_binary(chunk.clone()).await.unwrap();
            sent += chunk.len();
        }
    })
    .await;
    assert!(blocked.is_err(), "send must wait once the pipe and the buffer are full");
    // The duplex holds 64 KiB, the write buffer at most its limit plus one message.
    assert!(sent <= 64 * 1024 + 64 * 1024 + 16 * 1024, "sent {sent} bytes into a peer that never reads");
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn fed_messages_wait_for_recv_or_flush_and_go_out_together() {
    let (mut client, mut server) = pair(Config::builder().ping_interval(None).build().unwrap()).await;
    client.send_text("one").await.unwrap();
    client.send_text("two").await.unwrap();
    // The server answers both messages before either answer is written...
    for expected in ["one", "two"] {
        let Some(Event::Text(text)) = server.recv().await.unwrap() else { panic!("expected text") };
        assert_eq!(text, expected);
        server.feed_text(&format!("re: {text}")).await.unwrap();
    }
    server.feed_binary(vec![7u8]).await.unwrap();
    assert!(server.connection().has_outgoing(), "fed frames are queued, not written");
    // ...and the recv that waits for the next message writes them.
    let echo = tokio::spawn(async move { while let Ok(Some(_)) = server.recv().await {} });
    assert_eq!(client.recv().await.unwrap(), Some(Event::Text("re: one".into())));
    assert_eq!(client.recv().await.unwrap(), Some(Event::Text("re: two".into())));
    assert_eq!(client.recv().await.unwrap(), Some(Event::Binary(vec![7u8].into())));
    client.close(CloseCode::Normal, "").await.unwrap();
    while let Ok(Some(_)) = client.recv().await {}
    echo.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn feed_waits_once_the_write_buffer_is_over_its_limit() {
    let config = Config::builder().write_buffer_limit(16 * 1024).ping_interval(None).build().unwrap();
    let (client, mut server) = pair(config).await;
    let chunk = bytes::Bytes::from(vec![0u8; 16 * 1024]);
    // Under the limit feeding returns at once, without writing.
    server.feed_binary(chunk.clone()).await.unwrap();
    assert_eq!(server.connection().queued_data_len(), 16 * 1024 + 4, "the frame, header included, is queued");
    // At the limit it writes first: the 64 KiB pipe takes four chunks, then it must wait.
    let blocked = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..8 {
            server.feed_binary(chunk.clone()).await.unwrap();
        }
    })
    .await;
    assert!(blocked.is_err(), "feed must wait for a peer that doesn't read");
    drop(client);
}

#[tokio::test]
async fn eof_without_close_is_an_error_not_a_clean_end() {
    let (client, mut server) = pair(Config::default()).await;
    drop(client);
    assert!(matches!(server.recv().await, Err(Error::Io(_))));
}

#[tokio::test]
async fn protocol_error_writes_the_close_code() {
    let (mut raw, server_io) = duplex(4096);
    raw.write_all(REQUEST).await.unwrap();
    let mut server = accept(server_io, Config::default()).await.unwrap();
    let mut head = vec![0u8; 129];
    let n = raw.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 101"));
    raw.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap(); // unmasked: 1002
    assert!(matches!(server.recv().await, Err(Error::Protocol(ProtocolError::UnmaskedFrame))));
    let mut close = Vec::new();
    raw.read_to_end(&mut close).await.unwrap();
    assert_eq!(close, [0x88, 0x02, 0x03, 0xea]);
}
