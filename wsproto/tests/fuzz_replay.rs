//! Replays the fuzz seeds and every saved crash input (`fuzz/seeds/TARGET/`,
//! `fuzz/regressions/TARGET/`) through the same checks as the fuzz targets, on stable, in
//! every `cargo test`. A crash found by `scripts/fuzz` is fixed and its input saved under
//! `fuzz/regressions/TARGET/`, so it stays fixed.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use wsproto::deflate::{DeflateConfig, PerMessageDeflate};
use wsproto::frame::{FrameHeader, MAX_HEADER_LEN};
use wsproto::handshake::client::{ClientHandshake, ClientRequest};
use wsproto::handshake::server::{Accept, RequestReader};
use wsproto::{Config, Connection, Event, Role};

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for entry in entries {
            out.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    out
}

fn split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&cut, data) = data.split_first()?;
    Some(data.split_at(usize::from(cut).min(data.len())))
}

#[test]
fn handshake_request_inputs() {
    let all = inputs("handshake_request");
    assert!(!all.is_empty(), "seeds are found");
    for data in all {
        let Some((a, b)) = split(&data) else { continue };
        let mut reader = RequestReader::new(&Config::default());
        let done = match reader.feed(a) {
            Ok(None) => reader.feed(b),
            other => other,
        };
        match done {
            Ok(Some((request, _))) => {
                let _ = request.accept(&Accept::new());
            }
            Ok(None) => {}
            Err(e) => assert!(e.response().is_some()),
        }
    }
}

#[test]
fn handshake_response_inputs() {
    for data in inputs("handshake_response") {
        let request = ClientRequest::new("example.com", "/chat").unwrap().protocol("chat").unwrap();
        let (mut handshake, _) = ClientHandshake::with_key(&request, &Config::default(), "dGhlIHNhbXBsZSBub25jZQ==");
        let _ = handshake.feed(&data);
    }
}

#[test]
fn frame_header_inputs() {
    for data in inputs("frame_header") {
        if let Ok(Some((header, used))) = FrameHeader::decode(&data) {
            assert!(used <= MAX_HEADER_LEN);
            let mut buf = [0u8; MAX_HEADER_LEN];
            let len = header.encode(&mut buf);
            assert_eq!(FrameHeader::decode(&buf[..len]), Ok(Some((header, len))));
        }
    }
}

#[test]
fn connection_inputs() {
    for (target, role) in [("server_connection", Role::Server), ("client_connection", Role::Client)] {
        for data in inputs(target) {
            // As fuzz/fuzz_targets/connection.rs: the cut, a mode byte, then the bytes.
            let Some((&cut, rest)) = data.split_first() else { continue };
            let Some((&mode, rest)) = rest.split_first() else { continue };
            let (a, b) = rest.split_at(usize::from(cut).min(rest.len()));
            let config = Config::builder()
                .max_message_size(4096)
                .max_fragments(16)
                .deflate(DeflateConfig::new())
                .build()
                .unwrap();
            let agreed = PerMessageDeflate {
                server_no_context_takeover: mode & 2 != 0,
                client_no_context_takeover: mode & 2 != 0,
                ..PerMessageDeflate::default()
            };
            let mut conn = Connection::with_deflate(role, config, (mode & 1 != 0).then_some(agreed));
            let mut out = Vec::new();
            let mut events = Vec::new();
            for piece in [a, b] {
                conn.receive(piece);
                while let Ok(Some(event)) = conn.next_event() {
                    events.push(event);
                }
                conn.drain_outgoing(&mut out);
            }
            // The compressed seeds are RFC 7692's "Hello", whole and in two fragments.
            if mode & 1 != 0 {
                assert_eq!(events, [Event::Text("Hello".into())], "{target}");
            }
        }
    }
}
