//! Hash tables keyed by values that already are hashes.

use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for keys that already are uniform 64-bit hashes (theta sketch entries, install and
/// session keys).
#[derive(Debug, Default)]
pub struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        // Theta keeps hashes below it, so their high bits are often zero, and the hash table
        // reads its tags from the high bits: spread them (Fibonacci hashing).
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Hash maps and sets keyed by such hashes.
pub type HashKeyed = BuildHasherDefault<KeyIsHash>;
