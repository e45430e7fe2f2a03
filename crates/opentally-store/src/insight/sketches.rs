//! Distinct installs from rollup rows' theta sketches: unions, and the retained hashes that
//! stand for installs across periods; which rollup rows a query's filters keep.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datasketches::theta::CompactThetaSketch;

use crate::hashing::HashKeyed;
use crate::insight::types::{Dim, Filters, Interval, period_start};
use crate::rollup::{self, DIMS, RollupRow, RollupSet, common_theta};

/// Sketches [`union_count`] merges at most. Past a few dozen, the same install is in many of
/// them (one rollup row per event, version, OS… and day), so the merge reads it many times while
/// a union skips most of each sketch once its bound has shrunk. Measured on the 10M benchmark:
/// versions per week (hundreds of rows per group) took 86–88 ms merged against 68–70 with
/// unions; active installs (windows of up to 30 days) 74–77 ms merged against 101–106.
pub(super) const MERGED: usize = 32;

/// The count of installs [`rollup::union`] of `sketches` gives, and whether it estimates,
/// without building the union: its result is the 4,096 smallest distinct hashes below the
/// smallest theta of the non-empty inputs, and the hash after them as its theta when there are
/// more. Ordered sketches give those hashes by merging from the smallest; a union's hash table
/// takes every hash below its shrinking bound (perf put 59 % of active installs there). `None`
/// when a sketch is unordered, or when there are more than [`MERGED`] (the union is then
/// cheaper).
pub(super) fn union_count(sketches: &[&CompactThetaSketch]) -> Option<(u64, bool)> {
    const MAX_THETA: u64 = i64::MAX as u64;
    let keep = 1usize << rollup::COUNT_LG_K;
    let inputs: Vec<&CompactThetaSketch> =
        sketches.iter().copied().filter(|s| !s.is_empty()).collect();
    if inputs.len() > MERGED || inputs.iter().any(|s| !s.is_ordered()) {
        return None;
    }
    let Some(bound) = inputs.iter().map(|s| s.theta64()).min() else {
        return Some((0, false));
    };
    let mut heads: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>> =
        std::collections::BinaryHeap::with_capacity(inputs.len());
    let mut iters: Vec<_> = inputs.iter().map(|s| s.iter().map(|e| e.hash())).collect();
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some(h) = it.next() {
            heads.push(std::cmp::Reverse((h, i)));
        }
    }
    let (mut distinct, mut last, mut theta) = (0usize, None, bound);
    while let Some(std::cmp::Reverse((h, i))) = heads.pop() {
        if h >= bound {
            break;
        }
        if last != Some(h) {
            if distinct == keep {
                theta = h;
                break;
            }
            distinct += 1;
            last = Some(h);
        }
        if let Some(next) = iters[i].next() {
            heads.push(std::cmp::Reverse((next, i)));
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let fraction = theta as f64 / MAX_THETA as f64;
    Some((scale(distinct, fraction), theta < MAX_THETA))
}

/// Installs as sketch hashes, per day, at the smallest theta of all the sketches involved: each
/// day's hashes sorted, so that the work goes through the hash space a slice at a time with a
/// table that stays in the CPU cache (one table for millions of installs would miss it on every
/// lookup).
pub(super) struct DayHashes {
    /// `(day, sorted distinct hashes below theta)`, by day.
    pub(super) days: Vec<(i32, Vec<u64>)>,
    pub(super) theta: u64,
    /// `theta` as a fraction of the hash space.
    pub(super) fraction: f64,
}

/// Installs a slice of the hash space holds, for the table to stay in cache.
pub(super) const SLICE: usize = 32_768;

/// A count of hashes compared at a theta that is `fraction` of the hash space, scaled back to
/// installs.
pub(super) fn scale(n: usize, fraction: f64) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let scaled = (n as f64 / fraction).round() as u64;
    scaled
}

impl DayHashes {
    pub(super) fn new(days: BTreeMap<i32, Vec<&CompactThetaSketch>>) -> DayHashes {
        let (theta, fraction) = common_theta(days.values().flatten().copied());
        let days = days
            .into_iter()
            .map(|(day, sketches)| (day, rollup::hashes_below(&sketches, theta)))
            .collect();
        DayHashes {
            days,
            theta,
            fraction,
        }
    }

    pub(super) fn estimated(&self) -> bool {
        self.theta != u64::MAX
    }

    /// The starts of the periods that hold a day, ascending.
    pub(super) fn periods(&self, interval: Interval) -> Vec<i32> {
        let mut p: Vec<i32> = self
            .days
            .iter()
            .map(|(d, _)| period_start(*d, interval))
            .collect();
        p.dedup();
        p
    }

    /// Calls `visit(first, period)` once for each install and each period it was active in on
    /// a day `keep` accepts, with `first` the install's first period over all the days; both
    /// are indexes into `periods`, which [`DayHashes::periods`] gave for `interval`.
    pub(super) fn each_active_period(
        &self,
        periods: &[i32],
        interval: Interval,
        keep: impl Fn(i32) -> bool,
        mut visit: impl FnMut(usize, usize),
    ) {
        let day_period: Vec<(usize, bool)> = self
            .days
            .iter()
            .map(|(d, _)| {
                let start = period_start(*d, interval);
                (periods.partition_point(|p| *p < start), keep(*d))
            })
            .collect();
        let total: usize = self.days.iter().map(|(_, h)| h.len()).sum();
        let slices = (total / SLICE).max(1) as u64;
        // Theta hashes are below 2^63.
        let bound = self.theta.min(i64::MAX as u64);
        let step = bound / slices + 1;
        let mut cursors = vec![0usize; self.days.len()];
        // Per install: its first period and the last period it was counted in.
        let mut seen: HashMap<u64, (usize, usize), HashKeyed> =
            HashMap::with_capacity_and_hasher(2 * SLICE, HashKeyed::default());
        for slice in 1..=slices {
            let end = if slice == slices {
                u64::MAX
            } else {
                slice * step
            };
            seen.clear();
            for (i, (_, hashes)) in self.days.iter().enumerate() {
                let (p, kept) = day_period[i];
                let from = cursors[i];
                let to = from + hashes[from..].partition_point(|h| *h < end);
                cursors[i] = to;
                for h in &hashes[from..to] {
                    let e = seen.entry(*h).or_insert((p, usize::MAX));
                    if kept && e.1 != p {
                        e.1 = p;
                        visit(e.0, p);
                    }
                }
            }
        }
    }

    /// A count of comparable hashes, scaled back to installs.
    pub(super) fn scale(&self, n: usize) -> u64 {
        scale(n, self.fraction)
    }
}

pub(super) fn dim_index(dim: &Dim) -> Option<usize> {
    match dim {
        Dim::Column(c) => DIMS.iter().position(|d| d == c),
        _ => None,
    }
}

/// A filter on rollup rows: the day range and a set of allowed values per dimension.
#[derive(Clone)]
pub(super) struct RowFilter {
    pub(super) from_day: Option<i32>,
    pub(super) until_day: Option<i32>,
    pub(super) dims: Vec<(usize, Vec<String>)>,
}

impl RowFilter {
    pub(super) fn new(f: &Filters, with_event: bool) -> Option<RowFilter> {
        let mut dims = Vec::new();
        if let Some(e) = f.event.as_ref().filter(|_| with_event) {
            dims.push((0, vec![e.clone()]));
        }
        for (dim, values) in &f.wheres {
            dims.push((dim_index(dim)?, values.clone()));
        }
        #[allow(clippy::cast_possible_truncation)]
        let day = |t: opentally_protocol::Timestamp| t.unix_secs().div_euclid(86_400) as i32;
        Some(RowFilter {
            from_day: f.since.map(day),
            until_day: f.until.map(day),
            dims,
        })
    }

    /// The same filter over all of history.
    pub(super) fn all_days(&self) -> RowFilter {
        RowFilter {
            from_day: None,
            until_day: None,
            dims: self.dims.clone(),
        }
    }

    /// The install sketches of each day this filter keeps, from the per-day totals when no
    /// dimension is filtered.
    pub(super) fn day_sketches<'a>(
        &self,
        parts: &'a [Arc<RollupSet>],
    ) -> BTreeMap<i32, Vec<&'a CompactThetaSketch>> {
        let mut days: BTreeMap<i32, Vec<&CompactThetaSketch>> = BTreeMap::new();
        if self.dims.is_empty() {
            for (day, (_, sketch)) in parts.iter().flat_map(|p| p.days.iter()) {
                if self.day_in_range(*day) {
                    days.entry(*day).or_default().push(sketch);
                }
            }
        } else {
            for r in parts
                .iter()
                .flat_map(|p| p.rows.iter())
                .filter(|r| self.keeps(r))
            {
                days.entry(r.day).or_default().push(&r.installs);
            }
        }
        days
    }

    pub(super) fn day_in_range(&self, day: i32) -> bool {
        self.from_day.is_none_or(|d| day >= d) && self.until_day.is_none_or(|d| day < d)
    }

    pub(super) fn keeps(&self, r: &RollupRow) -> bool {
        self.day_in_range(r.day)
            && self
                .dims
                .iter()
                .all(|(i, vals)| r.dim(*i).is_some_and(|v| vals.iter().any(|x| x == v)))
    }
}
