//! Rollups: per day × event × standard dimensions, the event count, a theta sketch of the
//! installs and a REQ sketch of the durations (Apache DataSketches). Made when a part is written
//! (and for the tail as it is loaded), kept beside the part, merged at query time: the dashboard's
//! standard insights read these instead of scanning events.
//!
//! Theta sketches are exact while a group holds fewer than 16,384 installs (their nominal size)
//! and estimate beyond; a distinct count merges them into a union of nominal size 4,096, exact up
//! to that many installs and within about 1.6 % (one standard error) beyond. REQ sketches
//! (relative-error quantiles, high-rank accuracy, k = 40) keep every duration while a group has
//! fewer than 240 and beyond that bound the rank error relative to the distance from the top,
//! so p95 and p99 stay close on long-tailed durations (KLL's error is the same at every rank).
//!
//! Error rows also keep, per session (a hash of install and session), how many errors it had:
//! friction's "errors repeated within a session" adds these up across parts, which a count per
//! group could not do for a session that spans two parts.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int32Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, TimestampMicrosecondType};
use datasketches::common::SearchCriteria;
use datasketches::req::{RankAccuracy, ReqFloat, ReqSketch};
use datasketches::theta::{
    CompactThetaSketch, ThetaSketch, ThetaSketchBuilder, ThetaUnion, ThetaUnionBuilder,
};
use parquet::arrow::ArrowWriter;

use crate::error::StoreError;
use crate::parquet_io::read_part;

/// log2 of the rollup rows' theta sketches' nominal size: exact up to 16,384 installs per group
/// (a sketch holds only as many hashes as installs it saw, up to that size).
pub const THETA_LG_K: u8 = 14;
/// log2 of the nominal size of the unions that distinct counts read: exact up to 4,096.
pub const COUNT_LG_K: u8 = 12;
/// log2 of the nominal size of the per-day install sketches and of the unions that set
/// operations read (installs seen first, installs that never succeeded): exact up to 65,536
/// installs a day, which bounds both the memory they hold and the work of a set operation.
pub const WIDE_LG_K: u8 = 16;
/// REQ accuracy parameter: every duration kept up to `6 × k` per sketch.
pub const REQ_K: u16 = 40;

/// The rollup file's column of duration sketches (named for the sketch, so that files of
/// another sketch are recognised).
const DURATIONS: &str = "durations_req";

/// A sketch of durations (milliseconds).
pub type Durations = ReqSketch<ReqFloat<f64>>;

/// An empty durations sketch.
pub fn durations() -> Durations {
    ReqSketch::new(REQ_K, RankAccuracy::HighRank).expect("a valid k")
}
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The dimensions a rollup keeps, by their `events` column names.
pub const DIMS: [&str; 6] = [
    "event",
    "app_version",
    "os_name",
    "runtime_name",
    "outcome",
    "error_type",
];

/// One rollup row: a day and a value (or none) for each of [`DIMS`].
#[derive(Debug, Clone)]
pub struct RollupRow {
    pub day: i32,
    pub dims: [Option<Arc<str>>; 6],
    pub events: u64,
    pub installs: CompactThetaSketch,
    pub durations: Durations,
    /// For error rows: `(hash of install and session, errors)`, sorted by hash.
    pub error_sessions: Vec<(u64, u32)>,
}

impl RollupRow {
    pub fn dim(&self, i: usize) -> Option<&str> {
        self.dims[i].as_deref()
    }
}

/// The rollup rows of a part (or a tail batch), with each day's totals over all its rows: the
/// event count and the union of the install sketches (at [`WIDE_LG_K`]), which unfiltered
/// insights read instead of merging every row.
#[derive(Debug)]
pub struct RollupSet {
    pub rows: Vec<RollupRow>,
    pub days: std::collections::BTreeMap<i32, (u64, CompactThetaSketch)>,
    /// Each day's durations per event, merged over the other dimensions: what durations
    /// without a breakdown or filter read.
    pub event_durations: std::collections::BTreeMap<(i32, Option<Arc<str>>), Durations>,
    /// False for rollups written before error rows kept their sessions.
    pub has_sessions: bool,
}

impl RollupSet {
    pub fn new(rows: Vec<RollupRow>, has_sessions: bool) -> RollupSet {
        let mut by_day: std::collections::BTreeMap<i32, (u64, Vec<&CompactThetaSketch>)> =
            std::collections::BTreeMap::new();
        for r in &rows {
            let d = by_day.entry(r.day).or_default();
            d.0 += r.events;
            d.1.push(&r.installs);
        }
        let days = by_day
            .into_iter()
            .map(|(day, (events, sketches))| (day, (events, union_at(WIDE_LG_K, sketches))))
            .collect();
        let mut event_durations: std::collections::BTreeMap<_, Durations> =
            std::collections::BTreeMap::new();
        for r in rows.iter().filter(|r| !r.durations.is_empty()) {
            event_durations
                .entry((r.day, r.dims[0].clone()))
                .or_insert_with(durations)
                .merge(&r.durations)
                .expect("sketches of one k");
        }
        RollupSet {
            rows,
            days,
            event_durations,
            has_sessions,
        }
    }
}

/// The installs that called an event without error, as theta hashes.
#[derive(Debug)]
pub struct Hashes {
    /// The smallest theta of the sketches merged (`u64::MAX` when all were exact).
    pub theta: u64,
    /// `theta` as a fraction of the hash space.
    pub fraction: f64,
    /// The distinct hashes below `theta`, ascending.
    pub hashes: Vec<u64>,
}

/// The installs that called each event without error over a block of days' parts, merged once
/// and kept: friction's "never succeeded" subtracts them from the installs that failed, and an
/// install active on many days is in every day's rows (on the benchmark's 10M events, the daily
/// "ok" rows hold 9.4M hashes for 1.7M pairs of event and install).
#[derive(Debug, Default)]
pub struct Succeeded {
    pub events: Vec<(Option<Arc<str>>, Hashes)>,
}

impl Succeeded {
    /// Merges the "ok" rows of `sets`.
    pub fn of<'a>(sets: impl IntoIterator<Item = &'a RollupSet>) -> Succeeded {
        let mut by_event: HashMap<Option<Arc<str>>, Vec<&CompactThetaSketch>> = HashMap::new();
        for r in sets.into_iter().flat_map(|s| &s.rows) {
            if r.dim(OUTCOME) == Some("ok") {
                by_event
                    .entry(r.dims[0].clone())
                    .or_default()
                    .push(&r.installs);
            }
        }
        let events = by_event
            .into_iter()
            .map(|(event, sketches)| {
                let (theta, fraction) = common_theta(sketches.iter().copied());
                let mut hashes = hashes_below(&sketches, theta);
                hashes.shrink_to_fit();
                let h = Hashes {
                    theta,
                    fraction,
                    hashes,
                };
                (event, h)
            })
            .collect();
        Succeeded { events }
    }

    /// The installs that called `event` without error.
    pub fn get(&self, event: Option<&str>) -> Option<&Hashes> {
        self.events
            .iter()
            .find(|(e, _)| e.as_deref() == event)
            .map(|(_, h)| h)
    }

    /// The memory it holds, in bytes.
    pub fn size(&self) -> usize {
        self.events
            .iter()
            .map(|(_, h)| h.hashes.len() * 8 + std::mem::size_of::<Hashes>())
            .sum()
    }
}

/// The distinct hashes of `sketches` below `theta`, ascending.
pub fn hashes_below(sketches: &[&CompactThetaSketch], theta: u64) -> Vec<u64> {
    let mut hashes: Vec<u64> = sketches
        .iter()
        .flat_map(|s| s.iter().map(|e| e.hash()))
        .filter(|h| *h < theta)
        .collect();
    // One ordered sketch is sorted and distinct already.
    if sketches.len() > 1 || sketches.iter().any(|s| !s.is_ordered()) {
        hashes.sort_unstable();
        hashes.dedup();
    }
    hashes
}

/// Rollups merged ahead over blocks of days' parts, and which parts (by index into the rollups
/// a query reads) they stand for.
#[derive(Debug, Default)]
pub struct Blocks {
    pub succeeded: Vec<Arc<Succeeded>>,
    pub covered: Vec<bool>,
}

/// The smallest theta of the sketches, as a hash bound and as a fraction (`u64::MAX` and 1
/// when all are exact): set operations compare hashes below it only.
pub fn common_theta<'a>(sketches: impl IntoIterator<Item = &'a CompactThetaSketch>) -> (u64, f64) {
    let (mut theta, mut fraction) = (u64::MAX, 1.0);
    for s in sketches {
        if s.is_estimation_mode() && s.theta64() < theta {
            (theta, fraction) = (s.theta64(), s.theta());
        }
    }
    (theta, fraction)
}

fn theta() -> ThetaSketch {
    ThetaSketchBuilder::default()
        .lg_k(THETA_LG_K)
        .build()
        .expect("a valid lg_k")
}

/// A theta union of the given sketches, at the nominal size distinct counts read.
pub fn union<'a>(sketches: impl IntoIterator<Item = &'a CompactThetaSketch>) -> CompactThetaSketch {
    union_at(COUNT_LG_K, sketches)
}

/// An empty theta union with nominal size `2^lg_k`.
fn theta_union(lg_k: u8) -> ThetaUnion {
    ThetaUnionBuilder::default()
        .lg_k(lg_k)
        .build()
        .expect("a valid lg_k")
}

/// A theta union of the given sketches with nominal size `2^lg_k`.
pub fn union_at<'a>(
    lg_k: u8,
    sketches: impl IntoIterator<Item = &'a CompactThetaSketch>,
) -> CompactThetaSketch {
    let mut u = theta_union(lg_k);
    for s in sketches {
        u.update(s).expect("sketches of one seed");
    }
    u.to_sketch(true)
}

/// A count from a theta sketch: exact unless the sketch estimates.
pub fn count(s: &CompactThetaSketch) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = s.estimate().round() as u64;
    n
}

/// A merged durations sketch.
pub fn merge_durations<'a>(sketches: impl IntoIterator<Item = &'a Durations>) -> Durations {
    let mut k = durations();
    for s in sketches {
        k.merge(s).expect("sketches of one k");
    }
    k
}

/// The nearest-rank quantile: the smallest value whose share of values at or below it is at
/// least `q` (exact while the sketch holds every value).
pub fn quantile(k: &Durations, q: f64) -> Option<f64> {
    k.quantile(q, SearchCriteria::Inclusive)
        .ok()
        .flatten()
        .map(ReqFloat::into_inner)
}

/// One group while a rollup is made.
struct Acc {
    events: u64,
    installs: ThetaSketch,
    durations: Durations,
    sessions: HashMap<u64, u32>,
}

/// A stable 64-bit hash of an install and its session (none is its own value), written to disk.
pub fn session_key(install: &str, session: Option<&str>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(
        &u64::try_from(install.len())
            .unwrap_or(u64::MAX)
            .to_le_bytes(),
    );
    h.update(install.as_bytes());
    match session {
        Some(s) => {
            h.update(&[1]);
            h.update(s.as_bytes());
        }
        None => h.update(&[0]),
    }
    h.digest()
}

/// The index of `outcome` in [`DIMS`].
pub(crate) const OUTCOME: usize = 4;

/// The rollup of a batch of the `events` schema.
pub fn of_batch(batch: &RecordBatch) -> Vec<RollupRow> {
    let text = |n: &str| {
        batch
            .column_by_name(n)
            .expect("a schema column")
            .as_string::<i32>()
    };
    let dims: Vec<&StringArray> = DIMS.iter().map(|d| text(d)).collect();
    let install = text("install");
    let session = text("session");
    let ts = batch
        .column_by_name("ts")
        .expect("a ts column")
        .as_primitive::<TimestampMicrosecondType>();
    let duration = batch
        .column_by_name("duration_ms")
        .expect("a duration column")
        .as_primitive::<Float64Type>();
    let mut groups: HashMap<(i32, [Option<&str>; 6]), Acc> = HashMap::new();
    for i in 0..batch.num_rows() {
        #[allow(clippy::cast_possible_truncation)]
        let day = ts.value(i).div_euclid(MICROS_PER_DAY) as i32;
        let key: [Option<&str>; 6] =
            std::array::from_fn(|d| (!dims[d].is_null(i)).then(|| dims[d].value(i)));
        let acc = groups.entry((day, key)).or_insert_with(|| Acc {
            events: 0,
            installs: theta(),
            durations: durations(),
            sessions: HashMap::new(),
        });
        acc.events += 1;
        if key[OUTCOME] == Some("error") {
            let s = (!session.is_null(i)).then(|| session.value(i));
            *acc.sessions
                .entry(session_key(install.value(i), s))
                .or_default() += 1;
        }
        acc.installs.update(install.value(i));
        if !duration.is_null(i) {
            if let Ok(v) = ReqFloat::<f64>::new(duration.value(i)) {
                acc.durations.update(v);
            }
        }
    }
    let mut interned: HashMap<&str, Arc<str>> = HashMap::new();
    let rows: Vec<RollupRow> = groups
        .into_iter()
        .map(|((day, key), acc)| RollupRow {
            day,
            dims: key.map(|v| v.map(|s| interned.entry(s).or_insert_with(|| s.into()).clone())),
            events: acc.events,
            installs: acc.installs.compact(true),
            durations: acc.durations,
            error_sessions: sorted_sessions(acc.sessions),
        })
        .collect();
    in_row_order(rows)
}

/// Error sessions and their counts, sorted by session hash.
fn sorted_sessions(sessions: HashMap<u64, u32>) -> Vec<(u64, u32)> {
    let mut v: Vec<(u64, u32)> = sessions.into_iter().collect();
    v.sort_unstable();
    v
}

/// Rollup rows by day, then dimensions.
fn in_row_order(mut rows: Vec<RollupRow>) -> Vec<RollupRow> {
    rows.sort_by(|a, b| (a.day, &a.dims).cmp(&(b.day, &b.dims)));
    rows
}

/// Rollup rows of disjoint sets of events merged into the rows of all of them, group by group:
/// what a seal writes for a part whose rows it copies a chunk at a time, and a compaction for the
/// part it merges from others (from their rollups). Counts
/// and error sessions add up exactly; installs are the union of the groups' sketches (exact
/// while a group has fewer than 2^[`THETA_LG_K`] installs, as in [`of_batch`]) and durations
/// the merge of theirs.
#[derive(Debug, Default)]
pub struct Merger {
    groups: HashMap<GroupKey, Merged>,
}

/// A rollup row's day and dimensions.
type GroupKey = (i32, [Option<Arc<str>>; 6]);

/// One group while rows are merged.
#[derive(Debug)]
struct Merged {
    events: u64,
    installs: ThetaUnion,
    durations: Durations,
    sessions: HashMap<u64, u32>,
}

impl Merger {
    pub fn add(&mut self, rows: Vec<RollupRow>) {
        for r in rows {
            let g = self
                .groups
                .entry((r.day, r.dims))
                .or_insert_with(|| Merged {
                    events: 0,
                    installs: theta_union(THETA_LG_K),
                    durations: durations(),
                    sessions: HashMap::new(),
                });
            g.events += r.events;
            g.installs
                .update(&r.installs)
                .expect("sketches of one seed");
            if !r.durations.is_empty() {
                g.durations.merge(&r.durations).expect("sketches of one k");
            }
            for (k, n) in r.error_sessions {
                *g.sessions.entry(k).or_default() += n;
            }
        }
    }

    /// The merged rows, in the order [`of_batch`] gives them.
    pub fn finish(self) -> Vec<RollupRow> {
        let rows: Vec<RollupRow> = self
            .groups
            .into_iter()
            .map(|((day, dims), g)| RollupRow {
                day,
                dims,
                events: g.events,
                installs: g.installs.to_sketch(true),
                durations: g.durations,
                error_sessions: sorted_sessions(g.sessions),
            })
            .collect();
        in_row_order(rows)
    }
}

fn schema() -> SchemaRef {
    let mut fields = vec![Field::new("day", DataType::Int32, false)];
    fields.extend(DIMS.iter().map(|d| Field::new(*d, DataType::Utf8, true)));
    fields.push(Field::new("events", DataType::UInt64, false));
    fields.push(Field::new("installs", DataType::Binary, false));
    fields.push(Field::new(DURATIONS, DataType::Binary, false));
    fields.push(Field::new("error_sessions", DataType::Binary, false));
    Arc::new(Schema::new(fields))
}

/// Writes rollup rows to a Parquet file and syncs it.
pub fn write(path: &Path, rows: &[RollupRow]) -> Result<u64, StoreError> {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int32Array::from_iter_values(
        rows.iter().map(|r| r.day),
    ))];
    for d in 0..DIMS.len() {
        columns.push(Arc::new(
            rows.iter().map(|r| r.dim(d)).collect::<StringArray>(),
        ));
    }
    columns.push(Arc::new(UInt64Array::from_iter_values(
        rows.iter().map(|r| r.events),
    )));
    let installs: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| r.installs.serialize_compressed())
        .collect();
    columns.push(Arc::new(BinaryArray::from_iter_values(installs.iter())));
    let durations: Vec<Vec<u8>> = rows.iter().map(|r| r.durations.serialize()).collect();
    columns.push(Arc::new(BinaryArray::from_iter_values(durations.iter())));
    let sessions: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| {
            r.error_sessions
                .iter()
                .flat_map(|(k, n)| k.to_le_bytes().into_iter().chain(n.to_le_bytes()))
                .collect()
        })
        .collect();
    columns.push(Arc::new(BinaryArray::from_iter_values(sessions.iter())));
    let batch = RecordBatch::try_new(schema(), columns)?;
    let mut w = ArrowWriter::try_new(File::create(path)?, schema(), None)?;
    w.write(&batch)?;
    let file = w.into_inner()?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// Reads rollup rows written by [`write()`], and whether they keep error sessions;
/// `None` for a rollup written before durations were REQ sketches: its part's events make a new
/// one.
pub fn read(path: &Path) -> Result<Option<(Vec<RollupRow>, bool)>, StoreError> {
    let bad = |what: &str| {
        StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        ))
    };
    let mut rows = Vec::new();
    let mut interned: HashMap<String, Arc<str>> = HashMap::new();
    let mut has_sessions = true;
    for b in read_part(path)? {
        let sessions = b
            .schema()
            .index_of("error_sessions")
            .ok()
            .map(|i| b.column(i).as_binary::<i32>().clone());
        has_sessions &= sessions.is_some();
        let day = b.column(0).as_primitive::<arrow::datatypes::Int32Type>();
        let dims: Vec<&StringArray> = (0..DIMS.len())
            .map(|d| b.column(1 + d).as_string::<i32>())
            .collect();
        let events = b
            .column(1 + DIMS.len())
            .as_primitive::<arrow::datatypes::UInt64Type>();
        let installs = b.column(2 + DIMS.len()).as_binary::<i32>();
        let Ok(durations) = b.schema().index_of(DURATIONS) else {
            return Ok(None);
        };
        let durations = b.column(durations).as_binary::<i32>();
        for i in 0..b.num_rows() {
            rows.push(RollupRow {
                day: day.value(i),
                dims: std::array::from_fn(|d| {
                    (!dims[d].is_null(i)).then(|| {
                        let s = dims[d].value(i);
                        interned
                            .entry(s.to_owned())
                            .or_insert_with(|| s.into())
                            .clone()
                    })
                }),
                events: events.value(i),
                installs: CompactThetaSketch::deserialize(installs.value(i))
                    .map_err(|e| bad(&format!("theta sketch: {e}")))?,
                durations: ReqSketch::deserialize(durations.value(i))
                    .map_err(|e| bad(&format!("REQ sketch: {e}")))?,
                error_sessions: match &sessions {
                    Some(s) => unpack_sessions(s.value(i)).ok_or_else(|| bad("error sessions"))?,
                    None => Vec::new(),
                },
            });
        }
    }
    Ok(Some((rows, has_sessions)))
}

fn unpack_sessions(bytes: &[u8]) -> Option<Vec<(u64, u32)>> {
    if bytes.len() % 12 != 0 {
        return None;
    }
    bytes
        .chunks_exact(12)
        .map(|c| {
            Some((
                u64::from_le_bytes(c[..8].try_into().ok()?),
                u32::from_le_bytes(c[8..].try_into().ok()?),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long-tailed durations (log-normal, σ = 1.5) from a fixed-seed generator.
    fn durations_ms(n: usize) -> Vec<f64> {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            #[allow(clippy::cast_precision_loss)]
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            u.max(f64::MIN_POSITIVE)
        };
        (0..n)
            .map(|_| {
                let z = (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
                (5.0 + 1.5 * z).exp()
            })
            .collect()
    }

    /// What the dashboard's duration percentiles promise: exact while a sketch holds every
    /// value, and on a long tail merged from many parts, p95 and p99 within 1 % of the exact
    /// nearest-rank value, p50 within 3 %.
    #[test]
    fn merged_duration_sketches_keep_the_tail_close() {
        let small = durations_ms(6 * usize::from(REQ_K) - 1);
        let mut one = durations();
        for v in &small {
            one.update(ReqFloat::<f64>::new(*v).unwrap());
        }
        let mut sorted = small.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.95, 0.99] {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
            assert_eq!(quantile(&one, q), Some(sorted[rank - 1]), "exact at q={q}");
        }

        let values = durations_ms(1_000_000);
        let parts: Vec<Durations> = values
            .chunks(10_000)
            .map(|c| {
                let mut s = durations();
                for v in c {
                    s.update(ReqFloat::<f64>::new(*v).unwrap());
                }
                s
            })
            .collect();
        let merged = merge_durations(&parts);
        let mut sorted = values;
        sorted.sort_by(f64::total_cmp);
        for (q, within) in [(0.5, 0.03), (0.95, 0.01), (0.99, 0.01)] {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let exact = sorted[(q * sorted.len() as f64).ceil() as usize - 1];
            let got = quantile(&merged, q).unwrap();
            let error = (got - exact).abs() / exact;
            assert!(error <= within, "q={q}: {got} vs exact {exact} ({error})");
        }
    }
}
