//! Errors that say whose fault it was and what goes on the wire.
//!
//! | variant | whose fault | what the peer is told |
//! |---|---|---|
//! | [`Error::Handshake`] | the peer's opening handshake | an HTTP status ([`HandshakeError::status`]) |
//! | [`Error::Protocol`] | the peer broke RFC 6455 after the handshake | a close code ([`ProtocolError::close_code`]) |
//! | [`Error::Usage`] | this program called the API wrongly | nothing: the connection is unchanged |
//! | [`Error::Io`] | the transport (async layer only) | nothing: the socket is gone |
//!
//! Partial input is not an error (`Ok(None)` means "feed me more bytes"), and neither is a clean
//! close: that arrives as [`Event::Close`](crate::Event::Close).

use std::fmt;

use crate::close::CloseCode;

/// Everything that can go wrong, split by whose fault it was.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The opening handshake failed. On the server side, [`HandshakeError::status`] is the HTTP
    /// status that was (or should be) sent back.
    Handshake(HandshakeError),
    /// The peer violated RFC 6455. A close frame with [`ProtocolError::close_code`] has been
    /// queued and the connection is closed ("_Fail the WebSocket Connection_", §7.1.7).
    Protocol(ProtocolError),
    /// This side misused the API. Nothing was sent; the connection state is unchanged.
    Usage(UsageError),
    /// The underlying transport failed (async layer only).
    Io(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Protocol(e) => write!(f, "peer violated the protocol: {e}"),
            Error::Usage(e) => write!(f, "API misuse: {e}"),
            Error::Io(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}
impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}
impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Error::Usage(e)
    }
}
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// The peer broke a rule of RFC 6455 after the handshake. Each variant knows the close code
/// that is sent back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// §5.2: an opcode in `%x3-7` or `%xB-F`.
    ReservedOpcode(u8),
    /// §5.2: an RSV bit was set but no extension was negotiated.
    ReservedBits,
    /// §5.2: the most significant bit of a 64-bit payload length was set.
    LengthMsbSet,
    /// §5.5: a control frame payload longer than 125 bytes.
    ControlFrameTooLong,
    /// §5.5: a control frame with FIN clear.
    FragmentedControlFrame,
    /// §5.1: a client sent an unmasked frame.
    UnmaskedFrame,
    /// §5.1: a server sent a masked frame.
    MaskedFrame,
    /// §5.4: a continuation frame with no message in progress.
    UnexpectedContinuation,
    /// §5.4: a new text or binary frame while a fragmented message was in progress.
    ExpectedContinuation,
    /// §8.1: a text message (or close reason) that is not valid UTF-8.
    InvalidUtf8,
    /// §5.5.1: a close payload of exactly one byte.
    CloseFrameTooShort,
    /// §7.4: a close code that may not appear on the wire.
    InvalidCloseCode(u16),
    /// A frame larger than [`Config::max_frame_size`](crate::Config::max_frame_size).
    FrameTooBig,
    /// A message larger than [`Config::max_message_size`](crate::Config::max_message_size).
    MessageTooBig,
    /// More fragments than [`Config::max_fragments`](crate::Config::max_fragments).
    TooManyFragments,
    /// The peer did not answer a keepalive ping within the pong timeout (async layer).
    PongTimeout,
    /// RFC 7692 §6.1: the "compressed" bit (RSV1) on a control frame or a continuation frame.
    CompressedBitMisplaced,
    /// RFC 7692 §8: a compressed message that is not a valid DEFLATE stream.
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code sent to the peer (RFC 6455 §7.4.1).
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => CloseCode::InvalidPayload,
            ProtocolError::FrameTooBig | ProtocolError::MessageTooBig | ProtocolError::TooManyFragments => {
                CloseCode::MessageTooBig
            }
            ProtocolError::PongTimeout => CloseCode::InternalError,
            _ => CloseCode::ProtocolError,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            ProtocolError::ReservedOpcode(op) => return write!(f, "reserved opcode {op:#x} (closing with 1002)"),
            ProtocolError::InvalidCloseCode(c) => return write!(f, "invalid close code {c} (closing with 1002)"),
            ProtocolError::ReservedBits => "RSV bit set without a negotiated extension",
            ProtocolError::CompressedBitMisplaced => "compressed bit (RSV1) on a control or continuation frame",
            ProtocolError::InvalidCompressedData => "compressed message is not valid DEFLATE data",
            ProtocolError::LengthMsbSet => "64-bit payload length with the most significant bit set",
            ProtocolError::ControlFrameTooLong => "control frame payload longer than 125 bytes",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::UnmaskedFrame => "unmasked frame from a client",
            ProtocolError::MaskedFrame => "masked frame from a server",
            ProtocolError::UnexpectedContinuation => "continuation frame without a message in progress",
            ProtocolError::ExpectedContinuation => "new data frame inside a fragmented message",
            ProtocolError::InvalidUtf8 => "invalid UTF-8 in a text message or close reason",
            ProtocolError::CloseFrameTooShort => "close frame with a 1-byte payload",
            ProtocolError::FrameTooBig => "frame larger than the frame size limit",
            ProtocolError::MessageTooBig => "message larger than the message size limit",
            ProtocolError::TooManyFragments => "message split into more fragments than allowed",
            ProtocolError::PongTimeout => "no pong within the keepalive timeout",
        };
        write!(f, "{what} (closing with {})", self.close_code().as_u16())
    }
}

impl std::error::Error for ProtocolError {}

/// Why an opening handshake failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request head did not end within the size limit (431).
    HeadTooLarge,
    /// More header lines than the limit (431).
    TooManyHeaders,
    /// The head is not valid HTTP/1.1 (400). The text says what `httparse` rejected.
    Malformed(&'static str),
    /// The method was not `GET` (405, §4.2.1 item 1).
    MethodNotAllowed,
    /// HTTP version below 1.1 (400, §4.2.1 item 1).
    HttpVersion,
    /// A request header that must appear exactly once was missing or repeated (400).
    /// The text names the header.
    BadHeader(&'static str),
    /// No `Upgrade` header at all: a plain HTTP request to a WebSocket endpoint (426).
    UpgradeRequired,
    /// `Sec-WebSocket-Version` missing or not 13 (426 with `Sec-WebSocket-Version: 13`, §4.2.2).
    UnsupportedVersion,
    /// A GET with a body (`Content-Length` > 0 or `Transfer-Encoding`): the bytes after the head
    /// belong to the WebSocket, so a body cannot be told apart from frames (400).
    BodyNotAllowed,
    /// The embedder refused the request with this status (e.g. 403 for a foreign Origin).
    Rejected(u16),
    /// The peer did not finish the handshake within the handshake timeout (408).
    Timeout,
    /// Client side: the server answered with this status instead of 101.
    UnexpectedStatus(u16),
    /// Client side: the server's response violated §4.1 (the text says how).
    BadResponse(&'static str),
}

impl HandshakeError {
    /// The HTTP status a server answers with, or `None` for client-side failures (there is
    /// nobody to answer).
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => 431,
            HandshakeError::Malformed(_)
            | HandshakeError::HttpVersion
            | HandshakeError::BadHeader(_)
            | HandshakeError::BodyNotAllowed => 400,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UpgradeRequired | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::Rejected(status) => *status,
            HandshakeError::Timeout => 408,
            HandshakeError::UnexpectedStatus(_) | HandshakeError::BadResponse(_) => return None,
        })
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::HeadTooLarge => f.write_str("request head larger than the limit"),
            HandshakeError::TooManyHeaders => f.write_str("more request headers than the limit"),
            HandshakeError::Malformed(why) => write!(f, "malformed HTTP head: {why}"),
            HandshakeError::MethodNotAllowed => f.write_str("method is not GET"),
            HandshakeError::HttpVersion => f.write_str("HTTP version below 1.1"),
            HandshakeError::BadHeader(name) => write!(f, "missing, repeated or invalid {name} header"),
            HandshakeError::UpgradeRequired => f.write_str("not a WebSocket upgrade request"),
            HandshakeError::UnsupportedVersion => f.write_str("Sec-WebSocket-Version is not 13"),
            HandshakeError::BodyNotAllowed => f.write_str("upgrade request carries a body"),
            HandshakeError::Rejected(status) => write!(f, "refused by the application with {status}"),
            HandshakeError::Timeout => f.write_str("handshake not finished within the timeout"),
            HandshakeError::UnexpectedStatus(status) => write!(f, "server answered {status} instead of 101"),
            HandshakeError::BadResponse(why) => write!(f, "invalid server response: {why}"),
        }?;
        if let Some(status) = self.status() {
            write!(f, " (answering {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for HandshakeError {}

/// This program used the API in a way RFC 6455 does not allow. Nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// A message was sent after this side sent a close frame, or after the connection closed.
    SendAfterClose,
    /// §5.5: control frame payloads (ping, pong, close) are at most 125 bytes.
    ControlPayloadTooLong,
    /// §7.4: this close code may not be sent (e.g. 1005, 1006, 1015, or outside 1000-4999).
    InvalidCloseCode(u16),
    /// §5.5.1: the close reason must fit in 123 bytes after the 2-byte code.
    CloseReasonTooLong,
    /// The write buffer already holds [`Config::write_buffer_limit`](crate::Config::write_buffer_limit)
    /// bytes; take the outgoing bytes first.
    WriteBufferFull,
    /// A close frame was passed to `send_frame`; use `close` or `close_now`, which keep the
    /// closing handshake's state.
    CloseViaSendFrame,
    /// §5.4: a continuation frame with no fragmented message in progress, or a new message
    /// started inside one.
    FragmentOutOfOrder,
    /// A pre-encoded (unmasked) frame was sent from a client, which must mask every frame.
    EncodedFrameFromClient,
    /// A compressed [`EncodedFrame`](crate::EncodedFrame) on a connection whose
    /// `permessage-deflate` agreement does not allow shared compressed frames (or has none).
    CompressedFrameNotNegotiated,
    /// A header name or value added to a handshake response was not valid (CR, LF or empty).
    InvalidHeader,
    /// The accepted subprotocol was not among those the client offered.
    ProtocolNotOffered,
    /// A rejection status outside 400-599.
    InvalidStatus(u16),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::SendAfterClose => f.write_str("send after the close frame"),
            UsageError::ControlPayloadTooLong => f.write_str("control frame payload over 125 bytes"),
            UsageError::InvalidCloseCode(c) => write!(f, "close code {c} may not be sent"),
            UsageError::CloseReasonTooLong => f.write_str("close reason over 123 bytes"),
            UsageError::WriteBufferFull => f.write_str("write buffer full; flush first"),
            UsageError::CloseViaSendFrame => f.write_str("close frames are sent with close()"),
            UsageError::FragmentOutOfOrder => f.write_str("fragment sent out of order"),
            UsageError::EncodedFrameFromClient => f.write_str("pre-encoded frames are server-only"),
            UsageError::CompressedFrameNotNegotiated => {
                f.write_str("compressed frame on a connection that did not agree to shared compressed frames")
            }
            UsageError::InvalidHeader => f.write_str("invalid header name or value"),
            UsageError::ProtocolNotOffered => f.write_str("subprotocol was not offered by the client"),
            UsageError::InvalidStatus(s) => write!(f, "rejection status {s} is not 4xx or 5xx"),
        }
    }
}

impl std::error::Error for UsageError {}

/// A [`ConfigBuilder`](crate::ConfigBuilder) value that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub(crate) &'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}
