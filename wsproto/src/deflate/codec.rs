//! RFC 7692 §7.2 — compressing one message, and inflating one within a byte budget.
//!
//! Sending (§7.2.1): the message is compressed with a sync flush, which ends the output with an
//! empty stored block `00 00 ff ff`; those four bytes are removed. An empty result is sent as a
//! single `00` (§7.2.3.6). With no context takeover the compressor is dropped after the message
//! (its memory with it) and a fresh one starts the next.
//!
//! Receiving (§7.2.2): the payloads of the message's frames are inflated as they arrive, then
//! `00 00 ff ff` is inflated to flush the end. Output goes into a buffer that is never allowed
//! past the budget: it grows in steps, at most to `limit + 1` bytes, and the byte past the
//! limit proves the message too big. A bomb therefore costs at most the budget, never its
//! inflated size.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What §7.2.1 removes from the end of a compressed message and §7.2.2 puts back.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses `data` as one whole message with `compressor`'s current context. `None` if the
/// compressor failed (it is then unusable).
pub fn compress_message(compressor: &mut Compress, data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 16);
    let start = compressor.total_in();
    loop {
        let used = usize::try_from(compressor.total_in() - start).ok()?;
        compressor.compress_vec(&data[used..], &mut out, FlushCompress::Sync).ok()?;
        let used = usize::try_from(compressor.total_in() - start).ok()?;
        // Everything consumed and room left over: the flush is complete.
        if used == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    if out.is_empty() {
        out.push(0);
    }
    Some(out)
}

/// A fresh raw-DEFLATE compressor (no zlib header). `window_bits` must be 9 to 15.
pub fn compressor(level: u8, window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(u32::from(level)), false, window_bits)
}

/// One side's sending half.
#[derive(Debug)]
pub struct Deflater {
    level: u8,
    window_bits: u8,
    reset_after_message: bool,
    min_size: usize,
    state: Option<Compress>,
}

impl Deflater {
    /// A compressor for messages sent with an LZ77 window of `window_bits` (8 to 15), keeping
    /// context between messages unless `no_context_takeover`.
    pub fn new(level: u8, window_bits: u8, no_context_takeover: bool, min_size: usize) -> Self {
        Deflater { level, window_bits, reset_after_message: no_context_takeover, min_size, state: None }
    }

    /// The compressed payload of a whole message, or `None` to send it uncompressed (shorter
    /// than the configured minimum, or a window of 8 bits, which zlib can't compress for).
    pub fn compress(&mut self, data: &[u8]) -> Option<Bytes> {
        if data.len() < self.min_size || self.window_bits < 9 {
            return None;
        }
        let (level, bits) = (self.level, self.window_bits);
        let state = self.state.get_or_insert_with(|| compressor(level, bits));
        let out = compress_message(state, data);
        if self.reset_after_message || out.is_none() {
            self.state = None;
        }
        out.map(Bytes::from)
    }

    /// Whether compressor memory is held between messages.
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }
}

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It would inflate past the budget (1009).
    TooBig,
    /// It is not a valid DEFLATE stream (1007).
    Corrupt,
}

/// One side's receiving half.
#[derive(Debug)]
pub struct Inflater {
    reset_after_message: bool,
    state: Option<Decompress>,
}

impl Inflater {
    /// A decompressor for the peer's messages; it keeps the peer's context between messages
    /// unless the peer promised `no_context_takeover`.
    pub fn new(peer_no_context_takeover: bool) -> Self {
        Inflater { reset_after_message: peer_no_context_takeover, state: None }
    }

    /// Inflates the next piece of a compressed message onto `out`, which must not grow past
    /// `limit` bytes.
    pub fn inflate(&mut self, mut input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        // A 15-bit window inflates anything a smaller window produced.
        let state = self.state.get_or_insert_with(|| Decompress::new(false));
        loop {
            if out.len() == out.capacity() {
                // Room for at most one byte past the limit: enough to tell "too big".
                let cap = out.capacity().saturating_mul(2).max(out.len() + 4096).min(limit.saturating_add(1));
                if cap <= out.len() {
                    return Err(InflateError::TooBig);
                }
                out.reserve_exact(cap - out.len());
            }
            let (before_in, before_out) = (state.total_in(), state.total_out());
            let status = state.decompress_vec(input, out, FlushDecompress::Sync).map_err(|_| InflateError::Corrupt)?;
            let consumed = usize::try_from(state.total_in() - before_in).map_err(|_| InflateError::Corrupt)?;
            let produced = state.total_out() - before_out;
            input = &input[consumed..];
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL) ends the DEFLATE stream; what follows starts a new one.
                state.reset(false);
                if input.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let room_left = out.len() < out.capacity();
            if input.is_empty() && room_left {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && room_left {
                return Err(InflateError::Corrupt);
            }
        }
    }

    /// Ends a compressed message: inflates the removed tail (§7.2.2) and, without context
    /// takeover, releases the decompressor.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let result = self.inflate(&TAIL, out, limit);
        if self.reset_after_message || result.is_err() {
            self.state = None;
        }
        result
    }

    /// Whether decompressor memory is held between messages.
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate_all(inflater: &mut Inflater, payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        inflater.inflate(payload, &mut out, limit)?;
        inflater.finish(&mut out, limit)?;
        Ok(out)
    }

    #[test]
    fn rfc_7692_examples() {
        // §7.2.3.1: "Hello" compressed, one frame.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&mut Inflater::new(false), &hello, 100).unwrap(), b"Hello");
        // §7.2.3.1: the same split across two fragments.
        let mut inflater = Inflater::new(false);
        let mut out = Vec::new();
        inflater.inflate(&hello[..3], &mut out, 100).unwrap();
        inflater.inflate(&hello[3..], &mut out, 100).unwrap();
        inflater.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: with context takeover the second "Hello" refers back to the first.
        let mut inflater = Inflater::new(false);
        assert_eq!(inflate_all(&mut inflater, &hello, 100).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut inflater, &[0xf2, 0x00, 0x11, 0x00, 0x00], 100).unwrap(), b"Hello");
        // §7.2.3.3: DEFLATE block with no compression.
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(inflate_all(&mut Inflater::new(false), &stored, 100).unwrap(), b"Hello");
        // §7.2.3.4: BFINAL set.
        let fin = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_all(&mut Inflater::new(false), &fin, 100).unwrap(), b"Hello");
        // §7.2.3.5: two DEFLATE blocks in one message.
        let two = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&mut Inflater::new(false), &two, 100).unwrap(), b"Hello");
        // §7.2.3.6: an empty message is a single 00.
        assert_eq!(inflate_all(&mut Inflater::new(false), &[0x00], 100).unwrap(), b"");
        // The peer promised no context takeover: nothing is held between messages.
        let mut released = Inflater::new(true);
        assert_eq!(inflate_all(&mut released, &hello, 100).unwrap(), b"Hello");
        assert!(!released.holds_state());
        assert!(inflater.holds_state(), "context takeover keeps the window");
    }

    #[test]
    fn our_compression_matches_the_rfc_and_round_trips() {
        let mut deflater = Deflater::new(6, 15, false, 0);
        assert_eq!(&deflater.compress(b"Hello").unwrap()[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        // Context takeover: the second copy is a back-reference (§7.2.3.2).
        assert_eq!(&deflater.compress(b"Hello").unwrap()[..], [0xf2, 0x00, 0x11, 0x00, 0x00]);
        assert_eq!(&deflater.compress(b"").unwrap()[..], [0x00]);
        let mut fresh = Deflater::new(6, 15, true, 0);
        assert_eq!(&fresh.compress(b"Hello").unwrap()[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        assert_eq!(&fresh.compress(b"Hello").unwrap()[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        assert!(!fresh.holds_state(), "no context takeover releases the compressor");
        let text: Vec<u8> =
            (0..100_000u32).flat_map(|i| format!("{{\"seq\":{i},\"text\":\"hi\"}}").into_bytes()).collect();
        for bits in 9..=15 {
            let mut d = Deflater::new(6, bits, false, 0);
            let mut inflater = Inflater::new(false);
            for _ in 0..3 {
                let packed = d.compress(&text).unwrap();
                assert!(packed.len() < text.len() / 4, "{bits} bits: {}", packed.len());
                assert_eq!(inflate_all(&mut inflater, &packed, text.len()).unwrap(), text);
            }
        }
        assert_eq!(Deflater::new(6, 15, false, 32).compress(b"short"), None);
        assert_eq!(Deflater::new(6, 8, false, 0).compress(&text), None);
    }

    #[test]
    fn the_budget_holds_while_inflating() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = compress_message(&mut compressor(9, 15), &zeros).unwrap();
        assert!(bomb.len() < 20 * 1024, "{}", bomb.len());
        let mut out = Vec::new();
        let mut inflater = Inflater::new(false);
        assert_eq!(inflater.inflate(&bomb, &mut out, 1 << 20), Err(InflateError::TooBig));
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
        // Exactly at the limit is fine; one byte more is not.
        let exact = compress_message(&mut compressor(6, 15), &zeros[..1000]).unwrap();
        assert_eq!(inflate_all(&mut Inflater::new(false), &exact, 1000).unwrap().len(), 1000);
        assert_eq!(inflate_all(&mut Inflater::new(false), &exact, 999), Err(InflateError::TooBig));
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert_eq!(inflate_all(&mut Inflater::new(false), &[0xff, 0xff, 0xff], 100), Err(InflateError::Corrupt));
    }
}
