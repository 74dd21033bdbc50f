//! Replays the fuzz seeds and every saved crash input (`fuzz/seeds/TARGET/`,
//! `fuzz/regressions/TARGET/`) through the same checks as the fuzz targets, on stable, in
//! every `cargo test`. A crash found by `scripts/fuzz` is fixed and its input saved under
//! `fuzz/regressions/TARGET/`, so it stays fixed.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use wsproto::frame::{FrameHeader, MAX_HEADER_LEN};
use wsproto::handshake::client::{ClientHandshake, ClientRequest};
use wsproto::handshake::server::{Accept, RequestReader};
use wsproto::{Config, Connection, Role};

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
            let Some((a, b)) = split(&data) else { continue };
            let config = Config::builder().max_message_size(4096).max_fragments(16).build().unwrap();
            let mut conn = Connection::new(role, config);
            let mut out = Vec::new();
            for piece in [a, b] {
                conn.receive(piece);
                while let Ok(Some(_)) = conn.next_event() {}
                conn.drain_outgoing(&mut out);
            }
        }
    }
}
