//! The sequence file format: encoding a part's events into it.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;

use crate::hashing::HashKeyed;
use crate::rollup::session_key;
use crate::sequence::install_key;
use crate::sequence::paths::NO_EVENT;

pub(super) const MAGIC: &[u8; 8] = b"OTSEQ002";
/// A span's transitions (see [`merge`]): only ever in memory.
pub(super) const SUMMARY_MAGIC: &[u8; 8] = b"OTSUM001";

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
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
pub(super) fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
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
pub(super) struct SessionList {
    pub(super) keys: Vec<u64>,
    pub(super) index: HashMap<u64, u32, HashKeyed>,
}

impl SessionList {
    /// The index of session `s`, added if new.
    pub(super) fn index(&mut self, s: u64) -> u32 {
        *self.index.entry(s).or_insert_with(|| {
            self.keys.push(s);
            u32::try_from(self.keys.len() - 1).expect("fewer than 4G sessions")
        })
    }

    pub(super) fn clear(&mut self) {
        self.keys.clear();
        self.index.clear();
    }
}

/// Writes the bytes of a `.seq` file, install by install in ascending key order.
pub(super) struct Builder {
    pub(super) magic: &'static [u8; 8],
    pub(super) base: i64,
    pub(super) keys: Vec<u64>,
    pub(super) offsets: Vec<u32>,
    pub(super) body: Vec<u8>,
}

impl Builder {
    /// `base`: a time at or before every event's.
    pub(super) fn new(base: i64) -> Builder {
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
    pub(super) fn install(
        &mut self,
        key: u64,
        sessions: &[u64],
        events: &[(u32, u32, i64)],
    ) -> Option<()> {
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
    pub(super) fn summary(
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
    pub(super) fn finish<S: AsRef<str>>(self, names: &[S]) -> Option<Vec<u8>> {
        Some(self.into_file(names)?.into_bytes())
    }

    /// The file, for event names where code `c > 0` is `names[c - 1]`, not yet put together.
    pub(super) fn into_file<S: AsRef<str>>(self, names: &[S]) -> Option<SeqFile> {
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
    pub(super) header: Vec<u8>,
    pub(super) keys: Vec<u64>,
    pub(super) offsets: Vec<u32>,
    pub(super) body: Vec<u8>,
}

impl SeqFile {
    /// Feeds the file's bytes before its checksum to `out`, in order.
    pub(super) fn pieces(
        &self,
        out: &mut impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
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
