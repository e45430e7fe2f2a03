//! A span's summary: its installs' transitions between events, only ever in memory.

use crate::sequence::format::varint;
/// A session key as stored: 8 bytes, little-endian.
pub(super) fn session_key_at(k: &[u8]) -> u64 {
    u64::from_le_bytes(k.try_into().expect("8 bytes"))
}

/// A name code of a summary mapped through `codes`.
// Measured: as a closure it stayed a call per value; inlined, paths over spans walk about 6 %
// faster (walk alone, 124 → 117 ms on the 10M benchmark data).
#[allow(clippy::inline_always)]
#[inline(always)]
pub(super) fn summary_code(b: &[u8], codes: &[u32], at: &mut usize) -> Option<u32> {
    codes.get(usize::try_from(varint(b, at)?).ok()?).copied()
}

/// One install's run in a span's summary (see [`merge`](crate::sequence::merge)), read from its bytes as a walker needs
/// it: the sessions' keys, the times of the first and last events, and the rest of the body
/// (each session's first and last name codes, then the transitions), not yet decoded.
#[derive(Debug, Clone, Copy)]
pub struct SummaryRun<'a> {
    /// 8 bytes per session.
    pub(super) keys: &'a [u8],
    pub first: i64,
    pub last: i64,
    pub(super) rest: &'a [u8],
}

impl SummaryRun<'_> {
    /// The sessions' keys, in the run's order.
    pub fn sessions(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.chunks_exact(8).map(session_key_at)
    }

    /// Calls `session(to, key, first code, last code)` for each session, then `pair(to, name
    /// code, next name code, count)` for each transition, codes mapped through `codes`. `None`
    /// when the body is malformed.
    pub fn each<T>(
        &self,
        codes: &[u32],
        to: &mut T,
        session: impl Fn(&mut T, u64, u32, u32),
        pair: impl Fn(&mut T, u32, u32, u32),
    ) -> Option<()> {
        let (b, mut at) = (self.rest, 0);
        let code = |at: &mut usize| summary_code(b, codes, at);
        for s in self.sessions() {
            let first = code(&mut at)?;
            session(to, s, first, code(&mut at)?);
        }
        let pairs = varint(b, &mut at)?;
        for _ in 0..pairs {
            let (from, next) = (code(&mut at)?, code(&mut at)?);
            pair(to, from, next, u32::try_from(varint(b, &mut at)?).ok()?);
        }
        (at == b.len()).then_some(())
    }
}
