//! The order of rows in a part: by day, then event, then time.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::TimestampMicrosecondType;

use crate::StoreError;

/// Microseconds in a day: event times are microseconds since the epoch, UTC.
pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Where each row of `batches` goes: per day (event time, UTC), the rows' `(batch, row)`
/// positions sorted by event (no event first) and time, ties in the order given. A day's rows
/// are then copied once, by [`interleave_record_batch`], when the day is written.
pub(super) fn day_orders(batches: &[RecordBatch]) -> Vec<(i64, Vec<(usize, usize)>)> {
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
pub(super) fn split_by_day(
    batches: &[RecordBatch],
) -> impl Iterator<Item = Result<(i64, RecordBatch), StoreError>> {
    let sources: Vec<&RecordBatch> = batches.iter().collect();
    day_orders(batches)
        .into_iter()
        .map(move |(day, rows)| Ok((day, interleave_record_batch(&sources, &rows)?)))
}

/// Today, in days since the epoch (UTC).
pub(super) fn today() -> i64 {
    #[allow(clippy::cast_possible_wrap)]
    let days = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 86_400) as i64;
    days
}
