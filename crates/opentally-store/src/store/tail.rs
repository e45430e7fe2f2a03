//! The tail: events read from the log and not sealed yet, a batch per load round.

use std::io;
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::StoreError;
use crate::sequence::{self, Sequences};
use crate::store::order::split_by_day;

/// The sequences of one tail batch, per day, once a query has made them (`None` inside: the
/// batch is too large for a sequence file).
pub(super) type TailSequences = Arc<std::sync::OnceLock<Option<DaySequences>>>;

/// Sequences per day.
pub(super) type DaySequences = Vec<(i64, Arc<Sequences>)>;

/// The sequences of a tail batch, split by day.
pub(super) fn tail_sequences(batch: &RecordBatch) -> Result<Option<DaySequences>, StoreError> {
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
