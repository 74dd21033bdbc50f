//! RFC 6455 §5-§7 — the sans-IO connection: bytes in, events out, bytes to send.
//!
//! # Theory of operation
//!
//! A [`Connection`] is what is left of a WebSocket once the opening handshake is over: a state
//! machine that never touches a socket. The caller moves bytes:
//!
//! ```text
//!   socket ──read──▶ receive(&[u8]) ──▶ next_event() ──▶ Event::{Text, Binary, Ping, Pong, Close}
//!   socket ◀─write── next_outgoing() ◀── send_text / send_binary / close / automatic replies
//! ```
//!
//! `next_event` returns `Ok(None)` when it needs more bytes: partial input is normal, not an
//! error. It decodes one frame header at a time and checks it against the rules and the size
//! budget *before* reading the payload, unmasks the payload in place as it arrives, validates
//! text as it arrives, and reassembles fragments (§5.4) while answering control frames that
//! arrive between them.
//!
//! Pings are answered automatically (§5.5.2). Up to [`MAX_PENDING_PONGS`] answers wait in
//! order; when more pings arrive before the caller takes the outgoing bytes, the oldest pending
//! pong is dropped, so the latest ping is always answered ("an endpoint MAY elect to send a Pong
//! frame for only the most recently processed Ping frame") and a ping flood can't grow memory.
//! Pending pongs are sent ahead of queued data frames, so they are never stuck behind a full
//! queue; the write-buffer limit applies to data messages only.
//!
//! # Closing (§7)
//!
//! ```text
//!            close()                       peer's Close
//!   Open ───────────────▶ CloseSent ───────────────────────▶ Closed
//!    │                                                         ▲
//!    └── peer's Close: echo its code, report Event::Close ─────┘
//!    └── protocol error: send 1002/1007/1009, return Err ──────┘
//! ```
//!
//! In `Closed` the caller flushes the outgoing bytes and closes the transport: the server
//! first (§7.1.1), the client after the server or a timeout.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::deflate::codec::{Deflater, InflateError, Inflater};
use crate::deflate::{DeflateConfig, PerMessageDeflate};
use crate::error::{Error, ProtocolError, UsageError};
use crate::frame::mask::apply_mask;
use crate::frame::{EncodedFrame, FrameHeader, OpCode, MAX_HEADER_LEN, RSV1};
use crate::message::{Kind, Reassembly, Utf8Validator};
use crate::rand::Rng;

/// Which end of the connection this is. It decides the masking direction (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: sends unmasked frames, requires masked ones.
    Server,
    /// Opened the connection: masks every frame, rejects masked ones.
    Client,
}

/// Where the closing handshake stands (§7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// This side sent a close frame and waits for the peer's. Messages still arrive.
    CloseSent,
    /// Both close frames were exchanged, or the connection failed. Flush the outgoing bytes
    /// and close the transport.
    Closed,
}

/// What the peer sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete text message, validated as UTF-8.
    Text(String),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping. The pong has already been queued.
    Ping(Bytes),
    /// A pong (an answer to our ping, or unsolicited as a heartbeat).
    Pong(Bytes),
    /// The peer's close frame. If this side had not sent one, the reply echoing the peer's
    /// code is queued. The connection is now [`State::Closed`].
    Close(CloseFrame),
}

/// One frame to write: a header and a payload, kept apart so the payload can be written
/// without copying (vectored write).
#[derive(Clone, Debug)]
pub struct Outgoing {
    head: [u8; MAX_HEADER_LEN],
    head_len: u8,
    body: Bytes,
}

impl Outgoing {
    fn new(header: &FrameHeader, body: Bytes) -> Self {
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head) as u8;
        Outgoing { head, head_len, body }
    }

    fn encoded(frame: &EncodedFrame) -> Self {
        Outgoing { head: [0; MAX_HEADER_LEN], head_len: 0, body: frame.as_bytes().clone() }
    }

    /// The frame header bytes (may be empty for a pre-encoded frame, whose header is in the
    /// body).
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    /// The payload bytes.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.body.len()
    }

    /// Whether the frame has no bytes (never true: every frame has a header).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the frame's bytes to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head());
        out.extend_from_slice(&self.body);
    }
}

/// A frame whose header has been decoded and whose payload is arriving.
#[derive(Debug)]
struct InFrame {
    header: FrameHeader,
    len: usize,
    /// Payload bytes at the front of the read buffer already unmasked (and, for text,
    /// validated).
    done: usize,
    /// Whole message in one frame, seen complete at once: validated only when converted.
    whole: bool,
    /// Part of a compressed message (RFC 7692): the payload is DEFLATE data, validated after
    /// inflating.
    compressed: bool,
}

/// `permessage-deflate` state, when it was agreed.
#[derive(Debug)]
struct Compression {
    agreed: PerMessageDeflate,
    deflater: Deflater,
    inflater: Inflater,
}

/// The sans-IO WebSocket state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    rbuf: BytesMut,
    frame: Option<InFrame>,
    message: Option<Reassembly>,
    utf8: Utf8Validator,
    /// Payloads of unanswered pings, oldest first: sent ahead of queued data.
    pongs: VecDeque<Bytes>,
    queue: VecDeque<Outgoing>,
    queued_data: usize,
    /// An outgoing fragmented message is in progress (a continuation is expected next).
    sending_fragmented: bool,
    rng: Option<Rng>,
    compression: Option<Box<Compression>>,
}

/// Most pongs waiting to be written; past this the oldest is dropped (§5.5.3). Bounded so a ping
/// flood costs at most this many 125-byte payloads.
pub const MAX_PENDING_PONGS: usize = 16;

/// Read buffers bigger than this are released once empty, so one big message doesn't pin its
/// memory for the life of the connection.
const KEEP_READ_CAPACITY: usize = 64 * 1024;

impl Connection {
    /// A connection in [`State::Open`], right after a successful opening handshake with no
    /// extension.
    pub fn new(role: Role, config: Config) -> Self {
        Self::with_deflate(role, config, None)
    }

    /// A connection in [`State::Open`] whose handshake agreed on `permessage-deflate` with
    /// these parameters (from [`Accept::deflate`](crate::handshake::server::Accept::deflate)
    /// or [`Response::deflate`](crate::handshake::client::Response::deflate)); `None` is
    /// [`new`](Self::new). Level and minimum size come from [`Config::deflate`] (or its
    /// defaults).
    pub fn with_deflate(role: Role, config: Config, deflate: Option<PerMessageDeflate>) -> Self {
        let compression = deflate.map(|agreed| {
            let settings = config.deflate().copied().unwrap_or_default();
            let (own_bits, own_reset, peer_reset) = match role {
                Role::Server => (
                    agreed.server_max_window_bits,
                    agreed.server_no_context_takeover,
                    agreed.client_no_context_takeover,
                ),
                Role::Client => (
                    agreed.client_max_window_bits,
                    agreed.client_no_context_takeover,
                    agreed.server_no_context_takeover,
                ),
            };
            let DeflateConfig { level, min_size, .. } = settings;
            Box::new(Compression {
                agreed,
                deflater: Deflater::new(level, own_bits, own_reset, min_size),
                inflater: Inflater::new(peer_reset),
            })
        });
        Connection {
            role,
            config,
            state: State::Open,
            rbuf: BytesMut::new(),
            frame: None,
            message: None,
            utf8: Utf8Validator::new(),
            pongs: VecDeque::new(),
            queue: VecDeque::new(),
            queued_data: 0,
            sending_fragmented: false,
            rng: (role == Role::Client).then(Rng::new),
            compression,
        }
    }

    /// The `permessage-deflate` agreement, if one was made.
    pub fn deflate(&self) -> Option<&PerMessageDeflate> {
        self.compression.as_ref().map(|c| &c.agreed)
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The closing-handshake state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Feeds bytes read from the transport. Bytes after the connection closed are ignored.
    pub fn receive(&mut self, data: &[u8]) {
        if self.state != State::Closed {
            self.rbuf.extend_from_slice(data);
        }
    }

    /// For the tokio layer: the receive buffer and how many bytes of the current frame's
    /// payload have yet to arrive, when that is at least `min`. Reading exactly that many
    /// bytes straight into the buffer puts a big payload into one allocation
    /// that nothing else shares, without the copy from a read buffer. `None` between frames,
    /// for short remainders, and once closed (received bytes are then ignored).
    #[cfg(feature = "tokio")]
    pub(crate) fn payload_to_come(&mut self, min: usize) -> Option<(&mut BytesMut, usize)> {
        let frame = self.frame.as_ref()?;
        let remaining = frame.len.saturating_sub(self.rbuf.len());
        (self.state != State::Closed && remaining >= min).then_some((&mut self.rbuf, remaining))
    }

    /// Bytes received but not yet turned into events (bounded by the frame size limit plus a
    /// header, and by what the caller feeds between calls to [`next_event`](Self::next_event)).
    pub fn buffered_len(&self) -> usize {
        self.rbuf.len()
    }

    /// The next event, `Ok(None)` if more bytes are needed (or the connection is closed).
    ///
    /// On `Err(Error::Protocol(e))` the connection has failed (§7.1.7): a close frame with
    /// `e.close_code()` is queued (after messages already queued, so the peer gets what was
    /// sent before the failure), the state is [`State::Closed`], and later calls return
    /// `Ok(None)`. Flush the outgoing bytes and close the transport.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        match self.poll_event() {
            Ok(event) => Ok(event),
            Err(e) => {
                self.fail(e);
                Err(Error::Protocol(e))
            }
        }
    }

    fn poll_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            if self.state == State::Closed {
                return Ok(None);
            }
            if self.frame.is_none() {
                let Some((header, used)) = FrameHeader::decode(&self.rbuf)? else { return Ok(None) };
                let len = self.check_header(&header)?;
                self.rbuf.advance(used);
                let whole = header.fin && self.message.is_none() && self.rbuf.len() >= len;
                let compressed = match header.opcode {
                    OpCode::Continuation => self.message.as_ref().is_some_and(|m| m.compressed),
                    _ => header.rsv & RSV1 != 0,
                };
                self.frame = Some(InFrame { header, len, done: 0, whole, compressed });
            }
            let Some(frame) = self.frame.as_mut() else { return Ok(None) };
            let available = self.rbuf.len().min(frame.len);
            if available > frame.done {
                let fresh = &mut self.rbuf[frame.done..available];
                if let Some(key) = frame.header.mask {
                    apply_mask(fresh, key, frame.done);
                }
                let text = match frame.header.opcode {
                    OpCode::Text => true,
                    OpCode::Continuation => self.message.as_ref().is_some_and(|m| m.kind == Kind::Text),
                    _ => false,
                };
                // §8.1, validated as it arrives so a bad byte fails now, not at the end.
                // Compressed text is validated as it inflates instead.
                if text && !frame.whole && !frame.compressed {
                    self.utf8.feed(fresh).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                frame.done = available;
            }
            if frame.done < frame.len {
                return Ok(None);
            }
            let (header, whole, compressed) = (frame.header, frame.whole, frame.compressed);
            self.frame = None;
            let payload = self.rbuf.split_to(header.payload_len as usize);
            if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_READ_CAPACITY {
                self.rbuf = BytesMut::new();
            }
            let event =
                if compressed { self.on_compressed(header, &payload)? } else { self.on_frame(header, payload, whole)? };
            if let Some(event) = event {
                return Ok(Some(event));
            }
        }
    }

    /// The checks made on a header before its payload is read. Returns the payload length.
    fn check_header(&self, h: &FrameHeader) -> Result<usize, ProtocolError> {
        // §5.2: "MUST be 0 unless an extension is negotiated that defines meanings for non-zero
        // values." permessage-deflate defines RSV1, on a message's first frame only (RFC 7692 §6).
        let allowed = if self.compression.is_some() { RSV1 } else { 0 };
        if h.rsv & !allowed != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        if h.rsv & RSV1 != 0 && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
            return Err(ProtocolError::CompressedBitMisplaced);
        }
        // §5.1: "The server MUST close the connection upon receiving a frame that is not
        // masked." / "A client MUST close a connection if it detects a masked frame."
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125 bytes or less and
            // MUST NOT be fragmented."
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if h.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
            return Ok(h.payload_len as usize);
        }
        let (so_far, fragments) = match (&self.message, h.opcode) {
            (None, OpCode::Continuation) => return Err(ProtocolError::UnexpectedContinuation),
            (Some(_), OpCode::Text | OpCode::Binary) => return Err(ProtocolError::ExpectedContinuation),
            // A compressed message is held to the budget on the wire here, and inflated within
            // it as it arrives (on_compressed).
            (Some(m), _) if m.compressed => (m.wire_len, m.fragments),
            (Some(m), _) => (m.data.len(), m.fragments),
            (None, _) => (0, 0),
        };
        // One budget over frame size, reassembled size and fragment count, checked against the
        // announced length before a byte of payload is read or allocated.
        if h.payload_len > self.config.max_frame_size() as u64 {
            return Err(ProtocolError::FrameTooBig);
        }
        if so_far as u64 + h.payload_len > self.config.max_message_size() as u64 {
            return Err(ProtocolError::MessageTooBig);
        }
        if fragments + 1 > self.config.max_fragments() {
            return Err(ProtocolError::TooManyFragments);
        }
        Ok(h.payload_len as usize)
    }

    fn on_frame(&mut self, h: FrameHeader, payload: BytesMut, whole: bool) -> Result<Option<Event>, ProtocolError> {
        match h.opcode {
            OpCode::Ping => {
                let payload = payload.freeze();
                // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
                // response, unless it already received a Close frame." A new
                // pending pong past MAX_PENDING_PONGS drops the oldest (§5.5.3 allows it).
                if self.state == State::Open {
                    if self.pongs.len() == MAX_PENDING_PONGS {
                        self.pongs.pop_front();
                    }
                    self.pongs.push_back(payload.clone());
                }
                Ok(Some(Event::Ping(payload)))
            }
            OpCode::Pong => Ok(Some(Event::Pong(payload.freeze()))),
            OpCode::Close => {
                let frame = CloseFrame::parse(&payload)?;
                if self.state == State::Open {
                    // §5.5.1: "the endpoint MUST send a Close frame in response. (When sending a
                    // Close frame in response, the endpoint typically echos the status code it
                    // received.)"
                    let reply = CloseFrame::encode(frame.code, "").unwrap_or_default();
                    self.push_control(OpCode::Close, reply);
                }
                self.state = State::Closed;
                self.rbuf = BytesMut::new();
                Ok(Some(Event::Close(frame)))
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => self.on_data(h, payload, whole),
        }
    }

    fn on_data(&mut self, h: FrameHeader, payload: BytesMut, whole: bool) -> Result<Option<Event>, ProtocolError> {
        let kind = match (h.opcode, &self.message) {
            (OpCode::Text, _) => Kind::Text,
            (OpCode::Binary, _) => Kind::Binary,
            (_, Some(m)) => m.kind,
            (_, None) => return Err(ProtocolError::UnexpectedContinuation),
        };
        if h.fin && self.message.is_none() {
            // An unfragmented message: no reassembly, and a binary payload is not copied.
            return match kind {
                Kind::Binary => Ok(Some(Event::Binary(payload.freeze()))),
                Kind::Text => {
                    if !whole {
                        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    let text = String::from_utf8(payload.to_vec()).map_err(|_| ProtocolError::InvalidUtf8)?;
                    Ok(Some(Event::Text(text)))
                }
            };
        }
        let message = self.message.get_or_insert_with(|| Reassembly::new(kind, false));
        message.data.extend_from_slice(&payload);
        message.fragments += 1;
        if !h.fin {
            return Ok(None);
        }
        let Some(message) = self.message.take() else { return Ok(None) };
        match message.kind {
            Kind::Binary => Ok(Some(Event::Binary(message.data.freeze()))),
            Kind::Text => {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                let text = String::from_utf8(Vec::from(message.data)).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(Event::Text(text)))
            }
        }
    }

    /// One frame of a compressed message (RFC 7692 §7.2.2): inflate it within the message
    /// budget as it arrives; at the last frame, inflate the removed tail and deliver.
    fn on_compressed(&mut self, h: FrameHeader, payload: &[u8]) -> Result<Option<Event>, ProtocolError> {
        let kind = match (h.opcode, &self.message) {
            (OpCode::Text, _) => Kind::Text,
            (OpCode::Binary, _) => Kind::Binary,
            (_, Some(m)) => m.kind,
            (_, None) => return Err(ProtocolError::UnexpectedContinuation),
        };
        let Some(compression) = self.compression.as_mut() else { return Err(ProtocolError::ReservedBits) };
        let limit = self.config.max_message_size();
        let message = self.message.get_or_insert_with(|| Reassembly::new(kind, true));
        message.fragments += 1;
        message.wire_len += payload.len();
        let before = message.inflated.len();
        let inflated = compression.inflater.inflate(payload, &mut message.inflated, limit).and_then(|()| {
            if h.fin {
                compression.inflater.finish(&mut message.inflated, limit)
            } else {
                Ok(())
            }
        });
        inflated.map_err(|e| match e {
            InflateError::TooBig => ProtocolError::MessageTooBig,
            InflateError::Corrupt => ProtocolError::InvalidCompressedData,
        })?;
        let single = h.fin && message.fragments == 1;
        if kind == Kind::Text && !single {
            self.utf8.feed(&message.inflated[before..]).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !h.fin {
            return Ok(None);
        }
        let Some(message) = self.message.take() else { return Ok(None) };
        match message.kind {
            Kind::Binary => Ok(Some(Event::Binary(Bytes::from(message.inflated)))),
            Kind::Text => {
                if !single {
                    self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                let text = String::from_utf8(message.inflated).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(Event::Text(text)))
            }
        }
    }

    /// §7.1.7 "_Fail the WebSocket Connection_": drop what was queued, send a close frame with
    /// the error's code (unless one was already sent), and stop reading.
    fn fail(&mut self, e: ProtocolError) {
        if self.state == State::Open {
            // Messages the application queued before the failure still go out, then the close:
            // they were accepted for sending while the connection was good (an echo server
            // that fed its replies gets them to the peer, as Autobahn's strict cases expect),
            // and they are bounded by the write-buffer limit. Pongs owed to the faulty peer
            // are dropped.
            self.pongs.clear();
            let payload = CloseFrame::encode(e.close_code(), "").unwrap_or_default();
            self.push_control(OpCode::Close, payload);
        }
        self.state = State::Closed;
        self.frame = None;
        self.message = None;
        self.rbuf = BytesMut::new();
    }

    // ---- sending ----------------------------------------------------------------------------

    /// Queues a text message as one frame, compressed if `permessage-deflate` was agreed and
    /// the message is long enough.
    ///
    /// A `String` is taken over without a copy (an echo passes on the `String` of
    /// [`Event::Text`]; a client masks it in place); a `&str` is copied once.
    pub fn send_text(&mut self, text: impl Into<String>) -> Result<(), Error> {
        let text = text.into();
        if let Some(packed) = self.compress(text.as_bytes())? {
            return self.push_data(OpCode::Text, RSV1, packed);
        }
        self.send_frame(OpCode::Text, true, Bytes::from(text))
    }

    /// Queues a binary message as one frame (compressed as [`send_text`](Self::send_text) is).
    /// Uncompressed, a server sends `Bytes` without copying them, and a client masks them in
    /// place when nothing else holds them (a `Vec<u8>`, a `String`'s bytes); shared `Bytes`,
    /// such as a received [`Event::Binary`] (a slice of the read buffer), are masked in a copy.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        let data = data.into();
        if let Some(packed) = self.compress(&data)? {
            return self.push_data(OpCode::Binary, RSV1, packed);
        }
        self.send_frame(OpCode::Binary, true, data)
    }

    /// The compressed payload of a whole message, when compression applies. Checks first that
    /// a message could be queued, so nothing is compressed in vain.
    fn compress(&mut self, data: &[u8]) -> Result<Option<Bytes>, Error> {
        let Some(compression) = self.compression.as_mut() else { return Ok(None) };
        if self.state != State::Open {
            return Err(UsageError::SendAfterClose.into());
        }
        if self.sending_fragmented {
            return Err(UsageError::FragmentOutOfOrder.into());
        }
        if self.queued_data >= self.config.write_buffer_limit() {
            return Err(UsageError::WriteBufferFull.into());
        }
        Ok(compression.deflater.compress(data))
    }

    fn push_data(&mut self, opcode: OpCode, rsv: u8, payload: Bytes) -> Result<(), Error> {
        let frame = self.build_with(opcode, true, rsv, payload);
        self.queued_data += frame.len();
        self.queue.push_back(frame);
        Ok(())
    }

    /// Queues a ping (payload at most 125 bytes).
    pub fn send_ping(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.send_frame(OpCode::Ping, true, payload.into())
    }

    /// Queues an unsolicited pong (a one-way heartbeat, §5.5.3).
    pub fn send_pong(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.send_frame(OpCode::Pong, true, payload.into())
    }

    /// Queues one frame. For fragmentation (§5.4) send `Text`/`Binary` with `fin = false`, then
    /// `Continuation` frames, the last with `fin = true`; control frames may go in between.
    ///
    /// Errors (nothing is queued): [`UsageError::SendAfterClose`] after a close frame was sent,
    /// [`UsageError::ControlPayloadTooLong`] or a fragmented control frame,
    /// [`UsageError::WriteBufferFull`] when queued data reached the limit. Sending a close frame
    /// this way is refused; use [`close`](Self::close). The caller is responsible for the UTF-8
    /// validity of text split across fragments.
    pub fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: Bytes) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(UsageError::SendAfterClose.into());
        }
        if opcode.is_control() {
            if opcode == OpCode::Close {
                return Err(UsageError::CloseViaSendFrame.into());
            }
            if !fin || payload.len() > 125 {
                return Err(UsageError::ControlPayloadTooLong.into());
            }
            self.push_control(opcode, payload);
            return Ok(());
        }
        if self.queued_data >= self.config.write_buffer_limit() {
            return Err(UsageError::WriteBufferFull.into());
        }
        let continuation = opcode == OpCode::Continuation;
        if continuation != self.sending_fragmented {
            // A continuation with nothing to continue, or a new message inside a fragmented one.
            return Err(UsageError::FragmentOutOfOrder.into());
        }
        self.sending_fragmented = !fin;
        let frame = self.build(opcode, fin, payload);
        self.queued_data += frame.len();
        self.queue.push_back(frame);
        Ok(())
    }

    /// Queues a pre-encoded frame (server role only): the bytes are shared, not copied, so one
    /// [`EncodedFrame`] can go to many connections.
    pub fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        if self.role == Role::Client {
            return Err(UsageError::EncodedFrameFromClient.into());
        }
        if self.state != State::Open {
            return Err(UsageError::SendAfterClose.into());
        }
        if self.sending_fragmented {
            return Err(UsageError::FragmentOutOfOrder.into());
        }
        if frame.is_compressed() && !self.deflate().is_some_and(PerMessageDeflate::accepts_shared_frames) {
            return Err(UsageError::CompressedFrameNotNegotiated.into());
        }
        match frame.opcode() {
            OpCode::Close => {
                self.queue.push_back(Outgoing::encoded(frame));
                self.state = State::CloseSent;
            }
            _ => {
                if self.queued_data >= self.config.write_buffer_limit() {
                    return Err(UsageError::WriteBufferFull.into());
                }
                self.queued_data += frame.len();
                self.queue.push_back(Outgoing::encoded(frame));
            }
        }
        Ok(())
    }

    /// Starts the closing handshake (§7.1.2): queues a close frame after the queued data. The
    /// connection moves to [`State::CloseSent`]; messages still arrive until the peer's close.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(UsageError::SendAfterClose.into());
        }
        let payload = CloseFrame::encode(code, reason)?;
        self.push_control(OpCode::Close, payload);
        self.state = State::CloseSent;
        Ok(())
    }

    /// Closes at once: drops the data frames still queued (not yet taken by
    /// [`next_outgoing`](Self::next_outgoing)) and queues the close frame, so it goes out next.
    /// For a peer that fell behind (1013) or a server going away in a hurry (1001), where
    /// delivering the backlog first is the wrong thing.
    pub fn close_now(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(UsageError::SendAfterClose.into());
        }
        let payload = CloseFrame::encode(code, reason)?;
        self.queue.clear();
        self.queued_data = 0;
        self.sending_fragmented = false;
        self.push_control(OpCode::Close, payload);
        self.state = State::CloseSent;
        Ok(())
    }

    fn push_control(&mut self, opcode: OpCode, payload: Bytes) {
        let frame = self.build(opcode, true, payload);
        self.queue.push_back(frame);
    }

    fn build(&mut self, opcode: OpCode, fin: bool, payload: Bytes) -> Outgoing {
        self.build_with(opcode, fin, 0, payload)
    }

    fn build_with(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: Bytes) -> Outgoing {
        let mask = self.rng.as_mut().map(Rng::mask_key);
        let header = FrameHeader { fin, rsv, opcode, mask, payload_len: payload.len() as u64 };
        let body = match mask {
            // §5.3: the client masks the payload in place when it holds the only reference
            // (nobody else can see the bytes change), a copy otherwise: shared or static bytes
            // are left alone.
            Some(key) => {
                let mut masked = payload.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                apply_mask(&mut masked, key, 0);
                masked.freeze()
            }
            None => payload,
        };
        Outgoing::new(&header, body)
    }

    /// The next frame to write, pending pong first. Write each frame completely before taking
    /// the next.
    pub fn next_outgoing(&mut self) -> Option<Outgoing> {
        if let Some(payload) = self.pongs.pop_front() {
            return Some(self.build(OpCode::Pong, true, payload));
        }
        let frame = self.queue.pop_front()?;
        self.queued_data = self.queued_data.saturating_sub(frame.len());
        Some(frame)
    }

    /// Appends every queued frame's bytes to `out` (convenient when not writing vectored).
    pub fn drain_outgoing(&mut self, out: &mut Vec<u8>) {
        while let Some(frame) = self.next_outgoing() {
            frame.write_to(out);
        }
    }

    /// Whether anything is waiting to be written.
    pub fn has_outgoing(&self) -> bool {
        !self.pongs.is_empty() || !self.queue.is_empty()
    }

    /// Bytes of queued data messages (what [`Config::write_buffer_limit`] bounds).
    pub fn queued_data_len(&self) -> usize {
        self.queued_data
    }
}
