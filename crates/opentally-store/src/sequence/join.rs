//! Joins: several parts' sequences merged install by install into one.

use crate::sequence::format::{Builder, SUMMARY_MAGIC, SessionList};
use crate::sequence::{Names, Run, Sequences};

/// The sequences of several parts as one file, each install's runs joined into one: what a
/// walk reads when those parts are all it needs of their days, with one run per install instead
/// of one per install and part. `parts` in time order, their codes mapped to `names` (see
/// [`shared_codes`](crate::sequence::shared_codes)). With `summary`, each install keeps only what paths read, not its events:
/// its sessions' keys, each session's first and last event, and the count of each (event, next
/// event) pair within a session. `None` when an install's runs are not in time
/// order across the parts (see [`walk`](crate::sequence::walk)), a file is malformed, or the result outgrows the
/// format.
pub fn merge(parts: &[(&Sequences, Vec<u32>)], names: &Names, summary: bool) -> Option<Vec<u8>> {
    let mut parts: Vec<(&Sequences, Vec<u32>)> =
        parts.iter().map(|(p, c)| (*p, c.clone())).collect();
    join(&mut parts, summary, false)?.finish(&names.names)
}

/// A part's installs and their runs as [`join`] reads them: each install's key, then its run, in
/// key order, each once.
pub(super) trait Runs {
    /// A time at or before every event's.
    fn base(&self) -> i64;
    fn installs(&self) -> usize;
    /// The key of the `i`-th install.
    fn key_of(&mut self, i: usize) -> Option<u64>;
    /// The `i`-th install's run, with times.
    fn run_of(&mut self, i: usize, codes: &[u32], run: &mut Run) -> Option<()>;
}

impl Runs for &Sequences {
    fn base(&self) -> i64 {
        self.base
    }

    fn installs(&self) -> usize {
        self.installs
    }

    fn key_of(&mut self, i: usize) -> Option<u64> {
        Some(self.key(i))
    }

    fn run_of(&mut self, i: usize, codes: &[u32], run: &mut Run) -> Option<()> {
        self.run(i, codes, true, run)
    }
}

/// The joined file, as [`merge`](crate::sequence::merge) and [`compact`] describe it, not yet given its names (the
/// parts' codes are mapped to them).
pub(super) fn join<R: Runs>(
    parts: &mut [(R, Vec<u32>)],
    summary: bool,
    reorder: bool,
) -> Option<Builder> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let base = parts.iter().map(|(p, _)| p.base()).min().unwrap_or(0);
    let mut out = Builder::new(base);
    if summary {
        out.magic = SUMMARY_MAGIC;
    }
    let mut pairs = Vec::new();
    let mut put = |out: &mut Builder, key: u64, sessions: &[u64], events: &[(u32, u32, i64)]| {
        if summary {
            out.summary(key, sessions, events, &mut pairs)
        } else {
            out.install(key, sessions, events)
        }
    };
    // The next install of each part, smallest key first, then earliest part.
    let mut next: BinaryHeap<Reverse<(u64, usize, usize)>> = BinaryHeap::new();
    for (n, (p, _)) in parts.iter_mut().enumerate() {
        if p.installs() > 0 {
            next.push(Reverse((p.key_of(0)?, n, 0)));
        }
    }
    let mut run = Run::default();
    let mut sessions = SessionList::default();
    let mut events: Vec<(u32, u32, i64)> = Vec::new();
    let mut remap: Vec<u32> = Vec::new();
    let mut current: Option<u64> = None;
    // Whether the current install's runs overlap in time (only with `reorder`).
    let mut overlap = false;
    let mut spare = SessionList::default();
    while let Some(Reverse((key, n, i))) = next.pop() {
        if current != Some(key) {
            if let Some(done) = current {
                if overlap {
                    in_time_order(&mut events, &mut sessions, &mut spare)?;
                }
                put(&mut out, done, &sessions.keys, &events)?;
            }
            current = Some(key);
            overlap = false;
            sessions.clear();
            events.clear();
        }
        let (p, codes) = &mut parts[n];
        if i + 1 < p.installs() {
            next.push(Reverse((p.key_of(i + 1)?, n, i + 1)));
        }
        p.run_of(i, codes, &mut run)?;
        if events.last().is_some_and(|e| e.2 >= run.first) {
            if !reorder {
                return None;
            }
            overlap = true;
        }
        remap.clear();
        remap.extend(run.sessions.iter().map(|s| sessions.index(*s)));
        events.extend(
            (0..run.codes.len())
                .map(|e| (run.codes[e], remap[run.session(e) as usize], run.times[e])),
        );
    }
    if let Some(done) = current {
        if overlap {
            in_time_order(&mut events, &mut sessions, &mut spare)?;
        }
        put(&mut out, done, &sessions.keys, &events)?;
    }
    Some(out)
}

/// Sorts one install's events `(name code, session index, time)` by time and renumbers
/// `sessions` in the order first met after that (`spare` is the list it is rebuilt in). `None`
/// when two events have the same time.
pub(super) fn in_time_order(
    events: &mut [(u32, u32, i64)],
    sessions: &mut SessionList,
    spare: &mut SessionList,
) -> Option<()> {
    events.sort_by_key(|e| e.2);
    if events.windows(2).any(|w| w[0].2 == w[1].2) {
        return None;
    }
    spare.clear();
    for e in events {
        e.1 = spare.index(sessions.keys[e.1 as usize]);
    }
    std::mem::swap(sessions, spare);
    Some(())
}
