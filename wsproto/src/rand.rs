//! Unpredictable bytes for masking keys (§5.3) and handshake keys (§4.1), from the standard
//! library alone.
//!
//! `RandomState` seeds SipHash with 128 bits from the operating system's random source; SipHash
//! with a secret key is a pseudo-random function, so hashing a counter yields a stream a peer
//! cannot predict without the key. That is what §5.3 asks: the masking key must be "derived from
//! a strong source of entropy" so page scripts cannot choose the bytes on the wire. It is not a
//! general-purpose CSPRNG and is not exported.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

#[derive(Debug)]
pub(crate) struct Rng {
    keys: RandomState,
    counter: u64,
}

impl Rng {
    pub(crate) fn new() -> Self {
        Rng { keys: RandomState::new(), counter: 0 }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write_u64(self.counter);
        self.counter = self.counter.wrapping_add(1);
        h.finish()
    }

    pub(crate) fn mask_key(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }

    pub(crate) fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_ne_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_ne_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ() {
        let mut rng = Rng::new();
        let keys: std::collections::HashSet<[u8; 16]> = (0..1000).map(|_| rng.bytes16()).collect();
        assert_eq!(keys.len(), 1000);
        assert_ne!(Rng::new().bytes16(), Rng::new().bytes16());
    }
}
