//! Sealing: the tail written as parts, one per project and day, and the manifest swapped.

use std::fs::{self, File};
use std::sync::atomic::Ordering;

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::manifest::{Manifest, PartMeta};
use crate::parquet_io::{PAGE_BYTES, ROW_GROUP_ROWS};
use crate::rollup::{self, RollupRow};
use crate::schema;
use crate::sequence;
use crate::store::order::day_orders;
use crate::store::part::LivePart;
use crate::store::part::{PartName, PartWriter};
use crate::{Store, StoreError};

impl Store {
    /// True when the tail is due to be sealed.
    pub fn seal_due(&self) -> bool {
        let s = self.read();
        let tail_rows = self.tail_rows();
        tail_rows >= self.options.seal_rows
            || (self.erasure_segment().is_some() && s.tail_pos != s.manifest.log)
            || s.tail_since
                .is_some_and(|t| t.elapsed() >= self.options.seal_after)
            || (tail_rows == 0 && s.tail_pos != s.manifest.log)
    }

    /// The log segment of an applied erasure that no seal has reached past yet: while the
    /// collector still appends to it, it should start a new one, so that this one (which holds
    /// the erased events) can be deleted.
    pub fn erasure_segment(&self) -> Option<u64> {
        *self
            .erasure_segment
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the tail as parts (one per project and day, sorted by event and time), then swaps
    /// in a manifest naming them and the log position they reach. Only the loader calls this.
    /// Returns the number of events sealed.
    pub fn seal(&self) -> Result<usize, StoreError> {
        let _one = self.lock_mutations();
        self.seal_locked()
    }

    pub(super) fn seal_locked(&self) -> Result<usize, StoreError> {
        let (tail, pos, mut manifest) = {
            let s = self.read();
            (s.tail.clone(), s.tail_pos, s.manifest.clone())
        };
        let mut new_parts = Vec::new();
        let mut rows = 0;
        for (project, batches) in &tail {
            let batches: Vec<RecordBatch> = batches.iter().map(|b| b.rows.clone()).collect();
            let sources: Vec<&RecordBatch> = batches.iter().collect();
            for (day, order) in day_orders(&batches) {
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
        {
            let mut erasure = self
                .erasure_segment
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if erasure.is_some_and(|seg| pos.segment > seg) {
                *erasure = None;
            }
        }
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
        self.tail_rows.store(0, Ordering::Relaxed);
        s.tail_since = None;
        Ok(rows)
    }

    /// Writes `batch` (one day's rows) as part number `id`, taken from the manifest by the
    /// caller, with its rollups and sequences.
    pub(super) fn write_part(
        &self,
        id: u64,
        project: &str,
        day: i64,
        batch: &RecordBatch,
    ) -> Result<(PartMeta, Vec<RollupRow>), StoreError> {
        let mut w = self.part_writer_at(id, project, day)?;
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
    pub(super) fn write_day(
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
    pub(super) fn part_writer(
        &self,
        manifest: &mut Manifest,
        project: &str,
        day: i64,
    ) -> Result<PartWriter, StoreError> {
        let id = manifest.next_part;
        manifest.next_part += 1;
        self.part_writer_at(id, project, day)
    }

    /// A new part numbered `id` (taken from the manifest by the caller).
    fn part_writer_at(&self, id: u64, project: &str, day: i64) -> Result<PartWriter, StoreError> {
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
}
