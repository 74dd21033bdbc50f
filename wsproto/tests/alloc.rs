//! Heap allocations per message on the hot paths, counted by a global allocator (a count, not a
//! timing): an echo server receives a text message into the one `String` it hands out and sends
//! that `String` back without another allocation; binary messages cost none either way; a client
//! masks an owned payload in place instead of copying it. Alone in this binary (one test) so
//! nothing else allocates while it counts.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

mod common;
mod counting;

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use common::client_frame;
use counting::{Counting, CALLS as ALLOCATIONS};
use wsproto::frame::OpCode;
use wsproto::{Config, Connection, Event, Role};

#[global_allocator]
static GLOBAL: Counting = Counting;

const MESSAGES: usize = 1000;
const WARM_UP: usize = 100;

/// Allocations per message while a server echoes `MESSAGES` client frames of `opcode`, fed to
/// it 16 frames per read, replies drained into one reused write buffer. Counted after a
/// warm-up that lets the buffers reach their working size.
fn server_echo(opcode: OpCode) -> f64 {
    let payload = b"twenty bytes, really"; // 20 B: the small-message benchmark's size
    let frame = client_frame(opcode, true, 0, payload);
    let burst: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 16).collect();
    let mut server = Connection::new(Role::Server, Config::default());
    let mut out = Vec::with_capacity(64 * 1024);
    let echo = |server: &mut Connection, out: &mut Vec<u8>, bursts: usize| {
        for _ in 0..bursts {
            server.receive(&burst);
            while let Some(event) = server.next_event().unwrap() {
                match event {
                    Event::Text(text) => server.send_text(text).unwrap(),
                    Event::Binary(data) => server.send_binary(data).unwrap(),
                    other => panic!("unexpected {other:?}"),
                }
            }
            server.drain_outgoing(out);
            assert_eq!(out.len(), 16 * (2 + payload.len()), "every message echoed");
            out.clear();
        }
    };
    echo(&mut server, &mut out, WARM_UP / 16);
    let before = ALLOCATIONS.load(Relaxed);
    echo(&mut server, &mut out, MESSAGES / 16);
    (ALLOCATIONS.load(Relaxed) - before) as f64 / (MESSAGES / 16 * 16) as f64
}

/// Allocations per message while a client sends payloads the caller owns (made before
/// counting), masked on the way out. They are made with exact capacity, as `to_owned()` and
/// `Event::Text` make them: a `String` or `Vec` with spare capacity becomes `Bytes` through one
/// small header allocation of the `bytes` crate (still no copy of the payload).
fn client_send_owned() -> f64 {
    let mut client = Connection::new(Role::Client, Config::default());
    let mut out = Vec::with_capacity(64 * 1024);
    let texts: Vec<String> = (0..MESSAGES).map(|i| format!("message {i:012}").into_boxed_str().into_string()).collect();
    let binaries: Vec<Bytes> =
        (0..MESSAGES).map(|i| Bytes::from(format!("binary {i:013}").into_boxed_str().into_boxed_bytes())).collect();
    // Warm up the queue and the write buffer.
    for _ in 0..WARM_UP {
        client.send_text("warm-up").unwrap();
        client.drain_outgoing(&mut out);
        out.clear();
    }
    let before = ALLOCATIONS.load(Relaxed);
    for (text, binary) in texts.into_iter().zip(binaries) {
        client.send_text(text).unwrap();
        client.send_binary(binary).unwrap();
        client.drain_outgoing(&mut out);
        assert_eq!(out.len(), 2 * (6 + 20), "both frames written, masked");
        out.clear();
    }
    (ALLOCATIONS.load(Relaxed) - before) as f64 / (2 * MESSAGES) as f64
}

#[test]
fn allocations_per_message() {
    let text = server_echo(OpCode::Text);
    let binary = server_echo(OpCode::Binary);
    let client = client_send_owned();
    println!("allocations per message: server text echo {text}, binary echo {binary}, client owned send {client}");
    // The received text becomes one String (Event::Text), which goes back out as it is.
    assert_eq!(text, 1.0, "text echo: the received String only");
    // A binary payload is a slice of the read buffer, shared by the event and the reply.
    assert_eq!(binary, 0.0, "binary echo: no allocation");
    // An owned payload is masked in place: no copy.
    assert_eq!(client, 0.0, "client send of an owned payload: no allocation");
}
