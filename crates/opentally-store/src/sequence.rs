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

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;

use crate::hashing::HashKeyed;
use crate::rollup::session_key;

const MAGIC: &[u8; 8] = b"OTSEQ002";
/// A span's transitions (see [`merge`]): only ever in memory.
const SUMMARY_MAGIC: &[u8; 8] = b"OTSUM001";

/// The install's key in sequence files: a stable 64-bit hash of its id.
pub fn install_key(install: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(install.as_bytes())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        #[allow(clippy::cast_possible_truncation)]
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(v as u8);
}

// Measured: with a plain `#[inline]` the walks called it per value, and paths over the parts
// took 1.4× as long.
#[allow(clippy::inline_always)]
#[inline(always)]
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let first = *b.get(*at)?;
    if first < 0x80 {
        *at += 1;
        return Some(u64::from(first));
    }
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// The columns of the `events` schema that [`encode`] reads.
pub const COLUMNS: [&str; 5] = ["install", "session", "event", "message_id", "ts"];

/// Where [`COLUMNS`] are in `schema`, to read or copy only them.
pub fn column_indices(
    schema: &arrow::datatypes::Schema,
) -> Result<Vec<usize>, arrow::error::ArrowError> {
    COLUMNS.iter().map(|c| schema.index_of(c)).collect()
}

/// The sequences of a batch of events (any order), as the bytes of a `.seq` file; `None` when
/// the batch is too large for the file's 32-bit offsets.
pub fn encode(batch: &RecordBatch) -> Option<Vec<u8>> {
    Some(encode_file(batch)?.into_bytes())
}

/// The sequences of a batch of events, as [`encode`] gives them, as a file to write.
pub fn encode_file(batch: &RecordBatch) -> Option<SeqFile> {
    let text = |n: &str| {
        batch
            .column_by_name(n)
            .expect("a schema column")
            .as_string::<i32>()
    };
    let (install, session, event, mid) = (
        text("install"),
        text("session"),
        text("event"),
        text("message_id"),
    );
    let ts = batch
        .column_by_name("ts")
        .expect("a ts column")
        .as_primitive::<TimestampMicrosecondType>()
        .values();
    let n = batch.num_rows();
    let keys: Vec<u64> = (0..n).map(|i| install_key(install.value(i))).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| {
        keys[a]
            .cmp(&keys[b])
            .then(ts[a].cmp(&ts[b]))
            .then_with(|| mid.value(a).cmp(mid.value(b)))
    });
    let mut out = Builder::new(ts.iter().copied().min().unwrap_or(0));
    let mut names: Vec<&str> = Vec::new();
    let mut codes: HashMap<&str, u32> = HashMap::new();
    let mut sessions = SessionList::default();
    let mut events: Vec<(u32, u32, i64)> = Vec::new();
    let mut i = 0;
    while i < n {
        let key = keys[order[i]];
        sessions.clear();
        events.clear();
        while i < n && keys[order[i]] == key {
            let r = order[i];
            let s = session_key(
                install.value(r),
                (!session.is_null(r)).then(|| session.value(r)),
            );
            let si = sessions.index(s);
            let code = if event.is_null(r) {
                0
            } else {
                *codes.entry(event.value(r)).or_insert_with(|| {
                    names.push(event.value(r));
                    u32::try_from(names.len()).expect("fewer than 4G names")
                })
            };
            events.push((code, si, ts[r]));
            i += 1;
        }
        out.install(key, &sessions.keys, &events)?;
    }
    out.into_file(&names)
}

/// One install's sessions in the order first met, each with its index.
#[derive(Default)]
struct SessionList {
    keys: Vec<u64>,
    index: HashMap<u64, u32, HashKeyed>,
}

impl SessionList {
    /// The index of session `s`, added if new.
    fn index(&mut self, s: u64) -> u32 {
        *self.index.entry(s).or_insert_with(|| {
            self.keys.push(s);
            u32::try_from(self.keys.len() - 1).expect("fewer than 4G sessions")
        })
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.index.clear();
    }
}

/// Writes the bytes of a `.seq` file, install by install in ascending key order.
struct Builder {
    magic: &'static [u8; 8],
    base: i64,
    keys: Vec<u64>,
    offsets: Vec<u32>,
    body: Vec<u8>,
}

impl Builder {
    /// `base`: a time at or before every event's.
    fn new(base: i64) -> Builder {
        Builder {
            magic: MAGIC,
            base,
            keys: Vec::new(),
            offsets: vec![0],
            body: Vec::new(),
        }
    }

    /// One install's sessions and its events in order, `(name code, session index, time)`
    /// (never empty); `None` when the body outgrows the file's 32-bit offsets.
    fn install(&mut self, key: u64, sessions: &[u64], events: &[(u32, u32, i64)]) -> Option<()> {
        let body = &mut self.body;
        put_varint(body, sessions.len() as u64);
        for s in sessions {
            body.extend_from_slice(&s.to_le_bytes());
        }
        put_varint(body, events.len() as u64);
        let (first, last) = (events[0].2, events[events.len() - 1].2);
        put_varint(body, first.abs_diff(self.base));
        put_varint(body, last.abs_diff(first));
        for &(code, _, _) in events {
            put_varint(body, u64::from(code));
        }
        if sessions.len() > 1 {
            for &(_, si, _) in events {
                put_varint(body, u64::from(si));
            }
        }
        for w in events.windows(2) {
            put_varint(body, w[1].2.abs_diff(w[0].2));
        }
        self.keys.push(key);
        self.offsets.push(u32::try_from(body.len()).ok()?);
        Some(())
    }

    /// One install's transitions, from its sessions and events as for [`Builder::install`]:
    /// the sessions' keys, the first and last times, each session's first and last name code,
    /// and each `(name code, next name code)` pair met within a session with its count (in
    /// code order).
    fn summary(
        &mut self,
        key: u64,
        sessions: &[u64],
        events: &[(u32, u32, i64)],
        pairs: &mut Vec<(u32, u32)>,
    ) -> Option<()> {
        let body = &mut self.body;
        put_varint(body, sessions.len() as u64);
        for s in sessions {
            body.extend_from_slice(&s.to_le_bytes());
        }
        let (first, last) = (events[0].2, events[events.len() - 1].2);
        put_varint(body, first.abs_diff(self.base));
        put_varint(body, last.abs_diff(first));
        // Per session: its last code so far (NO_EVENT before its first event), and its first.
        let mut ends: Vec<(u32, u32)> = vec![(NO_EVENT, NO_EVENT); sessions.len()];
        pairs.clear();
        for &(code, si, _) in events {
            let (first, last) = &mut ends[si as usize];
            if *last == NO_EVENT {
                *first = code;
            } else {
                pairs.push((*last, code));
            }
            *last = code;
        }
        for (first, last) in &ends {
            put_varint(body, u64::from(*first));
            put_varint(body, u64::from(*last));
        }
        pairs.sort_unstable();
        let distinct = pairs.chunk_by(|a, b| a == b).count();
        put_varint(body, distinct as u64);
        for same in pairs.chunk_by(|a, b| a == b) {
            put_varint(body, u64::from(same[0].0));
            put_varint(body, u64::from(same[0].1));
            put_varint(body, same.len() as u64);
        }
        self.keys.push(key);
        self.offsets.push(u32::try_from(body.len()).ok()?);
        Some(())
    }

    /// The file's bytes, for event names where code `c > 0` is `names[c - 1]`.
    fn finish<S: AsRef<str>>(self, names: &[S]) -> Option<Vec<u8>> {
        Some(self.into_file(names)?.into_bytes())
    }

    /// The file, for event names where code `c > 0` is `names[c - 1]`, not yet put together.
    fn into_file<S: AsRef<str>>(self, names: &[S]) -> Option<SeqFile> {
        let mut header = Vec::new();
        header.extend_from_slice(self.magic);
        header.extend_from_slice(&u32::try_from(names.len()).ok()?.to_le_bytes());
        for name in names {
            let name = name.as_ref();
            header.extend_from_slice(&u16::try_from(name.len()).ok()?.to_le_bytes());
            header.extend_from_slice(name.as_bytes());
        }
        header.extend_from_slice(&u32::try_from(self.keys.len()).ok()?.to_le_bytes());
        header.extend_from_slice(&self.base.to_le_bytes());
        Some(SeqFile {
            header,
            keys: self.keys,
            offsets: self.offsets,
            body: self.body,
        })
    }
}

/// A `.seq` file in its pieces: written out from them, never copied into one buffer first.
#[derive(Debug)]
pub struct SeqFile {
    /// Magic, names, install count and base time.
    header: Vec<u8>,
    keys: Vec<u64>,
    offsets: Vec<u32>,
    body: Vec<u8>,
}

impl SeqFile {
    /// Feeds the file's bytes before its checksum to `out`, in order.
    fn pieces(&self, out: &mut impl FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        out(&self.header)?;
        // The keys and offsets a few thousand at a time, as little-endian bytes.
        let mut buf = Vec::with_capacity(32 * 1024);
        for keys in self.keys.chunks(4096) {
            buf.clear();
            buf.extend(keys.iter().flat_map(|k| k.to_le_bytes()));
            out(&buf)?;
        }
        for offsets in self.offsets.chunks(8192) {
            buf.clear();
            buf.extend(offsets.iter().flat_map(|o| o.to_le_bytes()));
            out(&buf)?;
        }
        out(&self.body)
    }

    /// The file's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        let len = self.header.len() + self.keys.len() * 8 + self.offsets.len() * 4;
        let mut bytes = Vec::with_capacity(len + self.body.len() + 8);
        self.pieces(&mut |b| {
            bytes.extend_from_slice(b);
            Ok(())
        })
        .expect("writing to memory");
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        bytes
    }

    /// Writes the file at `path` and syncs it; returns its size.
    pub fn write(&self, path: &Path) -> std::io::Result<u64> {
        let mut f = std::io::BufWriter::new(File::create(path)?);
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        let mut len = 0;
        self.pieces(&mut |b| {
            hash.update(b);
            len += b.len() as u64;
            f.write_all(b)
        })?;
        f.write_all(&hash.digest().to_le_bytes())?;
        f.into_inner()
            .map_err(std::io::IntoInnerError::into_error)?
            .sync_all()?;
        Ok(len + 8)
    }
}

/// The sequences of several parts as one file, each install's runs joined into one: what a
/// walk reads when those parts are all it needs of their days, with one run per install instead
/// of one per install and part. `parts` in time order, their codes mapped to `names` (see
/// [`shared_codes`]). With `summary`, each install keeps only what paths read, not its events:
/// its sessions' keys, each session's first and last event, and the count of each (event, next
/// event) pair within a session. `None` when an install's runs are not in time
/// order across the parts (see [`walk`]), a file is malformed, or the result outgrows the
/// format.
pub fn merge(parts: &[(&Sequences, Vec<u32>)], names: &Names, summary: bool) -> Option<Vec<u8>> {
    let mut parts: Vec<(&Sequences, Vec<u32>)> =
        parts.iter().map(|(p, c)| (*p, c.clone())).collect();
    join(&mut parts, summary, false)?.finish(&names.names)
}

/// The sequences of several parts of one day, read from their files as they go, as the `.seq`
/// file of the part that compaction merges them into: as [`merge`] without `summary`, but an
/// install whose runs overlap in time has its events put in time order and its sessions in the
/// order first met then. `Ok(None)` when such an install has two events at the same time (only
/// message ids, which the files do not keep, could order them), a file is malformed, or the
/// result outgrows the format; an error when a file cannot be read.
pub fn compact(mut parts: Vec<SeqStream>) -> std::io::Result<Option<SeqFile>> {
    let mut names = Names::default();
    let mut parts: Vec<(&mut SeqStream, Vec<u32>)> = parts
        .iter_mut()
        .map(|p| {
            let codes = std::iter::once(0)
                .chain(p.names.iter().map(|n| names.code(n)))
                .collect();
            (p, codes)
        })
        .collect();
    let joined = join(&mut parts, false, true);
    for (p, _) in &mut parts {
        // A file cut short since it was opened is as malformed as one cut short before.
        if let Some(e) = p.error.take() {
            if !matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) {
                return Err(e);
            }
        }
    }
    Ok(joined.and_then(|b| b.into_file(&names.names)))
}

/// A part's installs and their runs as [`join`] reads them: each install's key, then its run, in
/// key order, each once.
trait Runs {
    /// A time at or before every event's.
    fn base(&self) -> i64;
    fn installs(&self) -> usize;
    /// The key of the `i`-th install.
    fn key_of(&mut self, i: usize) -> Option<u64>;
    /// The `i`-th install's run, with times.
    fn run_of(&mut self, i: usize, codes: &[u32], run: &mut Run) -> Option<()>;
}

impl Runs for &Sequences {
    fn base(&self) -> i64 {
        self.base
    }

    fn installs(&self) -> usize {
        self.installs
    }

    fn key_of(&mut self, i: usize) -> Option<u64> {
        Some(self.key(i))
    }

    fn run_of(&mut self, i: usize, codes: &[u32], run: &mut Run) -> Option<()> {
        self.run(i, codes, true, run)
    }
}

/// The joined file, as [`merge`] and [`compact`] describe it, not yet given its names (the
/// parts' codes are mapped to them).
fn join<R: Runs>(parts: &mut [(R, Vec<u32>)], summary: bool, reorder: bool) -> Option<Builder> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let base = parts.iter().map(|(p, _)| p.base()).min().unwrap_or(0);
    let mut out = Builder::new(base);
    if summary {
        out.magic = SUMMARY_MAGIC;
    }
    let mut pairs = Vec::new();
    let mut put = |out: &mut Builder, key: u64, sessions: &[u64], events: &[(u32, u32, i64)]| {
        if summary {
            out.summary(key, sessions, events, &mut pairs)
        } else {
            out.install(key, sessions, events)
        }
    };
    // The next install of each part, smallest key first, then earliest part.
    let mut next: BinaryHeap<Reverse<(u64, usize, usize)>> = BinaryHeap::new();
    for (n, (p, _)) in parts.iter_mut().enumerate() {
        if p.installs() > 0 {
            next.push(Reverse((p.key_of(0)?, n, 0)));
        }
    }
    let mut run = Run::default();
    let mut sessions = SessionList::default();
    let mut events: Vec<(u32, u32, i64)> = Vec::new();
    let mut remap: Vec<u32> = Vec::new();
    let mut current: Option<u64> = None;
    // Whether the current install's runs overlap in time (only with `reorder`).
    let mut overlap = false;
    let mut spare = SessionList::default();
    while let Some(Reverse((key, n, i))) = next.pop() {
        if current != Some(key) {
            if let Some(done) = current {
                if overlap {
                    in_time_order(&mut events, &mut sessions, &mut spare)?;
                }
                put(&mut out, done, &sessions.keys, &events)?;
            }
            current = Some(key);
            overlap = false;
            sessions.clear();
            events.clear();
        }
        let (p, codes) = &mut parts[n];
        if i + 1 < p.installs() {
            next.push(Reverse((p.key_of(i + 1)?, n, i + 1)));
        }
        p.run_of(i, codes, &mut run)?;
        if events.last().is_some_and(|e| e.2 >= run.first) {
            if !reorder {
                return None;
            }
            overlap = true;
        }
        remap.clear();
        remap.extend(run.sessions.iter().map(|s| sessions.index(*s)));
        events.extend(
            (0..run.codes.len())
                .map(|e| (run.codes[e], remap[run.session(e) as usize], run.times[e])),
        );
    }
    if let Some(done) = current {
        if overlap {
            in_time_order(&mut events, &mut sessions, &mut spare)?;
        }
        put(&mut out, done, &sessions.keys, &events)?;
    }
    Some(out)
}

/// Sorts one install's events `(name code, session index, time)` by time and renumbers
/// `sessions` in the order first met after that (`spare` is the list it is rebuilt in). `None`
/// when two events have the same time.
fn in_time_order(
    events: &mut [(u32, u32, i64)],
    sessions: &mut SessionList,
    spare: &mut SessionList,
) -> Option<()> {
    events.sort_by_key(|e| e.2);
    if events.windows(2).any(|w| w[0].2 == w[1].2) {
        return None;
    }
    spare.clear();
    for e in events {
        e.1 = spare.index(sessions.keys[e.1 as usize]);
    }
    std::mem::swap(sessions, spare);
    Some(())
}

/// A part's sequences, as read from its file.
#[derive(Debug)]
pub struct Sequences {
    bytes: Vec<u8>,
    /// Each install's transitions instead of its events (see [`merge`]).
    summary: bool,
    names: Vec<String>,
    installs: usize,
    base: i64,
    keys_at: usize,
    offsets_at: usize,
    body_at: usize,
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
    fn cut(&mut self, since: Option<i64>, until: Option<i64>) -> bool {
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
fn small_varints(
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

    fn offset(&self, i: usize) -> u32 {
        let at = self.offsets_at + i * 4;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"))
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
    fn body(&self, i: usize) -> &[u8] {
        &self.bytes
            [self.body_at + self.offset(i) as usize..self.body_at + self.offset(i + 1) as usize]
    }

    /// Whether the file is a span's summary (see [`merge`]).
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
fn decode_run(b: &[u8], base: i64, codes: &[u32], with_times: bool, run: &mut Run) -> Option<()> {
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

/// A part's `.seq` file read as [`compact`] joins it: checked whole first, then its keys, offsets
/// and body each read in order through a small buffer, so a merge holds a few kilobytes of each
/// part's sequences rather than the files.
#[derive(Debug)]
pub struct SeqStream {
    names: Vec<String>,
    base: i64,
    installs: usize,
    keys: std::io::BufReader<File>,
    offsets: std::io::BufReader<File>,
    body: std::io::BufReader<File>,
    /// The body offset of the next install's run.
    at: u32,
    /// The keys and runs read so far.
    keys_read: usize,
    runs_read: usize,
    scratch: Vec<u8>,
    /// The first error met while reading keys or runs ([`Runs`] gives `None` then).
    error: Option<std::io::Error>,
}

impl SeqStream {
    /// Opens a part's `.seq` file: checks its checksum and reads its header. An `InvalidData`
    /// error when it is not a whole part's file.
    pub fn open(path: &Path) -> std::io::Result<SeqStream> {
        use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
        let bad = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            )
        };
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let end = len
            .checked_sub(8)
            .ok_or_else(|| bad("the file is cut short"))?;
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        let mut whole = BufReader::with_capacity(64 * 1024, (&mut file).take(end));
        loop {
            let b = whole.fill_buf()?;
            if b.is_empty() {
                break;
            }
            hash.update(b);
            let n = b.len();
            whole.consume(n);
        }
        drop(whole);
        let mut sum = [0; 8];
        file.read_exact(&mut sum)?;
        if hash.digest() != u64::from_le_bytes(sum) {
            return Err(bad("checksum mismatch"));
        }
        let open_at = |at: u64| -> std::io::Result<BufReader<File>> {
            let mut f = File::open(path)?;
            f.seek(SeekFrom::Start(at))?;
            Ok(BufReader::with_capacity(8 * 1024, f))
        };
        let mut header = open_at(0)?.take(end);
        let mut read = |n: usize| -> std::io::Result<Vec<u8>> {
            let mut b = vec![0; n];
            header.read_exact(&mut b).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    bad("the file is cut short")
                } else {
                    e
                }
            })?;
            Ok(b)
        };
        if read(8)? != MAGIC.as_slice() {
            return Err(bad("not a part's sequence file"));
        }
        let u32_of = |b: Vec<u8>| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let count = u32_of(read(4)?);
        let mut names = Vec::new();
        let mut at: u64 = 12;
        for _ in 0..count {
            let n = usize::from(u16::from_le_bytes(read(2)?.try_into().expect("2 bytes")));
            let name = String::from_utf8(read(n)?).map_err(|_| bad("a name is not UTF-8"))?;
            names.push(name);
            at += 2 + n as u64;
        }
        let installs = u32_of(read(4)?) as usize;
        let base = i64::from_le_bytes(read(8)?.try_into().expect("8 bytes"));
        let keys_at = at + 12;
        let offsets_at = keys_at + 8 * installs as u64;
        let body_at = offsets_at + 4 * (installs as u64 + 1);
        if body_at > end {
            return Err(bad("the file is cut short"));
        }
        let mut offsets = open_at(offsets_at)?;
        let mut first = [0; 4];
        offsets.read_exact(&mut first)?;
        let mut last = open_at(body_at - 4)?;
        let mut body_len = [0; 4];
        last.read_exact(&mut body_len)?;
        if u32::from_le_bytes(first) != 0
            || body_at + u64::from(u32::from_le_bytes(body_len)) != end
        {
            return Err(bad("the body's length does not match its offsets"));
        }
        Ok(SeqStream {
            names,
            base,
            installs,
            keys: open_at(keys_at)?,
            offsets,
            body: open_at(body_at)?,
            at: 0,
            keys_read: 0,
            runs_read: 0,
            scratch: Vec::new(),
            error: None,
        })
    }

    /// Event names; code `c > 0` is `names()[c - 1]`.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Fills `buf` from `from`; `None` on an error, noted in `error` unless one came first.
fn read_noting<B: AsMut<[u8]>>(
    from: &mut std::io::BufReader<File>,
    mut buf: B,
    error: &mut Option<std::io::Error>,
) -> Option<B> {
    use std::io::Read as _;
    match from.read_exact(buf.as_mut()) {
        Ok(()) => Some(buf),
        Err(e) => {
            error.get_or_insert(e);
            None
        }
    }
}

impl Runs for &mut SeqStream {
    fn base(&self) -> i64 {
        self.base
    }

    fn installs(&self) -> usize {
        self.installs
    }

    fn key_of(&mut self, i: usize) -> Option<u64> {
        if i != self.keys_read {
            return None;
        }
        let k = read_noting(&mut self.keys, [0; 8], &mut self.error)?;
        self.keys_read += 1;
        Some(u64::from_le_bytes(k))
    }

    fn run_of(&mut self, i: usize, codes: &[u32], run: &mut Run) -> Option<()> {
        if i != self.runs_read {
            return None;
        }
        let next = u32::from_le_bytes(read_noting(&mut self.offsets, [0; 4], &mut self.error)?);
        let len = next.checked_sub(self.at)? as usize;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(len, 0);
        self.scratch = read_noting(&mut self.body, scratch, &mut self.error)?;
        self.at = next;
        self.runs_read += 1;
        decode_run(&self.scratch, self.base, codes, true, run)
    }
}

/// A session key as stored: 8 bytes, little-endian.
fn session_key_at(k: &[u8]) -> u64 {
    u64::from_le_bytes(k.try_into().expect("8 bytes"))
}

/// A name code of a summary mapped through `codes`.
// Measured: as a closure it stayed a call per value; inlined, paths over spans walk about 6 %
// faster (walk alone, 124 → 117 ms on the 10M benchmark data).
#[allow(clippy::inline_always)]
#[inline(always)]
fn summary_code(b: &[u8], codes: &[u32], at: &mut usize) -> Option<u32> {
    codes.get(usize::try_from(varint(b, at)?).ok()?).copied()
}

/// One install's run in a span's summary (see [`merge`]), read from its bytes as a walker needs
/// it: the sessions' keys, the times of the first and last events, and the rest of the body
/// (each session's first and last name codes, then the transitions), not yet decoded.
#[derive(Debug, Clone, Copy)]
pub struct SummaryRun<'a> {
    /// 8 bytes per session.
    keys: &'a [u8],
    pub first: i64,
    pub last: i64,
    rest: &'a [u8],
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

/// Event names across the parts of a walk: code 0 is "no name", which is also how paths say
/// that a session ended.
#[derive(Debug, Default)]
pub struct Names {
    pub names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Names {
    fn code(&mut self, name: &str) -> u32 {
        if let Some(c) = self.index.get(name) {
            return *c;
        }
        self.names.push(name.to_owned());
        let c = u32::try_from(self.names.len()).expect("fewer than 4G names");
        self.index.insert(name.to_owned(), c);
        c
    }

    /// The code of `name`, if any part holds it.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The name of code `c` (`None` for 0).
    pub fn name(&self, c: u32) -> Option<&str> {
        c.checked_sub(1).map(|i| self.names[i as usize].as_str())
    }
}

/// What a walk does with each install's runs, met in time order across the parts.
pub trait Walker: Send {
    type State: Default;
    /// Whether `run` reads each event's time (else only the run's first and last).
    const TIMES: bool;
    /// Whether nothing at or after `from` can change the install's part of the answer (its
    /// later runs are then skipped unread).
    fn settled(&self, _state: &Self::State, _from: i64) -> bool {
        false
    }
    /// One run of the install, its events already cut to the time range (never empty).
    fn run(&mut self, key: u64, state: &mut Self::State, run: &Run);
    /// One run of the install from a span's summary, which keeps only what paths read. `None`
    /// when it is malformed, or (the default) when the walker cannot read summaries: the walk
    /// then gives up and the caller scans the events.
    fn summary(
        &mut self,
        _key: u64,
        _state: &mut Self::State,
        _summary: &SummaryRun,
        _codes: &[u32],
    ) -> Option<()> {
        None
    }
    /// The install has no more runs.
    fn finish(&mut self, key: u64, state: Self::State);
    /// A slice of the install key space is done (all of its installs finished).
    fn end_slice(&mut self) {}
    fn merge(&mut self, other: Self);
}

/// Installs a slice of the key space should hold, for its table to stay in the CPU cache.
const SLICE: usize = 16_384;

/// Walks every install's runs through the parts in order (`parts` must be in time order: by day,
/// then as loaded), keeping events in `[since, until)`. `None` when the parts do not give an
/// install's events in time order (one of a day's later parts holds events before an earlier
/// part's, or at the same time, whose order only the message ids settle), or a file is
/// malformed: the caller then scans the events.
pub fn walk<W: Walker>(
    parts: &[(&Sequences, Vec<u32>)],
    since: Option<i64>,
    until: Option<i64>,
    make: impl Fn() -> W + Sync,
) -> Option<W> {
    let total: usize = parts.iter().map(|(p, _)| p.len()).sum();
    let slices = (total / SLICE).max(1).next_power_of_two().min(1 << 16);
    let bits = slices.trailing_zeros();
    let bound = |s: usize| -> u128 { (s as u128) << (64 - bits) };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(slices);
    let failed = AtomicBool::new(false);
    let walk_slices = |first: usize, last: usize| -> Option<W> {
        let mut w = make();
        let mut states: HashMap<u64, (i64, W::State), HashKeyed> = HashMap::default();
        let mut run = Run::default();
        let lo = u64::try_from(bound(first)).unwrap_or(u64::MAX);
        let mut cursors: Vec<usize> = parts.iter().map(|(p, _)| p.seek(lo)).collect();
        for s in first..last {
            let hi = bound(s + 1);
            for ((p, codes), cursor) in parts.iter().zip(&mut cursors) {
                while *cursor < p.len() && u128::from(p.key(*cursor)) < hi {
                    let key = p.key(*cursor);
                    let i = *cursor;
                    *cursor += 1;
                    let (seen, state) = states
                        .entry(key)
                        .or_insert_with(|| (i64::MIN, W::State::default()));
                    // A part that starts after the install's last event cannot be out of order.
                    if p.base > *seen && w.settled(state, p.base) {
                        continue;
                    }
                    if p.is_summary() {
                        // A summary has no per-event times to cut a run by: the caller scans.
                        let s = p.summary_run(i)?;
                        if since.is_some_and(|x| s.first < x) || until.is_some_and(|u| s.last >= u)
                        {
                            return None;
                        }
                        if s.first <= *seen {
                            failed.store(true, Ordering::Relaxed);
                            return None;
                        }
                        *seen = s.last;
                        w.summary(key, state, &s, codes)?;
                        continue;
                    }
                    p.run(i, codes, W::TIMES, &mut run)?;
                    if since.is_some_and(|s| run.first < s) || until.is_some_and(|u| run.last >= u)
                    {
                        // Only a run that crosses a bound reads its times to be cut.
                        if !W::TIMES {
                            p.run(i, codes, true, &mut run)?;
                        }
                        if !run.cut(since, until) {
                            continue;
                        }
                    }
                    let (first_ts, last_ts) = (run.first, run.last);
                    if first_ts <= *seen {
                        failed.store(true, Ordering::Relaxed);
                        return None;
                    }
                    *seen = last_ts;
                    w.run(key, state, &run);
                }
            }
            if failed.load(Ordering::Relaxed) {
                return None;
            }
            for (key, (_, state)) in states.drain() {
                w.finish(key, state);
            }
            w.end_slice();
        }
        Some(w)
    };
    let walk_slices = &walk_slices;
    let results: Vec<Option<W>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (first, last) = (slices * t / threads, slices * (t + 1) / threads);
                scope.spawn(move || walk_slices(first, last))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(None))
            .collect()
    });
    let mut out: Option<W> = None;
    for r in results {
        let r = r?;
        match &mut out {
            None => out = Some(r),
            Some(o) => o.merge(r),
        }
    }
    out
}

/// Maps each part's name codes to codes shared by all parts.
pub fn shared_codes(parts: &[&Sequences]) -> (Names, Vec<Vec<u32>>) {
    let mut names = Names::default();
    let codes = parts
        .iter()
        .map(|p| {
            std::iter::once(0)
                .chain(p.names().iter().map(|n| names.code(n)))
                .collect()
        })
        .collect();
    (names, codes)
}

/// A funnel: installs reaching each step, the steps done in order, each after the one before,
/// all within `window` micro-seconds of the install's first first step.
#[derive(Debug)]
pub struct Funnel {
    steps: Vec<Option<u32>>,
    window: i64,
    pub reached: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct FunnelState {
    step: usize,
    start: i64,
    last: i64,
}

impl Funnel {
    pub fn new(steps: Vec<Option<u32>>, window: i64) -> Funnel {
        Funnel {
            reached: vec![0; steps.len()],
            steps,
            window,
        }
    }
}

impl Walker for Funnel {
    type State = FunnelState;
    const TIMES: bool = true;

    fn settled(&self, st: &FunnelState, from: i64) -> bool {
        st.step == self.steps.len() || (st.step > 0 && from > st.start.saturating_add(self.window))
    }

    fn run(&mut self, _key: u64, st: &mut FunnelState, run: &Run) {
        for (&code, &ts) in run.codes.iter().zip(&run.times) {
            let Some(want) = self.steps.get(st.step) else {
                return;
            };
            if *want != Some(code) {
                continue;
            }
            if st.step == 0 {
                st.start = ts;
                st.last = ts;
                st.step = 1;
            } else if ts > st.last && ts <= st.start.saturating_add(self.window) {
                st.last = ts;
                st.step += 1;
            }
        }
    }

    fn finish(&mut self, _key: u64, st: FunnelState) {
        for r in &mut self.reached[..st.step] {
            *r += 1;
        }
    }

    fn merge(&mut self, other: Funnel) {
        for (a, b) in self.reached.iter_mut().zip(other.reached) {
            *a += b;
        }
    }
}

/// Paths: what follows each `target` event in its session (code 0: the session's end, or an
/// event without a name), how often and for how many installs.
#[derive(Debug)]
pub struct Paths {
    target: u32,
    /// What each code counts as when it follows the target: itself, except an event named like
    /// the end, `(end)`, counted as the end (0).
    next_of: Vec<u32>,
    pub times: Vec<u64>,
    pub installs: Vec<u64>,
    /// `(install, next)` pairs of the slice for next codes of 64 and above, counted once each
    /// at its end.
    pairs: Vec<(u64, u32)>,
    /// Sessions left open on the target, across the slice's installs: each install's first
    /// [`LISTED`] as a list, `(session key, 1 + index of the one left open before it)` (0 ends
    /// the list), which costs less than a table for the few most installs have; the rest in
    /// `many`, so that an install with thousands of sessions is not read a list at a time.
    open: Vec<(u64, u32)>,
    many: HashSet<u64, HashKeyed>,
    /// Per session of the run: its last event so far.
    last: Vec<u32>,
}

impl Paths {
    pub fn new(target: u32, end_alias: Option<u32>, codes: usize) -> Paths {
        let next_of = (0..codes)
            .map(|c| {
                let c = u32::try_from(c).expect("fewer than 4G names");
                if Some(c) == end_alias { 0 } else { c }
            })
            .collect();
        Paths {
            target,
            next_of,
            times: vec![0; codes],
            installs: vec![0; codes],
            pairs: Vec::new(),
            open: Vec::new(),
            many: HashSet::default(),
            last: Vec::new(),
        }
    }
}

/// Per install: sessions left open on the target, and the next events seen (codes below 64 as
/// bits; higher codes go to the slice's pairs).
#[derive(Debug, Default)]
pub struct PathsState {
    /// Sessions left open; of them, those in the slice's list, and the last one listed (1 + its
    /// index in the list).
    open: u32,
    listed: u32,
    open_last: u32,
    /// A bit per group of session keys (the top six bits) that may be open: most sessions of a
    /// later run are not, and need no lookup.
    maybe_open: u64,
    next: u64,
}

impl Paths {
    /// Counts `code` as what followed the target when `after` is 1 (not when 0): without a
    /// branch on it, which the data cannot predict.
    #[inline]
    fn count(&mut self, key: u64, st: &mut PathsState, code: u32, after: u64) {
        let next = self.next_of[code as usize];
        self.times[next as usize] += after;
        if next < 64 {
            st.next |= after << next;
        } else if after == 1 {
            self.pairs.push((key, next));
        }
    }

    #[inline]
    fn saw(&mut self, key: u64, st: &mut PathsState, code: u32) {
        if code < 64 {
            st.next |= 1 << code;
        } else {
            self.pairs.push((key, code));
        }
    }

    /// Whether session `s` was left open on the target by an earlier run of the install (it is
    /// no longer open after this).
    #[inline]
    fn reopen(&mut self, st: &mut PathsState, s: u64) -> bool {
        if st.open == 0 || st.maybe_open & (1 << (s >> 58)) == 0 {
            return false;
        }
        // Unlinked from the install's list; its slot stays unused until the slice ends.
        let (mut at, mut before) = (st.open_last, 0);
        while at != 0 {
            let (key, next) = self.open[at as usize - 1];
            if key == s {
                if before == 0 {
                    st.open_last = next;
                } else {
                    self.open[before as usize - 1].1 = next;
                }
                st.open -= 1;
                st.listed -= 1;
                return true;
            }
            (before, at) = (at, next);
        }
        if st.open > st.listed && self.many.remove(&s) {
            st.open -= 1;
            return true;
        }
        false
    }

    /// Session `s` of the install was left open on the target.
    #[inline]
    fn leave_open(&mut self, st: &mut PathsState, s: u64) {
        if st.listed < LISTED {
            self.open.push((s, st.open_last));
            st.open_last = u32::try_from(self.open.len()).expect("fewer than 4G open sessions");
            st.listed += 1;
        } else {
            self.many.insert(s);
        }
        st.open += 1;
        st.maybe_open |= 1 << (s >> 58);
    }

    /// A session of a summary's run: the first event follows the target if the session was
    /// left open on it, and the session is left open if its last event is the target.
    #[inline]
    fn summary_session(&mut self, key: u64, st: &mut PathsState, s: u64, first: u32, last: u32) {
        if self.reopen(st, s) {
            self.count(key, st, first, 1);
        }
        if last == self.target {
            self.leave_open(st, s);
        }
    }

    /// A transition of a summary's run, `n` times.
    #[inline]
    fn summary_pair(&mut self, key: u64, st: &mut PathsState, from: u32, to: u32, n: u32) {
        if from == self.target {
            let next = self.next_of[to as usize];
            self.times[next as usize] += u64::from(n) - 1;
            self.count(key, st, to, 1);
        }
    }
}

/// Open sessions an install keeps in the slice's list before the rest go to its table.
const LISTED: u32 = 16;

/// No event seen yet in a session (codes are below it).
const NO_EVENT: u32 = u32::MAX;

impl Walker for Paths {
    type State = PathsState;
    const TIMES: bool = false;

    fn run(&mut self, key: u64, st: &mut PathsState, run: &Run) {
        let target = self.target;
        // The common run of one session, without the per-session table.
        if let [s] = run.sessions[..] {
            let mut last = if self.reopen(st, s) { target } else { NO_EVENT };
            for &code in &run.codes {
                self.count(key, st, code, u64::from(last == target));
                last = code;
            }
            if last == target {
                self.leave_open(st, s);
            }
            return;
        }
        let mut last = std::mem::take(&mut self.last);
        last.clear();
        for &s in &run.sessions {
            let code = if self.reopen(st, s) { target } else { NO_EVENT };
            last.push(code);
        }
        for (&code, &si) in run.codes.iter().zip(&run.session_of) {
            let slot = &mut last[si as usize];
            let after = u64::from(*slot == target);
            *slot = code;
            self.count(key, st, code, after);
        }
        for (s, l) in run.sessions.iter().zip(&last) {
            if *l == target {
                self.leave_open(st, *s);
            }
        }
        self.last = last;
    }

    fn summary(
        &mut self,
        key: u64,
        st: &mut PathsState,
        summary: &SummaryRun,
        codes: &[u32],
    ) -> Option<()> {
        // Straight from the bytes: no vectors filled to be read once.
        summary.each(
            codes,
            &mut (self, st),
            |(p, st), s, first, last| p.summary_session(key, st, s, first, last),
            |(p, st), from, to, n| p.summary_pair(key, st, from, to, n),
        )
    }

    fn finish(&mut self, key: u64, mut st: PathsState) {
        if st.open > 0 {
            self.times[0] += u64::from(st.open);
            self.saw(key, &mut st, 0);
        }
        let mut bits = st.next;
        while bits != 0 {
            self.installs[bits.trailing_zeros() as usize] += 1;
            bits &= bits - 1;
        }
    }

    fn end_slice(&mut self) {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        for (_, code) in self.pairs.drain(..) {
            self.installs[code as usize] += 1;
        }
        self.open.clear();
        self.many.clear();
    }

    fn merge(&mut self, other: Paths) {
        for (a, b) in self.times.iter_mut().zip(other.times) {
            *a += b;
        }
        for (a, b) in self.installs.iter_mut().zip(other.installs) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use opentally_log::StoredEvent;
    use opentally_protocol::{Message, MessageType, Timestamp};

    fn batch(rows: &[(&str, Option<&str>, Option<&str>, &str)]) -> RecordBatch {
        let events: Vec<StoredEvent> = rows
            .iter()
            .enumerate()
            .map(|(i, (install, session, name, time))| {
                let mut m = Message::new(MessageType::Track);
                m.event = name.map(Into::into);
                if let Some(s) = session {
                    m.context.insert("session".into(), (*s).into());
                }
                StoredEvent {
                    message_id: format!("m{i}"),
                    install: (*install).into(),
                    timestamp: Timestamp::parse(time).unwrap(),
                    message: m,
                }
            })
            .collect();
        let mut b = schema::BatchBuilder::new();
        let received = Timestamp::parse("2026-11-20T00:00:00Z").unwrap();
        for e in &events {
            b.push("p", received, e);
        }
        b.finish()
    }

    /// A run's events as `(name code, session index, time)`.
    fn triples(run: &Run) -> Vec<(u32, u32, i64)> {
        (0..run.codes.len())
            .map(|e| (run.codes[e], run.session(e), run.times[e]))
            .collect()
    }

    #[test]
    fn a_part_reads_back_as_each_installs_events_in_time_order() {
        let part = batch(&[
            ("b", Some("x"), Some("plot"), "2026-11-02T10:00:02Z"),
            ("a", Some("s"), Some("fit"), "2026-11-02T10:00:00Z"),
            ("b", Some("y"), None, "2026-11-02T09:00:00Z"),
            ("a", Some("s"), Some("plot"), "2026-11-02T10:00:00.5Z"),
            ("b", Some("x"), Some("fit"), "2026-11-02T10:00:01Z"),
        ]);
        let seq = Sequences::parse(encode(&part).unwrap()).unwrap();
        assert_eq!(seq.len(), 2);
        let mut names = seq.names().to_vec();
        names.sort();
        assert_eq!(names, ["fit", "plot"]);
        let code =
            |n: &str| 1 + u32::try_from(seq.names().iter().position(|x| x == n).unwrap()).unwrap();
        let (fit, plot) = (code("fit"), code("plot"));
        let (key_a, key_b) = (install_key("a"), install_key("b"));
        let base = Timestamp::parse("2026-11-02T09:00:00Z")
            .unwrap()
            .unix_millis()
            * 1000;
        let codes = [0, 1, 2];
        let mut run = Run::default();
        for i in 0..2 {
            seq.run(i, &codes, true, &mut run).unwrap();
            if seq.key(i) == key_a {
                assert_eq!(run.sessions, [session_key("a", Some("s"))]);
                let t = base + 3_600_000_000;
                assert_eq!(triples(&run), [(fit, 0, t), (plot, 0, t + 500_000)]);
            } else {
                assert_eq!(seq.key(i), key_b);
                let (x, y) = (session_key("b", Some("x")), session_key("b", Some("y")));
                assert_eq!(run.sessions, [y, x]);
                let t = base + 3_600_000_000;
                assert_eq!(
                    triples(&run),
                    [
                        (0, 0, base),
                        (fit, 1, t + 1_000_000),
                        (plot, 1, t + 2_000_000)
                    ]
                );
            }
        }
        assert!(seq.key(0) < seq.key(1), "keys ascend");
        assert_eq!(seq.seek(seq.key(1)), 1);
        assert_eq!(
            seq.seek(u64::MAX),
            if seq.key(1) == u64::MAX { 1 } else { 2 }
        );
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let b = batch(&[("a", None, Some("fit"), "2026-11-02T10:00:00Z")]);
        let bytes = encode(&b).unwrap();
        for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(Sequences::parse(bad).is_err(), "a flipped bit at {at}");
        }
        assert_eq!(
            Sequences::parse(bytes[..bytes.len() - 3].to_vec()).unwrap_err(),
            "checksum mismatch"
        );
        assert!(Sequences::parse(Vec::new()).is_err());
    }

    /// A stream reads a part's file as the file's bytes read at once do; it refuses a damaged or
    /// cut file, and a span's summary, when it is opened; files compact through streams into the
    /// file their rows make at once.
    #[test]
    fn a_stream_reads_what_the_file_holds_and_refuses_a_damaged_one() {
        let dir = std::env::temp_dir().join(format!("opentally-seqstream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rows: Vec<(String, String, &str, String)> = (0..3_000)
            .map(|i| {
                (
                    format!("i{}", i % 700),
                    format!("s{}", i % 3),
                    ["fit", "plot", "estimate"][i % 3],
                    format!(
                        "2026-11-02T{:02}:{:02}:{:02}Z",
                        i / 3600,
                        i / 60 % 60,
                        i % 60
                    ),
                )
            })
            .collect();
        let as_rows = |r: &[(String, String, &str, String)]| -> RecordBatch {
            let v: Vec<_> = r
                .iter()
                .map(|(i, s, e, t)| (i.as_str(), Some(s.as_str()), Some(*e), t.as_str()))
                .collect();
            batch(&v)
        };
        // Two parts of one day whose installs' runs interleave in time.
        let (even, odd): (Vec<_>, Vec<_>) = rows
            .iter()
            .cloned()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let mut paths = Vec::new();
        for (n, part) in [even, odd].into_iter().enumerate() {
            let part: Vec<_> = part.into_iter().map(|(_, r)| r).collect();
            let path = dir.join(format!("{n}.seq"));
            encode_file(&as_rows(&part)).unwrap().write(&path).unwrap();
            paths.push(path);
        }

        let whole = Sequences::read(&paths[0]).unwrap();
        let mut stream = SeqStream::open(&paths[0]).unwrap();
        assert_eq!(stream.names(), whole.names());
        let codes: Vec<u32> = (0..=3).collect();
        let (mut a, mut b) = (Run::default(), Run::default());
        let mut s = &mut stream;
        assert_eq!(s.installs(), whole.len());
        for i in 0..whole.len() {
            assert_eq!(s.key_of(i), Some(whole.key(i)));
            s.run_of(i, &codes, &mut a).unwrap();
            whole.run(i, &codes, true, &mut b).unwrap();
            assert_eq!((&a.sessions, triples(&a)), (&b.sessions, triples(&b)));
        }
        assert!(stream.error.is_none());

        let joined = compact(paths.iter().map(|p| SeqStream::open(p).unwrap()).collect())
            .unwrap()
            .unwrap();
        let expected = Sequences::parse(encode(&as_rows(&rows)).unwrap()).unwrap();
        let joined = Sequences::parse(joined.into_bytes()).unwrap();
        assert_eq!(joined.len(), 700);
        let names = |q: &Sequences, r: &Run| -> Vec<(String, u32, i64)> {
            (0..r.codes.len())
                .map(|e| {
                    (
                        q.names()[r.codes[e] as usize - 1].clone(),
                        r.session(e),
                        r.times[e],
                    )
                })
                .collect()
        };
        for i in 0..700 {
            assert_eq!(joined.key(i), expected.key(i));
            joined.run(i, &codes, true, &mut a).unwrap();
            expected.run(i, &codes, true, &mut b).unwrap();
            assert_eq!(a.sessions, b.sessions);
            assert_eq!(names(&joined, &a), names(&expected, &b));
        }

        let bytes = std::fs::read(&paths[0]).unwrap();
        let bad = dir.join("bad.seq");
        for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[at] ^= 0x40;
            std::fs::write(&bad, &b).unwrap();
            let e = SeqStream::open(&bad).unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidData,
                "a flipped bit at {at}"
            );
        }
        for len in [0, 7, 20, bytes.len() - 3] {
            std::fs::write(&bad, &bytes[..len]).unwrap();
            let e = SeqStream::open(&bad).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "cut at {len}");
        }
        let (names, c) = shared_codes(&[&whole]);
        let summary = merge(&[(&whole, c[0].clone())], &names, true).unwrap();
        std::fs::write(&bad, summary).unwrap();
        assert_eq!(
            SeqStream::open(&bad).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Sessions left open on the target at the end of one run go on in the install's next
    /// run, read from parts or from summaries; an install with more open sessions than it
    /// lists keeps the rest in the slice's table.
    #[test]
    fn paths_follow_many_open_sessions_of_one_install_into_its_next_run() {
        // Day 1: 40 sessions of x each fit once. Day 2: s0–s19 go on to plot; s20–s29 fit
        // again and end there; s30–s39 do not come back.
        let sessions: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let times: Vec<String> = (0..40)
            .map(|i| format!("2026-11-01T10:{i:02}:00Z"))
            .collect();
        let day1: Vec<_> = (0..40)
            .map(|i| {
                (
                    "x",
                    Some(sessions[i].as_str()),
                    Some("fit"),
                    times[i].as_str(),
                )
            })
            .collect();
        let later: Vec<String> = (0..30)
            .map(|i| format!("2026-11-02T10:{i:02}:00Z"))
            .collect();
        let day2: Vec<_> = (0..30)
            .map(|i| {
                let next = if i < 20 { "plot" } else { "fit" };
                (
                    "x",
                    Some(sessions[i].as_str()),
                    Some(next),
                    later[i].as_str(),
                )
            })
            .collect();
        let days = [
            Sequences::parse(encode(&batch(&day1)).unwrap()).unwrap(),
            Sequences::parse(encode(&batch(&day2)).unwrap()).unwrap(),
        ];
        let refs: Vec<&Sequences> = days.iter().collect();
        let (shared, codes) = shared_codes(&refs);
        let (fit, plot) = (shared.get("fit").unwrap(), shared.get("plot").unwrap());
        let n = shared.names.len() + 1;
        let answer =
            |p: &Paths| [0, fit, plot].map(|c| (p.times[c as usize], p.installs[c as usize]));
        let want = [(20, 1), (10, 1), (20, 1)];
        let parts: Vec<(&Sequences, Vec<u32>)> = refs.iter().copied().zip(codes).collect();
        let p = walk(&parts, None, None, || Paths::new(fit, None, n)).unwrap();
        assert_eq!(answer(&p), want, "from the parts");
        // Each day as a summary of its own, as a span would give it.
        let summaries: Vec<Sequences> = parts
            .iter()
            .map(|(s, c)| {
                let one = [(*s, c.clone())];
                Sequences::parse(merge(&one, &shared, true).unwrap()).unwrap()
            })
            .collect();
        let refs: Vec<&Sequences> = summaries.iter().collect();
        assert!(refs.iter().all(|s| s.is_summary()));
        let (shared, codes) = shared_codes(&refs);
        assert_eq!(
            (shared.get("fit"), shared.get("plot")),
            (Some(fit), Some(plot))
        );
        let parts: Vec<(&Sequences, Vec<u32>)> = refs.into_iter().zip(codes).collect();
        let p = walk(&parts, None, None, || Paths::new(fit, None, n)).unwrap();
        assert_eq!(answer(&p), want, "from summaries");
    }

    /// Installs are counted once per next event whether its code fits the per-install bits or
    /// goes to the slice's pairs (codes of 64 and above).
    #[test]
    fn paths_count_installs_once_per_next_event_past_64_names() {
        let names: Vec<String> = (0..69).map(|i| format!("e{i}")).collect();
        let filler: Vec<(&str, Option<&str>, Option<&str>, &str)> = names
            .iter()
            .map(|n| ("z", Some("s"), Some(n.as_str()), "2026-11-01T10:00:00Z"))
            .collect();
        let day2 = [
            ("x", Some("a"), Some("fit"), "2026-11-02T10:00:00Z"),
            ("x", Some("a"), Some("e69"), "2026-11-02T10:00:01Z"),
            ("x", Some("a"), Some("fit"), "2026-11-02T10:00:02Z"),
            ("x", Some("a"), Some("e69"), "2026-11-02T10:00:03Z"),
            ("x", Some("b"), Some("fit"), "2026-11-02T11:00:00Z"),
            ("x", Some("b"), Some("e1"), "2026-11-02T11:00:01Z"),
            ("y", Some("c"), Some("fit"), "2026-11-02T12:00:00Z"),
            ("y", Some("c"), Some("e69"), "2026-11-02T12:00:01Z"),
            ("y", Some("c"), Some("fit"), "2026-11-02T12:00:02Z"),
        ];
        let parts = [
            Sequences::parse(encode(&batch(&filler)).unwrap()).unwrap(),
            Sequences::parse(encode(&batch(&day2)).unwrap()).unwrap(),
        ];
        let refs: Vec<&Sequences> = parts.iter().collect();
        let (shared, codes) = shared_codes(&refs);
        let parts: Vec<(&Sequences, Vec<u32>)> = refs.into_iter().zip(codes).collect();
        let (fit, e69, e1) = (
            shared.get("fit").unwrap(),
            shared.get("e69").unwrap(),
            shared.get("e1").unwrap(),
        );
        assert!(e69 >= 64 && e1 < 64, "both ways of counting are used");
        let n = shared.names.len() + 1;
        let p = walk(&parts, None, None, || Paths::new(fit, None, n)).unwrap();
        assert_eq!((p.times[e69 as usize], p.installs[e69 as usize]), (3, 2));
        assert_eq!((p.times[e1 as usize], p.installs[e1 as usize]), (1, 1));
        assert_eq!(
            (p.times[0], p.installs[0]),
            (1, 1),
            "y's session ends on fit"
        );
        assert_eq!(p.times.iter().sum::<u64>(), 5);
    }

    /// Joined parts walk to the same funnels and paths as the parts one by one, sessions that
    /// cross parts included; parts that disagree on an install's order are not joined.
    #[test]
    fn merged_parts_walk_like_the_parts() {
        let days = [
            batch(&[
                ("x", Some("a"), Some("fit"), "2026-11-01T23:59:00Z"),
                ("y", Some("c"), Some("fit"), "2026-11-01T10:00:00Z"),
                ("y", Some("c"), Some("plot"), "2026-11-01T10:00:01Z"),
            ]),
            batch(&[
                ("x", Some("a"), Some("estimate"), "2026-11-02T00:00:01Z"),
                ("x", Some("b"), Some("fit"), "2026-11-02T08:00:00Z"),
                ("x", Some("a"), Some("fit"), "2026-11-02T09:00:00Z"),
            ]),
            batch(&[
                ("x", Some("a"), Some("plot"), "2026-11-03T00:00:01Z"),
                ("z", None, Some("fit"), "2026-11-03T10:00:00Z"),
                ("z", None, None, "2026-11-03T10:00:01Z"),
            ]),
        ];
        let seqs: Vec<Sequences> = days
            .iter()
            .map(|b| Sequences::parse(encode(b).unwrap()).unwrap())
            .collect();
        let refs: Vec<&Sequences> = seqs.iter().collect();
        let (names, codes) = shared_codes(&refs);
        let parts: Vec<(&Sequences, Vec<u32>)> = refs.into_iter().zip(codes).collect();
        for summary in [false, true] {
            let merged = Sequences::parse(merge(&parts, &names, summary).unwrap()).unwrap();
            assert_eq!(merged.len(), 3, "one run per install");
            walk_joined(&parts, &names, &merged, summary);
        }

        // Day 2 again, loaded later: x's events there come before day 3's.
        let again = [&seqs[0], &seqs[2], &seqs[1]];
        let (names, codes) = shared_codes(&again);
        let parts: Vec<(&Sequences, Vec<u32>)> = again.into_iter().zip(codes).collect();
        assert!(merge(&parts, &names, false).is_none());
        assert!(merge(&parts, &names, true).is_none());
    }

    /// Walks `merged` (the join of `parts`) and the parts one by one, and compares.
    fn walk_joined(
        parts: &[(&Sequences, Vec<u32>)],
        names: &Names,
        merged: &Sequences,
        summary: bool,
    ) {
        let (m_names, m_codes) = shared_codes(&[merged]);
        let one = [(merged, m_codes.into_iter().next().unwrap())];
        let code = |n: &Names, s: &str| n.get(s).unwrap();
        let width = names.names.len() + 1;
        for (since, until) in [(None, None), (Some(1_793_577_600_000_000), None)] {
            let one_by_one = walk(parts, since, until, || {
                Paths::new(code(names, "fit"), None, width)
            })
            .unwrap();
            let joined = walk(&one, since, until, || {
                Paths::new(code(&m_names, "fit"), None, width)
            });
            let Some(joined) = joined else {
                // A summary cannot cut a run that crosses the range's bound: the caller scans.
                assert!(summary && since.is_some());
                continue;
            };
            let by_name = |p: &Paths, ns: &Names| -> Vec<(String, u64, u64)> {
                let mut v: Vec<_> = (0..p.times.len())
                    .filter(|c| p.times[*c] > 0)
                    .map(|c| {
                        let c32 = u32::try_from(c).unwrap();
                        (
                            ns.name(c32).unwrap_or("(end)").to_owned(),
                            p.times[c],
                            p.installs[c],
                        )
                    })
                    .collect();
                v.sort();
                v
            };
            assert_eq!(
                by_name(&one_by_one, names),
                by_name(&joined, &m_names),
                "since {since:?}"
            );
            if since.is_none() {
                // By hand: x's session a goes fit → estimate across midnight and fit → plot
                // across the next; b ends on fit; y plots; z's fit is followed by an unnamed
                // event, counted as the end.
                assert_eq!(
                    by_name(&joined, &m_names),
                    [
                        ("(end)".to_owned(), 2, 2),
                        ("estimate".to_owned(), 1, 1),
                        ("plot".to_owned(), 2, 2)
                    ]
                );
            }
            let steps = |ns: &Names| vec![ns.get("fit"), ns.get("estimate"), ns.get("plot")];
            let funnel = walk(parts, since, until, || {
                Funnel::new(steps(names), 86_400_000_000)
            });
            let funnel_joined = walk(&one, since, until, || {
                Funnel::new(steps(&m_names), 86_400_000_000)
            });
            if summary {
                assert!(funnel_joined.is_none(), "a summary has no times");
            } else {
                assert_eq!(funnel.unwrap().reached, funnel_joined.unwrap().reached);
            }
        }
    }
}
