//! Parquet helpers: how parts are read and written.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use crate::error::StoreError;

/// Reads a whole part.
pub fn read_part(path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// The most bytes of a part's data page (before compression). Whoever writes or reads a part holds
/// a page of each column, and compaction reads several parts at once: with Parquet's default of
/// 1 MiB, the readers of one merge of eight parts held 27 MB in a heap profile.
pub(crate) const PAGE_BYTES: usize = 128 * 1024;

/// The most rows of a part's row group.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The footers of the parts at `paths`, read once for both passes of a merge.
pub(crate) fn part_metadata(paths: &[PathBuf]) -> Result<Vec<ArrowReaderMetadata>, StoreError> {
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
