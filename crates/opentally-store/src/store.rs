//! The embedded store: the log loaded into an in-memory tail, sealed into Parquet parts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{concat_batches, interleave_record_batch};
use arrow::datatypes::TimestampMicrosecondType;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::manifest::{Manifest, PartMeta, sync_dir};
use crate::rollup::{self, Blocks, RollupRow, RollupSet, Succeeded};
use crate::schema::{self, BatchBuilder};
use crate::sequence::{self, SeqFile, SeqStream, Sequences};
use opentally_log::segment::{self as wal, LogPos};
use opentally_log::{RecordView, StoredEvent};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// When the tail is sealed and parts are compacted.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seal once the tail holds this many events…
    pub seal_rows: usize,
    /// …or its oldest event has waited this long.
    pub seal_after: Duration,
    /// How often the loader looks for new log records.
    pub poll: Duration,
    /// Compact a project's day once it has this many parts that fit in `compact_rows` together.
    pub compact_parts: usize,
    /// The most parts one compaction merges (the smallest first).
    pub compact_max_parts: usize,
    /// While the loader is behind the log, a day is compacted only once it has this many parts
    /// that fit in `compact_rows`: loading comes first, but under steady load a day's parts still
    /// stay few.
    pub compact_behind_parts: usize,
    /// The most rows one compaction merges into a part; parts with at least this many rows are
    /// left alone.
    pub compact_rows: u64,
    /// Rows a seal or a compaction copies at a time. A compaction holds a batch of this many
    /// rows from each part it merges and one of the merged rows, however large the parts.
    pub chunk_rows: usize,
    /// Days of events kept; older days' parts are dropped by the loader (none: kept forever).
    pub retention_days: Option<u32>,
    /// Memory the parts may keep their per-install sequences in, for funnels and paths (parts
    /// beyond it read theirs from disk at each query), with the spans and friction's blocks.
    pub sequence_cache_bytes: usize,
    /// Paths read the sequences of each block of this many days (counted from the epoch) as
    /// one, each install's runs joined, once the block is two days past and has several parts;
    /// in the block not yet past, its past halves, quarters and eighths (0: never). Funnels read
    /// the parts: they skip an install's later parts once its funnel is settled, which a span
    /// cannot. Friction keeps the "ok" installs of each event merged over the same blocks.
    pub sequence_span_days: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seal_rows: 25_000,
            seal_after: Duration::from_secs(10),
            poll: Duration::from_millis(200),
            compact_parts: 8,
            compact_max_parts: 8,
            compact_behind_parts: 32,
            compact_rows: 2_000_000,
            chunk_rows: 8 * 1024,
            retention_days: None,
            sequence_cache_bytes: 256 << 20,
            sequence_span_days: 32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(#[from] io::Error),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// A part as queries see it: while a query holds one, compaction does not delete its file.
#[derive(Debug)]
pub struct LivePart {
    pub meta: PartMeta,
    pub path: PathBuf,
    rollup_path: Option<PathBuf>,
    sequences_path: Option<PathBuf>,
    /// Read on first use (or kept from when the part was written).
    rollup: std::sync::Mutex<Option<Arc<RollupSet>>>,
    /// Kept after the first read while the store's sequence cache has room.
    sequences: std::sync::Mutex<Option<Arc<Sequences>>>,
    cache: Arc<SequenceCache>,
}

/// The memory the parts of a store may keep their sequences in.
#[derive(Debug)]
struct SequenceCache {
    used: std::sync::atomic::AtomicUsize,
    limit: usize,
}

impl SequenceCache {
    fn reserve(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.used
            .fetch_update(Relaxed, Relaxed, |u| {
                u.checked_add(bytes).filter(|n| *n <= self.limit)
            })
            .is_ok()
    }

    /// Gives back what [`SequenceCache::reserve`] took.
    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for LivePart {
    fn drop(&mut self) {
        self.release_sequences();
    }
}

impl LivePart {
    fn new(
        dir: &Path,
        meta: PartMeta,
        rollup: Option<Vec<RollupRow>>,
        cache: &Arc<SequenceCache>,
    ) -> Arc<LivePart> {
        Arc::new(LivePart {
            sequences: std::sync::Mutex::new(None),
            cache: cache.clone(),
            path: dir.join(&meta.file),
            rollup_path: meta.rollup.as_ref().map(|r| dir.join(r)),
            sequences_path: meta.sequences.as_ref().map(|r| dir.join(r)),
            rollup: std::sync::Mutex::new(rollup.map(|r| Arc::new(RollupSet::new(r, true)))),
            meta,
        })
    }

    /// The part's rollup rows: from its rollup file, or made from the part if it has none.
    pub fn rollup(&self) -> Result<Arc<RollupSet>, StoreError> {
        let mut slot = self
            .rollup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let kept = match &self.rollup_path {
            Some(p) => rollup::read(p)?,
            None => None,
        };
        let (rows, has_sessions) = if let Some(kept) = kept {
            kept
        } else {
            let batches = read_part(&self.path)?;
            (
                rollup::of_batch(&concat_batches(&schema::schema(), &batches)?),
                true,
            )
        };
        let rows = Arc::new(RollupSet::new(rows, has_sessions));
        *slot = Some(rows.clone());
        Ok(rows)
    }

    /// The part's per-install event sequences: kept in memory after the first read while the
    /// store's sequence cache has room, else read from the file each time; `None` for a part
    /// written without them, or whose file is damaged (queries then scan the events, which the
    /// file only repeats).
    pub fn sequences(&self) -> Result<Option<Arc<Sequences>>, StoreError> {
        let Some(path) = &self.sequences_path else {
            return Ok(None);
        };
        let mut slot = self
            .sequences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = slot.as_ref() {
            return Ok(Some(s.clone()));
        }
        match Sequences::read(path) {
            Ok(s) => {
                let s = Arc::new(s);
                if self.cache.reserve(s.size()) {
                    *slot = Some(s.clone());
                }
                Ok(Some(s))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(part = self.meta.id, error = %e, "sequence file unreadable; scanning the events");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The bytes of sequences the part keeps in memory.
    fn kept_sequences_bytes(&self) -> usize {
        self.sequences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or(0, |s| s.size())
    }

    /// Lets go of the part's sequences if it keeps them in memory (a span holds them now).
    fn release_sequences(&self) {
        let kept = self
            .sequences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(s) = kept {
            self.cache.release(s.size());
        }
    }

    /// The part's files: its events, and its rollup and sequences when it has them.
    fn files(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.path)
            .chain(&self.rollup_path)
            .chain(&self.sequences_path)
    }
}

#[derive(Debug, Default)]
struct State {
    manifest: Manifest,
    parts: Vec<Arc<LivePart>>,
    /// Events read from the log after `manifest.log`, per project.
    tail: HashMap<String, Vec<RecordBatch>>,
    /// The rollup of each tail batch, per project.
    tail_rollups: HashMap<String, Vec<Arc<RollupSet>>>,
    /// The sequences of each tail batch, per project, made by the first query that needs them.
    tail_sequences: HashMap<String, Vec<TailSequences>>,
    /// The log position the tail reaches.
    tail_pos: LogPos,
    tail_since: Option<Instant>,
    /// Parts replaced by compaction, deleted once no query holds them.
    retired: Vec<Arc<LivePart>>,
}

/// The sequences of one tail batch, per day, once a query has made them (`None` inside: the
/// batch is too large for a sequence file).
type TailSequences = Arc<std::sync::OnceLock<Option<DaySequences>>>;

/// Sequences per day.
type DaySequences = Vec<(i64, Arc<Sequences>)>;

/// The sequences of a tail batch, split by day.
fn tail_sequences(batch: &RecordBatch) -> Result<Option<DaySequences>, StoreError> {
    let mut out = Vec::new();
    for day in split_by_day(std::slice::from_ref(batch)) {
        let (day, b) = day?;
        let Some(bytes) = sequence::encode(&b) else {
            return Ok(None);
        };
        let s = Sequences::parse(bytes)
            .map_err(|e| StoreError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        out.push((day, Arc::new(s)));
    }
    Ok(Some(out))
}

/// Spans: the sequences of a block of days' parts merged into one (see
/// [`Options::sequence_span_days`]), made by the first query that can use them and kept while
/// the block's parts stay the same.
#[derive(Debug)]
struct SpanCache {
    /// By project, first day and days.
    spans: std::sync::Mutex<HashMap<(String, i64, i64), Arc<Span>>>,
    /// Friction's merged "ok" installs, by the same blocks.
    succeeded: std::sync::Mutex<HashMap<(String, i64, i64), SucceededBlock>>,
    memory: Arc<SequenceCache>,
}

/// The merged "ok" installs of a block of days' parts, counted in the sequence cache's memory.
#[derive(Debug)]
struct SucceededBlock {
    /// The ids of the parts merged.
    parts: Vec<u64>,
    made: Arc<Succeeded>,
    memory: Arc<SequenceCache>,
}

impl Drop for SucceededBlock {
    fn drop(&mut self) {
        self.memory.release(self.made.size());
    }
}

#[derive(Debug)]
struct Span {
    /// The ids of the parts merged, in walk order.
    parts: Vec<u64>,
    made: std::sync::Mutex<Made>,
    memory: Arc<SequenceCache>,
}

#[derive(Debug)]
enum Made {
    Not,
    /// Kept in memory (counted in the sequence cache).
    Kept(Arc<Sequences>),
    /// The parts hold an install's events out of time order: they cannot be joined.
    Unmergeable,
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Made::Kept(s) = self
            .made
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            self.memory.release(s.size());
        }
    }
}

impl SpanCache {
    /// The span of `parts` (one block of a project's days, in walk order): merged now if it
    /// was not yet; `None` when the parts cannot be joined.
    fn get(
        &self,
        project: &str,
        first_day: i64,
        days: i64,
        parts: &[&Arc<LivePart>],
    ) -> Result<Option<Arc<Sequences>>, StoreError> {
        let ids: Vec<u64> = parts.iter().map(|p| p.meta.id).collect();
        let span = {
            let mut spans = self
                .spans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = spans
                .entry((project.to_owned(), first_day, days))
                .or_insert_with(|| self.empty(Vec::clone(&ids)));
            if slot.parts != ids {
                *slot = self.empty(ids);
            }
            slot.clone()
        };
        let mut made = span
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*made {
            Made::Kept(s) => return Ok(Some(s.clone())),
            Made::Unmergeable => return Ok(None),
            Made::Not => {}
        }
        // Joined only if it will stay: making it again at every query would cost more than
        // reading the parts. Its parts' files bound its size; what they keep in memory goes.
        let mut files = 0u64;
        let mut held = 0usize;
        for p in parts {
            let Some(path) = &p.sequences_path else {
                return Ok(None);
            };
            files += fs::metadata(path)?.len();
            held += p.kept_sequences_bytes();
        }
        let room = self.memory.limit.saturating_sub(
            self.memory
                .used
                .load(Ordering::Relaxed)
                .saturating_sub(held),
        );
        if files > room as u64 {
            return Ok(None);
        }
        let mut seqs = Vec::with_capacity(parts.len());
        for p in parts {
            let Some(s) = p.sequences()? else {
                return Ok(None);
            };
            seqs.push(s);
        }
        let refs: Vec<&Sequences> = seqs.iter().map(AsRef::as_ref).collect();
        let (names, codes) = sequence::shared_codes(&refs);
        let joined: Vec<(&Sequences, Vec<u32>)> = refs.into_iter().zip(codes).collect();
        let Some(bytes) = sequence::merge(&joined, &names, true) else {
            *made = Made::Unmergeable;
            return Ok(None);
        };
        let merged = Arc::new(
            Sequences::parse(bytes)
                .map_err(|e| StoreError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?,
        );
        // The span replaces its parts' sequences in memory.
        for p in parts {
            p.release_sequences();
        }
        if self.memory.reserve(merged.size()) {
            *made = Made::Kept(merged.clone());
        }
        Ok(Some(merged))
    }

    /// The merged "ok" installs of `parts` (one block of a project's days): merged now if they
    /// were not yet; `None` when the memory has no room to keep them (merging them at every
    /// query would cost more than reading the parts' rows).
    fn succeeded(
        &self,
        project: &str,
        first_day: i64,
        days: i64,
        parts: &[&Arc<LivePart>],
    ) -> Result<Option<Arc<Succeeded>>, StoreError> {
        let ids: Vec<u64> = parts.iter().map(|p| p.meta.id).collect();
        let key = (project.to_owned(), first_day, days);
        let lock = || {
            self.succeeded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(b) = lock().get(&key).filter(|b| b.parts == ids) {
            return Ok(Some(b.made.clone()));
        }
        let sets = parts
            .iter()
            .map(|p| p.rollup())
            .collect::<Result<Vec<_>, _>>()?;
        // At most every hash of every "ok" row.
        let bound: usize = sets
            .iter()
            .flat_map(|s| &s.rows)
            .filter(|r| r.dim(rollup::OUTCOME) == Some("ok"))
            .map(|r| r.installs.num_retained() * 8)
            .sum();
        let room = self
            .memory
            .limit
            .saturating_sub(self.memory.used.load(Ordering::Relaxed));
        if bound > room {
            return Ok(None);
        }
        let made = Arc::new(Succeeded::of(sets.iter().map(AsRef::as_ref)));
        if !self.memory.reserve(made.size()) {
            return Ok(None);
        }
        let block = SucceededBlock {
            parts: ids,
            made: made.clone(),
            memory: self.memory.clone(),
        };
        lock().insert(key, block);
        Ok(Some(made))
    }

    fn empty(&self, parts: Vec<u64>) -> Arc<Span> {
        Arc::new(Span {
            parts,
            made: std::sync::Mutex::new(Made::Not),
            memory: self.memory.clone(),
        })
    }

    /// Drops the spans that hold any of `parts` (replaced or erased: their events must not
    /// outlive them in memory).
    fn forget(&self, parts: &HashSet<u64>) {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, span| !span.parts.iter().any(|id| parts.contains(id)));
        self.succeeded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, block| !block.parts.iter().any(|id| parts.contains(id)));
    }

    /// Blocks of merged "ok" installs kept in memory.
    fn kept_succeeded(&self) -> usize {
        self.succeeded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Spans kept in memory.
    fn kept(&self) -> usize {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|s| {
                matches!(
                    *s.made
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                    Made::Kept(_)
                )
            })
            .count()
    }
}

/// What a query reads: a project's parts and its share of the tail, fixed when taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub project: String,
    pub parts: Vec<Arc<LivePart>>,
    pub tail: Vec<RecordBatch>,
    pub tail_rollups: Vec<Arc<RollupSet>>,
    tail_sequences: Vec<TailSequences>,
    spans: Arc<SpanCache>,
    span_days: u32,
}

impl Snapshot {
    /// The per-install event sequences of the parts and tail batches that hold events in
    /// `[since, until)` (micro-seconds; unbounded when `None`), in time order (by day, then as
    /// loaded); `joined`, a block of days read as one span where the range covers all of its
    /// parts. `None` when a part has none.
    pub fn sequences(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        joined: bool,
    ) -> Result<Option<Vec<Arc<Sequences>>>, StoreError> {
        let touches =
            |min: i64, max: i64| since.is_none_or(|s| max >= s) && until.is_none_or(|u| min < u);
        let within =
            |min: i64, max: i64| since.is_none_or(|s| min >= s) && until.is_none_or(|u| max < u);
        let mut tail: Vec<(i64, Arc<Sequences>)> = Vec::new();
        let mut tail_days = std::collections::BTreeSet::new();
        for (batch, memo) in self.tail.iter().zip(&self.tail_sequences) {
            let made = if let Some(made) = memo.get() {
                made
            } else {
                let made = tail_sequences(batch)?;
                memo.get_or_init(|| made)
            };
            let Some(days) = made else {
                return Ok(None);
            };
            for (day, s) in days {
                let (from, to) = (day * MICROS_PER_DAY, (day + 1) * MICROS_PER_DAY - 1);
                if touches(from, to) {
                    tail_days.insert(*day);
                    tail.push((*day, s.clone()));
                }
            }
        }
        let mut out: Vec<(i64, Arc<Sequences>)> = Vec::new();
        let mut singles = self.blocks(|first_day, days, group| {
            let last_day = first_day + days - 1;
            if !joined
                || tail_days.range(first_day..=last_day).next().is_some()
                || !group.iter().all(|p| within(p.meta.min_ts, p.meta.max_ts))
            {
                return Ok(false);
            }
            let span = self.spans.get(&self.project, first_day, days, group)?;
            Ok(span.map(|s| out.push((first_day, s))).is_some())
        })?;
        singles.retain(|p| touches(p.meta.min_ts, p.meta.max_ts));
        // Read on two threads: most of the time is copying the files out of the page cache.
        let half = singles.len().div_ceil(2);
        let read = |ps: &[&Arc<LivePart>]| -> Result<Option<Vec<Arc<Sequences>>>, StoreError> {
            ps.iter().map(|p| p.sequences()).collect()
        };
        let (a, b) = std::thread::scope(|scope| {
            let later = scope.spawn(|| read(&singles[half..]));
            let first = read(&singles[..half]);
            (
                first,
                later
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            )
        });
        let (Some(a), Some(b)) = (a?, b?) else {
            return Ok(None);
        };
        out.extend(
            singles
                .iter()
                .map(|p| p.meta.day)
                .zip(a.into_iter().chain(b)),
        );
        out.extend(tail);
        // Stable: within a day, parts come before the tail (they were loaded first), each in
        // the order it was loaded; a span's block holds no other part or tail batch.
        out.sort_by_key(|(day, _)| *day);
        Ok(Some(out.into_iter().map(|(_, s)| s).collect()))
    }

    /// The project's parts by day, as blocks of days that `join(first_day, days, parts)` takes
    /// to read as one, and single parts (returned, in day order). Blocks are
    /// [`Options::sequence_span_days`] long; where one is not yet past, its halves are tried,
    /// and so on down to an eighth of it, so that only the last few days are read part by part.
    /// `join` is asked only for past blocks of more than one part.
    fn blocks<'a>(
        &'a self,
        mut join: impl FnMut(i64, i64, &[&'a Arc<LivePart>]) -> Result<bool, StoreError>,
    ) -> Result<Vec<&'a Arc<LivePart>>, StoreError> {
        let mut parts: Vec<&Arc<LivePart>> = self.parts.iter().collect();
        parts.sort_by_key(|p| (p.meta.day, p.meta.id));
        if self.span_days == 0 {
            return Ok(parts);
        }
        let today = today();
        let top = i64::from(self.span_days);
        let sizes: Vec<i64> = std::iter::successors(Some(top), |d| Some(d / 2))
            .take_while(|d| *d > 0 && *d >= top / 8)
            .collect();
        let mut singles: Vec<&Arc<LivePart>> = Vec::new();
        let mut todo: Vec<(&[&Arc<LivePart>], usize)> = vec![(&parts[..], 0)];
        while let Some((ps, level)) = todo.pop() {
            let days = sizes[level];
            let mut at = 0;
            while at < ps.len() {
                let block = ps[at].meta.day.div_euclid(days);
                let end = at + ps[at..].partition_point(|p| p.meta.day.div_euclid(days) == block);
                let group = &ps[at..end];
                at = end;
                let first_day = block * days;
                // Past: its last day, and the day after it, are over.
                let past = first_day + days < today;
                if past && group.len() > 1 && join(first_day, days, group)? {
                    continue;
                }
                if !past && level + 1 < sizes.len() {
                    todo.push((group, level + 1));
                } else {
                    singles.extend(group);
                }
            }
        }
        singles.sort_by_key(|p| (p.meta.day, p.meta.id));
        Ok(singles)
    }

    /// Friction's merged "ok" installs of the blocks of days within `[from, until)` (days since
    /// the epoch, unbounded when `None`), and which of [`Snapshot::rollups`] they stand for.
    pub fn blocks_of_rollups(
        &self,
        from: Option<i32>,
        until: Option<i32>,
    ) -> Result<Blocks, StoreError> {
        let mut succeeded = Vec::new();
        let mut covered = HashSet::new();
        self.blocks(|first_day, days, group| {
            let inside = from.is_none_or(|f| first_day >= i64::from(f))
                && until.is_none_or(|u| first_day + days <= i64::from(u));
            if !inside {
                return Ok(false);
            }
            let Some(s) = self
                .spans
                .succeeded(&self.project, first_day, days, group)?
            else {
                return Ok(false);
            };
            succeeded.push(s);
            covered.extend(group.iter().map(|p| p.meta.id));
            Ok(true)
        })?;
        let covered = self
            .parts
            .iter()
            .map(|p| covered.contains(&p.meta.id))
            .chain(self.tail_rollups.iter().map(|_| false))
            .collect();
        Ok(Blocks { succeeded, covered })
    }

    /// The rollups of every part and of the tail.
    pub fn rollups(&self) -> Result<Vec<Arc<RollupSet>>, StoreError> {
        let mut out = Vec::with_capacity(self.parts.len() + self.tail_rollups.len());
        for p in &self.parts {
            out.push(p.rollup()?);
        }
        out.extend(self.tail_rollups.iter().cloned());
        Ok(out)
    }
}

/// Figures for `/metrics` and the CLI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub parts: usize,
    pub part_rows: u64,
    pub part_bytes: u64,
    pub tail_rows: usize,
    pub loaded_to: LogPos,
    pub sealed_to: LogPos,
    /// Memory the parts and spans keep their sequences in (for funnels and paths), and the
    /// blocks their merged "ok" installs (for friction).
    pub sequence_cache_bytes: usize,
    /// Blocks of days whose sequences are kept joined in memory.
    pub sequence_spans: usize,
    /// Blocks of days whose "ok" installs are kept merged for friction.
    pub succeeded_blocks: usize,
    /// Rounds the loader has finished.
    pub load_rounds: u64,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    log_dir: PathBuf,
    options: Options,
    state: RwLock<State>,
    mutations: std::sync::Mutex<()>,
    sequence_cache: Arc<SequenceCache>,
    spans: Arc<SpanCache>,
    /// Events read from the log since the store was opened (erased ones too).
    loaded_events: std::sync::atomic::AtomicU64,
    load_rounds: std::sync::atomic::AtomicU64,
    /// Events in the tail. Changed only under the state's write lock, with the tail, but read
    /// without the lock: every ingest request asks, and must never queue behind the loader
    /// waiting to write.
    tail_rows: std::sync::atomic::AtomicUsize,
}

impl Store {
    /// Opens the store of the data dir `data`, reading the whole log after the manifest's
    /// position into the tail. Read-only: nothing on disk changes until
    /// [`Store::prepare_loading`].
    pub fn open(data: &Path, options: Options) -> Result<Store, StoreError> {
        Store::open_until(data, options, None)
    }

    /// Like [`Store::open`], reading the log only up to `until` (what the writer made durable).
    pub fn open_until(
        data: &Path,
        options: Options,
        until: Option<LogPos>,
    ) -> Result<Store, StoreError> {
        let store = Store::open_behind(data, options)?;
        store.catch_up(until)?;
        Ok(store)
    }

    /// Opens the store without reading the log: the tail starts empty at the manifest's
    /// position. For the loader, which reads what follows with [`Store::load_step`] a piece at
    /// a time and seals each piece: however much of the log is unsealed (after a crash, say),
    /// memory holds one piece, and a crash while catching up keeps the pieces already sealed.
    pub fn open_behind(data: &Path, options: Options) -> Result<Store, StoreError> {
        let layout = opentally_log::DataDir::new(data);
        let dir = layout.store();
        let manifest = Manifest::load(&dir)?;
        let sequence_cache = Arc::new(SequenceCache {
            used: std::sync::atomic::AtomicUsize::new(0),
            limit: options.sequence_cache_bytes,
        });
        let parts = manifest
            .parts
            .iter()
            .map(|m| LivePart::new(&dir, m.clone(), None, &sequence_cache))
            .collect();
        let state = State {
            tail_pos: manifest.log,
            manifest,
            parts,
            ..State::default()
        };
        Ok(Store {
            dir,
            log_dir: layout.log(),
            options,
            state: RwLock::new(state),
            mutations: std::sync::Mutex::new(()),
            spans: Arc::new(SpanCache {
                spans: std::sync::Mutex::default(),
                succeeded: std::sync::Mutex::default(),
                memory: sequence_cache.clone(),
            }),
            sequence_cache,
            loaded_events: std::sync::atomic::AtomicU64::new(0),
            load_rounds: std::sync::atomic::AtomicU64::new(0),
            tail_rows: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Makes this process the loader: creates the directories and deletes part files that no
    /// manifest names (written by a seal that crashed before its manifest swap).
    pub fn prepare_loading(&self) -> Result<usize, StoreError> {
        let parts_dir = self.dir.join("parts");
        fs::create_dir_all(&parts_dir)?;
        let live: HashSet<PathBuf> = self
            .read()
            .parts
            .iter()
            .flat_map(|p| p.files().cloned())
            .collect();
        let mut removed = 0;
        for project in fs::read_dir(&parts_dir)? {
            let project = project?.path();
            if !project.is_dir() {
                continue;
            }
            for f in fs::read_dir(&project)? {
                let f = f?.path();
                if !live.contains(&f) {
                    fs::remove_file(&f)?;
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed part files of an unfinished seal");
        }
        Ok(removed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Reads log records after the tail's position (and before `until`, when given) into the
    /// tail; returns how many events were added.
    pub fn catch_up(&self, until: Option<LogPos>) -> Result<usize, StoreError> {
        let _one = self.lock_mutations();
        Ok(self.catch_up_locked(until, usize::MAX)?.0)
    }

    /// Reads log records into the tail until `until`, or until a record takes it to `most`
    /// events read; returns how many were added and whether the log holds more before `until`.
    fn catch_up_locked(
        &self,
        until: Option<LogPos>,
        most: usize,
    ) -> Result<(usize, bool), StoreError> {
        let (from, erased, dropped) = {
            let s = self.read();
            (
                s.tail_pos,
                s.manifest.erased.clone(),
                s.manifest.dropped.clone(),
            )
        };
        let mut builders: HashMap<String, BatchBuilder> = HashMap::new();
        let mut bad = 0u64;
        let mut read = 0usize;
        let mut stopped = false;
        let end = wal::read_range_while(&self.log_dir, from, until, |pos, payload| {
            match serde_json::from_slice::<RecordView<'_>>(payload) {
                Ok(rec)
                    if dropped
                        .iter()
                        .any(|d| pos < d.before && d.project == rec.project) =>
                {
                    read += rec.events.len();
                }
                Ok(rec) => {
                    if !builders.contains_key(&*rec.project) {
                        builders.insert(rec.project.to_string(), BatchBuilder::new());
                    }
                    let b = builders.get_mut(&*rec.project).expect("inserted above");
                    for e in &rec.events {
                        let gone = erased.iter().any(|x| {
                            pos < x.before && x.project == rec.project && x.install == e.install
                        });
                        if !gone {
                            b.push_view(&rec.project, rec.received_at, e);
                        }
                    }
                    read += rec.events.len();
                }
                Err(_) => bad += 1,
            }
            if read >= most {
                stopped = true;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        self.loaded_events.fetch_add(read as u64, Ordering::Relaxed);
        if bad > 0 {
            tracing::error!(
                bad,
                "log records with a valid checksum but unreadable content"
            );
        }
        let batches: Vec<(String, RecordBatch, Vec<RollupRow>)> = builders
            .into_iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(project, mut b)| {
                let batch = b.finish();
                let rollup = rollup::of_batch(&batch);
                (project, batch, rollup)
            })
            .collect();
        let mut added = 0;
        let mut state = self.write();
        for (project, batch, rollup) in batches {
            added += batch.num_rows();
            state.tail.entry(project.clone()).or_default().push(batch);
            state
                .tail_rollups
                .entry(project.clone())
                .or_default()
                .push(Arc::new(RollupSet::new(rollup, true)));
            state
                .tail_sequences
                .entry(project)
                .or_default()
                .push(TailSequences::default());
        }
        if added > 0 && state.tail_since.is_none() {
            state.tail_since = Some(Instant::now());
        }
        self.tail_rows.fetch_add(added, Ordering::Relaxed);
        state.tail_pos = end.max(from);
        // `stopped` only says the log may hold more: a stop on its last record before `until`
        // is found out by the next round, which reads nothing.
        Ok((added, stopped))
    }

    /// Adds events that did not come through the log (generated demo data) and seals them at
    /// once. Only for a data dir no server is loading.
    pub fn import(&self, project: &str, events: &[StoredEvent]) -> Result<usize, StoreError> {
        let _one = self.lock_mutations();
        let mut b = BatchBuilder::new();
        for e in events {
            b.push(project, e.timestamp, e);
        }
        {
            let mut s = self.write();
            s.tail
                .entry(project.to_owned())
                .or_default()
                .push(b.finish());
            self.tail_rows.fetch_add(events.len(), Ordering::Relaxed);
        }
        self.seal_locked()
    }

    /// True when the tail is due to be sealed.
    pub fn seal_due(&self) -> bool {
        let s = self.read();
        let tail_rows = self.tail_rows();
        tail_rows >= self.options.seal_rows
            || s.tail_since
                .is_some_and(|t| t.elapsed() >= self.options.seal_after)
            || (tail_rows == 0 && s.tail_pos != s.manifest.log)
    }

    /// Writes the tail as parts (one per project and day, sorted by event and time), then swaps
    /// in a manifest naming them and the log position they reach. Only the loader calls this.
    /// Returns the number of events sealed.
    pub fn seal(&self) -> Result<usize, StoreError> {
        let _one = self.lock_mutations();
        self.seal_locked()
    }

    fn seal_locked(&self) -> Result<usize, StoreError> {
        let (tail, pos, mut manifest) = {
            let s = self.read();
            (s.tail.clone(), s.tail_pos, s.manifest.clone())
        };
        let mut new_parts = Vec::new();
        let mut rows = 0;
        for (project, batches) in &tail {
            let sources: Vec<&RecordBatch> = batches.iter().collect();
            for (day, order) in day_orders(batches) {
                rows += order.len();
                let meta = self.write_day(&mut manifest, project, day, &sources, &order)?;
                new_parts.push(meta);
            }
        }
        manifest
            .parts
            .extend(new_parts.iter().map(|(m, _)| m.clone()));
        manifest.log = pos;
        // No reload reads the records before the sealed position again.
        manifest.erased.retain(|e| e.before > pos);
        manifest.dropped.retain(|d| d.before > pos);
        manifest.store(&self.dir)?;
        let mut s = self.write();
        s.manifest = manifest;
        for (m, rollup) in new_parts {
            s.parts.push(LivePart::new(
                &self.dir,
                m,
                Some(rollup),
                &self.sequence_cache,
            ));
        }
        // Only the loader adds to the tail, and it is busy here: the tail is what was sealed.
        s.tail.clear();
        s.tail_rollups.clear();
        s.tail_sequences.clear();
        self.tail_rows.store(0, Ordering::Relaxed);
        s.tail_since = None;
        Ok(rows)
    }

    fn write_part(
        &self,
        manifest: &mut Manifest,
        project: &str,
        day: i64,
        batch: &RecordBatch,
    ) -> Result<(PartMeta, Vec<RollupRow>), StoreError> {
        let mut w = self.part_writer(manifest, project, day)?;
        w.write(batch)?;
        w.finish(
            &self.dir,
            rollup::of_batch(batch),
            sequence::encode_file(batch),
        )
    }

    /// Writes the rows of `sources` at `order` (one day's, sorted) as a part, copied straight
    /// from the sources a chunk at a time: a seal holds the tail and a chunk, not a sorted copy
    /// of the day besides. The sequences are made from a copy of only the columns they read.
    fn write_day(
        &self,
        manifest: &mut Manifest,
        project: &str,
        day: i64,
        sources: &[&RecordBatch],
        order: &[(usize, usize)],
    ) -> Result<(PartMeta, Vec<RollupRow>), StoreError> {
        let mut w = self.part_writer(manifest, project, day)?;
        let mut rollups = rollup::Merger::default();
        for chunk in order.chunks(self.options.chunk_rows.max(1)) {
            let b = interleave_record_batch(sources, chunk)?;
            rollups.add(rollup::of_batch(&b));
            w.write(&b)?;
        }
        let columns = sequence::column_indices(&schema::schema())?;
        let projected = sources
            .iter()
            .map(|b| b.project(&columns))
            .collect::<Result<Vec<_>, _>>()?;
        let projected: Vec<&RecordBatch> = projected.iter().collect();
        let sequences = sequence::encode_file(&interleave_record_batch(&projected, order)?);
        w.finish(&self.dir, rollups.finish(), sequences)
    }

    /// A new part of `project`'s `day`, numbered from `manifest`, its rows written as they come.
    fn part_writer(
        &self,
        manifest: &mut Manifest,
        project: &str,
        day: i64,
    ) -> Result<PartWriter, StoreError> {
        let id = manifest.next_part;
        manifest.next_part += 1;
        let stem = format!("parts/{project}/{day}-{id:08}");
        let path = self.dir.join(format!("{stem}.parquet"));
        fs::create_dir_all(path.parent().expect("a part has a directory"))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_data_page_size_limit(PAGE_BYTES)
            .set_dictionary_page_size_limit(2 * PAGE_BYTES)
            .build();
        let writer = ArrowWriter::try_new(File::create(&path)?, schema::schema(), Some(props))?;
        Ok(PartWriter {
            name: PartName {
                id,
                project: project.to_owned(),
                day,
                stem,
            },
            writer,
            rows: 0,
            ts: None,
        })
    }

    /// Merges the smallest parts of each project's day into one, when a day has gathered
    /// `compact_parts` of them, at most `compact_max_parts` a merge: one pass, so a day may keep
    /// more to merge. Returns the number of parts merged away.
    pub fn compact(&self) -> Result<usize, StoreError> {
        let _one = self.lock_mutations();
        self.compact_locked(self.options.compact_parts)
    }

    /// Merges the smallest parts of each day that has at least `min_parts` of them that fit in
    /// `compact_rows` together, at most `compact_max_parts` of them.
    fn compact_locked(&self, min_parts: usize) -> Result<usize, StoreError> {
        // A merge numbers its parts in 16 bits (see [`merge_order`]).
        let max_parts = self
            .options
            .compact_max_parts
            .clamp(2, usize::from(u16::MAX));
        let (candidates, mut manifest) = {
            let s = self.read();
            let mut by_day: BTreeMap<(String, i64), Vec<PartMeta>> = BTreeMap::new();
            for p in &s.manifest.parts {
                if p.rows < self.options.compact_rows {
                    by_day
                        .entry((p.project.clone(), p.day))
                        .or_default()
                        .push(p.clone());
                }
            }
            // The smallest parts first, and no more than `compact_rows` in all: what a merge
            // holds in memory is bounded, however many events a day gathers.
            let c: Vec<_> = by_day
                .into_iter()
                .filter_map(|(day, mut v)| {
                    v.sort_by_key(|p| p.rows);
                    let mut sum = 0;
                    let fit = v
                        .iter()
                        .take_while(|p| {
                            sum += p.rows;
                            sum <= self.options.compact_rows
                        })
                        .count();
                    v.truncate(fit.min(max_parts));
                    (fit >= min_parts.max(2)).then_some((day, v))
                })
                .collect();
            if c.is_empty() {
                return Ok(0);
            }
            (c, s.manifest.clone())
        };
        let mut merged = 0;
        let mut replaced: HashSet<u64> = HashSet::new();
        let mut added = Vec::new();
        for ((project, day), parts) in candidates {
            let w = self.part_writer(&mut manifest, &project, day)?;
            added.push(w.finish_merged(
                &self.dir,
                &parts,
                self.options.chunk_rows.max(1),
                || {
                    let mut rollups = rollup::Merger::default();
                    for p in &parts {
                        rollups.add(self.part_rollup(p)?);
                    }
                    Ok((rollups.finish(), self.compacted_sequences(&parts)?))
                },
            )?);
            merged += parts.len();
            replaced.extend(parts.iter().map(|p| p.id));
        }
        drop(self.swap_parts(manifest, &replaced, added)?);
        Ok(merged)
    }

    /// The rollup rows of `part`, for the rollup of a part it is merged into: from its rollup
    /// file, else (none, one written before error rows kept their sessions, or one damaged)
    /// made from its rows, a batch at a time.
    fn part_rollup(&self, part: &PartMeta) -> Result<Vec<RollupRow>, StoreError> {
        if let Some(rel) = &part.rollup {
            match rollup::read(&self.dir.join(rel)) {
                Ok(Some((rows, true))) => return Ok(rows),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        part = part.id,
                        error = %e,
                        "rollup file unreadable; made again from the part's rows"
                    );
                }
            }
        }
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(self.dir.join(&part.file))?)?
                .with_batch_size(self.options.chunk_rows.max(1))
                .build()?;
        let mut rollups = rollup::Merger::default();
        for b in reader {
            rollups.add(rollup::of_batch(&b?));
        }
        Ok(rollups.finish())
    }

    /// The sequences of the part that `parts` are merged into, joined from theirs; `None` when
    /// one of them has none (the merged part then has none either, as a part too large for them).
    fn compacted_sequences(&self, parts: &[PartMeta]) -> Result<Option<SeqFile>, StoreError> {
        let mut read = Vec::with_capacity(parts.len());
        for p in parts {
            let Some(rel) = &p.sequences else {
                return Ok(None);
            };
            match SeqStream::open(&self.dir.join(rel)) {
                Ok(s) => read.push(s),
                // Queries scan the events of a part whose file is damaged; so will the merged
                // part's, rather than the merge failing at every round.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::NotFound
                    ) =>
                {
                    tracing::warn!(part = p.id, error = %e, "sequence file unreadable; the merged part has none");
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let joined = sequence::compact(read)?;
        if joined.is_some() {
            return Ok(joined);
        }
        // An install with two events at one time in different parts (rare): only the rows'
        // message ids order them, so the sequences are made from the parts' columns they read.
        let mut batches = Vec::new();
        for p in parts {
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(File::open(self.dir.join(&p.file))?)?;
            let columns = sequence::column_indices(builder.schema())?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), columns);
            for b in builder.with_projection(mask).build()? {
                batches.push(b?);
            }
        }
        let Some(first) = batches.first() else {
            return Ok(None);
        };
        Ok(sequence::encode_file(&concat_batches(
            &first.schema(),
            &batches,
        )?))
    }

    /// Deletes the files of retired parts that no query holds any more.
    pub fn delete_retired(&self) -> Result<usize, StoreError> {
        let free: Vec<Arc<LivePart>> = {
            let mut s = self.write();
            let (free, held) = std::mem::take(&mut s.retired)
                .into_iter()
                .partition(|p| Arc::strong_count(p) == 1);
            s.retired = held;
            free
        };
        for p in &free {
            for path in p.files() {
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(free.len())
    }

    /// The parts and tail of `project`, as they are now.
    pub fn snapshot(&self, project: &str) -> Snapshot {
        let s = self.read();
        Snapshot {
            project: project.to_owned(),
            spans: self.spans.clone(),
            span_days: self.options.sequence_span_days,
            parts: s
                .parts
                .iter()
                .filter(|p| p.meta.project == project)
                .cloned()
                .collect(),
            tail: s.tail.get(project).cloned().unwrap_or_default(),
            tail_rollups: s.tail_rollups.get(project).cloned().unwrap_or_default(),
            tail_sequences: s.tail_sequences.get(project).cloned().unwrap_or_default(),
        }
    }

    /// Every project with events, in name order.
    pub fn projects(&self) -> Vec<String> {
        let s = self.read();
        let mut names: Vec<String> = s
            .parts
            .iter()
            .map(|p| p.meta.project.clone())
            .chain(s.tail.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Events read from the log since the store was opened, the read at opening included:
    /// what a writer that counts the events it appends compares to know how far loading lags.
    pub fn loaded_events(&self) -> u64 {
        self.loaded_events.load(Ordering::Relaxed)
    }

    /// Events loaded but not sealed; reads no lock.
    pub fn tail_rows(&self) -> usize {
        self.tail_rows.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Stats {
        let s = self.read();
        Stats {
            parts: s.parts.len(),
            part_rows: s.parts.iter().map(|p| p.meta.rows).sum(),
            part_bytes: s.parts.iter().map(|p| p.meta.bytes).sum(),
            tail_rows: self.tail_rows(),
            loaded_to: s.tail_pos,
            sealed_to: s.manifest.log,
            sequence_cache_bytes: self
                .sequence_cache
                .used
                .load(std::sync::atomic::Ordering::Relaxed),
            sequence_spans: self.spans.kept(),
            succeeded_blocks: self.spans.kept_succeeded(),
            load_rounds: self.load_rounds.load(Ordering::Relaxed),
        }
    }

    /// The loader: tails the log up to what `durable` says is durable, seals and compacts, and
    /// deletes log segments that are sealed and before `keep_from` (what the log's writer still
    /// needs), until `stop` is set (then unpark the thread); then loads and seals what is left.
    pub fn run_loader(
        &self,
        durable: &dyn Fn() -> LogPos,
        keep_from: &dyn Fn() -> LogPos,
        stop: &AtomicBool,
    ) {
        let mut failing = false;
        let mut retention_due = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if let Some(days) = self
                .options
                .retention_days
                .filter(|_| Instant::now() >= retention_due)
            {
                retention_due = Instant::now() + Duration::from_secs(3600);
                if let Err(e) = self.apply_retention(days) {
                    tracing::error!(error = %e, "the retention job failed");
                }
            }
            let result = self
                .load_step(durable(), stopping)
                .and_then(|more| self.remove_loaded_segments(keep_from()).map(|_| more));
            let more = match result {
                Ok(more) => {
                    failing = false;
                    more
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "loading into the store failed; retrying");
                    }
                    failing = true;
                    false
                }
            };
            if stopping && !more {
                break;
            }
            if !more {
                // Whoever sets `stop` unparks this thread, so stopping never waits out a poll.
                std::thread::park_timeout(self.options.poll);
            }
        }
    }

    /// One round of the loader: reads the log until the tail holds `seal_rows` events (so the
    /// tail's memory stays bounded however far behind loading is: `seal_rows` and the rest of
    /// the last record read), seals when due, compacts. Returns whether the log holds more
    /// before `durable`.
    pub fn load_step(&self, durable: LogPos, force_seal: bool) -> Result<bool, StoreError> {
        let _one = self.lock_mutations();
        let room = self.options.seal_rows.saturating_sub(self.tail_rows());
        // A full tail (its seal failed last round) is sealed before anything more is read.
        let more = room == 0 || self.catch_up_locked(Some(durable), room)?.1;
        let nonempty = self.tail_rows() > 0;
        if self.seal_due() || (force_seal && nonempty && !more) {
            self.seal_locked()?;
        }
        // Compaction rewrites parts, work that can mostly wait for loading to catch up: while
        // the log holds more, only a day with `compact_behind_parts` small parts is compacted.
        self.compact_locked(if more {
            self.options.compact_behind_parts
        } else {
            self.options.compact_parts
        })?;
        self.delete_retired()?;
        self.load_rounds.fetch_add(1, Ordering::Relaxed);
        Ok(more)
    }
}

impl Store {
    /// Removes every event of `install` in `project`: rewrites the parts that hold it (the old
    /// files go once no query holds them), drops it from the tail, and records the erasure in
    /// the manifest so that reading the log again after a crash does not bring it back.
    /// Returns how many events were removed. Only the loading process may call this.
    pub fn erase(&self, project: &str, install: &str) -> Result<u64, StoreError> {
        let _one = self.lock_mutations();
        let (parts, mut manifest, tail_pos) = {
            let s = self.read();
            let parts: Vec<Arc<LivePart>> = s
                .parts
                .iter()
                .filter(|p| p.meta.project == project)
                .cloned()
                .collect();
            (parts, s.manifest.clone(), s.tail_pos)
        };
        let mut removed = 0u64;
        let mut replaced: HashSet<u64> = HashSet::new();
        let mut added = Vec::new();
        for p in &parts {
            let batch = concat_batches(&schema::schema(), &read_part(&p.path)?)?;
            let (kept, n) = without_install(&batch, install)?;
            if n == 0 {
                continue;
            }
            removed += n;
            replaced.insert(p.meta.id);
            if kept.num_rows() > 0 {
                added.push(self.write_part(&mut manifest, project, p.meta.day, &kept)?);
            }
        }
        // The tail: filtered in memory; the log keeps the events, so the erasure is recorded.
        let tail: Vec<RecordBatch> = self.read().tail.get(project).cloned().unwrap_or_default();
        let mut new_tail = Vec::with_capacity(tail.len());
        let mut tail_removed = 0u64;
        for b in &tail {
            let (kept, n) = without_install(b, install)?;
            tail_removed += n;
            new_tail.push(kept);
        }
        removed += tail_removed;
        if tail_removed > 0 || manifest.log < tail_pos {
            manifest.erased.push(crate::manifest::Erasure {
                project: project.to_owned(),
                install: install.to_owned(),
                before: tail_pos,
            });
        }
        let mut s = self.swap_parts(manifest, &replaced, added)?;
        if tail_removed > 0 {
            let rollups = new_tail
                .iter()
                .map(|b| Arc::new(RollupSet::new(rollup::of_batch(b), true)))
                .collect();
            s.tail_sequences.insert(
                project.to_owned(),
                new_tail.iter().map(|_| TailSequences::default()).collect(),
            );
            s.tail.insert(project.to_owned(), new_tail);
            s.tail_rollups.insert(project.to_owned(), rollups);
            self.tail_rows.fetch_sub(
                usize::try_from(tail_removed).expect("a tail fits in memory"),
                Ordering::Relaxed,
            );
        }
        Ok(removed)
    }

    /// Removes every event of `project`: its parts (their files go once no query holds them),
    /// its tail, and, recorded in the manifest, its log records before `before` that are not
    /// sealed yet, so that reading the log again does not bring them back. Returns how many
    /// events were removed from parts and tail. Only the loading process may call this.
    pub fn drop_project(&self, project: &str, before: LogPos) -> Result<u64, StoreError> {
        let _one = self.lock_mutations();
        let mut manifest = self.read().manifest.clone();
        let gone: HashSet<u64> = manifest
            .parts
            .iter()
            .filter(|p| p.project == project)
            .map(|p| p.id)
            .collect();
        let mut removed: u64 = manifest
            .parts
            .iter()
            .filter(|p| p.project == project)
            .map(|p| p.rows)
            .sum();
        if manifest.log < before {
            manifest.dropped.retain(|d| d.project != project);
            manifest.dropped.push(crate::manifest::ProjectDrop {
                project: project.to_owned(),
                before,
            });
        }
        let mut s = self.swap_parts(manifest, &gone, Vec::new())?;
        if let Some(tail) = s.tail.remove(project) {
            let rows: usize = tail.iter().map(RecordBatch::num_rows).sum();
            removed += rows as u64;
            self.tail_rows.fetch_sub(rows, Ordering::Relaxed);
        }
        s.tail_rollups.remove(project);
        s.tail_sequences.remove(project);
        Ok(removed)
    }

    /// Drops the parts of `project` holding days before `keep_from_day` (days since the epoch):
    /// the retention job. Returns the parts and events dropped.
    pub fn drop_days_before(
        &self,
        project: &str,
        keep_from_day: i64,
    ) -> Result<(usize, u64), StoreError> {
        let _one = self.lock_mutations();
        let manifest = self.read().manifest.clone();
        let gone: Vec<&PartMeta> = manifest
            .parts
            .iter()
            .filter(|p| p.project == project && p.day < keep_from_day)
            .collect();
        if gone.is_empty() {
            return Ok((0, 0));
        }
        let dropped = (gone.len(), gone.iter().map(|p| p.rows).sum());
        let ids: HashSet<u64> = gone.iter().map(|p| p.id).collect();
        drop(self.swap_parts(manifest, &ids, Vec::new())?);
        Ok(dropped)
    }

    /// Drops every project's days older than `days` (counted back from today, UTC).
    pub fn apply_retention(&self, days: u32) -> Result<u64, StoreError> {
        let today = today();
        let mut dropped = 0;
        for project in self.projects() {
            let (parts, rows) = self.drop_days_before(&project, today - i64::from(days) + 1)?;
            if parts > 0 {
                tracing::info!(
                    project,
                    parts,
                    events = rows,
                    days,
                    "retention: dropped old days"
                );
            }
            dropped += rows;
        }
        Ok(dropped)
    }

    /// Replaces the parts `replaced` by `added` in `manifest`, stores it, and swaps it in; the
    /// old parts are retired (deleted once no query holds them). Returns the state, still
    /// locked, for changes that must appear together with the new parts.
    fn swap_parts(
        &self,
        mut manifest: Manifest,
        replaced: &HashSet<u64>,
        added: Vec<(PartMeta, Vec<RollupRow>)>,
    ) -> Result<std::sync::RwLockWriteGuard<'_, State>, StoreError> {
        manifest.parts.retain(|p| !replaced.contains(&p.id));
        manifest.parts.extend(added.iter().map(|(m, _)| m.clone()));
        manifest.store(&self.dir)?;
        self.spans.forget(replaced);
        let mut s = self.write();
        s.manifest = manifest;
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut s.parts)
            .into_iter()
            .partition(|p| replaced.contains(&p.meta.id));
        s.parts = keep;
        s.retired.extend(old);
        for (m, rollup) in added {
            s.parts.push(LivePart::new(
                &self.dir,
                m,
                Some(rollup),
                &self.sequence_cache,
            ));
        }
        Ok(s)
    }

    /// Held by whatever rewrites parts or the manifest, so the loader, erasure and retention
    /// never interleave.
    fn lock_mutations(&self) -> std::sync::MutexGuard<'_, ()> {
        self.mutations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Deletes the log segments wholly before both the sealed position and `keep_from`.
    /// Returns how many.
    pub fn remove_loaded_segments(&self, keep_from: LogPos) -> Result<usize, StoreError> {
        let sealed = self.read().manifest.log;
        Ok(wal::remove_before(&self.log_dir, sealed.min(keep_from))?)
    }
}

/// Today, in days since the epoch (UTC).
fn today() -> i64 {
    #[allow(clippy::cast_possible_wrap)]
    let days = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 86_400) as i64;
    days
}

/// The rows of `batch` whose install is not `install`, and how many were left out.
fn without_install(batch: &RecordBatch, install: &str) -> Result<(RecordBatch, u64), StoreError> {
    let col = batch
        .column_by_name("install")
        .expect("an install column")
        .as_string::<i32>();
    let keep: arrow::array::BooleanArray = col.iter().map(|v| Some(v != Some(install))).collect();
    let kept = arrow::compute::filter_record_batch(batch, &keep)?;
    let removed = (batch.num_rows() - kept.num_rows()) as u64;
    Ok((kept, removed))
}

/// Reads a whole part.
pub fn read_part(path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// Which part a [`PartWriter`] writes.
struct PartName {
    id: u64,
    project: String,
    day: i64,
    /// The files' path relative to the store directory, without extension.
    stem: String,
}

/// A part being written: its rows go to the file as they come, its rollup and sequences are
/// given when it is finished.
struct PartWriter {
    name: PartName,
    writer: ArrowWriter<File>,
    rows: u64,
    /// The smallest and largest event time written.
    ts: Option<(i64, i64)>,
}

impl PartWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
        let ts = batch
            .column_by_name("ts")
            .expect("a ts column")
            .as_primitive::<TimestampMicrosecondType>();
        if let (Some(lo), Some(hi)) = (arrow::compute::min(ts), arrow::compute::max(ts)) {
            self.ts = Some(self.ts.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch)?;
        Ok(())
    }

    /// Closes and syncs the part's file, writes its rollup and sequences beside it.
    fn finish(
        self,
        dir: &Path,
        rollup: Vec<RollupRow>,
        sequences: Option<SeqFile>,
    ) -> Result<(PartMeta, Vec<RollupRow>), StoreError> {
        let file = self.writer.into_inner()?;
        let (rows, ts) = (self.rows, self.ts);
        self.name.finish(dir, &file, rows, ts, rollup, sequences)
    }

    /// Writes the rows of `parts` (of the part's day) as its rows, merged as [`merge_order`]
    /// orders them, one column at a time; then finishes it as [`PartWriter::finish`] does, with
    /// the rollup and sequences that `derived` makes once the rows are written (so a merge does
    /// not hold them and its columns at once).
    fn finish_merged(
        self,
        dir: &Path,
        parts: &[PartMeta],
        chunk: usize,
        derived: impl FnOnce() -> Result<(Vec<RollupRow>, Option<SeqFile>), StoreError>,
    ) -> Result<(PartMeta, Vec<RollupRow>), StoreError> {
        let paths: Vec<PathBuf> = parts.iter().map(|p| dir.join(&p.file)).collect();
        let metas = part_metadata(&paths)?;
        let order = merge_order(&paths, &metas, chunk)?;
        let file = write_merged(
            &paths,
            &metas,
            &order,
            chunk,
            ROW_GROUP_ROWS,
            &schema::schema(),
            self.writer,
        )?;
        let ts = parts.iter().fold(None, |acc: Option<(i64, i64)>, p| {
            Some(acc.map_or((p.min_ts, p.max_ts), |(lo, hi)| {
                (lo.min(p.min_ts), hi.max(p.max_ts))
            }))
        });
        let rows = order.len() as u64;
        drop(order);
        let (rollup, sequences) = derived()?;
        self.name.finish(dir, &file, rows, ts, rollup, sequences)
    }
}

impl PartName {
    /// Syncs the part's `file` (of `rows` rows, event times in `ts`), writes its rollup and
    /// sequences beside it.
    fn finish(
        self,
        dir: &Path,
        file: &File,
        rows: u64,
        ts: Option<(i64, i64)>,
        rollup: Vec<RollupRow>,
        sequences: Option<SeqFile>,
    ) -> Result<(PartMeta, Vec<RollupRow>), StoreError> {
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        let rel = format!("{}.parquet", self.stem);
        let parent = dir.join(&rel);
        let parent = parent.parent().expect("a part has a directory");
        sync_dir(parent)?;
        let rollup_rel = format!("{}.rollup", self.stem);
        let rollup_bytes = rollup::write(&dir.join(&rollup_rel), &rollup)?;
        let sequences_rel = format!("{}.seq", self.stem);
        let sequences = match sequences {
            Some(file) => Some(file.write(&dir.join(&sequences_rel))?),
            None => None,
        };
        sync_dir(parent)?;
        let (min_ts, max_ts) = ts.unwrap_or_default();
        Ok((
            PartMeta {
                id: self.id,
                project: self.project,
                day: self.day,
                file: rel,
                rollup: Some(rollup_rel),
                sequences: sequences.map(|_| sequences_rel),
                rows,
                bytes: bytes + rollup_bytes + sequences.unwrap_or(0),
                min_ts,
                max_ts,
            },
            rollup,
        ))
    }
}

/// The most bytes of a part's data page (before compression). Whoever writes or reads a part holds
/// a page of each column, and compaction reads several parts at once: with Parquet's default of
/// 1 MiB, the readers of one merge of eight parts held 27 MB in a heap profile.
const PAGE_BYTES: usize = 128 * 1024;

/// The most rows of a part's row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The fewest rows a merge reads from a part at a time: below this, per-batch costs would
/// outweigh the memory saved.
const MIN_MERGE_BATCH: usize = 256;

/// The footers of the parts at `paths`, read once for both passes of a merge.
fn part_metadata(paths: &[PathBuf]) -> Result<Vec<ArrowReaderMetadata>, StoreError> {
    paths
        .iter()
        .map(|p| {
            Ok(ArrowReaderMetadata::load(
                &File::open(p)?,
                ArrowReaderOptions::new(),
            )?)
        })
        .collect()
}

/// One input of [`merge_order`]: a part's event and time columns, read a batch at a time.
struct OrderInput {
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    event: arrow::array::StringArray,
    ts: arrow::buffer::ScalarBuffer<i64>,
    row: usize,
    done: bool,
}

impl OrderInput {
    /// Moves to the part's next batch that has rows, or to its end.
    fn next_batch(&mut self) -> Result<(), StoreError> {
        self.row = 0;
        for b in self.reader.by_ref() {
            let b = b?;
            if b.num_rows() > 0 {
                let col = |n: &str| b.column_by_name(n).expect("a projected column").clone();
                self.event = col("event").as_string::<i32>().clone();
                self.ts = col("ts")
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .clone();
                return Ok(());
            }
        }
        self.done = true;
        Ok(())
    }

    /// The sort key of the next row: event (none first), then time.
    fn key(&self) -> (Option<&str>, i64) {
        let r = self.row;
        (
            self.event.is_valid(r).then(|| self.event.value(r)),
            self.ts[r],
        )
    }
}

/// The order in which the rows of parts of one day, each sorted by event and time, merge into one
/// sequence in that order (ties in the order of `paths`, then of their rows: the order
/// [`day_orders`] gives the same rows): for each merged row, the index in `paths` of the part it
/// comes from. Only the event and time columns are read, `batch` rows of each part at a time.
fn merge_order(
    paths: &[PathBuf],
    metas: &[ArrowReaderMetadata],
    batch: usize,
) -> Result<Vec<u16>, StoreError> {
    let mut inputs = Vec::with_capacity(paths.len());
    let mut rows = 0;
    for (path, meta) in paths.iter().zip(metas) {
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(File::open(path)?, meta.clone());
        rows += usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let arrow = builder.schema().clone();
        let mask = ProjectionMask::roots(
            builder.parquet_schema(),
            [arrow.index_of("event")?, arrow.index_of("ts")?],
        );
        let mut input = OrderInput {
            reader: builder
                .with_projection(mask)
                .with_batch_size(batch)
                .build()?,
            event: arrow::array::StringArray::from(Vec::<&str>::new()),
            ts: Vec::<i64>::new().into(),
            row: 0,
            done: false,
        };
        input.next_batch()?;
        inputs.push(input);
    }
    let mut order = Vec::with_capacity(rows);
    loop {
        let mut best: Option<usize> = None;
        for (i, input) in inputs.iter().enumerate() {
            if !input.done && best.is_none_or(|b| input.key() < inputs[b].key()) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        order.push(u16::try_from(b).expect("at most u16::MAX parts a merge"));
        let input = &mut inputs[b];
        input.row += 1;
        if input.row == input.ts.len() {
            input.next_batch()?;
        }
    }
    Ok(order)
}

/// One input of [`write_merged`]: one column of a part, from a given row, a batch at a time.
struct ColumnInput {
    reader: Option<parquet::arrow::arrow_reader::ParquetRecordBatchReader>,
    /// The batch being read, the next row in it, and where it is among the sources of the chunk
    /// being gathered.
    array: Option<arrow::array::ArrayRef>,
    row: usize,
    slot: usize,
}

impl ColumnInput {
    /// Moves to the next batch that has rows, and adds it to `sources`; an error if there is
    /// none, since the part was counted to hold the row.
    fn next_batch(&mut self, sources: &mut Vec<arrow::array::ArrayRef>) -> Result<(), StoreError> {
        self.row = 0;
        for b in self.reader.iter_mut().flatten() {
            let b = b?;
            if b.num_rows() > 0 {
                self.slot = sources.len();
                sources.push(b.column(0).clone());
                self.array = Some(b.column(0).clone());
                return Ok(());
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a part ended before its merge did",
        )
        .into())
    }
}

/// Writes the rows of `paths` (parts of one day with the schema `writer` was made for) in
/// `order` (as [`merge_order`] gives it) to `writer`'s file in row groups of `row_group_rows`, one
/// column of a row group at a time,
/// copied `chunk` rows at a time: a merge then holds a reader of each part for one column, not
/// for all of them, and one column chunk of the output, not a whole row group. Returns the file,
/// its footer written, not yet synced.
fn write_merged(
    paths: &[PathBuf],
    metas: &[ArrowReaderMetadata],
    order: &[u16],
    chunk: usize,
    row_group_rows: usize,
    schema: &arrow::datatypes::Schema,
    writer: ArrowWriter<File>,
) -> Result<File, StoreError> {
    use arrow::array::ArrayRef;
    use parquet::arrow::arrow_writer::compute_leaves;

    let (mut file, columns) = writer.into_serialized_writer()?;
    for (path, meta) in paths.iter().zip(metas) {
        if meta.parquet_schema().num_columns() != schema.fields().len() {
            return Err(ParquetError::General(format!(
                "{}: {} leaf columns, expected {}",
                path.display(),
                meta.parquet_schema().num_columns(),
                schema.fields().len()
            ))
            .into());
        }
    }
    let batch = (chunk / paths.len().max(1)).max(MIN_MERGE_BATCH);
    // How many rows of each part the row groups written so far took.
    let mut done = vec![0_usize; paths.len()];
    for (g, group) in order.chunks(row_group_rows.max(1)).enumerate() {
        let mut counts = vec![0_usize; paths.len()];
        for &p in group {
            counts[usize::from(p)] += 1;
        }
        let mut row_group = file.next_row_group()?;
        for (c, mut out) in columns.create_column_writers(g)?.into_iter().enumerate() {
            let mut inputs = Vec::with_capacity(paths.len());
            for (p, path) in paths.iter().enumerate() {
                let reader = if counts[p] == 0 {
                    None
                } else {
                    let mask = ProjectionMask::leaves(metas[p].parquet_schema(), [c]);
                    Some(
                        ParquetRecordBatchReaderBuilder::new_with_metadata(
                            File::open(path)?,
                            metas[p].clone(),
                        )
                        .with_projection(mask)
                        .with_batch_size(batch)
                        .with_offset(done[p])
                        .with_limit(counts[p])
                        .build()?,
                    )
                };
                inputs.push(ColumnInput {
                    reader,
                    array: None,
                    row: 0,
                    slot: 0,
                });
            }
            let field = schema.field(c);
            let mut sources: Vec<ArrayRef> = Vec::new();
            let mut take: Vec<(usize, usize)> = Vec::with_capacity(chunk.min(group.len()));
            for rows in group.chunks(chunk) {
                // The chunk's sources: the batch each part is in, then those it moves on to.
                sources.clear();
                for input in &mut inputs {
                    if let Some(a) = &input.array {
                        input.slot = sources.len();
                        sources.push(a.clone());
                    }
                }
                take.clear();
                for &p in rows {
                    let input = &mut inputs[usize::from(p)];
                    if input.array.as_ref().is_none_or(|a| input.row == a.len()) {
                        input.next_batch(&mut sources)?;
                    }
                    take.push((input.slot, input.row));
                    input.row += 1;
                }
                let refs: Vec<&dyn Array> = sources.iter().map(AsRef::as_ref).collect();
                let merged = arrow::compute::interleave(&refs, &take)?;
                for leaf in compute_leaves(field, &merged)? {
                    out.write(&leaf)?;
                }
            }
            drop(inputs);
            out.close()?.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        for (d, n) in done.iter_mut().zip(counts) {
            *d += n;
        }
    }
    Ok(file.into_inner()?)
}

/// Where each row of `batches` goes: per day (event time, UTC), the rows' `(batch, row)`
/// positions sorted by event (no event first) and time, ties in the order given. A day's rows
/// are then copied once, by [`interleave_record_batch`], when the day is written.
fn day_orders(batches: &[RecordBatch]) -> Vec<(i64, Vec<(usize, usize)>)> {
    let mut keys: Vec<(i64, Option<&str>, i64, usize, usize)> =
        Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for (b, batch) in batches.iter().enumerate() {
        let col = |n: &str| batch.column_by_name(n).expect("a schema column");
        let ts = col("ts").as_primitive::<TimestampMicrosecondType>();
        let event = col("event").as_string::<i32>();
        debug_assert!(ts.null_count() == 0);
        for (r, t) in ts.values().iter().enumerate() {
            let name = event.is_valid(r).then(|| event.value(r));
            keys.push((t.div_euclid(MICROS_PER_DAY), name, *t, b, r));
        }
    }
    // Every key is distinct (its position is in it), so an unstable sort keeps ties in order.
    keys.sort_unstable();
    let mut out: Vec<(i64, Vec<(usize, usize)>)> = Vec::new();
    for (day, _, _, b, r) in keys {
        match out.last_mut() {
            Some((d, rows)) if *d == day => rows.push((b, r)),
            _ => out.push((day, vec![(b, r)])),
        }
    }
    out
}

/// The rows of `batches` by day (event time, UTC), each day sorted by event and time and copied
/// only when the iterator reaches it, so that one day at a time is held besides the batches.
fn split_by_day(
    batches: &[RecordBatch],
) -> impl Iterator<Item = Result<(i64, RecordBatch), StoreError>> {
    let sources: Vec<&RecordBatch> = batches.iter().collect();
    day_orders(batches)
        .into_iter()
        .map(move |(day, rows)| Ok((day, interleave_record_batch(&sources, &rows)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};

    /// A batch of only the columns `day_orders` reads.
    fn batch(rows: &[(Option<&str>, i64)]) -> RecordBatch {
        let event: ArrayRef = Arc::new(rows.iter().map(|r| r.0).collect::<StringArray>());
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ));
        RecordBatch::try_from_iter([("event", event), ("ts", ts)]).unwrap()
    }

    #[test]
    fn rows_are_ordered_by_day_then_event_then_time_across_batches() {
        let day = MICROS_PER_DAY;
        let a = batch(&[
            (Some("fit"), day + 5),
            (None, 7),
            (Some("fit"), 3),
            (Some("b"), 9),
        ]);
        let b = batch(&[(Some("fit"), 3), (Some("a"), day), (None, -1)]);
        let got = day_orders(&[a, b]);
        let expected: Vec<(i64, Vec<(usize, usize)>)> = vec![
            // Before the epoch: its own day.
            (-1, vec![(1, 2)]),
            // No event first; equal events and times keep the order given (batch 0 first).
            (0, vec![(0, 1), (0, 3), (0, 2), (1, 0)]),
            (1, vec![(1, 1), (0, 0)]),
        ];
        assert_eq!(got, expected);
    }

    /// Parts of random rows, each sorted as a seal writes it, merge into the order one sort of
    /// all their rows gives, across the chunks and the parts' batches.
    #[test]
    fn a_merge_of_sorted_parts_is_one_sort_of_their_rows() {
        let dir = std::env::temp_dir().join(format!("opentally-merge-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let events = [None, Some("a"), Some("fit"), Some("plot")];
        // Sizes that put chunk and batch ends everywhere: 2.3 chunks in all, one part of one row.
        let sizes = [9_000, 1, 4_000, 6_000];
        let mut parts = Vec::new();
        let mut paths = Vec::new();
        let mut id = 0_u32;
        for (p, n) in sizes.into_iter().enumerate() {
            let rows: Vec<(Option<&str>, i64)> = (0..n)
                .map(|_| {
                    let e = events[usize::try_from(next(4)).unwrap()];
                    (e, i64::try_from(next(500)).unwrap())
                })
                .collect();
            let ids: ArrayRef = Arc::new(arrow::array::UInt32Array::from_iter_values(
                id..id + u32::try_from(n).unwrap(),
            ));
            id += u32::try_from(n).unwrap();
            let b = batch(&rows);
            let b = RecordBatch::try_from_iter(
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .zip(b.columns().iter().cloned())
                    .chain([("id".to_owned(), ids)]),
            )
            .unwrap();
            let order = day_orders(std::slice::from_ref(&b)).remove(0).1;
            let sorted = interleave_record_batch(&[&b], &order).unwrap();
            let path = dir.join(format!("{p}.parquet"));
            let mut w =
                ArrowWriter::try_new(File::create(&path).unwrap(), b.schema(), None).unwrap();
            w.write(&sorted).unwrap();
            w.close().unwrap();
            parts.push(sorted);
            paths.push(path);
        }
        let ids = |b: &RecordBatch| -> Vec<u32> {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt32Type>()
                .values()
                .to_vec()
        };
        let metas = part_metadata(&paths).unwrap();
        let order = merge_order(&paths, &metas, 300).unwrap();
        assert_eq!(order.len(), 19_001);
        // Chunks and row groups that end inside the parts' batches, and a last of each that is
        // not full.
        let out = dir.join("merged.parquet");
        let schema = parts[0].schema();
        let w = ArrowWriter::try_new(File::create(&out).unwrap(), schema.clone(), None).unwrap();
        write_merged(&paths, &metas, &order, 1_000, 4_500, &schema, w).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&out).unwrap()).unwrap();
        let groups: Vec<i64> = builder
            .metadata()
            .row_groups()
            .iter()
            .map(parquet::file::metadata::RowGroupMetaData::num_rows)
            .collect();
        assert_eq!(groups, [4_500, 4_500, 4_500, 4_500, 1_001]);
        let merged = builder
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        let merged = concat_batches(&schema, &merged).unwrap();
        let order = day_orders(&parts).remove(0).1;
        let sources: Vec<&RecordBatch> = parts.iter().collect();
        let expected = interleave_record_batch(&sources, &order).unwrap();
        assert_eq!(ids(&merged), ids(&expected));
        // Every column, not only the one compared: events and times come along with their ids.
        assert_eq!(merged, expected);
        fs::remove_dir_all(&dir).unwrap();
    }
}
