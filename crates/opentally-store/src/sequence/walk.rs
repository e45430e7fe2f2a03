//! Walkers: funnels and paths visit each install's runs across parts, a slice of installs
//! at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::hashing::HashKeyed;
use crate::sequence::{Run, Sequences, SummaryRun};

/// Event names across the parts of a walk: code 0 is "no name", which is also how paths say
/// that a session ended.
#[derive(Debug, Default)]
pub struct Names {
    pub names: Vec<String>,
    pub(super) index: HashMap<String, u32>,
}

impl Names {
    pub(super) fn code(&mut self, name: &str) -> u32 {
        if let Some(c) = self.index.get(name) {
            return *c;
        }
        self.names.push(name.to_owned());
        let c = u32::try_from(self.names.len()).expect("fewer than 4G names");
        self.index.insert(name.to_owned(), c);
        c
    }

    /// The code of `name`, if any part holds it.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The name of code `c` (`None` for 0).
    pub fn name(&self, c: u32) -> Option<&str> {
        c.checked_sub(1).map(|i| self.names[i as usize].as_str())
    }
}

/// What a walk does with each install's runs, met in time order across the parts.
pub trait Walker: Send {
    type State: Default;
    /// Whether `run` reads each event's time (else only the run's first and last).
    const TIMES: bool;
    /// Whether nothing at or after `from` can change the install's part of the answer (its
    /// later runs are then skipped unread).
    fn settled(&self, _state: &Self::State, _from: i64) -> bool {
        false
    }
    /// One run of the install, its events already cut to the time range (never empty).
    fn run(&mut self, key: u64, state: &mut Self::State, run: &Run);
    /// One run of the install from a span's summary, which keeps only what paths read. `None`
    /// when it is malformed, or (the default) when the walker cannot read summaries: the walk
    /// then gives up and the caller scans the events.
    fn summary(
        &mut self,
        _key: u64,
        _state: &mut Self::State,
        _summary: &SummaryRun,
        _codes: &[u32],
    ) -> Option<()> {
        None
    }
    /// The install has no more runs.
    fn finish(&mut self, key: u64, state: Self::State);
    /// A slice of the install key space is done (all of its installs finished).
    fn end_slice(&mut self) {}
    fn merge(&mut self, other: Self);
}

/// Installs a slice of the key space should hold, for its table to stay in the CPU cache.
pub(super) const SLICE: usize = 16_384;

/// Walks every install's runs through the parts in order (`parts` must be in time order: by day,
/// then as loaded), keeping events in `[since, until)`. `None` when the parts do not give an
/// install's events in time order (one of a day's later parts holds events before an earlier
/// part's, or at the same time, whose order only the message ids settle), or a file is
/// malformed: the caller then scans the events.
pub fn walk<W: Walker>(
    parts: &[(&Sequences, Vec<u32>)],
    since: Option<i64>,
    until: Option<i64>,
    make: impl Fn() -> W + Sync,
) -> Option<W> {
    let total: usize = parts.iter().map(|(p, _)| p.len()).sum();
    let slices = (total / SLICE).max(1).next_power_of_two().min(1 << 16);
    let bits = slices.trailing_zeros();
    let bound = |s: usize| -> u128 { (s as u128) << (64 - bits) };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(slices);
    let failed = AtomicBool::new(false);
    let walk_slices = |first: usize, last: usize| -> Option<W> {
        let mut w = make();
        let mut states: HashMap<u64, (i64, W::State), HashKeyed> = HashMap::default();
        let mut run = Run::default();
        let lo = u64::try_from(bound(first)).unwrap_or(u64::MAX);
        let mut cursors: Vec<usize> = parts.iter().map(|(p, _)| p.seek(lo)).collect();
        for s in first..last {
            let hi = bound(s + 1);
            for ((p, codes), cursor) in parts.iter().zip(&mut cursors) {
                while *cursor < p.len() && u128::from(p.key(*cursor)) < hi {
                    let key = p.key(*cursor);
                    let i = *cursor;
                    *cursor += 1;
                    let (seen, state) = states
                        .entry(key)
                        .or_insert_with(|| (i64::MIN, W::State::default()));
                    // A part that starts after the install's last event cannot be out of order.
                    if p.base > *seen && w.settled(state, p.base) {
                        continue;
                    }
                    if p.is_summary() {
                        // A summary has no per-event times to cut a run by: the caller scans.
                        let s = p.summary_run(i)?;
                        if since.is_some_and(|x| s.first < x) || until.is_some_and(|u| s.last >= u)
                        {
                            return None;
                        }
                        if s.first <= *seen {
                            failed.store(true, Ordering::Relaxed);
                            return None;
                        }
                        *seen = s.last;
                        w.summary(key, state, &s, codes)?;
                        continue;
                    }
                    p.run(i, codes, W::TIMES, &mut run)?;
                    if since.is_some_and(|s| run.first < s) || until.is_some_and(|u| run.last >= u)
                    {
                        // Only a run that crosses a bound reads its times to be cut.
                        if !W::TIMES {
                            p.run(i, codes, true, &mut run)?;
                        }
                        if !run.cut(since, until) {
                            continue;
                        }
                    }
                    let (first_ts, last_ts) = (run.first, run.last);
                    if first_ts <= *seen {
                        failed.store(true, Ordering::Relaxed);
                        return None;
                    }
                    *seen = last_ts;
                    w.run(key, state, &run);
                }
            }
            if failed.load(Ordering::Relaxed) {
                return None;
            }
            for (key, (_, state)) in states.drain() {
                w.finish(key, state);
            }
            w.end_slice();
        }
        Some(w)
    };
    let walk_slices = &walk_slices;
    let results: Vec<Option<W>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (first, last) = (slices * t / threads, slices * (t + 1) / threads);
                scope.spawn(move || walk_slices(first, last))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(None))
            .collect()
    });
    let mut out: Option<W> = None;
    for r in results {
        let r = r?;
        match &mut out {
            None => out = Some(r),
            Some(o) => o.merge(r),
        }
    }
    out
}

/// Maps each part's name codes to codes shared by all parts.
pub fn shared_codes(parts: &[&Sequences]) -> (Names, Vec<Vec<u32>>) {
    let mut names = Names::default();
    let codes = parts
        .iter()
        .map(|p| {
            std::iter::once(0)
                .chain(p.names().iter().map(|n| names.code(n)))
                .collect()
        })
        .collect();
    (names, codes)
}
