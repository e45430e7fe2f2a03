//! Per-install event sequences, written beside each part when it is sealed (`.seq`): for each
//! install of the part, its sessions and its events in order — name, session and time, none of
//! the other columns. Funnels and paths walk them, install by install and part by part, instead
//! of sorting every event by install at query time.
//!
//! File layout, little-endian:
//!
//! ```text
//! "OTSEQ002" | u32 name count | names (u16 length + UTF-8) | u32 install count | i64 base time
//! | u64 × installs: install keys, ascending | u32 × (installs + 1): body offsets | body
//! | u64 xxh3 of everything before
//! ```
//!
//! Per install, the body holds: varint session count, the sessions' keys (u64 each), varint
//! event count, varint micro-seconds from the base time to the first event and from the first
//! event to the last, then per event its varint name code (0: no name, else 1 + index into the
//! names), then per event its varint session index (only when the install has several sessions
//! in the part), then per event after the first its varint micro-seconds since the one before
//! (last, so that paths never decode them). Events are in `(time, message id)` order, the order
//! paths read a session in.

mod format;
mod funnel;
mod join;
mod paths;
mod read;
mod stream;
mod summary;
#[cfg(test)]
mod tests;
mod walk;

pub use format::{COLUMNS, SeqFile, column_indices, encode, encode_file};
pub use funnel::{Funnel, FunnelState};
pub use join::merge;
pub use paths::{Paths, PathsState};
pub use read::{Run, Sequences};
pub use stream::{SeqStream, compact};
pub use summary::SummaryRun;
pub use walk::{Names, Walker, shared_codes, walk};

/// The install's key in sequence files: a stable 64-bit hash of its id.
pub fn install_key(install: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(install.as_bytes())
}
