//! The tail: events read from the log and not sealed yet, a batch per load round.

use std::io;
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::StoreError;
use crate::rollup::{self, RollupSet};
use crate::sequence::{self, Sequences};
use crate::store::order::split_by_day;

/// One load round's events of a project, not sealed yet: its rows, their rollup (made as they
/// are loaded) and their sequences (made by the first query that needs them), as one value, so
/// that none of the three can be added or removed without the others.
#[derive(Debug, Clone)]
pub struct TailBatch {
    /// The events, in the `events` table's schema.
    pub rows: RecordBatch,
    /// Their rollup.
    pub rollup: Arc<RollupSet>,
    sequences: TailSequences,
}

impl TailBatch {
    /// A batch of loaded events, with its rollup.
    pub(super) fn new(rows: RecordBatch) -> TailBatch {
        let rollup = Arc::new(RollupSet::new(rollup::of_batch(&rows), true));
        TailBatch {
            rows,
            rollup,
            sequences: TailSequences::default(),
        }
    }

    /// The batch's sequences per day, made at the first call and kept (`None`: the batch is too
    /// large for a sequence file).
    pub(super) fn sequences(&self) -> Result<Option<&DaySequences>, StoreError> {
        if let Some(made) = self.sequences.get() {
            return Ok(made.as_ref());
        }
        let made = tail_sequences(&self.rows)?;
        Ok(self.sequences.get_or_init(|| made).as_ref())
    }
}

/// The sequences of one tail batch, per day, once a query has made them (`None` inside: the
/// batch is too large for a sequence file). Shared by the snapshots that hold the batch.
type TailSequences = Arc<std::sync::OnceLock<Option<DaySequences>>>;

/// Sequences per day.
pub(super) type DaySequences = Vec<(i64, Arc<Sequences>)>;

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
