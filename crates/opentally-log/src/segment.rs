//! The durable log: the collector's one write path and the hand-off to the store.
//!
//! Segments `log/{seq:020}.seg` hold framed records: `len: u32 LE`, `crc: u32 LE`, `payload`,
//! where the CRC-32C covers the length and the payload, so a torn or zero-filled tail never reads
//! as a record. A record is written whole and fsynced before anyone is told it is stored. On open,
//! the last segment is scanned to its last valid record and truncated there; earlier segments
//! are read up to their first bad record (which only a failed, rolled-back write can leave).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

const HEADER: usize = 8;
/// No record is larger: a request body is capped far below this.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// A position in the log: a segment and a byte offset in it.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct LogPos {
    pub segment: u64,
    pub offset: u64,
}

/// What opening the log found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    /// Bytes cut from the end of the last segment (a torn write that was never acknowledged).
    pub truncated_bytes: u64,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

/// The segment numbers in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(seqs),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

fn crc(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

/// Appends one framed record to `buf`.
pub fn frame(buf: &mut Vec<u8>, payload: &[u8]) {
    frame_with(buf, |b| b.extend_from_slice(payload));
}

/// Appends one framed record to `buf`, its payload whatever `write` appends: the payload is built
/// in place rather than built apart and copied in.
pub fn frame_with(buf: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    write(buf);
    let payload = &buf[start + HEADER..];
    let len = u32::try_from(payload.len()).expect("records are capped far below 4 GiB");
    let sum = crc(len, payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&sum.to_le_bytes());
}

/// Reads the valid records of one segment from `start`, until `f` breaks; returns the offset
/// after the last record read and whether `f` broke.
fn scan_segment(
    path: &Path,
    start: u64,
    f: &mut dyn FnMut(LogPos, &[u8]) -> ControlFlow<()>,
    seq: u64,
) -> io::Result<(u64, bool)> {
    let mut file = File::open(path)?;
    let file_len = file.metadata()?.len();
    file.seek(SeekFrom::Start(start))?;
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut offset = start;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    loop {
        if file_len - offset < HEADER as u64 {
            return Ok((offset, false));
        }
        reader.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let sum = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let len_usize = len as usize;
        if len == 0
            || len_usize > MAX_RECORD
            || (file_len - offset - HEADER as u64) < u64::from(len)
        {
            return Ok((offset, false));
        }
        payload.resize(len_usize, 0);
        reader.read_exact(&mut payload)?;
        if crc(len, &payload) != sum {
            return Ok((offset, false));
        }
        let flow = f(
            LogPos {
                segment: seq,
                offset,
            },
            &payload,
        );
        offset += HEADER as u64 + u64::from(len);
        if flow.is_break() {
            return Ok((offset, true));
        }
    }
}

/// Calls `f` with every valid record at or after `from`, in log order; returns the position
/// after the last one.
pub fn read_from(dir: &Path, from: LogPos, f: impl FnMut(LogPos, &[u8])) -> io::Result<LogPos> {
    read_range(dir, from, None, f)
}

/// Like [`read_from`], but stops before `until` (a position the writer has made durable), so a
/// reader in the same process never sees a record that a crash could still take back.
pub fn read_range(
    dir: &Path,
    from: LogPos,
    until: Option<LogPos>,
    mut f: impl FnMut(LogPos, &[u8]),
) -> io::Result<LogPos> {
    read_range_while(dir, from, until, |pos, payload| {
        f(pos, payload);
        ControlFlow::Continue(())
    })
}

/// Like [`read_range`], but stops after the record on which `f` breaks (a reader that takes the
/// log a bounded piece at a time); the position returned is after that record.
pub fn read_range_while(
    dir: &Path,
    from: LogPos,
    until: Option<LogPos>,
    mut f: impl FnMut(LogPos, &[u8]) -> ControlFlow<()>,
) -> io::Result<LogPos> {
    let mut end = from;
    for seq in list_segments(dir)? {
        if seq < from.segment {
            continue;
        }
        if until.is_some_and(|u| seq > u.segment) {
            break;
        }
        let start = if seq == from.segment { from.offset } else { 0 };
        let limit = until.filter(|u| u.segment == seq).map(|u| u.offset);
        let mut bounded = |pos: LogPos, payload: &[u8]| {
            if limit.is_none_or(|l| pos.offset < l) {
                f(pos, payload)
            } else {
                ControlFlow::Continue(())
            }
        };
        let (offset, stopped) = scan_segment(&segment_path(dir, seq), start, &mut bounded, seq)?;
        end = LogPos {
            segment: seq,
            offset: limit.map_or(offset, |l| offset.min(l)),
        };
        if stopped {
            break;
        }
    }
    Ok(end)
}

/// Deletes the segments wholly before `pos.segment`: their records are loaded and no longer
/// needed. Returns how many were removed.
pub fn remove_before(dir: &Path, pos: LogPos) -> io::Result<usize> {
    let mut removed = 0;
    for seq in list_segments(dir)? {
        if seq >= pos.segment {
            break;
        }
        fs::remove_file(segment_path(dir, seq))?;
        removed += 1;
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The single appender. Not shared: the writer thread owns it.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    seq: u64,
    file: File,
    len: u64,
    max_segment_bytes: u64,
    fsync: bool,
}

impl LogWriter {
    /// Opens the log in `dir`, recovering the last segment's tail.
    pub fn open(
        dir: &Path,
        max_segment_bytes: u64,
        fsync: bool,
    ) -> io::Result<(LogWriter, Recovery)> {
        fs::create_dir_all(dir)?;
        let seqs = list_segments(dir)?;
        let mut recovery = Recovery {
            segments: seqs.len(),
            truncated_bytes: 0,
        };
        let seq = seqs.last().copied().unwrap_or(0);
        let path = segment_path(dir, seq);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        let on_disk = file.metadata()?.len();
        let (valid, _) = scan_segment(&path, 0, &mut |_, _| ControlFlow::Continue(()), seq)?;
        if valid < on_disk {
            file.set_len(valid)?;
            file.sync_all()?;
            recovery.truncated_bytes = on_disk - valid;
        }
        if seqs.is_empty() {
            sync_dir(dir)?;
        }
        let mut w = LogWriter {
            dir: dir.to_owned(),
            seq,
            file,
            len: valid,
            max_segment_bytes,
            fsync,
        };
        w.file.seek(SeekFrom::Start(valid))?;
        Ok((w, recovery))
    }

    /// Where the next record will go.
    pub fn position(&self) -> LogPos {
        LogPos {
            segment: self.seq,
            offset: self.len,
        }
    }

    /// Writes already-framed records and makes them durable. On error, the segment is cut back
    /// to where it was, so a failed group leaves no partial record behind for later groups to
    /// follow.
    pub fn append_durable(&mut self, framed: &[u8]) -> io::Result<()> {
        let before = self.len;
        let result = self.file.write_all(framed).and_then(|()| {
            if self.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.len += framed.len() as u64;
                // The records are durable now, whatever happens to the rotation: a failure to
                // start the next segment is not the append's (its caller would answer 503 for
                // records already synced, and their retry would be stored twice). This segment
                // grows on, and the next append tries the rotation again.
                if self.len >= self.max_segment_bytes
                    && let Err(e) = self.rotate()
                {
                    tracing::warn!(error = %e, "cannot start the next log segment; will retry");
                }
                Ok(())
            }
            Err(e) => {
                self.rollback(before);
                Err(e)
            }
        }
    }

    fn rollback(&mut self, to: u64) {
        let cut = self
            .file
            .set_len(to)
            .and_then(|()| self.file.seek(SeekFrom::Start(to)))
            .and_then(|_| self.file.sync_data());
        if cut.is_err() {
            // The tail could not be cut (the disk may be gone); continue in a new segment so that
            // no later record sits behind the bad bytes. Readers stop at the bad record of this
            // one and go on with the next.
            if self.rotate().is_err() {
                tracing::error!("cannot cut back or rotate the log after a failed write");
            }
        }
    }

    /// Closes the current segment and starts the next one, unless it is still empty: the
    /// closed one can then be removed once it is loaded (after a project's deletion, say, so that
    /// its records do not wait on disk for the segment to fill).
    pub fn start_new_segment(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.rotate()
    }

    fn rotate(&mut self) -> io::Result<()> {
        let next = self.seq + 1;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(segment_path(&self.dir, next))?;
        sync_dir(&self.dir)?;
        self.seq = next;
        self.file = file;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("opentally-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn records(dir: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        read_from(dir, LogPos::default(), |_, p| out.push(p.to_vec())).unwrap();
        out
    }

    fn append(w: &mut LogWriter, payloads: &[&[u8]]) {
        let mut buf = Vec::new();
        for p in payloads {
            frame(&mut buf, p);
        }
        w.append_durable(&buf).unwrap();
    }

    /// Regression: a rotation that failed after the sync made the append fail, so the
    /// collector answered 503 for synced records and stored their retry twice.
    #[test]
    fn a_failed_rotation_does_not_fail_a_synced_append() {
        let dir = temp_dir("rotate-failed");
        let (mut w, _) = LogWriter::open(&dir, 8, true).unwrap();
        // The next segment's path is taken by a directory: opening it as a file fails.
        fs::create_dir_all(segment_path(&dir, 1)).unwrap();
        append(&mut w, &[b"synced before the rotation failed"]);
        assert_eq!(w.seq, 0, "the rotation failed, the segment stays");
        fs::remove_dir(segment_path(&dir, 1)).unwrap();
        append(&mut w, &[b"the next append rotates"]);
        assert_eq!(w.seq, 1);
        assert_eq!(
            records(&dir),
            [
                b"synced before the rotation failed".to_vec(),
                b"the next append rotates".to_vec()
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_survive_reopen_and_torn_tails_are_cut() {
        let dir = temp_dir("torn");
        let (mut w, rec) = LogWriter::open(&dir, 1 << 20, true).unwrap();
        assert_eq!(rec.truncated_bytes, 0);
        append(&mut w, &[b"one", b"two"]);
        append(&mut w, &[b"three"]);
        drop(w);
        // Simulate a crash in the middle of a write: half a frame at the end.
        let path = segment_path(&dir, 0);
        let mut partial = Vec::new();
        frame(&mut partial, b"never acknowledged");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&partial[..partial.len() / 2]).unwrap();
        drop(f);
        let (mut w, rec) = LogWriter::open(&dir, 1 << 20, true).unwrap();
        assert_eq!(rec.truncated_bytes, (partial.len() / 2) as u64);
        append(&mut w, &[b"four"]);
        assert_eq!(
            records(&dir),
            [
                b"one".to_vec(),
                b"two".to_vec(),
                b"three".to_vec(),
                b"four".to_vec()
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zero_filled_and_corrupted_tails_do_not_read_as_records() {
        let dir = temp_dir("zeros");
        let (mut w, _) = LogWriter::open(&dir, 1 << 20, true).unwrap();
        append(&mut w, &[b"kept"]);
        drop(w);
        let path = segment_path(&dir, 0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 64]).unwrap();
        drop(f);
        assert_eq!(records(&dir), [b"kept".to_vec()]);
        // Flip one payload byte of the only record: it no longer reads.
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(records(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segments_rotate_and_read_in_order_from_a_position() {
        let dir = temp_dir("rotate-in-order");
        let (mut w, _) = LogWriter::open(&dir, 32, true).unwrap();
        for i in 0..5u8 {
            append(&mut w, &[&[i; 30]]);
        }
        assert_eq!(list_segments(&dir).unwrap(), [0, 1, 2, 3, 4, 5]);
        let mut seen = Vec::new();
        let mut positions = Vec::new();
        read_from(&dir, LogPos::default(), |pos, p| {
            positions.push(pos);
            seen.push(p[0]);
        })
        .unwrap();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        let mut tail = Vec::new();
        read_from(&dir, positions[3], |_, p| tail.push(p[0])).unwrap();
        assert_eq!(tail, [3, 4]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bounded_reader_resumes_where_it_stopped() {
        let dir = temp_dir("bounded");
        // Two records per segment: stops fall inside segments and at their ends.
        let (mut w, _) = LogWriter::open(&dir, 64, true).unwrap();
        for i in 0..7u8 {
            append(&mut w, &[&[i; 30]]);
        }
        let mut from = LogPos::default();
        let mut pieces = Vec::new();
        loop {
            let mut piece = Vec::new();
            let end = read_range_while(&dir, from, None, |_, p| {
                piece.push(p[0]);
                if piece.len() == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
            if piece.is_empty() {
                assert_eq!(end, from, "nothing read, nothing passed");
                break;
            }
            pieces.push(piece);
            from = end;
        }
        assert_eq!(pieces, [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
