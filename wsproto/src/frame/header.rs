//! RFC 6455 §5.2 — the frame header: FIN, RSV1-3, opcode, MASK, payload length, masking key.
//!
//! The three length forms: 0-125 in the 7-bit field; 126 followed by a 16-bit length; 127
//! followed by a 64-bit length whose most significant bit MUST be 0. A receiver accepts a
//! non-minimal form ("the minimal number of bytes MUST be used" binds the sender); this encoder
//! always produces the minimal one.

use crate::error::ProtocolError;
use crate::frame::OpCode;

/// The longest header: 2 fixed bytes, 8 bytes of extended length, 4 bytes of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 in the low three bits (RSV1 = `0b100`). Must be 0 unless an extension
    /// defines them.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present exactly when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header (feed more bytes), or the
    /// header and its encoded length. Only the rules that need no context are checked here:
    /// reserved opcodes and the 64-bit length's most significant bit. RSV bits, masking
    /// direction, control-frame rules and size limits are the connection's checks.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, rest @ ..] = buf else { return Ok(None) };
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut used) = match b1 & 0x7f {
            126 => match rest {
                [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 4),
                _ => return Ok(None),
            },
            127 => {
                let Some(bytes) = rest.get(..8) else { return Ok(None) };
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                let len = u64::from_be_bytes(be);
                // §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            let Some(key) = buf.get(used..used + 4) else { return Ok(None) };
            used += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let header = FrameHeader { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x07, opcode, mask, payload_len };
        Ok(Some((header, used)))
    }

    /// The number of bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Encodes the header with the minimal length form into `dst`, returning the number of bytes
    /// written.
    pub fn encode(&self, dst: &mut [u8; MAX_HEADER_LEN]) -> usize {
        dst[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut used = match self.payload_len {
            len @ 0..=125 => {
                dst[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xffff => {
                dst[1] = mask_bit | 126;
                dst[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                dst[1] = mask_bit | 127;
                dst[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            dst[used..used + 4].copy_from_slice(&key);
            used += 4;
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader { fin: true, rsv: 0, opcode, mask, payload_len: len }
    }

    /// Feeds `bytes` whole and every prefix: every strict prefix is `Ok(None)`.
    fn decode_all_ways(bytes: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let whole = FrameHeader::decode(bytes);
        if let Ok(Some((_, used))) = whole {
            for cut in 0..used {
                assert_eq!(FrameHeader::decode(&bytes[..cut]), Ok(None), "prefix of {cut} bytes");
            }
        }
        whole
    }

    #[test]
    fn rfc6455_5_7_unmasked_hello_header() {
        let (h, used) = decode_all_ways(&[0x81, 0x05, b'H']).unwrap().unwrap();
        assert_eq!((h, used), (header(OpCode::Text, 5, None), 2));
    }

    #[test]
    fn rfc6455_5_7_masked_hello_header() {
        let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f];
        let (h, used) = decode_all_ways(&bytes).unwrap().unwrap();
        assert_eq!((h, used), (header(OpCode::Text, 5, Some([0x37, 0xfa, 0x21, 0x3d])), 6));
    }

    #[test]
    fn rfc6455_5_7_fragmented_hello_headers() {
        let (first, _) = decode_all_ways(&[0x01, 0x03]).unwrap().unwrap();
        assert!(!first.fin);
        assert_eq!(first.opcode, OpCode::Text);
        let (last, _) = decode_all_ways(&[0x80, 0x02]).unwrap().unwrap();
        assert!(last.fin);
        assert_eq!(last.opcode, OpCode::Continuation);
    }

    #[test]
    fn rfc6455_5_7_ping_pong_headers() {
        assert_eq!(decode_all_ways(&[0x89, 0x05]).unwrap().unwrap().0, header(OpCode::Ping, 5, None));
        let pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d];
        assert_eq!(decode_all_ways(&pong).unwrap().unwrap().0, header(OpCode::Pong, 5, Some([0x37, 0xfa, 0x21, 0x3d])));
    }

    #[test]
    fn rfc6455_5_7_256_bytes_and_64_kib_binary() {
        let (h, used) = decode_all_ways(&[0x82, 0x7e, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.payload_len, used), (256, 4));
        let bytes = [0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let (h, used) = decode_all_ways(&bytes).unwrap().unwrap();
        assert_eq!((h.payload_len, used), (65536, 10));
    }

    #[test]
    fn rfc6455_5_2_length_msb_must_be_zero() {
        let bytes = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::decode(&bytes), Err(ProtocolError::LengthMsbSet));
        let max = [0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(FrameHeader::decode(&max).unwrap().unwrap().0.payload_len, (1 << 63) - 1);
    }

    #[test]
    fn rfc6455_5_2_reserved_opcodes_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(FrameHeader::decode(&[0x80 | op, 0]), Err(ProtocolError::ReservedOpcode(op)));
        }
    }

    #[test]
    fn rfc6455_5_2_non_minimal_length_accepted() {
        let (h, _) = FrameHeader::decode(&[0x82, 0x7e, 0x00, 0x05]).unwrap().unwrap();
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn encode_decode_round_trip_every_length_form() {
        for len in [0, 1, 125, 126, 127, 0xffff, 0x10000, (1 << 63) - 1] {
            for mask in [None, Some([9, 8, 7, 6])] {
                for opcode in [OpCode::Text, OpCode::Binary, OpCode::Continuation, OpCode::Ping] {
                    let h = FrameHeader { fin: len % 2 == 0, rsv: 0b101, opcode, mask, payload_len: len };
                    let mut buf = [0u8; MAX_HEADER_LEN];
                    let used = h.encode(&mut buf);
                    assert_eq!(used, h.encoded_len());
                    assert_eq!(FrameHeader::decode(&buf[..used]), Ok(Some((h, used))));
                }
            }
        }
    }
}
