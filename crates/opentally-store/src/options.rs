//! When the store seals and compacts, and how much memory its caches may keep.

use std::time::Duration;

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
