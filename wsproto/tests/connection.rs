//! The sans-IO connection against RFC 6455's rules: every vector fed whole, byte by byte and at
//! every split point; every rejection asserts its exact close code, on the error and on the wire.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

use bytes::Bytes;
use wsproto::frame::mask::apply_mask;
use wsproto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use wsproto::{CloseCode, CloseFrame, Config, Connection, Error, Event, ProtocolError, Role, State, UsageError};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Encodes one frame as a peer would: masked when the peer is a client.
fn frame(from: Role, opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = (from == Role::Client).then_some(KEY);
    let header = FrameHeader { fin, rsv: 0, opcode, mask, payload_len: payload.len() as u64 };
    let mut head = [0u8; MAX_HEADER_LEN];
    let used = header.encode(&mut head);
    let mut out = head[..used].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out
}

fn client(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(Role::Client, opcode, fin, payload)
}

/// Feeds `bytes` in the given pieces, collecting events until the first error.
fn feed_pieces(role: Role, config: &Config, pieces: &[&[u8]]) -> (Vec<Event>, Option<Error>, Connection) {
    let mut conn = Connection::new(role, config.clone());
    let mut events = Vec::new();
    for piece in pieces {
        conn.receive(piece);
        loop {
            match conn.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => return (events, Some(e), conn),
            }
        }
    }
    (events, None, conn)
}

/// Runs `bytes` whole, byte by byte and split at every point; all must agree.
fn all_ways(role: Role, config: &Config, bytes: &[u8]) -> (Vec<Event>, Option<ProtocolError>) {
    let verdict = |(events, err, _): (Vec<Event>, Option<Error>, Connection)| {
        let err = err.map(|e| match e {
            Error::Protocol(p) => p,
            other => panic!("unexpected error {other}"),
        });
        (events, err)
    };
    let whole = verdict(feed_pieces(role, config, &[bytes]));
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(verdict(feed_pieces(role, config, &bytewise)), whole, "byte by byte");
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(verdict(feed_pieces(role, config, &[a, b])), whole, "split at {cut}");
    }
    whole
}

/// The close frame the connection put on the wire last, decoded.
fn wire_close(conn: &mut Connection) -> Option<CloseCode> {
    let mut last = None;
    while let Some(out) = conn.next_outgoing() {
        let mut bytes = out.head().to_vec();
        bytes.extend_from_slice(out.body());
        let (h, used) = FrameHeader::decode(&bytes).unwrap().unwrap();
        let mut payload = bytes[used..].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        if h.opcode == OpCode::Close {
            last = Some(CloseFrame::parse(&payload).unwrap().code);
        }
    }
    last
}

/// Feeds `bytes` to a server and asserts it fails with `expected` on the error and the wire.
fn rejects(role: Role, config: &Config, bytes: &[u8], expected: ProtocolError, code: u16) {
    let (_, err) = all_ways(role, config, bytes);
    assert_eq!(err, Some(expected));
    assert_eq!(expected.close_code().as_u16(), code);
    let (_, _, mut conn) = feed_pieces(role, config, &[bytes]);
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(wire_close(&mut conn).map(CloseCode::as_u16), Some(code), "close code on the wire");
    assert_eq!(conn.next_event().unwrap(), None, "a failed connection stays quiet");
}

fn server_rejects(bytes: &[u8], expected: ProtocolError, code: u16) {
    rejects(Role::Server, &Config::default(), bytes, expected, code)
}

// ---- RFC 6455 §5.7 examples ------------------------------------------------------------------

#[test]
fn rfc6455_5_7_single_frame_unmasked_text() {
    let (events, err) = all_ways(Role::Client, &Config::default(), &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!((events, err), (vec![Event::Text("Hello".into())], None));
}

#[test]
fn rfc6455_5_7_single_frame_masked_text() {
    let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    let (events, err) = all_ways(Role::Server, &Config::default(), &bytes);
    assert_eq!((events, err), (vec![Event::Text("Hello".into())], None));
}

#[test]
fn rfc6455_5_7_fragmented_unmasked_text() {
    let bytes = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    let (events, err) = all_ways(Role::Client, &Config::default(), &bytes);
    assert_eq!((events, err), (vec![Event::Text("Hello".into())], None));
}

#[test]
fn rfc6455_5_7_unmasked_ping_answered_with_masked_pong() {
    let (events, _, mut conn) =
        feed_pieces(Role::Client, &Config::default(), &[&[0x89, 0x05, b'H', b'e', b'l', b'l', b'o']]);
    assert_eq!(events, vec![Event::Ping(Bytes::from_static(b"Hello"))]);
    let pong = conn.next_outgoing().unwrap();
    let (h, _) = FrameHeader::decode(pong.head()).unwrap().unwrap();
    assert_eq!((h.opcode, h.fin, h.payload_len), (OpCode::Pong, true, 5));
    let mut payload = pong.body().to_vec();
    apply_mask(&mut payload, h.mask.expect("a client masks its pong"), 0);
    assert_eq!(payload, b"Hello");
}

#[test]
fn rfc6455_5_7_masked_pong() {
    let bytes = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    let (events, _) = all_ways(Role::Server, &Config::default(), &bytes);
    assert_eq!(events, vec![Event::Pong(Bytes::from_static(b"Hello"))]);
}

#[test]
fn rfc6455_5_7_256_bytes_and_64_kib_binary() {
    let small: Vec<u8> = (0..256u32).map(|i| i as u8).collect();
    let mut bytes = vec![0x82, 0x7e, 0x01, 0x00];
    bytes.extend_from_slice(&small);
    let (events, _) = all_ways(Role::Client, &Config::default(), &bytes);
    assert_eq!(events, vec![Event::Binary(small.into())]);
    let big = vec![0x5a; 65536];
    let mut bytes = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
    bytes.extend_from_slice(&big);
    let (events, _, _) = feed_pieces(Role::Client, &Config::default(), &[&bytes]);
    assert_eq!(events, vec![Event::Binary(big.into())]);
}

#[test]
fn rfc6455_5_4_control_frames_between_fragments() {
    let mut bytes = client(OpCode::Text, false, b"Hel");
    bytes.extend(client(OpCode::Ping, true, b"p"));
    bytes.extend(client(OpCode::Continuation, false, b""));
    bytes.extend(client(OpCode::Pong, true, b"q"));
    bytes.extend(client(OpCode::Continuation, true, "lo µ".as_bytes()));
    let (events, err) = all_ways(Role::Server, &Config::default(), &bytes);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![
            Event::Ping(Bytes::from_static(b"p")),
            Event::Pong(Bytes::from_static(b"q")),
            Event::Text("Hello µ".into())
        ]
    );
}

// ---- §5.1-5.5 rejections ---------------------------------------------------------------------

#[test]
fn rfc6455_5_1_server_rejects_unmasked_frame() {
    server_rejects(&frame(Role::Server, OpCode::Text, true, b"hi"), ProtocolError::UnmaskedFrame, 1002);
}

#[test]
fn rfc6455_5_1_client_rejects_masked_frame() {
    let bytes = client(OpCode::Text, true, b"hi");
    rejects(Role::Client, &Config::default(), &bytes, ProtocolError::MaskedFrame, 1002);
}

#[test]
fn rfc6455_5_2_rsv_bits_rejected() {
    for rsv in [0x40u8, 0x20, 0x10] {
        let mut bytes = client(OpCode::Text, true, b"hi");
        bytes[0] |= rsv;
        server_rejects(&bytes, ProtocolError::ReservedBits, 1002);
    }
}

#[test]
fn rfc6455_5_2_reserved_opcodes_rejected() {
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        let bytes = [0x80 | op, 0x80, 1, 2, 3, 4];
        server_rejects(&bytes, ProtocolError::ReservedOpcode(op), 1002);
    }
}

#[test]
fn rfc6455_5_2_length_msb_rejected() {
    let bytes = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
    server_rejects(&bytes, ProtocolError::LengthMsbSet, 1002);
}

#[test]
fn rfc6455_5_5_fragmented_control_frame_rejected() {
    server_rejects(&client(OpCode::Ping, false, b"x"), ProtocolError::FragmentedControlFrame, 1002);
}

#[test]
fn rfc6455_5_5_control_frame_over_125_rejected() {
    server_rejects(&client(OpCode::Ping, true, &[0; 126]), ProtocolError::ControlFrameTooLong, 1002);
    let (events, err) = all_ways(Role::Server, &Config::default(), &client(OpCode::Ping, true, &[7; 125]));
    assert_eq!((events.len(), err), (1, None));
}

#[test]
fn rfc6455_5_4_continuation_without_start_rejected() {
    server_rejects(&client(OpCode::Continuation, true, b"x"), ProtocolError::UnexpectedContinuation, 1002);
}

#[test]
fn rfc6455_5_4_new_message_inside_fragmented_rejected() {
    let mut bytes = client(OpCode::Text, false, b"a");
    bytes.extend(client(OpCode::Binary, true, b"b"));
    server_rejects(&bytes, ProtocolError::ExpectedContinuation, 1002);
}

// ---- limits --------------------------------------------------------------------------------

#[test]
fn announced_2_pow_62_fails_at_once_without_allocating() {
    // Header only: 2^62 bytes announced, none sent.
    let mut bytes = vec![0x82, 0xff];
    bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
    bytes.extend_from_slice(&KEY);
    let (_, err, conn) = feed_pieces(Role::Server, &Config::default(), &[&bytes]);
    assert_eq!(err.map(|e| e.to_string()), Some(Error::Protocol(ProtocolError::FrameTooBig).to_string()));
    assert_eq!(ProtocolError::FrameTooBig.close_code().as_u16(), 1009);
    assert_eq!(conn.buffered_len(), 0);
    server_rejects(&bytes, ProtocolError::FrameTooBig, 1009);
}

#[test]
fn message_budget_spans_fragments() {
    let config = Config::builder().max_message_size(100).build().unwrap();
    let mut bytes = client(OpCode::Binary, false, &[0; 60]);
    bytes.extend(client(OpCode::Continuation, true, &[0; 41]));
    rejects(Role::Server, &config, &bytes, ProtocolError::MessageTooBig, 1009);
    let mut fits = client(OpCode::Binary, false, &[0; 60]);
    fits.extend(client(OpCode::Continuation, true, &[0; 40]));
    assert_eq!(all_ways(Role::Server, &config, &fits).1, None);
}

#[test]
fn frame_limit_below_message_limit() {
    let config = Config::builder().max_message_size(100).max_frame_size(10).build().unwrap();
    rejects(Role::Server, &config, &client(OpCode::Text, true, &[b'a'; 11]), ProtocolError::FrameTooBig, 1009);
}

#[test]
fn ten_thousand_empty_fragments_rejected() {
    let mut bytes = client(OpCode::Text, false, b"");
    for _ in 0..10_000 {
        bytes.extend(client(OpCode::Continuation, false, b""));
    }
    let (_, err, mut conn) = feed_pieces(Role::Server, &Config::default(), &[&bytes]);
    assert_eq!(err.map(|e| e.to_string()), Some(Error::Protocol(ProtocolError::TooManyFragments).to_string()));
    assert_eq!(wire_close(&mut conn).map(CloseCode::as_u16), Some(1009));
}

#[test]
fn ping_flood_keeps_memory_flat() {
    let mut conn = Connection::new(Role::Server, Config::default());
    let ping = client(OpCode::Ping, true, &[9; 125]);
    for _ in 0..200_000 {
        conn.receive(&ping);
        while let Some(event) = conn.next_event().unwrap() {
            assert!(matches!(event, Event::Ping(_)));
        }
    }
    let mut pongs = 0;
    while conn.next_outgoing().is_some() {
        pongs += 1;
    }
    assert_eq!(pongs, wsproto::connection::MAX_PENDING_PONGS);
}

#[test]
fn pong_goes_ahead_of_queued_data() {
    let config = Config::builder().write_buffer_limit(10).build().unwrap();
    let mut conn = Connection::new(Role::Server, config);
    conn.send_binary(vec![0u8; 100]).unwrap();
    assert!(matches!(conn.send_binary(vec![0u8; 1]), Err(Error::Usage(UsageError::WriteBufferFull))));
    conn.receive(&client(OpCode::Ping, true, b"now"));
    assert!(matches!(conn.next_event().unwrap(), Some(Event::Ping(_))));
    let first = conn.next_outgoing().unwrap();
    assert_eq!(first.head()[0], 0x8a, "the pong jumps the full data queue");
}

#[test]
fn rfc6455_7_1_7_failing_sends_what_was_queued_then_the_close() {
    // An echo server fed its reply to the first message; the second frame is bad (RSV1 without
    // an extension). The reply still goes out, then the close with 1002 (Autobahn 3.2 strict).
    let mut conn = Connection::new(Role::Server, Config::default());
    let mut bad = client(OpCode::Text, true, b"x");
    bad[0] |= 0x40;
    conn.receive(&[client(OpCode::Text, true, b"hello"), bad].concat());
    assert_eq!(conn.next_event().unwrap(), Some(Event::Text("hello".into())));
    conn.send_text("hello").unwrap();
    assert!(matches!(conn.next_event(), Err(Error::Protocol(ProtocolError::ReservedBits))));
    let reply = conn.next_outgoing().unwrap();
    assert_eq!((reply.head()[0], &reply.body()[..]), (0x81, &b"hello"[..]), "the queued reply first");
    assert_eq!(wire_close(&mut conn).map(CloseCode::as_u16), Some(1002), "then the close");
}

// ---- §8.1 UTF-8 ------------------------------------------------------------------------------

#[test]
fn rfc6455_8_1_invalid_utf8_whole() {
    server_rejects(&client(OpCode::Text, true, &[0xce, 0xba, 0xff]), ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn rfc6455_8_1_invalid_utf8_split_across_fragments() {
    // A valid 4-byte code point start, then an invalid continuation in the next fragment.
    let mut bytes = client(OpCode::Text, false, &[b'a', 0xf0, 0x9f]);
    bytes.extend(client(OpCode::Continuation, true, &[0x28, b'b']));
    server_rejects(&bytes, ProtocolError::InvalidUtf8, 1007);
    // Valid when the code point completes across the boundary.
    let mut ok = client(OpCode::Text, false, &[b'a', 0xf0, 0x9f]);
    ok.extend(client(OpCode::Continuation, true, &[0x98, 0x80]));
    assert_eq!(all_ways(Role::Server, &Config::default(), &ok).0, vec![Event::Text("a😀".into())]);
}

#[test]
fn rfc6455_8_1_truncated_utf8_at_message_end() {
    let mut bytes = client(OpCode::Text, false, b"ok");
    bytes.extend(client(OpCode::Continuation, true, &[0xe2, 0x82]));
    server_rejects(&bytes, ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn rfc6455_8_1_fails_fast_before_the_frame_ends() {
    // Only the first 4 payload bytes of a 100-byte frame arrive; the 2nd is already invalid.
    let mut payload = vec![b'x'; 100];
    payload[1] = 0xc0;
    let bytes = client(OpCode::Text, true, &payload);
    let (_, err, _) = feed_pieces(Role::Server, &Config::default(), &[&bytes[..6 + 4]]);
    assert!(matches!(err, Some(Error::Protocol(ProtocolError::InvalidUtf8))));
}

// ---- §5.5.1, §7 closing ----------------------------------------------------------------------

#[test]
fn rfc6455_7_4_invalid_close_codes_rejected() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
        server_rejects(&client(OpCode::Close, true, &code.to_be_bytes()), ProtocolError::InvalidCloseCode(code), 1002);
    }
}

#[test]
fn rfc6455_5_5_1_one_byte_close_rejected() {
    server_rejects(&client(OpCode::Close, true, &[3]), ProtocolError::CloseFrameTooShort, 1002);
}

#[test]
fn rfc6455_5_5_1_close_reason_must_be_utf8() {
    server_rejects(&client(OpCode::Close, true, &[0x03, 0xe8, 0xff, 0xfe]), ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn rfc6455_5_5_1_peer_close_is_echoed_with_its_code() {
    for code in [1000u16, 1001, 3000, 4999] {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let (events, err, mut conn) =
            feed_pieces(Role::Server, &Config::default(), &[&client(OpCode::Close, true, &payload)]);
        assert_eq!(err.map(|e| e.to_string()), None);
        assert_eq!(events, vec![Event::Close(CloseFrame { code: code.into(), reason: "bye".into() })]);
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(wire_close(&mut conn), Some(CloseCode::from(code)));
    }
    // An empty close is answered with an empty close.
    let (events, _, mut conn) = feed_pieces(Role::Server, &Config::default(), &[&client(OpCode::Close, true, b"")]);
    assert_eq!(events, vec![Event::Close(CloseFrame { code: CloseCode::NoStatusReceived, reason: String::new() })]);
    let reply = conn.next_outgoing().unwrap();
    assert_eq!((reply.head(), reply.body().len()), (&[0x88, 0x00][..], 0));
}

/// Moves everything `from` has queued into `to`.
fn pump(from: &mut Connection, to: &mut Connection) -> Vec<Event> {
    let mut wire = Vec::new();
    from.drain_outgoing(&mut wire);
    to.receive(&wire);
    let mut events = Vec::new();
    while let Some(event) = to.next_event().unwrap() {
        events.push(event);
    }
    events
}

fn pair() -> (Connection, Connection) {
    (Connection::new(Role::Client, Config::default()), Connection::new(Role::Server, Config::default()))
}

#[test]
fn rfc6455_7_close_initiated_by_client() {
    let (mut c, mut s) = pair();
    c.send_text("last words").unwrap();
    c.close(CloseCode::Normal, "done").unwrap();
    assert_eq!(c.state(), State::CloseSent);
    assert!(matches!(c.send_text("more"), Err(Error::Usage(UsageError::SendAfterClose))));
    let events = pump(&mut c, &mut s);
    assert_eq!(events[0], Event::Text("last words".into()));
    assert_eq!(events[1], Event::Close(CloseFrame { code: CloseCode::Normal, reason: "done".into() }));
    assert_eq!(s.state(), State::Closed);
    let events = pump(&mut s, &mut c);
    assert_eq!(events, vec![Event::Close(CloseFrame { code: CloseCode::Normal, reason: String::new() })]);
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn rfc6455_7_close_initiated_by_server() {
    let (mut c, mut s) = pair();
    s.close(CloseCode::GoingAway, "restart").unwrap();
    let events = pump(&mut s, &mut c);
    assert_eq!(events, vec![Event::Close(CloseFrame { code: CloseCode::GoingAway, reason: "restart".into() })]);
    let events = pump(&mut c, &mut s);
    assert_eq!(events, vec![Event::Close(CloseFrame { code: CloseCode::GoingAway, reason: String::new() })]);
    assert_eq!((c.state(), s.state()), (State::Closed, State::Closed));
    assert!(!c.has_outgoing() && !s.has_outgoing());
}

#[test]
fn rfc6455_7_simultaneous_close() {
    let (mut c, mut s) = pair();
    c.close(CloseCode::Normal, "c").unwrap();
    s.close(CloseCode::GoingAway, "s").unwrap();
    let mut c_wire = Vec::new();
    let mut s_wire = Vec::new();
    c.drain_outgoing(&mut c_wire);
    s.drain_outgoing(&mut s_wire);
    s.receive(&c_wire);
    c.receive(&s_wire);
    assert_eq!(s.next_event().unwrap(), Some(Event::Close(CloseFrame { code: CloseCode::Normal, reason: "c".into() })));
    assert_eq!(
        c.next_event().unwrap(),
        Some(Event::Close(CloseFrame { code: CloseCode::GoingAway, reason: "s".into() }))
    );
    assert_eq!((c.state(), s.state()), (State::Closed, State::Closed));
    assert!(!c.has_outgoing() && !s.has_outgoing(), "no second close frame");
}

#[test]
fn conversation_with_fragments_pings_and_close() {
    let (mut c, mut s) = pair();
    c.send_frame(OpCode::Text, false, Bytes::from_static(b"frag")).unwrap();
    c.send_ping(Bytes::from_static(b"are you there")).unwrap();
    c.send_frame(OpCode::Continuation, true, Bytes::from_static(b"mented")).unwrap();
    assert!(matches!(
        c.send_frame(OpCode::Continuation, true, Bytes::new()),
        Err(Error::Usage(UsageError::FragmentOutOfOrder))
    ));
    let events = pump(&mut c, &mut s);
    assert_eq!(events, vec![Event::Ping(Bytes::from_static(b"are you there")), Event::Text("fragmented".into())]);
    let events = pump(&mut s, &mut c);
    assert_eq!(events, vec![Event::Pong(Bytes::from_static(b"are you there"))]);
    s.send_binary(Bytes::from_static(b"\x00\x01")).unwrap();
    assert_eq!(pump(&mut s, &mut c), vec![Event::Binary(Bytes::from_static(b"\x00\x01"))]);
}

// ---- API misuse ------------------------------------------------------------------------------

#[test]
fn usage_errors_leave_the_connection_unchanged() {
    let (mut c, mut s) = pair();
    assert!(matches!(c.send_ping(vec![0u8; 126]), Err(Error::Usage(UsageError::ControlPayloadTooLong))));
    assert!(matches!(c.close(CloseCode::Abnormal, ""), Err(Error::Usage(UsageError::InvalidCloseCode(1006)))));
    assert!(matches!(
        c.send_encoded(&wsproto::EncodedFrame::text("x")),
        Err(Error::Usage(UsageError::EncodedFrameFromClient))
    ));
    assert_eq!(c.state(), State::Open);
    assert!(!c.has_outgoing());
    s.send_encoded(&wsproto::EncodedFrame::text("shared")).unwrap();
    assert_eq!(pump(&mut s, &mut c), vec![Event::Text("shared".into())]);
}
