//! Write keys and admin tokens: generated from the OS's randomness, stored only as hashes, and
//! never printed by `Debug`.

use std::fmt;

use sha2::{Digest, Sha256};

/// What a secret may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// Send events to one project (public: it ships inside the app).
    WriteKey,
    /// Read one project's data.
    AdminToken,
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::WriteKey => "otw_",
            SecretKind::AdminToken => "ota_",
        }
    }
}

/// A freshly generated secret, shown to its owner once.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// 160 random bits as hex (safe to paste anywhere), behind a prefix that says what the
    /// secret is for.
    pub fn generate(kind: SecretKind) -> Secret {
        let mut bytes = [0u8; 20];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        Secret(format!("{}{}", kind.prefix(), hex(&bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The stored form of a secret. Secrets carry 160 random bits, so a plain SHA-256 is enough:
/// there is nothing to brute-force.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}
