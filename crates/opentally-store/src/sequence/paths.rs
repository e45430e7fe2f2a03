//! Paths: what installs do next after an event.

use std::collections::HashSet;

use crate::hashing::HashKeyed;
use crate::sequence::{Run, SummaryRun, Walker};

/// Paths: what follows each `target` event in its session (code 0: the session's end, or an
/// event without a name), how often and for how many installs.
#[derive(Debug)]
pub struct Paths {
    pub(super) target: u32,
    /// What each code counts as when it follows the target: itself, except an event named like
    /// the end, `(end)`, counted as the end (0).
    pub(super) next_of: Vec<u32>,
    pub times: Vec<u64>,
    pub installs: Vec<u64>,
    /// `(install, next)` pairs of the slice for next codes of 64 and above, counted once each
    /// at its end.
    pub(super) pairs: Vec<(u64, u32)>,
    /// Sessions left open on the target, across the slice's installs: each install's first
    /// [`LISTED`] as a list, `(session key, 1 + index of the one left open before it)` (0 ends
    /// the list), which costs less than a table for the few most installs have; the rest in
    /// `many`, so that an install with thousands of sessions is not read a list at a time.
    pub(super) open: Vec<(u64, u32)>,
    pub(super) many: HashSet<u64, HashKeyed>,
    /// Per session of the run: its last event so far.
    pub(super) last: Vec<u32>,
}

impl Paths {
    pub fn new(target: u32, end_alias: Option<u32>, codes: usize) -> Paths {
        let next_of = (0..codes)
            .map(|c| {
                let c = u32::try_from(c).expect("fewer than 4G names");
                if Some(c) == end_alias { 0 } else { c }
            })
            .collect();
        Paths {
            target,
            next_of,
            times: vec![0; codes],
            installs: vec![0; codes],
            pairs: Vec::new(),
            open: Vec::new(),
            many: HashSet::default(),
            last: Vec::new(),
        }
    }
}

/// Per install: sessions left open on the target, and the next events seen (codes below 64 as
/// bits; higher codes go to the slice's pairs).
#[derive(Debug, Default)]
pub struct PathsState {
    /// Sessions left open; of them, those in the slice's list, and the last one listed (1 + its
    /// index in the list).
    pub(super) open: u32,
    pub(super) listed: u32,
    pub(super) open_last: u32,
    /// A bit per group of session keys (the top six bits) that may be open: most sessions of a
    /// later run are not, and need no lookup.
    pub(super) maybe_open: u64,
    pub(super) next: u64,
}

impl Paths {
    /// Counts `code` as what followed the target when `after` is 1 (not when 0): without a
    /// branch on it, which the data cannot predict.
    #[inline]
    pub(super) fn count(&mut self, key: u64, st: &mut PathsState, code: u32, after: u64) {
        let next = self.next_of[code as usize];
        self.times[next as usize] += after;
        if next < 64 {
            st.next |= after << next;
        } else if after == 1 {
            self.pairs.push((key, next));
        }
    }

    #[inline]
    pub(super) fn saw(&mut self, key: u64, st: &mut PathsState, code: u32) {
        if code < 64 {
            st.next |= 1 << code;
        } else {
            self.pairs.push((key, code));
        }
    }

    /// Whether session `s` was left open on the target by an earlier run of the install (it is
    /// no longer open after this).
    #[inline]
    pub(super) fn reopen(&mut self, st: &mut PathsState, s: u64) -> bool {
        if st.open == 0 || st.maybe_open & (1 << (s >> 58)) == 0 {
            return false;
        }
        // Unlinked from the install's list; its slot stays unused until the slice ends.
        let (mut at, mut before) = (st.open_last, 0);
        while at != 0 {
            let (key, next) = self.open[at as usize - 1];
            if key == s {
                if before == 0 {
                    st.open_last = next;
                } else {
                    self.open[before as usize - 1].1 = next;
                }
                st.open -= 1;
                st.listed -= 1;
                return true;
            }
            (before, at) = (at, next);
        }
        if st.open > st.listed && self.many.remove(&s) {
            st.open -= 1;
            return true;
        }
        false
    }

    /// Session `s` of the install was left open on the target.
    #[inline]
    pub(super) fn leave_open(&mut self, st: &mut PathsState, s: u64) {
        if st.listed < LISTED {
            self.open.push((s, st.open_last));
            st.open_last = u32::try_from(self.open.len()).expect("fewer than 4G open sessions");
            st.listed += 1;
        } else {
            self.many.insert(s);
        }
        st.open += 1;
        st.maybe_open |= 1 << (s >> 58);
    }

    /// A session of a summary's run: the first event follows the target if the session was
    /// left open on it, and the session is left open if its last event is the target.
    #[inline]
    pub(super) fn summary_session(
        &mut self,
        key: u64,
        st: &mut PathsState,
        s: u64,
        first: u32,
        last: u32,
    ) {
        if self.reopen(st, s) {
            self.count(key, st, first, 1);
        }
        if last == self.target {
            self.leave_open(st, s);
        }
    }

    /// A transition of a summary's run, `n` times.
    #[inline]
    pub(super) fn summary_pair(
        &mut self,
        key: u64,
        st: &mut PathsState,
        from: u32,
        to: u32,
        n: u32,
    ) {
        if from == self.target {
            let next = self.next_of[to as usize];
            self.times[next as usize] += u64::from(n) - 1;
            self.count(key, st, to, 1);
        }
    }
}

/// Open sessions an install keeps in the slice's list before the rest go to its table.
pub(super) const LISTED: u32 = 16;

/// No event seen yet in a session (codes are below it).
pub(super) const NO_EVENT: u32 = u32::MAX;

impl Walker for Paths {
    type State = PathsState;
    const TIMES: bool = false;

    fn run(&mut self, key: u64, st: &mut PathsState, run: &Run) {
        let target = self.target;
        // The common run of one session, without the per-session table.
        if let [s] = run.sessions[..] {
            let mut last = if self.reopen(st, s) { target } else { NO_EVENT };
            for &code in &run.codes {
                self.count(key, st, code, u64::from(last == target));
                last = code;
            }
            if last == target {
                self.leave_open(st, s);
            }
            return;
        }
        let mut last = std::mem::take(&mut self.last);
        last.clear();
        for &s in &run.sessions {
            let code = if self.reopen(st, s) { target } else { NO_EVENT };
            last.push(code);
        }
        for (&code, &si) in run.codes.iter().zip(&run.session_of) {
            let slot = &mut last[si as usize];
            let after = u64::from(*slot == target);
            *slot = code;
            self.count(key, st, code, after);
        }
        for (s, l) in run.sessions.iter().zip(&last) {
            if *l == target {
                self.leave_open(st, *s);
            }
        }
        self.last = last;
    }

    fn summary(
        &mut self,
        key: u64,
        st: &mut PathsState,
        summary: &SummaryRun,
        codes: &[u32],
    ) -> Option<()> {
        // Straight from the bytes: no vectors filled to be read once.
        summary.each(
            codes,
            &mut (self, st),
            |(p, st), s, first, last| p.summary_session(key, st, s, first, last),
            |(p, st), from, to, n| p.summary_pair(key, st, from, to, n),
        )
    }

    fn finish(&mut self, key: u64, mut st: PathsState) {
        if st.open > 0 {
            self.times[0] += u64::from(st.open);
            self.saw(key, &mut st, 0);
        }
        let mut bits = st.next;
        while bits != 0 {
            self.installs[bits.trailing_zeros() as usize] += 1;
            bits &= bits - 1;
        }
    }

    fn end_slice(&mut self) {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        for (_, code) in self.pairs.drain(..) {
            self.installs[code as usize] += 1;
        }
        self.open.clear();
        self.many.clear();
    }

    fn merge(&mut self, other: Paths) {
        for (a, b) in self.times.iter_mut().zip(other.times) {
            *a += b;
        }
        for (a, b) in self.installs.iter_mut().zip(other.installs) {
            *a += b;
        }
    }
}
