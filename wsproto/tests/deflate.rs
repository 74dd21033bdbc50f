//! permessage-deflate (RFC 7692) through the public API: negotiation over a real handshake,
//! compressed messages with control frames between their fragments, and every rule that fails
//! the connection with its exact close code. The decompression bomb is in `deflate_bomb.rs`
//! (alone in its binary, so its allocation count sees no other test).

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

mod common;

use bytes::Bytes;
use common::client_frame;
use wsproto::deflate::codec::{compress_message, compressor};
use wsproto::deflate::{DeflateConfig, PerMessageDeflate};
use wsproto::frame::{OpCode, RSV1};
use wsproto::{CloseCode, Config, Connection, EncodedFrame, Error, Event, ProtocolError, Role, UsageError};

// ---- helpers ----------------------------------------------------------------------------------

fn config(max_message: usize) -> Config {
    Config::builder().max_message_size(max_message).deflate(DeflateConfig::new()).build().unwrap()
}

fn server(max_message: usize) -> Connection {
    Connection::with_deflate(Role::Server, config(max_message), Some(PerMessageDeflate::default()))
}

/// What the peer compresses: a whole message, `00 00 ff ff` removed.
fn deflate(data: &[u8]) -> Vec<u8> {
    compress_message(&mut compressor(9, 15), data).unwrap()
}

fn events(conn: &mut Connection, bytes: &[u8]) -> Result<Vec<Event>, Error> {
    conn.receive(bytes);
    let mut out = Vec::new();
    while let Some(event) = conn.next_event()? {
        out.push(event);
    }
    Ok(out)
}

/// The close code the connection queued.
fn close_code(conn: &mut Connection) -> u16 {
    let mut wire = Vec::new();
    conn.drain_outgoing(&mut wire);
    assert_eq!(wire[0] & 0x0f, 0x8, "a close frame");
    u16::from_be_bytes([wire[2], wire[3]])
}

fn fails_with(bytes: &[u8], conn: &mut Connection, error: ProtocolError, code: CloseCode) {
    match events(conn, bytes) {
        Err(Error::Protocol(e)) => assert_eq!(e, error),
        other => panic!("expected {error:?}, got {other:?}"),
    }
    assert_eq!(close_code(conn), code.as_u16());
}

// ---- messages ---------------------------------------------------------------------------------

#[test]
fn compressed_fragments_with_control_frames_between() {
    let text = "Hello, compressed world! ".repeat(200);
    let packed = deflate(text.as_bytes());
    let third = packed.len() / 3;
    let mut wire = client_frame(OpCode::Text, false, RSV1, &packed[..third]);
    wire.extend(client_frame(OpCode::Ping, true, 0, b"between"));
    wire.extend(client_frame(OpCode::Continuation, false, 0, &packed[third..2 * third]));
    wire.extend(client_frame(OpCode::Pong, true, 0, b""));
    wire.extend(client_frame(OpCode::Continuation, true, 0, &packed[2 * third..]));
    // An uncompressed message right after: RSV1 is per message.
    wire.extend(client_frame(OpCode::Binary, true, 0, b"plain"));
    // Byte by byte, then whole: the same events.
    let mut conn = server(1 << 20);
    let mut got = Vec::new();
    for byte in &wire {
        got.extend(events(&mut conn, std::slice::from_ref(byte)).unwrap());
    }
    let want = vec![
        Event::Ping(Bytes::from_static(b"between")),
        Event::Pong(Bytes::new()),
        Event::Text(text.clone()),
        Event::Binary(Bytes::from_static(b"plain")),
    ];
    assert_eq!(got, want);
    assert_eq!(events(&mut server(1 << 20), &wire).unwrap(), want);
}

#[test]
fn both_directions_round_trip_with_context_takeover() {
    let agreed = PerMessageDeflate::default();
    let mut client = Connection::with_deflate(Role::Client, config(1 << 20), Some(agreed));
    let mut server = Connection::with_deflate(Role::Server, config(1 << 20), Some(agreed));
    for i in 0..50 {
        let text = format!("{{\"type\":\"message\",\"room\":\"lobby\",\"seq\":{i},\"text\":\"hello there\"}}");
        client.send_text(&text).unwrap();
        let mut wire = Vec::new();
        client.drain_outgoing(&mut wire);
        assert_eq!(wire[0] & 0x40, 0x40, "RSV1 set on a compressed message");
        if i > 0 {
            assert!(wire.len() < text.len(), "context takeover shrinks repeats: {} vs {}", wire.len(), text.len());
        }
        assert_eq!(events(&mut server, &wire).unwrap(), [Event::Text(text.clone())]);
        server.send_binary(Bytes::from(text.clone().into_bytes())).unwrap();
        let mut wire = Vec::new();
        server.drain_outgoing(&mut wire);
        assert_eq!(events(&mut client, &wire).unwrap(), [Event::Binary(Bytes::from(text.into_bytes()))]);
    }
    // Below the minimum size a message goes uncompressed.
    client.send_text("tiny").unwrap();
    let mut wire = Vec::new();
    client.drain_outgoing(&mut wire);
    assert_eq!(wire[0], 0x81);
}

// ---- the rules of RFC 7692 §6 -----------------------------------------------------------------

#[test]
fn misplaced_or_unnegotiated_compression_bits_fail_with_1002() {
    let packed = deflate(b"Hello");
    // RSV1 on a continuation frame.
    let mut wire = client_frame(OpCode::Text, false, RSV1, &packed[..2]);
    wire.extend(client_frame(OpCode::Continuation, true, RSV1, &packed[2..]));
    fails_with(&wire, &mut server(1024), ProtocolError::CompressedBitMisplaced, CloseCode::ProtocolError);
    // RSV1 on a control frame.
    let ping = client_frame(OpCode::Ping, true, RSV1, b"x");
    fails_with(&ping, &mut server(1024), ProtocolError::CompressedBitMisplaced, CloseCode::ProtocolError);
    // RSV2 and RSV3 stay reserved.
    let rsv2 = client_frame(OpCode::Text, true, 0b010, b"x");
    fails_with(&rsv2, &mut server(1024), ProtocolError::ReservedBits, CloseCode::ProtocolError);
    // RSV1 without an agreement.
    let mut plain = Connection::new(Role::Server, Config::default());
    let compressed = client_frame(OpCode::Text, true, RSV1, &packed);
    fails_with(&compressed, &mut plain, ProtocolError::ReservedBits, CloseCode::ProtocolError);
}

#[test]
fn bad_compressed_data_and_bad_utf8_inside_fail_with_1007() {
    let garbage = client_frame(OpCode::Binary, true, RSV1, &[0xff, 0xff, 0xff, 0xff]);
    fails_with(&garbage, &mut server(1024), ProtocolError::InvalidCompressedData, CloseCode::InvalidPayload);
    let bad_text = client_frame(OpCode::Text, true, RSV1, &deflate(b"ok \xff\xfe not utf-8"));
    fails_with(&bad_text, &mut server(1024), ProtocolError::InvalidUtf8, CloseCode::InvalidPayload);
    // Split across fragments, the bad byte fails before the message ends.
    let packed = deflate(&[b"fine ".repeat(100), b"\xc0\xaf".to_vec(), b" more".repeat(100)].concat());
    let mut conn = server(1 << 20);
    conn.receive(&client_frame(OpCode::Text, false, RSV1, &packed));
    assert!(matches!(conn.next_event(), Err(Error::Protocol(ProtocolError::InvalidUtf8))));
}

#[test]
fn compressed_bytes_on_the_wire_count_against_the_budget_before_any_inflating() {
    // Incompressible bytes: their DEFLATE data is bigger than the 1 KiB budget.
    let mut state = 1u64;
    let noise: Vec<u8> = (0..2000)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect();
    let packed = deflate(&noise);
    assert!(packed.len() > 1200, "random bytes don't compress");
    let mut conn = server(1024);
    let first = client_frame(OpCode::Binary, false, RSV1, &packed[..600]);
    assert_eq!(events(&mut conn, &first).unwrap(), Vec::<Event>::new());
    // 600 + 600 wire bytes > 1024: refused on the second header alone (2 + 2 length + 4 mask
    // bytes), before a byte of its payload is read or inflated.
    let second = client_frame(OpCode::Continuation, false, 0, &packed[600..1200]);
    fails_with(&second[..8], &mut conn, ProtocolError::MessageTooBig, CloseCode::MessageTooBig);
}

// ---- shared compressed frames ---------------------------------------------------------------------

#[test]
fn shared_compressed_frames_need_a_server_without_context_takeover() {
    let frame = EncodedFrame::deflated_text(&"broadcast ".repeat(50), 6);
    let shared = PerMessageDeflate { server_no_context_takeover: true, ..PerMessageDeflate::default() };
    let mut ok = Connection::with_deflate(Role::Server, config(1024), Some(shared));
    ok.send_encoded(&frame).unwrap();
    for agreed in [None, Some(PerMessageDeflate::default())] {
        let mut conn = Connection::with_deflate(Role::Server, config(1024), agreed);
        let refused = conn.send_encoded(&frame);
        assert!(matches!(refused, Err(Error::Usage(UsageError::CompressedFrameNotNegotiated))), "{refused:?}");
    }
    // And a client with the agreement reads it.
    let mut client = Connection::with_deflate(Role::Client, config(1024), Some(shared));
    let mut wire = Vec::new();
    ok.drain_outgoing(&mut wire);
    assert_eq!(events(&mut client, &wire).unwrap(), [Event::Text("broadcast ".repeat(50))]);
}

// ---- negotiation over a real handshake ------------------------------------------------------------

#[cfg(feature = "tokio")]
#[tokio::test]
async fn handshake_negotiates_and_both_sides_compress() {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let server_config = Config::builder().deflate(DeflateConfig::new().server_no_context_takeover(true)).build();
    let server = tokio::spawn(async move {
        let mut ws = wsproto::stream::accept(server_io, server_config.unwrap()).await.unwrap();
        let agreed = *ws.connection().deflate().unwrap();
        while let Some(event) = ws.recv().await.unwrap() {
            match event {
                Event::Text(text) => ws.send_text(text).await.unwrap(),
                Event::Close(_) => break,
                _ => {}
            }
        }
        agreed
    });
    let request = wsproto::handshake::client::ClientRequest::new("localhost", "/").unwrap();
    let client_config = Config::builder().deflate(DeflateConfig::new()).build().unwrap();
    let (mut ws, response) = wsproto::stream::connect(client_io, &request, client_config).await.unwrap();
    assert_eq!(response.header("sec-websocket-extensions"), Some("permessage-deflate; server_no_context_takeover"));
    let text = "compress me ".repeat(100);
    ws.send_text(&text).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Event::Text(text)));
    ws.close(CloseCode::Normal, "").await.unwrap();
    while ws.recv().await.unwrap().is_some() {}
    let agreed = server.await.unwrap();
    assert!(agreed.server_no_context_takeover && agreed.accepts_shared_frames());
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn a_server_without_deflate_declines_and_a_client_without_it_refuses_an_answer() {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move { wsproto::stream::accept(server_io, Config::default()).await.map(|_| ()) });
    let request = wsproto::handshake::client::ClientRequest::new("localhost", "/").unwrap();
    let client_config = Config::builder().deflate(DeflateConfig::new()).build().unwrap();
    let (ws, response) = wsproto::stream::connect(client_io, &request, client_config).await.unwrap();
    assert_eq!((response.deflate(), ws.connection().deflate()), (None, None));
    server.await.unwrap().unwrap();

    // A server answering with an extension nobody offered: the client fails the handshake.
    let config = Config::default();
    let plain = wsproto::handshake::client::ClientRequest::new("localhost", "/").unwrap();
    let (mut handshake, _) =
        wsproto::handshake::client::ClientHandshake::with_key(&plain, &config, "dGhlIHNhbXBsZSBub25jZQ==");
    let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                  Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    assert!(handshake.feed(answer.as_bytes()).is_err());
}
