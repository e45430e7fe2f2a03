//! A snapshot: a project's parts and tail as one query reads them.

use std::collections::HashSet;
use std::sync::Arc;

use crate::StoreError;
use crate::rollup::{Blocks, RollupSet};
use crate::sequence::Sequences;
use crate::store::cache::SpanCache;
use crate::store::order::MICROS_PER_DAY;
use crate::store::order::today;
use crate::store::part::LivePart;
use crate::store::tail::TailBatch;

/// What a query reads: a project's parts and its share of the tail, fixed when taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub project: String,
    pub parts: Vec<Arc<LivePart>>,
    pub tail: Vec<TailBatch>,
    pub(super) spans: Arc<SpanCache>,
    pub(super) span_days: u32,
}

impl Snapshot {
    /// The per-install event sequences of the parts and tail batches that hold events in
    /// `[since, until)` (micro-seconds; unbounded when `None`), in time order (by day, then as
    /// loaded); `joined`, a block of days read as one span where the range covers all of its
    /// parts. `None` when a part has none.
    pub fn sequences(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        joined: bool,
    ) -> Result<Option<Vec<Arc<Sequences>>>, StoreError> {
        let touches =
            |min: i64, max: i64| since.is_none_or(|s| max >= s) && until.is_none_or(|u| min < u);
        let within =
            |min: i64, max: i64| since.is_none_or(|s| min >= s) && until.is_none_or(|u| max < u);
        let mut tail: Vec<(i64, Arc<Sequences>)> = Vec::new();
        let mut tail_days = std::collections::BTreeSet::new();
        for batch in &self.tail {
            let Some(days) = batch.sequences()? else {
                return Ok(None);
            };
            for (day, s) in days {
                let (from, to) = (day * MICROS_PER_DAY, (day + 1) * MICROS_PER_DAY - 1);
                if touches(from, to) {
                    tail_days.insert(*day);
                    tail.push((*day, s.clone()));
                }
            }
        }
        let mut out: Vec<(i64, Arc<Sequences>)> = Vec::new();
        let mut singles = self.blocks(|first_day, days, group| {
            let last_day = first_day + days - 1;
            if !joined
                || tail_days.range(first_day..=last_day).next().is_some()
                || !group.iter().all(|p| within(p.meta.min_ts, p.meta.max_ts))
            {
                return Ok(false);
            }
            let span = self.spans.get(&self.project, first_day, days, group)?;
            Ok(span.map(|s| out.push((first_day, s))).is_some())
        })?;
        singles.retain(|p| touches(p.meta.min_ts, p.meta.max_ts));
        // Read on two threads: most of the time is copying the files out of the page cache.
        let half = singles.len().div_ceil(2);
        let read = |ps: &[&Arc<LivePart>]| -> Result<Option<Vec<Arc<Sequences>>>, StoreError> {
            ps.iter().map(|p| p.sequences()).collect()
        };
        let (a, b) = std::thread::scope(|scope| {
            let later = scope.spawn(|| read(&singles[half..]));
            let first = read(&singles[..half]);
            (
                first,
                later
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            )
        });
        let (Some(a), Some(b)) = (a?, b?) else {
            return Ok(None);
        };
        out.extend(
            singles
                .iter()
                .map(|p| p.meta.day)
                .zip(a.into_iter().chain(b)),
        );
        out.extend(tail);
        // Stable: within a day, parts come before the tail (they were loaded first), each in
        // the order it was loaded; a span's block holds no other part or tail batch.
        out.sort_by_key(|(day, _)| *day);
        Ok(Some(out.into_iter().map(|(_, s)| s).collect()))
    }

    /// The project's parts by day, as blocks of days that `join(first_day, days, parts)` takes
    /// to read as one, and single parts (returned, in day order). Blocks are
    /// [`Options::sequence_span_days`] long; where one is not yet past, its halves are tried,
    /// and so on down to an eighth of it, so that only the last few days are read part by part.
    /// `join` is asked only for past blocks of more than one part.
    pub(super) fn blocks<'a>(
        &'a self,
        mut join: impl FnMut(i64, i64, &[&'a Arc<LivePart>]) -> Result<bool, StoreError>,
    ) -> Result<Vec<&'a Arc<LivePart>>, StoreError> {
        let mut parts: Vec<&Arc<LivePart>> = self.parts.iter().collect();
        parts.sort_by_key(|p| (p.meta.day, p.meta.id));
        if self.span_days == 0 {
            return Ok(parts);
        }
        let today = today();
        let top = i64::from(self.span_days);
        let sizes: Vec<i64> = std::iter::successors(Some(top), |d| Some(d / 2))
            .take_while(|d| *d > 0 && *d >= top / 8)
            .collect();
        let mut singles: Vec<&Arc<LivePart>> = Vec::new();
        let mut todo: Vec<(&[&Arc<LivePart>], usize)> = vec![(&parts[..], 0)];
        while let Some((ps, level)) = todo.pop() {
            let days = sizes[level];
            let mut at = 0;
            while at < ps.len() {
                let block = ps[at].meta.day.div_euclid(days);
                let end = at + ps[at..].partition_point(|p| p.meta.day.div_euclid(days) == block);
                let group = &ps[at..end];
                at = end;
                let first_day = block * days;
                // Past: its last day, and the day after it, are over.
                let past = first_day + days < today;
                if past && group.len() > 1 && join(first_day, days, group)? {
                    continue;
                }
                if !past && level + 1 < sizes.len() {
                    todo.push((group, level + 1));
                } else {
                    singles.extend(group);
                }
            }
        }
        singles.sort_by_key(|p| (p.meta.day, p.meta.id));
        Ok(singles)
    }

    /// Friction's merged "ok" installs of the blocks of days within `[from, until)` (days since
    /// the epoch, unbounded when `None`), and which of [`Snapshot::rollups`] they stand for.
    pub fn blocks_of_rollups(
        &self,
        from: Option<i32>,
        until: Option<i32>,
    ) -> Result<Blocks, StoreError> {
        let mut succeeded = Vec::new();
        let mut covered = HashSet::new();
        self.blocks(|first_day, days, group| {
            let inside = from.is_none_or(|f| first_day >= i64::from(f))
                && until.is_none_or(|u| first_day + days <= i64::from(u));
            if !inside {
                return Ok(false);
            }
            let Some(s) = self
                .spans
                .succeeded(&self.project, first_day, days, group)?
            else {
                return Ok(false);
            };
            succeeded.push(s);
            covered.extend(group.iter().map(|p| p.meta.id));
            Ok(true)
        })?;
        let covered = self
            .parts
            .iter()
            .map(|p| covered.contains(&p.meta.id))
            .chain(self.tail.iter().map(|_| false))
            .collect();
        Ok(Blocks { succeeded, covered })
    }

    /// The rollups of every part and of the tail.
    pub fn rollups(&self) -> Result<Vec<Arc<RollupSet>>, StoreError> {
        let mut out = Vec::with_capacity(self.parts.len() + self.tail.len());
        for p in &self.parts {
            out.push(p.rollup()?);
        }
        out.extend(self.tail.iter().map(|b| b.rollup.clone()));
        Ok(out)
    }
}
