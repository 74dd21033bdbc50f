//! RFC 6455 §5.3 — client-to-server masking.
//!
//! ```text
//! j                   = i MOD 4
//! transformed-octet-i = original-octet-i XOR masking-key-octet-j
//! ```
//!
//! Every frame a client sends is masked with a fresh 32-bit key so that a hostile page cannot make
//! a browser put chosen bytes on the wire (the cache-poisoning attack of §10.3). Servers never
//! mask. Masking is its own inverse: applying it twice restores the payload.
//!
//! [`apply_mask`] works a 64-bit word at a time in safe Rust (the compiler vectorises the loop);
//! [`apply_mask_bytewise`] is the literal RFC formula, kept as the test oracle.

/// Payloads from this length on are aligned before the word loop (see `BENCHMARKS.md`).
const ALIGN_FROM: usize = 4096;

/// XORs `buf` with `key`, where `buf[0]` is payload octet number `offset`.
///
/// The offset lets a payload that arrives in pieces be unmasked piece by piece.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // For long payloads, bytes up to the first 8-byte boundary one at a time, so the word loop
    // reads and writes aligned words (an unaligned start cost up to 20% at 64 KiB). Short ones
    // go straight to the word loop: there the extra step costs more than it saves.
    if buf.len() < ALIGN_FROM {
        return apply_mask_words(buf, key, offset);
    }
    let head = buf.as_ptr().align_offset(8).min(buf.len());
    let (prefix, rest) = buf.split_at_mut(head);
    apply_mask_bytewise(prefix, key, offset);
    apply_mask_words(rest, key, offset + head);
}

/// The word-at-a-time loop; `buf[0]` is payload octet `offset`.
fn apply_mask_words(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut k = key;
    k.rotate_left(offset % 4);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 4];
    }
}

/// The RFC's formula, one octet at a time. Slow; it is the oracle [`apply_mask`] is tested
/// against and the baseline the benchmarks compare with.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    /// `apply_mask` equals the RFC formula for each length, at every start address modulo 8
    /// (a sub-slice masked in place, so the address really moves) and every key offset.
    fn matches_oracle(lengths: impl IntoIterator<Item = usize>) {
        let key = [0x9a, 0x03, 0xf1, 0x5c];
        for len in lengths {
            let source: Vec<u8> = (0..len as u32 + 8).map(|i| (i * 31 + 7) as u8).collect();
            for start in 0..8 {
                for offset in 0..4 {
                    let mut fast = source.clone();
                    let mut slow = source.clone();
                    apply_mask(&mut fast[start..start + len], key, offset);
                    apply_mask_bytewise(&mut slow[start..start + len], key, offset);
                    assert_eq!(fast, slow, "len {len} start {start} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn word_at_a_time_matches_bytewise_oracle() {
        matches_oracle(0..=300);
    }

    #[test]
    fn aligned_path_matches_bytewise_oracle() {
        matches_oracle([ALIGN_FROM - 1, ALIGN_FROM, ALIGN_FROM + 1, ALIGN_FROM + 7, ALIGN_FROM * 2]);
    }

    #[test]
    fn in_pieces_equals_whole() {
        let key = [1, 2, 3, 4];
        let whole: Vec<u8> = (0..97u8).collect();
        let mut expected = whole.clone();
        apply_mask(&mut expected, key, 0);
        for split in 0..whole.len() {
            let mut pieces = whole.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(pieces, expected, "split at {split}");
        }
    }
}
