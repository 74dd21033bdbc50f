//! RFC 6455 §5.5.1 and §7.4 — close frames, status codes and reasons.
//!
//! ```text
//! If there is a body, the first two bytes of the body MUST be a 2-byte unsigned integer
//! (in network byte order) representing a status code [...] Following the 2-byte integer,
//! the body MAY contain UTF-8-encoded data with value /reason/.
//! ```
//!
//! A close payload is therefore empty, or a 2-byte code followed by up to 123 bytes of UTF-8.
//! Some codes exist only to *report* a condition locally and never travel in a frame (1005,
//! 1006, 1015); receiving one is a protocol error, and so is anything outside the ranges §7.4.2
//! assigns.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ProtocolError, UsageError};

/// A close status code (RFC 6455 §7.4.1 and the IANA "WebSocket Close Code Number Registry").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: "a normal closure, meaning that the purpose for which the connection was
    /// established has been fulfilled."
    Normal,
    /// 1001: "an endpoint is 'going away', such as a server going down or a browser having
    /// navigated away from a page."
    GoingAway,
    /// 1002: "an endpoint is terminating the connection due to a protocol error."
    ProtocolError,
    /// 1003: "an endpoint [...] has received a type of data it cannot accept."
    UnsupportedData,
    /// 1005: "no status code was actually present." Never sent on the wire.
    NoStatusReceived,
    /// 1006: "the connection was closed abnormally." Never sent on the wire.
    Abnormal,
    /// 1007: "data within a message that was not consistent with the type of the message
    /// (e.g., non-UTF-8 data within a text message)."
    InvalidPayload,
    /// 1008: "a message that violates its policy."
    PolicyViolation,
    /// 1009: "a message that is too big for it to process."
    MessageTooBig,
    /// 1010: the client expected the server to negotiate an extension.
    MandatoryExtension,
    /// 1011: "an unexpected condition that prevented it from fulfilling the request."
    InternalError,
    /// 1012: the service is restarting (IANA registry).
    ServiceRestart,
    /// 1013: "Try Again Later": the service is overloaded (IANA registry).
    TryAgainLater,
    /// 1014: a gateway received an invalid response (IANA registry).
    BadGateway,
    /// 1015: TLS handshake failure. Never sent on the wire.
    TlsHandshake,
    /// Any other code (3000-3999 registered by libraries, 4000-4999 private use, or invalid).
    Other(u16),
}

impl CloseCode {
    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::NoStatusReceived => 1005,
            CloseCode::Abnormal => 1006,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::MandatoryExtension => 1010,
            CloseCode::InternalError => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::TryAgainLater => 1013,
            CloseCode::BadGateway => 1014,
            CloseCode::TlsHandshake => 1015,
            CloseCode::Other(code) => code,
        }
    }

    /// Whether the code may appear in a close frame (§7.4.1, §7.4.2): 1000-1003, 1007-1014 and
    /// 3000-4999. 1004 is reserved, 1005/1006/1015 are for local reporting only, the rest of
    /// 1000-2999 is unassigned, and 0-999 and 5000+ are not used.
    pub fn is_sendable(self) -> bool {
        matches!(self.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1002 => CloseCode::ProtocolError,
            1003 => CloseCode::UnsupportedData,
            1005 => CloseCode::NoStatusReceived,
            1006 => CloseCode::Abnormal,
            1007 => CloseCode::InvalidPayload,
            1008 => CloseCode::PolicyViolation,
            1009 => CloseCode::MessageTooBig,
            1010 => CloseCode::MandatoryExtension,
            1011 => CloseCode::InternalError,
            1012 => CloseCode::ServiceRestart,
            1013 => CloseCode::TryAgainLater,
            1014 => CloseCode::BadGateway,
            1015 => CloseCode::TlsHandshake,
            other => CloseCode::Other(other),
        }
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

/// A received or sent close: the code and the reason text.
///
/// An empty close payload is reported as [`CloseCode::NoStatusReceived`] with an empty reason,
/// as §7.1.5 prescribes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8.
    pub reason: String,
}

impl CloseFrame {
    /// Parses a received close payload (§5.5.1).
    ///
    /// Errors: a 1-byte payload or a code that may not be on the wire is
    /// [`ProtocolError::CloseFrameTooShort`] / [`ProtocolError::InvalidCloseCode`] (1002);
    /// a reason that is not UTF-8 is [`ProtocolError::InvalidUtf8`] (1007).
    pub fn parse(payload: &[u8]) -> Result<Self, ProtocolError> {
        match payload {
            [] => Ok(CloseFrame { code: CloseCode::NoStatusReceived, reason: String::new() }),
            [_] => Err(ProtocolError::CloseFrameTooShort),
            [hi, lo, reason @ ..] => {
                let code = CloseCode::from(u16::from_be_bytes([*hi, *lo]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
                }
                let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(CloseFrame { code, reason: reason.to_owned() })
            }
        }
    }

    /// Encodes the payload of a close frame this side sends, checking the rules a sender must
    /// keep: a sendable code and a reason of at most 123 bytes. [`CloseCode::NoStatusReceived`]
    /// encodes as an empty payload.
    pub fn encode(code: CloseCode, reason: &str) -> Result<Bytes, UsageError> {
        if code == CloseCode::NoStatusReceived {
            return if reason.is_empty() { Ok(Bytes::new()) } else { Err(UsageError::InvalidCloseCode(1005)) };
        }
        if !code.is_sendable() {
            return Err(UsageError::InvalidCloseCode(code.as_u16()));
        }
        if reason.len() > 123 {
            return Err(UsageError::CloseReasonTooLong);
        }
        let mut out = BytesMut::with_capacity(2 + reason.len());
        out.put_u16(code.as_u16());
        out.put_slice(reason.as_bytes());
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_7_4_code_ranges() {
        for code in 0u16..=u16::MAX {
            let valid = CloseFrame::parse(&code.to_be_bytes()).is_ok();
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(valid, expected, "code {code}");
            if !expected {
                assert_eq!(CloseFrame::parse(&code.to_be_bytes()), Err(ProtocolError::InvalidCloseCode(code)));
            }
        }
    }

    #[test]
    fn rfc6455_5_5_1_empty_and_one_byte() {
        assert_eq!(CloseFrame::parse(&[]).map(|c| c.code), Ok(CloseCode::NoStatusReceived));
        let err = CloseFrame::parse(&[0x03]).unwrap_err();
        assert_eq!(err, ProtocolError::CloseFrameTooShort);
        assert_eq!(err.close_code(), CloseCode::ProtocolError);
    }

    #[test]
    fn rfc6455_5_5_1_reason_must_be_utf8() {
        let err = CloseFrame::parse(&[0x03, 0xe8, 0xff]).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::InvalidPayload);
        let ok = CloseFrame::parse(b"\x03\xe8bye").unwrap();
        assert_eq!((ok.code, ok.reason.as_str()), (CloseCode::Normal, "bye"));
    }

    #[test]
    fn encode_checks_sender_rules() {
        assert_eq!(CloseFrame::encode(CloseCode::Normal, "ok").unwrap(), &b"\x03\xe8ok"[..]);
        assert_eq!(CloseFrame::encode(CloseCode::Abnormal, ""), Err(UsageError::InvalidCloseCode(1006)));
        assert_eq!(CloseFrame::encode(CloseCode::Normal, &"x".repeat(124)), Err(UsageError::CloseReasonTooLong));
        assert!(CloseFrame::encode(CloseCode::Normal, &"x".repeat(123)).is_ok());
        assert_eq!(CloseFrame::encode(CloseCode::NoStatusReceived, "").unwrap(), Bytes::new());
    }
}
