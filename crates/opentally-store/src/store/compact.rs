//! Compaction: a day's small parts merged into one, with their rollups and sequences.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io;

use arrow::compute::concat_batches;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::manifest::PartMeta;
use crate::parquet_io::{ROW_GROUP_ROWS, part_metadata};
use crate::rollup::{self, RollupRow};
use crate::sequence::{self, SeqFile, SeqStream};
use crate::store::merge::{merge_order, write_merged};
use crate::store::part::PartWriter;
use crate::{Store, StoreError, schema};
use std::path::{Path, PathBuf};

impl Store {
    /// Merges the smallest parts of each project's day into one, when a day has gathered
    /// `compact_parts` of them, at most `compact_max_parts` a merge: one pass, so a day may keep
    /// more to merge. Returns the number of parts merged away.
    pub fn compact(&self) -> Result<usize, StoreError> {
        let _one = self.lock_mutations();
        self.compact_locked(self.options.compact_parts)
    }

    /// Merges the smallest parts of each day that has at least `min_parts` of them that fit in
    /// `compact_rows` together, at most `compact_max_parts` of them.
    pub(super) fn compact_locked(&self, min_parts: usize) -> Result<usize, StoreError> {
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
    pub(super) fn part_rollup(&self, part: &PartMeta) -> Result<Vec<RollupRow>, StoreError> {
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
    pub(super) fn compacted_sequences(
        &self,
        parts: &[PartMeta],
    ) -> Result<Option<SeqFile>, StoreError> {
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
}

impl PartWriter {
    /// Writes the rows of `parts` (of the part's day) as its rows, merged as [`merge_order`]
    /// orders them, one column at a time; then finishes it as [`PartWriter::finish`] does, with
    /// the rollup and sequences that `derived` makes once the rows are written (so a merge does
    /// not hold them and its columns at once).
    pub(super) fn finish_merged(
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
