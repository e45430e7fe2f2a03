//! Parts: a project's events of one day in a Parquet file with its rollup and sequences;
//! how they are named and written, swapped into the manifest and deleted once retired.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::TimestampMicrosecondType;
use parquet::arrow::ArrowWriter;

use crate::manifest::{Manifest, PartMeta, sync_dir};
use crate::parquet_io::read_part;
use crate::rollup::{self, RollupRow, RollupSet};
use crate::schema;
use crate::sequence::{SeqFile, Sequences};
use crate::store::State;
use crate::{Store, StoreError};
use std::sync::atomic::Ordering;

/// A part as queries see it: while a query holds one, compaction does not delete its file.
#[derive(Debug)]
pub struct LivePart {
    pub meta: PartMeta,
    pub path: PathBuf,
    pub(super) rollup_path: Option<PathBuf>,
    pub(super) sequences_path: Option<PathBuf>,
    /// Read on first use (or kept from when the part was written).
    pub(super) rollup: std::sync::Mutex<Option<Arc<RollupSet>>>,
    /// Kept after the first read while the store's sequence cache has room.
    pub(super) sequences: std::sync::Mutex<Option<Arc<Sequences>>>,
    pub(super) cache: Arc<SequenceCache>,
}

/// The memory the parts of a store may keep their sequences in.
#[derive(Debug)]
pub(super) struct SequenceCache {
    pub(super) used: std::sync::atomic::AtomicUsize,
    pub(super) limit: usize,
}

impl SequenceCache {
    pub(super) fn reserve(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.used
            .fetch_update(Relaxed, Relaxed, |u| {
                u.checked_add(bytes).filter(|n| *n <= self.limit)
            })
            .is_ok()
    }

    /// Gives back what [`SequenceCache::reserve`] took.
    pub(super) fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for LivePart {
    fn drop(&mut self) {
        self.release_sequences();
    }
}

impl LivePart {
    pub(super) fn new(
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

    /// Whether the part may hold events of `install`: false only when its sequences, which list
    /// every install of the part, do not name it (erasure and export skip such parts unread).
    pub fn may_hold(&self, install: &str) -> Result<bool, StoreError> {
        Ok(match self.sequences()? {
            Some(s) => s.is_summary() || s.contains(crate::sequence::install_key(install)),
            None => true,
        })
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
    pub(super) fn kept_sequences_bytes(&self) -> usize {
        self.sequences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or(0, |s| s.size())
    }

    /// Lets go of the part's sequences if it keeps them in memory (a span holds them now).
    pub(super) fn release_sequences(&self) {
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
    pub(super) fn files(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.path)
            .chain(&self.rollup_path)
            .chain(&self.sequences_path)
    }
}

impl Store {
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
}

impl Store {
    /// Replaces the parts `replaced` by `added` in `manifest`, stores it, and swaps it in; the
    /// old parts are retired (deleted once no query holds them). Returns the state, still
    /// locked, for changes that must appear together with the new parts.
    pub(super) fn swap_parts(
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
}

/// Which part a [`PartWriter`] writes.
pub(super) struct PartName {
    pub(super) id: u64,
    pub(super) project: String,
    pub(super) day: i64,
    /// The files' path relative to the store directory, without extension.
    pub(super) stem: String,
}

/// A part being written: its rows go to the file as they come, its rollup and sequences are
/// given when it is finished.
pub(super) struct PartWriter {
    pub(super) name: PartName,
    pub(super) writer: ArrowWriter<File>,
    pub(super) rows: u64,
    /// The smallest and largest event time written.
    pub(super) ts: Option<(i64, i64)>,
}

impl PartWriter {
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
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
    pub(super) fn finish(
        self,
        dir: &Path,
        rollup: Vec<RollupRow>,
        sequences: Option<SeqFile>,
    ) -> Result<(PartMeta, Vec<RollupRow>), StoreError> {
        let file = self.writer.into_inner()?;
        let (rows, ts) = (self.rows, self.ts);
        self.name.finish(dir, &file, rows, ts, rollup, sequences)
    }
}

impl PartName {
    /// Syncs the part's `file` (of `rows` rows, event times in `ts`), writes its rollup and
    /// sequences beside it.
    pub(super) fn finish(
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
