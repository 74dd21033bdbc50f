//! Shared inputs for the benchmarks.
//!
//! Each benchmark compares the optimised path with a naive one measured in the same run
//! (house habit 8: every optimisation keeps its oracle beside it).

use wsproto::frame::mask::apply_mask;
use wsproto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};

/// A masked client frame carrying `payload`, as a browser would send it.
pub fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    client_frame_rsv(opcode, fin, 0, payload)
}

/// [`client_frame`] with RSV bits (RSV1 = `0b100` marks a compressed message, RFC 7692).
pub fn client_frame_rsv(opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let header = FrameHeader { fin, rsv, opcode, mask: Some(key), payload_len: payload.len() as u64 };
    let mut head = [0u8; MAX_HEADER_LEN];
    let used = header.encode(&mut head);
    let mut out = head[..used].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
    out
}
