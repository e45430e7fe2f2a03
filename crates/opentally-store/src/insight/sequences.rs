//! Funnels and paths answered from the parts' per-install event sequences.

use std::collections::BTreeMap;
use std::time::Instant;

use opentally_protocol::Timestamp;
use serde_json::json;

use crate::insight::answer::{round, table};
use crate::insight::types::{END, Insight, InsightQuery};
use crate::query::{QueryError, Table};
use crate::sequence::{self, Sequences};
use crate::store::Snapshot;

impl InsightQuery {
    /// Funnels and paths from the parts' per-install event sequences, when no filter needs the
    /// events' other columns; `None` when the events must be scanned (a filter on a dimension, a
    /// part without sequences, or a day whose parts hold an install's events out of order).
    pub(super) fn sequences_answer(
        &self,
        snapshot: &Snapshot,
    ) -> Result<Option<BTreeMap<&'static str, Table>>, QueryError> {
        if !matches!(self.insight, Insight::Funnel { .. } | Insight::Paths { .. })
            || !self.filters.wheres.is_empty()
        {
            return Ok(None);
        }
        let started = Instant::now();
        // `ts >= since` and `ts < until` on micro-second times, for bounds in nanoseconds.
        let micros = |t: Timestamp| {
            let n = t.unix_nanos();
            i64::try_from(n.div_euclid(1000) + i128::from(n.rem_euclid(1000) != 0)).ok()
        };
        let since = self.filters.since.and_then(micros);
        let until = self.filters.until.and_then(micros);
        let Some(parts) = snapshot
            .sequences(since, until, matches!(self.insight, Insight::Paths { .. }))
            .map_err(|e| QueryError::Internal(e.to_string()))?
        else {
            return Ok(None);
        };
        tracing::debug!(
            parts = parts.len(),
            read_ms = started.elapsed().as_secs_f64() * 1000.0,
            "sequences read"
        );
        let refs: Vec<&Sequences> = parts.iter().map(AsRef::as_ref).collect();
        let (names, codes) = sequence::shared_codes(&refs);
        let parts: Vec<(&Sequences, Vec<u32>)> = refs.into_iter().zip(codes).collect();
        let mut tables = BTreeMap::new();
        match &self.insight {
            Insight::Funnel { steps, window_secs } => {
                let window =
                    i64::try_from(window_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
                let codes = steps.iter().map(|s| names.get(s)).collect();
                let Some(f) = sequence::walk(&parts, since, until, || {
                    sequence::Funnel::new(Vec::clone(&codes), window)
                }) else {
                    return Ok(None);
                };
                let first = f.reached[0];
                let rows = steps
                    .iter()
                    .zip(&f.reached)
                    .enumerate()
                    .map(|(i, (step, n))| {
                        #[allow(clippy::cast_precision_loss)]
                        let pct = 100.0 * *n as f64 / first as f64;
                        vec![json!(i + 1), json!(step), json!(n), round(pct, 1)]
                    })
                    .collect();
                tables.insert(
                    "funnel",
                    table(&["step", "event", "installs", "pct_of_first"], rows),
                );
            }
            Insight::Paths { event, top } => {
                let mut rows: Vec<(String, u64, u64)> = Vec::new();
                if let Some(target) = names.get(event) {
                    let n = names.names.len() + 1;
                    let Some(p) = sequence::walk(&parts, since, until, || {
                        sequence::Paths::new(target, names.get(END), n)
                    }) else {
                        return Ok(None);
                    };
                    for (code, (&times, &installs)) in p.times.iter().zip(&p.installs).enumerate() {
                        if times > 0 {
                            let code = u32::try_from(code).expect("codes fit in u32");
                            rows.push((
                                names.name(code).unwrap_or(END).to_owned(),
                                times,
                                installs,
                            ));
                        }
                    }
                }
                rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                rows.truncate(*top);
                let rows = rows
                    .into_iter()
                    .map(|(next, times, installs)| vec![json!(next), json!(times), json!(installs)])
                    .collect();
                tables.insert("paths", table(&["next_event", "times", "installs"], rows));
            }
            _ => unreachable!("only funnels and paths"),
        }
        tracing::debug!(
            total_ms = started.elapsed().as_secs_f64() * 1000.0,
            "sequences walked"
        );
        Ok(Some(tables))
    }
}
