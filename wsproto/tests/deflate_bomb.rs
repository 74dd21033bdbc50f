//! The decompression bomb (the class of CVE-2018-1000518): a small compressed message that
//! inflates far past the budget closes with 1009, and the memory it costs, counted by a global
//! allocator, stays under the budget plus a small constant. Alone in this binary so nothing else
//! allocates while it counts.

#![allow(clippy::unwrap_used)] // test helpers panic on purpose

mod common;
mod counting;

use std::sync::atomic::Ordering::Relaxed;

use common::client_frame;
use counting::{Counting, LIVE, PEAK};
use wsproto::deflate::codec::{compress_message, compressor};
use wsproto::deflate::{DeflateConfig, PerMessageDeflate};
use wsproto::frame::{OpCode, RSV1};
use wsproto::{Config, Connection, Error, ProtocolError, Role};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn server(max_message: usize) -> Connection {
    let config = Config::builder().max_message_size(max_message).deflate(DeflateConfig::new()).build().unwrap();
    Connection::with_deflate(Role::Server, config, Some(PerMessageDeflate::default()))
}

fn deflate(data: &[u8]) -> Vec<u8> {
    compress_message(&mut compressor(9, 15), data).unwrap()
}

fn close_code(conn: &mut Connection) -> u16 {
    let mut wire = Vec::new();
    conn.drain_outgoing(&mut wire);
    assert_eq!(wire[0] & 0x0f, 0x8, "a close frame");
    u16::from_be_bytes([wire[2], wire[3]])
}

// ---- the decompression bomb ---------------------------------------------------------------------

#[test]
fn a_bomb_closes_with_1009_and_costs_at_most_the_budget() {
    const LIMIT: usize = 1 << 20;
    let zeros = vec![0u8; 64 << 20];
    let bomb = deflate(&zeros);
    drop(zeros);
    assert!(bomb.len() < 128 * 1024, "64 MiB of zeros compress to {} bytes", bomb.len());
    for fragmented in [false, true] {
        let wire = if fragmented {
            let half = bomb.len() / 2;
            let mut wire = client_frame(OpCode::Binary, false, RSV1, &bomb[..half]);
            wire.extend(client_frame(OpCode::Continuation, true, 0, &bomb[half..]));
            wire
        } else {
            client_frame(OpCode::Binary, true, RSV1, &bomb)
        };
        let mut conn = server(LIMIT);
        conn.receive(&wire);
        drop(wire);
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        assert!(matches!(conn.next_event(), Err(Error::Protocol(ProtocolError::MessageTooBig))));
        let extra = PEAK.load(Relaxed) - before;
        println!("bomb, fragmented={fragmented}: peak heap grew by {extra} bytes for a {LIMIT}-byte budget");
        // The output buffer (limit + 1) and the decompressor (~40 KiB), nothing proportional
        // to the 64 MiB the bomb expands to.
        assert!(extra < LIMIT + 256 * 1024, "fragmented={fragmented}: peak grew by {extra} bytes");
        assert_eq!(close_code(&mut conn), 1009);
    }
}
