//! RFC 7692 — the `permessage-deflate` extension: compressed messages.
//!
//! Off unless [`Config::deflate`](crate::Config::deflate) is set. Then:
//!
//! - the client offers it and checks the server's answer, the server accepts the first offer
//!   it can honour ([`negotiate`], §5-7.1);
//! - a compressed message has RSV1 set on its first frame; its payload, across all its frames,
//!   is a raw DEFLATE stream whose final `00 00 ff ff` is left off (§7.2.1); control frames are
//!   never compressed and may arrive between the fragments of a compressed message (§6.1);
//! - received compressed data is inflated *as it arrives*, against the one message budget
//!   [`Config::max_message_size`](crate::Config::max_message_size): a message that would
//!   inflate past it fails with 1009 before the memory is spent, however small it was on the
//!   wire (the decompression bomb of CVE-2018-1000518).
//!
//! DEFLATE itself is `flate2` with the pure-Rust `zlib-rs` backend ([`codec`]); the framing and
//! the negotiation are here.
//!
//! # Memory per connection
//!
//! | state | size | when |
//! |---|---|---|
//! | compressor | about `2^(w+2) + 128 KiB` for window `w` bits (256 KiB at 15, 130 KiB at 9) | while this side keeps context: the whole connection; with `no_context_takeover` on this side, only while a message is being compressed |
//! | decompressor | about 7 KiB + a `2^w` window (32 KiB at 15) | while the peer keeps context: the whole connection; with the peer's `no_context_takeover`, only while a message arrives |
//!
//! A server with many mostly idle connections therefore asks for `server_no_context_takeover`
//! (the server may impose it, §7.1.1.1) and pays the compressor only while it sends, and it can
//! compress a broadcast once for every such connection ([`EncodedFrame::deflated_text`]).
//!
//! [`EncodedFrame::deflated_text`]: crate::EncodedFrame::deflated_text

pub mod codec;
pub mod negotiate;

use crate::error::ConfigError;

/// The name of the extension in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// What this side asks for (as a client) or accepts and imposes (as a server). Build it with
/// [`DeflateConfig::new`] and the setters; [`ConfigBuilder::deflate`](crate::ConfigBuilder::deflate)
/// checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: u8,
    pub(crate) client_max_window_bits: u8,
    pub(crate) level: u8,
    pub(crate) min_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 6,
            min_size: 32,
        }
    }
}

impl DeflateConfig {
    /// Context takeover both ways, 32 KiB windows, level 6, messages under 32 bytes sent plain.
    pub fn new() -> Self {
        Self::default()
    }

    /// The server resets its compressor after every message (§7.1.1.1). Costs some ratio, saves
    /// the compressor's memory between messages, and lets a server send the same compressed
    /// bytes to many clients. A server sets it in its answer even when the client did not ask.
    /// Default off.
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// The client resets its compressor after every message (§7.1.1.2): the server's
    /// decompressor memory is then only held while a message arrives. Default off.
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Largest LZ77 window, as a power of two, the server compresses with (§7.1.2.1): 9 to 15.
    /// Less saves the server's compressor memory at some cost in ratio. Default 15 (32 KiB).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits;
        self
    }

    /// Largest LZ77 window the client compresses with (§7.1.2.2): 9 to 15. A server only gets
    /// to limit it if the client offered the parameter. Default 15.
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits;
        self
    }

    /// DEFLATE level, 0 (stored) to 9 (smallest). Default 6, zlib's default.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level;
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed (RSV1 clear, which
    /// §6 allows): DEFLATE can't shrink them and costs time. Default 32.
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        for bits in [self.server_max_window_bits, self.client_max_window_bits] {
            // 8 is legal on the wire, but zlib can't compress with a 256-byte window.
            if !(9..=15).contains(&bits) {
                return Err(ConfigError("deflate window bits must be between 9 and 15"));
            }
        }
        if self.level > 9 {
            return Err(ConfigError("deflate level must be between 0 and 9"));
        }
        Ok(())
    }
}

/// The parameters both sides agreed on (§7.1), as they appear in the server's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PerMessageDeflate {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, 8 to 15 bits.
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, 8 to 15 bits.
    pub client_max_window_bits: u8,
}

impl Default for PerMessageDeflate {
    fn default() -> Self {
        PerMessageDeflate {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl PerMessageDeflate {
    /// Whether a frame made by [`EncodedFrame::deflated_text`](crate::EncodedFrame::deflated_text)
    /// (a fresh compressor, 15-bit window) may be sent on this connection: the server promised
    /// no context takeover and the client accepts a 32 KiB window.
    pub fn accepts_shared_frames(&self) -> bool {
        self.server_no_context_takeover && self.server_max_window_bits == 15
    }
}
