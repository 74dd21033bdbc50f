//! RFC 6455 §5.2-5.3 — the base framing protocol.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! - [`opcode`](OpCode): what the frame carries.
//! - [`header`](FrameHeader): decoding and encoding the bytes above.
//! - [`mask`]: the XOR that clients apply to every payload (§5.3).
//! - [`EncodedFrame`]: a whole server frame encoded once, to send to many connections.

mod header;
pub mod mask;
mod opcode;

use bytes::{Bytes, BytesMut};

pub use header::{FrameHeader, MAX_HEADER_LEN};
pub use opcode::OpCode;

use crate::close::{CloseCode, CloseFrame};
use crate::error::UsageError;

/// A complete unmasked frame (header and payload in one buffer), ready for the wire.
///
/// Servers don't mask (§5.1), so the same bytes are valid on every server connection: a
/// broadcast encodes a message once and hands each connection a cheap clone (a reference-count
/// increment) with [`Connection::send_encoded`](crate::Connection::send_encoded). Clients must
/// mask every frame with a fresh key, so a client connection refuses these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame(Bytes);

impl EncodedFrame {
    /// A single-frame text message.
    pub fn text(text: &str) -> Self {
        Self::encode(OpCode::Text, text.as_bytes())
    }

    /// A single-frame binary message.
    pub fn binary(data: &[u8]) -> Self {
        Self::encode(OpCode::Binary, data)
    }

    /// A close frame, e.g. 1001 "going away" sent to everyone at shutdown.
    pub fn close(code: CloseCode, reason: &str) -> Result<Self, UsageError> {
        Ok(Self::encode(OpCode::Close, &CloseFrame::encode(code, reason)?))
    }

    /// A single-frame text message compressed for `permessage-deflate` (RFC 7692) by a fresh
    /// compressor with a 32 KiB window at `level` (0-9, clamped): RSV1 set, `00 00 ff ff` removed.
    /// It does not depend on any connection's compression context, so one frame serves every
    /// connection whose agreement allows it
    /// ([`PerMessageDeflate::accepts_shared_frames`](crate::deflate::PerMessageDeflate::accepts_shared_frames));
    /// [`Connection::send_encoded`](crate::Connection::send_encoded) refuses it elsewhere.
    pub fn deflated_text(text: &str, level: u8) -> Self {
        let mut compressor = crate::deflate::codec::compressor(level.min(9), 15);
        match crate::deflate::codec::compress_message(&mut compressor, text.as_bytes()) {
            Some(payload) => Self::encode_with(OpCode::Text, RSV1, &payload),
            // zlib never fails on a fresh compressor; if it did, plain text is still correct.
            None => Self::text(text),
        }
    }

    fn encode(opcode: OpCode, payload: &[u8]) -> Self {
        Self::encode_with(opcode, 0, payload)
    }

    fn encode_with(opcode: OpCode, rsv: u8, payload: &[u8]) -> Self {
        let header = FrameHeader { fin: true, rsv, opcode, mask: None, payload_len: payload.len() as u64 };
        let mut head = [0u8; MAX_HEADER_LEN];
        let used = header.encode(&mut head);
        let mut buf = BytesMut::with_capacity(used + payload.len());
        buf.extend_from_slice(&head[..used]);
        buf.extend_from_slice(payload);
        EncodedFrame(buf.freeze())
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The opcode of the frame.
    pub fn opcode(&self) -> OpCode {
        // The constructors above are the only way to build one, so the first byte is ours.
        OpCode::from_u8(self.0[0] & 0x0f).unwrap_or(OpCode::Binary)
    }

    /// Whether the frame is compressed (RSV1, RFC 7692).
    pub fn is_compressed(&self) -> bool {
        self.0[0] & 0x40 != 0
    }

    /// Length on the wire in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: even an empty message has a 2-byte header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The RSV bits (as in [`FrameHeader::rsv`]) of a compressed message's first frame (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7692_7_2_3_1_compressed_hello() {
        let frame = EncodedFrame::deflated_text("Hello", 6);
        assert_eq!(frame.as_bytes(), &b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00"[..]);
        assert!(frame.is_compressed() && !EncodedFrame::text("Hello").is_compressed());
        assert_eq!(frame.opcode(), OpCode::Text);
    }

    #[test]
    fn rfc6455_5_7_unmasked_hello() {
        assert_eq!(EncodedFrame::text("Hello").as_bytes(), &b"\x81\x05Hello"[..]);
    }

    #[test]
    fn rfc6455_5_7_256_byte_binary() {
        let frame = EncodedFrame::binary(&[0xaa; 256]);
        assert_eq!(&frame.as_bytes()[..4], &[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(frame.len(), 260);
    }

    #[test]
    fn rfc6455_5_7_64_kib_binary() {
        let frame = EncodedFrame::binary(&[0; 65536]);
        assert_eq!(&frame.as_bytes()[..10], &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(frame.opcode(), OpCode::Binary);
    }
}
