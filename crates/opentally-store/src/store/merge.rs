//! The streaming merge of sorted parts: a few rows of each part in memory at a time.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::errors::ParquetError;

use crate::StoreError;

/// The fewest rows a merge reads from a part at a time: below this, per-batch costs would
/// outweigh the memory saved.
pub(super) const MIN_MERGE_BATCH: usize = 256;

/// One input of [`merge_order`]: a part's event and time columns, read a batch at a time.
pub(super) struct OrderInput {
    pub(super) reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    pub(super) event: arrow::array::StringArray,
    pub(super) ts: arrow::buffer::ScalarBuffer<i64>,
    pub(super) row: usize,
    pub(super) done: bool,
}

impl OrderInput {
    /// Moves to the part's next batch that has rows, or to its end.
    pub(super) fn next_batch(&mut self) -> Result<(), StoreError> {
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
    pub(super) fn key(&self) -> (Option<&str>, i64) {
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
pub(super) fn merge_order(
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
pub(super) struct ColumnInput {
    pub(super) reader: Option<parquet::arrow::arrow_reader::ParquetRecordBatchReader>,
    /// The batch being read, the next row in it, and where it is among the sources of the chunk
    /// being gathered.
    pub(super) array: Option<arrow::array::ArrayRef>,
    pub(super) row: usize,
    pub(super) slot: usize,
}

impl ColumnInput {
    /// Moves to the next batch that has rows, and adds it to `sources`; an error if there is
    /// none, since the part was counted to hold the row.
    pub(super) fn next_batch(
        &mut self,
        sources: &mut Vec<arrow::array::ArrayRef>,
    ) -> Result<(), StoreError> {
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
pub(super) fn write_merged(
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::compute::{concat_batches, interleave_record_batch};

    use super::*;
    use crate::parquet_io::part_metadata;
    use crate::store::order::MICROS_PER_DAY;
    use crate::store::order::day_orders;

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
