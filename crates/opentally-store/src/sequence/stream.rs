//! A sequence file read as a stream, a slice at a time: what compaction merges without
//! holding whole files; and a span summary's runs.

use std::fs::File;
use std::path::Path;

use crate::sequence::format::MAGIC;
use crate::sequence::join::{Runs, join};
use crate::sequence::read::decode_run;
use crate::sequence::{Names, Run, SeqFile};

/// A part's `.seq` file read as [`compact`] joins it: checked whole first, then its keys, offsets
/// and body each read in order through a small buffer, so a merge holds a few kilobytes of each
/// part's sequences rather than the files.
#[derive(Debug)]
pub struct SeqStream {
    pub(super) names: Vec<String>,
    pub(super) base: i64,
    pub(super) installs: usize,
    pub(super) keys: std::io::BufReader<File>,
    pub(super) offsets: std::io::BufReader<File>,
    pub(super) body: std::io::BufReader<File>,
    /// The body offset of the next install's run.
    pub(super) at: u32,
    /// The keys and runs read so far.
    pub(super) keys_read: usize,
    pub(super) runs_read: usize,
    pub(super) scratch: Vec<u8>,
    /// The first error met while reading keys or runs ([`Runs`] gives `None` then).
    pub(super) error: Option<std::io::Error>,
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
pub(super) fn read_noting<B: AsMut<[u8]>>(
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

/// The sequences of several parts of one day, read from their files as they go, as the `.seq`
/// file of the part that compaction merges them into: as [`merge`](crate::sequence::merge) without `summary`, but an
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
