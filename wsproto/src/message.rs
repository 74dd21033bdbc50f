//! RFC 6455 §5.4 and §8.1 — messages: fragment reassembly and incremental UTF-8.
//!
//! ```text
//! A fragmented message consists of a single frame with the FIN bit clear and an opcode other
//! than 0, followed by zero or more frames with the FIN bit clear and the opcode set to 0, and
//! terminated by a single frame with the FIN bit set and an opcode of 0. [...] Control frames
//! MAY be injected in the middle of a fragmented message.
//! ```
//!
//! A text message must be UTF-8 as a whole, but a fragment boundary (or a TCP read) may cut a
//! code point in two. [`Utf8Validator`] keeps the at most three bytes of an unfinished code
//! point between pieces, so validation runs as bytes arrive and fails on the first byte that can
//! never be part of valid UTF-8 (§8.1: "_Fail the WebSocket Connection_" with 1007), without
//! waiting for the rest of the message.

use bytes::BytesMut;

/// Incremental UTF-8 validation over a byte stream cut at arbitrary points.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: usize,
}

/// The input was not UTF-8 (§8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece. Fails as soon as a byte makes the stream invalid, however the
    /// stream is cut; an unfinished code point at the end is kept for the next piece.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        // Finish the code point left over from the previous piece, one byte at a time.
        while self.pending_len > 0 {
            let Some((&byte, rest)) = input.split_first() else { return Ok(()) };
            input = rest;
            self.pending[self.pending_len] = byte;
            self.pending_len += 1;
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {} // still unfinished; a 4-byte buffer can't overflow (4 bytes decide)
            }
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &input[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
        }
    }

    /// The message ended: an unfinished code point is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.pending_len != 0;
        self.pending_len = 0;
        if unfinished {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

/// Which kind of data message is being reassembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Binary,
}

/// A fragmented message in progress (§5.4).
#[derive(Debug)]
pub(crate) struct Reassembly {
    pub(crate) kind: Kind,
    pub(crate) data: BytesMut,
    pub(crate) fragments: usize,
    /// RFC 7692: the message is compressed; `inflated` holds its output so far and `data` stays
    /// empty.
    pub(crate) compressed: bool,
    pub(crate) inflated: Vec<u8>,
    /// Payload bytes received for this message (compressed bytes for a compressed one).
    pub(crate) wire_len: usize,
}

impl Reassembly {
    pub(crate) fn new(kind: Kind, compressed: bool) -> Self {
        Reassembly { kind, data: BytesMut::new(), fragments: 0, compressed, inflated: Vec::new(), wire_len: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], at: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in at.iter().chain(std::iter::once(&bytes.len())) {
            v.feed(&bytes[start..cut])?;
            start = cut;
        }
        v.finish()
    }

    /// Every split point and byte by byte, against std's whole-input verdict.
    fn check_every_split(bytes: &[u8]) {
        let expected = std::str::from_utf8(bytes).is_ok();
        assert_eq!(feed_split(bytes, &[]).is_ok(), expected, "whole {bytes:x?}");
        for cut in 0..=bytes.len() {
            assert_eq!(feed_split(bytes, &[cut]).is_ok(), expected, "cut {cut} of {bytes:x?}");
        }
        let every: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(feed_split(bytes, &every).is_ok(), expected, "byte by byte {bytes:x?}");
    }

    #[test]
    fn rfc6455_8_1_valid_and_invalid_sequences_at_every_split() {
        let cases: &[&[u8]] = &[
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            "κόσμε".as_bytes(),
            &[0xf0, 0x9f, 0x98, 0x80],
            &[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0xc0, 0xaf],
            &[0xed, 0xbf, 0xbf],
            &[0xe2, 0x82],
            &[0xff],
            &[0x61, 0xf0, 0x9f],
            &[],
        ];
        for case in cases {
            check_every_split(case);
        }
    }

    #[test]
    fn fails_at_first_bad_byte_without_waiting() {
        // 0xF4 0x90 can never start a valid code point: fail on that piece, before any more.
        let mut v = Utf8Validator::new();
        v.feed(b"ok \xf4").unwrap();
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_code_point_fails_at_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }
}
