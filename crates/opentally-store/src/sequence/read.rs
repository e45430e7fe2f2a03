//! A sequence file read in place: its installs' runs of events, decoded on demand.

use std::path::Path;

use crate::sequence::format::{MAGIC, SUMMARY_MAGIC, varint};
use crate::sequence::summary::{SummaryRun, session_key_at};

/// A part's sequences, as read from its file.
#[derive(Debug)]
pub struct Sequences {
    pub(super) bytes: Vec<u8>,
    /// Each install's transitions instead of its events (see [`merge`](crate::sequence::merge)).
    pub(super) summary: bool,
    pub(super) names: Vec<String>,
    pub(super) installs: usize,
    pub(super) base: i64,
    pub(super) keys_at: usize,
    pub(super) offsets_at: usize,
    pub(super) body_at: usize,
}

/// One install's events in one part.
#[derive(Debug, Default)]
pub struct Run {
    pub sessions: Vec<u64>,
    /// The times of the first and last events.
    pub first: i64,
    pub last: i64,
    /// Each event's name code, in order.
    pub codes: Vec<u32>,
    /// Each event's session index; empty when the run has one session.
    pub session_of: Vec<u32>,
    /// Each event's time; empty unless read with times.
    pub times: Vec<i64>,
}

impl Run {
    /// The session index of the `e`-th event.
    pub fn session(&self, e: usize) -> u32 {
        self.session_of.get(e).copied().unwrap_or(0)
    }

    /// Keeps the events in `[since, until)` (the run read with times); `false` when none is.
    pub(super) fn cut(&mut self, since: Option<i64>, until: Option<i64>) -> bool {
        let from = since.map_or(0, |s| self.times.partition_point(|t| *t < s));
        let to = until.map_or(self.times.len(), |u| self.times.partition_point(|t| *t < u));
        if from >= to {
            return false;
        }
        for v in [&mut self.codes, &mut self.session_of] {
            if !v.is_empty() {
                v.truncate(to);
                v.drain(..from);
            }
        }
        self.times.truncate(to);
        self.times.drain(..from);
        (self.first, self.last) = (self.times[0], self.times[self.times.len() - 1]);
        true
    }
}

/// Reads `n` varints below `limit` from `b` at `at` into `out`, each mapped through `map` when
/// given; `None` when one is malformed or out of range. One-byte values, the common case, take
/// a fast path.
#[inline]
pub(super) fn small_varints(
    b: &[u8],
    at: &mut usize,
    n: usize,
    limit: usize,
    map: Option<&[u32]>,
    out: &mut Vec<u32>,
) -> Option<()> {
    let value = |v: usize| -> Option<u32> {
        match map {
            Some(m) => m.get(v).copied(),
            None => (v < limit).then(|| u32::try_from(v).ok()).flatten(),
        }
    };
    if let Some(bytes) = b.get(*at..*at + n) {
        let top = bytes.iter().fold(0u8, |m, x| m.max(*x));
        if top < 0x80 && usize::from(top) < map.map_or(limit, <[u32]>::len) {
            // Checked above: every byte is a whole value, in range; `extend` then writes
            // without re-checking the vector's length per value.
            match map {
                Some(m) => out.extend(bytes.iter().map(|x| m[usize::from(*x)])),
                None => out.extend(bytes.iter().map(|x| u32::from(*x))),
            }
            *at += n;
            return Some(());
        }
    }
    out.reserve(n);
    for _ in 0..n {
        out.push(value(usize::try_from(varint(b, at)?).ok()?)?);
    }
    Some(())
}

impl Sequences {
    /// Reads and checks a `.seq` file.
    pub fn read(path: &Path) -> std::io::Result<Sequences> {
        Sequences::parse(std::fs::read(path)?).map_err(|what| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            )
        })
    }

    /// Checks the bytes of a `.seq` file and reads its header.
    pub fn parse(bytes: Vec<u8>) -> Result<Sequences, &'static str> {
        let short = "the file is cut short";
        let end = bytes.len().checked_sub(8).ok_or(short)?;
        let sum = u64::from_le_bytes(bytes[end..].try_into().expect("8 bytes"));
        let summary = match bytes.get(..8) {
            Some(m) if m == MAGIC.as_slice() => false,
            Some(m) if m == SUMMARY_MAGIC.as_slice() => true,
            _ => return Err("not a sequence file"),
        };
        if xxhash_rust::xxh3::xxh3_64(&bytes[..end]) != sum {
            return Err("checksum mismatch");
        }
        // The offset of the next `n` bytes, which must lie before the checksum.
        let mut at: usize = 8;
        let mut take = |n: usize| -> Result<usize, &'static str> {
            let from = at;
            at = at.checked_add(n).filter(|a| *a <= end).ok_or(short)?;
            Ok(from)
        };
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let count = u32_at(take(4)?);
        let mut names = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let i = take(2)?;
            let len = usize::from(u16::from_le_bytes([bytes[i], bytes[i + 1]]));
            let i = take(len)?;
            let name =
                std::str::from_utf8(&bytes[i..i + len]).map_err(|_| "a name is not UTF-8")?;
            names.push(name.to_owned());
        }
        let installs = u32_at(take(4)?) as usize;
        let i = take(8)?;
        let base = i64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let keys_at = take(installs * 8)?;
        let offsets_at = take((installs + 1) * 4)?;
        let body_at = take(0)?;
        let seq = Sequences {
            bytes,
            summary,
            names,
            installs,
            base,
            keys_at,
            offsets_at,
            body_at,
        };
        if body_at + seq.offset(installs) as usize != end {
            return Err("the body's length does not match its offsets");
        }
        Ok(seq)
    }

    /// The file's size in bytes: what keeping it in memory costs.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Event names; code `c > 0` is `names()[c - 1]`.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Installs in the part.
    pub fn len(&self) -> usize {
        self.installs
    }

    pub fn is_empty(&self) -> bool {
        self.installs == 0
    }

    /// The key of the `i`-th install (keys ascend).
    pub fn key(&self, i: usize) -> u64 {
        let at = self.keys_at + i * 8;
        u64::from_le_bytes(self.bytes[at..at + 8].try_into().expect("8 bytes"))
    }

    pub(super) fn offset(&self, i: usize) -> u32 {
        let at = self.offsets_at + i * 4;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"))
    }

    /// Whether an install with this key has events here.
    pub fn contains(&self, key: u64) -> bool {
        let i = self.seek(key);
        i < self.installs && self.key(i) == key
    }

    /// The first install whose key is at least `key`.
    pub fn seek(&self, key: u64) -> usize {
        let (mut lo, mut hi) = (0, self.installs);
        while lo < hi {
            let mid = usize::midpoint(lo, hi);
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The `i`-th install's body.
    pub(super) fn body(&self, i: usize) -> &[u8] {
        &self.bytes
            [self.body_at + self.offset(i) as usize..self.body_at + self.offset(i + 1) as usize]
    }

    /// Whether the file is a span's summary (see [`merge`](crate::sequence::merge)).
    pub fn is_summary(&self) -> bool {
        self.summary
    }

    /// The `i`-th install's run of a summary, not yet decoded. `None` when the body is
    /// malformed.
    pub fn summary_run(&self, i: usize) -> Option<SummaryRun<'_>> {
        let b = self.body(i);
        let mut at = 0;
        let sessions = usize::try_from(varint(b, &mut at)?).ok()?;
        let keys = b.get(at..at.checked_add(sessions.checked_mul(8)?)?)?;
        at += keys.len();
        let first = self.base.checked_add_unsigned(varint(b, &mut at)?)?;
        let last = first.checked_add_unsigned(varint(b, &mut at)?)?;
        Some(SummaryRun {
            keys,
            first,
            last,
            rest: &b[at..],
        })
    }

    /// Reads the `i`-th install's run into `run`, name codes mapped through `codes`; each
    /// event's time only `with_times` (else the run's first and last times only). `None` when
    /// the body is malformed, or for a summary, which keeps no events ([`Sequences::summary_run`]
    /// reads it).
    pub fn run(&self, i: usize, codes: &[u32], with_times: bool, run: &mut Run) -> Option<()> {
        if self.summary {
            return None;
        }
        decode_run(self.body(i), self.base, codes, with_times, run)
    }
}

/// Decodes one install's run from its body `b` (see the file layout), times from `base`.
#[inline]
pub(super) fn decode_run(
    b: &[u8],
    base: i64,
    codes: &[u32],
    with_times: bool,
    run: &mut Run,
) -> Option<()> {
    let mut at = 0;
    run.sessions.clear();
    run.codes.clear();
    run.session_of.clear();
    run.times.clear();
    let sessions = usize::try_from(varint(b, &mut at)?).ok()?;
    let keys = b.get(at..at.checked_add(sessions.checked_mul(8)?)?)?;
    run.sessions
        .extend(keys.chunks_exact(8).map(session_key_at));
    at += keys.len();
    let events = usize::try_from(varint(b, &mut at)?).ok()?;
    run.first = base.checked_add_unsigned(varint(b, &mut at)?)?;
    run.last = run.first.checked_add_unsigned(varint(b, &mut at)?)?;
    if events == 0 {
        return None;
    }
    small_varints(b, &mut at, events, codes.len(), Some(codes), &mut run.codes)?;
    if sessions > 1 {
        small_varints(b, &mut at, events, sessions, None, &mut run.session_of)?;
    }
    if with_times {
        run.times.reserve(events);
        let mut t = run.first;
        run.times.push(t);
        for _ in 1..events {
            t = t.checked_add_unsigned(varint(b, &mut at)?)?;
            run.times.push(t);
        }
        if t != run.last {
            return None;
        }
    }
    Some(())
}
