//! Funnels: how many installs reach each step, in order, within a window.

use crate::sequence::{Run, Walker};

/// A funnel: installs reaching each step, the steps done in order, each after the one before,
/// all within `window` micro-seconds of the install's first first step.
#[derive(Debug)]
pub struct Funnel {
    pub(super) steps: Vec<Option<u32>>,
    pub(super) window: i64,
    pub reached: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct FunnelState {
    pub(super) step: usize,
    pub(super) start: i64,
    pub(super) last: i64,
}

impl Funnel {
    pub fn new(steps: Vec<Option<u32>>, window: i64) -> Funnel {
        Funnel {
            reached: vec![0; steps.len()],
            steps,
            window,
        }
    }
}

impl Walker for Funnel {
    type State = FunnelState;
    const TIMES: bool = true;

    fn settled(&self, st: &FunnelState, from: i64) -> bool {
        st.step == self.steps.len() || (st.step > 0 && from > st.start.saturating_add(self.window))
    }

    fn run(&mut self, _key: u64, st: &mut FunnelState, run: &Run) {
        for (&code, &ts) in run.codes.iter().zip(&run.times) {
            let Some(want) = self.steps.get(st.step) else {
                return;
            };
            if *want != Some(code) {
                continue;
            }
            if st.step == 0 {
                st.start = ts;
                st.last = ts;
                st.step = 1;
            } else if ts > st.last && ts <= st.start.saturating_add(self.window) {
                st.last = ts;
                st.step += 1;
            }
        }
    }

    fn finish(&mut self, _key: u64, st: FunnelState) {
        for r in &mut self.reached[..st.step] {
            *r += 1;
        }
    }

    fn merge(&mut self, other: Funnel) {
        for (a, b) in self.reached.iter_mut().zip(other.reached) {
            *a += b;
        }
    }
}
