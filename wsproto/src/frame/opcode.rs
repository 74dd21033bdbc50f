//! RFC 6455 §5.2 — the opcode nibble.
//!
//! ```text
//! Opcode:  4 bits
//!    %x0 denotes a continuation frame
//!    %x1 denotes a text frame
//!    %x2 denotes a binary frame
//!    %x3-7 are reserved for further non-control frames
//!    %x8 denotes a connection close
//!    %x9 denotes a ping
//!    %xA denotes a pong
//!    %xB-F are reserved for further control frames
//! ```

/// A frame opcode (RFC 6455 §5.2). Reserved opcodes have no variant: they are rejected while
/// decoding, because "if an unknown opcode is received, the receiving endpoint MUST _Fail the
/// WebSocket Connection_".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `%x0`: a continuation of a fragmented message (§5.4).
    Continuation,
    /// `%x1`: the first frame of a text message (UTF-8, §5.6).
    Text,
    /// `%x2`: the first frame of a binary message.
    Binary,
    /// `%x8`: a close frame (§5.5.1).
    Close,
    /// `%x9`: a ping (§5.5.2).
    Ping,
    /// `%xA`: a pong (§5.5.3).
    Pong,
}

impl OpCode {
    /// Decodes the low nibble of the first header byte. `None` for the reserved opcodes
    /// `%x3-7` and `%xB-F`.
    pub fn from_u8(nibble: u8) -> Option<Self> {
        Some(match nibble {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// §5.5: "Control frames are identified by opcodes where the most significant bit of the
    /// opcode is 1."
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_5_2_every_nibble() {
        for n in 0u8..16 {
            match OpCode::from_u8(n) {
                Some(op) => {
                    assert_eq!(op.as_u8(), n);
                    assert_eq!(op.is_control(), n >= 8);
                }
                None => assert!(matches!(n, 3..=7 | 0xB..=0xF), "{n} must be reserved"),
            }
        }
    }
}
