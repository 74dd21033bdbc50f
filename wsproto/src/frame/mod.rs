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

    fn encode(opcode: OpCode, payload: &[u8]) -> Self {
        let header = FrameHeader { fin: true, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 };
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

    /// Length on the wire in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: even an empty message has a 2-byte header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
