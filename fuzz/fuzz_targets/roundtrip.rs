//! Messages built from the input go client → server through two sans-IO connections and must
//! arrive unchanged: encode → decode → compare, with fragmentation and pings in between.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wsproto::frame::OpCode;
use wsproto::{Config, Connection, Event, Role};

fuzz_target!(|data: &[u8]| {
    let mut client = Connection::new(Role::Client, Config::default());
    let mut server = Connection::new(Role::Server, Config::default());
    let mut expected = Vec::new();
    // Each chunk: a control byte, then up to 63 payload bytes.
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        let len = usize::from(control & 0x3f).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        match control >> 6 {
            0 => {
                client.send_binary(Bytes::copy_from_slice(payload)).expect("open");
                expected.push(Event::Binary(Bytes::copy_from_slice(payload)));
            }
            1 => {
                let text = String::from_utf8_lossy(payload).into_owned();
                client.send_text(&text).expect("open");
                expected.push(Event::Text(text));
            }
            2 => {
                // Two fragments of a binary message with a ping between them.
                let (a, b) = payload.split_at(payload.len() / 2);
                client.send_frame(OpCode::Binary, false, Bytes::copy_from_slice(a)).expect("open");
                client.send_ping(Bytes::copy_from_slice(&b[..b.len().min(125)])).expect("open");
                client.send_frame(OpCode::Continuation, true, Bytes::copy_from_slice(b)).expect("open");
                expected.push(Event::Ping(Bytes::copy_from_slice(&b[..b.len().min(125)])));
                expected.push(Event::Binary(Bytes::copy_from_slice(payload)));
            }
            _ => {
                client.send_pong(Bytes::copy_from_slice(payload)).expect("open");
                expected.push(Event::Pong(Bytes::copy_from_slice(payload)));
            }
        }
    }
    let mut wire = Vec::new();
    client.drain_outgoing(&mut wire);
    server.receive(&wire);
    let mut got = Vec::new();
    while let Some(event) = server.next_event().expect("a valid stream") {
        got.push(event);
    }
    assert_eq!(got, expected);
});
