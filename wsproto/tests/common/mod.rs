//! Helpers shared by wsproto's integration tests.
#![allow(dead_code, unreachable_pub)]

use wsproto::frame::mask::apply_mask;
use wsproto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};

/// The masking key every test client uses.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame as a client sends it (masked with [`KEY`]), with the given RSV bits.
pub fn client_frame(opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader { fin, rsv, opcode, mask: Some(KEY), payload_len: payload.len() as u64 };
    let mut head = [0u8; MAX_HEADER_LEN];
    let used = header.encode(&mut head);
    let mut out = head[..used].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
    out
}
