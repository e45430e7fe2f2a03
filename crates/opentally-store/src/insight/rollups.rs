//! The standard insights answered from rollups instead of events: trends, active installs,
//! new vs returning, version adoption, durations, errors, retention and friction, when every
//! filter and breakdown is a rollup dimension. The answers have the same columns and order as
//! the SQL the insight compiles to.
//!
//! New vs returning and retention need each install's first period: the install sketches'
//! retained hashes stand for the installs, read at the smallest theta of every sketch involved
//! (the rule theta set operations follow), so they are exact while every sketch is exact and
//! estimates scaled by that theta otherwise.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datasketches::theta::CompactThetaSketch;
use serde_json::{Value, json};

use crate::hashing::HashKeyed;
use crate::insight::answer::{round, table};
use crate::insight::sketches::{DayHashes, RowFilter, dim_index, scale, union_count};
use crate::insight::types::{
    Dim, Insight, InsightQuery, Interval, date_text, period, period_start,
};
use crate::query::Table;
use crate::rollup::{self, Blocks, RollupSet, common_theta};

pub(super) fn text(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.to_owned()))
}

/// Orders optional texts as SQL does by default: values ascending, nulls last.
pub(super) fn nulls_last(a: Option<&str>, b: Option<&str>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// A group of an event and an optional second dimension.
pub(super) type Pair<'a> = (Option<&'a str>, Option<&'a str>);

/// Answers from rollups, or `None` when the query needs the events.
#[derive(Debug)]
pub struct Answer {
    pub tables: BTreeMap<&'static str, Table>,
    /// True when some distinct count came from a sketch in estimation mode.
    pub estimated: bool,
}

impl InsightQuery {
    /// Whether [`InsightQuery::from_rollups`] can answer this query.
    pub fn rollups_answer(&self) -> bool {
        let by_ok = |by: &Option<Dim>| by.as_ref().is_none_or(|d| dim_index(d).is_some());
        let filters_ok = RowFilter::new(&self.filters, true).is_some();
        filters_ok
            && match &self.insight {
                Insight::Trend { by, .. }
                | Insight::Durations { by }
                | Insight::Errors { by, .. } => by_ok(by),
                Insight::Active
                | Insight::Versions { .. }
                | Insight::NewReturning { .. }
                | Insight::Retention
                | Insight::Friction { .. } => true,
                Insight::Funnel { .. } | Insight::Paths { .. } => false,
            }
    }

    /// The days whose parts' [`Blocks`] this query can read, `(from, until)` (`until`
    /// excluded, each unbounded when `None`); `None` when it reads none.
    pub fn blocks_range(&self) -> Option<(Option<i32>, Option<i32>)> {
        let filter = RowFilter::new(&self.filters, true)?;
        // Blocks merge every row of an event: a filter on another dimension needs the rows.
        let by_event = filter.dims.iter().all(|(i, _)| *i == 0);
        (matches!(self.insight, Insight::Friction { .. }) && by_event)
            .then_some((filter.from_day, filter.until_day))
    }

    /// The answer from rollup rows, or `None` when it needs the events. `blocks` stand for the
    /// parts they cover where the insight can read them (see [`InsightQuery::blocks_range`]).
    pub fn from_rollups(&self, parts: &[Arc<RollupSet>], blocks: &Blocks) -> Option<Answer> {
        if !self.rollups_answer() {
            return None;
        }
        let filter = RowFilter::new(&self.filters, true)?;
        // Without a filter on a dimension, whole days can be read from the per-day totals.
        let whole_days = filter.dims.is_empty();
        let rows = || {
            parts
                .iter()
                .flat_map(|p| p.rows.iter())
                .filter(|r| filter.keeps(r))
        };
        let mut estimated = false;
        let mut distinct = |sketches: &[&CompactThetaSketch]| {
            let (n, e) = union_count(sketches).unwrap_or_else(|| {
                let u = rollup::union(sketches.iter().copied());
                (rollup::count(&u), u.is_estimation_mode())
            });
            estimated |= e;
            n
        };
        let mut tables = BTreeMap::new();
        match &self.insight {
            Insight::Trend { interval, by } => {
                let by_i = by.as_ref().and_then(dim_index);
                let mut groups: BTreeMap<(String, Option<&str>), (u64, Vec<_>)> = BTreeMap::new();
                if whole_days && by_i.is_none() {
                    for (day, (events, sketch)) in parts.iter().flat_map(|p| p.days.iter()) {
                        if filter.day_in_range(*day) {
                            let g = groups.entry((period(*day, *interval), None)).or_default();
                            g.0 += events;
                            g.1.push(sketch);
                        }
                    }
                } else {
                    for r in rows() {
                        let g = groups
                            .entry((period(r.day, *interval), by_i.and_then(|i| r.dim(i))))
                            .or_default();
                        g.0 += r.events;
                        g.1.push(&r.installs);
                    }
                }
                let mut out: Vec<(String, Option<&str>, u64, u64)> = groups
                    .into_iter()
                    .map(|((p, v), (events, sketches))| (p, v, events, distinct(&sketches)))
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0).then(nulls_last(a.1, b.1)));
                let mut columns = vec!["period"];
                let name = by.as_ref().map(Dim::name);
                if let Some(n) = &name {
                    columns.push(n.as_str());
                }
                columns.extend(["events", "installs"]);
                let rows = out
                    .into_iter()
                    .map(|(p, v, e, i)| {
                        let mut row = vec![json!(p)];
                        if by.is_some() {
                            row.push(text(v));
                        }
                        row.extend([json!(e), json!(i)]);
                        row
                    })
                    .collect();
                tables.insert("trend", table(&columns, rows));
            }
            Insight::Active => {
                // Days before `since` count towards WAU and MAU: read 29 more days.
                let wide = RowFilter {
                    from_day: filter.from_day.map(|d| d - 29),
                    ..filter
                };
                let days = wide.day_sketches(parts);
                let daily: Vec<(i32, CompactThetaSketch)> = days
                    .into_iter()
                    .map(|(d, s)| (d, rollup::union(s)))
                    .collect();
                let mut count = |n: i32, day: i32| {
                    let i = daily.partition_point(|(d, _)| *d <= day);
                    let from = daily[..i].partition_point(|(d, _)| *d <= day - n);
                    let window: Vec<&CompactThetaSketch> =
                        daily[from..i].iter().map(|(_, s)| s).collect();
                    distinct(&window)
                };
                let mut out = Vec::new();
                for &(day, _) in &daily {
                    if wide.from_day.is_some_and(|f| day < f + 29) {
                        continue;
                    }
                    out.push(vec![
                        json!(date_text(i64::from(day))),
                        json!(count(1, day)),
                        json!(count(7, day)),
                        json!(count(30, day)),
                    ]);
                }
                tables.insert("active", table(&["day", "dau", "wau", "mau"], out));
            }
            Insight::Versions { interval } => {
                let mut by_version: BTreeMap<(String, Option<&str>), Vec<_>> = BTreeMap::new();
                let mut totals: BTreeMap<String, Vec<_>> = BTreeMap::new();
                for r in rows() {
                    let p = period(r.day, *interval);
                    totals.entry(p.clone()).or_default().push(&r.installs);
                    by_version
                        .entry((p, r.dim(1)))
                        .or_default()
                        .push(&r.installs);
                }
                let totals: HashMap<String, u64> =
                    totals.into_iter().map(|(p, s)| (p, distinct(&s))).collect();
                let mut out: Vec<(String, Option<&str>, u64)> = by_version
                    .into_iter()
                    .map(|((p, v), s)| (p, v, distinct(&s)))
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(nulls_last(a.1, b.1)));
                let rows = out
                    .into_iter()
                    .map(|(p, v, n)| {
                        #[allow(clippy::cast_precision_loss)]
                        let share = 100.0 * n as f64 / totals[&p].max(1) as f64;
                        vec![json!(p), text(v), json!(n), round(share, 1)]
                    })
                    .collect();
                tables.insert(
                    "versions",
                    table(&["period", "app_version", "installs", "share_pct"], rows),
                );
            }
            Insight::Durations { by } => {
                let by_i = by.as_ref().and_then(dim_index);
                let mut groups: BTreeMap<(Option<&str>, Option<&str>), Vec<_>> = BTreeMap::new();
                if whole_days && by_i.is_none() {
                    for ((day, event), d) in parts.iter().flat_map(|p| p.event_durations.iter()) {
                        if filter.day_in_range(*day) {
                            groups.entry((event.as_deref(), None)).or_default().push(d);
                        }
                    }
                } else {
                    for r in rows().filter(|r| !r.durations.is_empty()) {
                        groups
                            .entry((r.dim(0), by_i.and_then(|i| r.dim(i))))
                            .or_default()
                            .push(&r.durations);
                    }
                }
                let mut out: Vec<(Option<&str>, Option<&str>, _)> = groups
                    .into_iter()
                    .map(|((e, v), s)| (e, v, rollup::merge_durations(s)))
                    .collect();
                out.sort_by(|a, b| {
                    b.2.n()
                        .cmp(&a.2.n())
                        .then(nulls_last(a.0, b.0))
                        .then(nulls_last(a.1, b.1))
                });
                let mut columns = vec!["event"];
                let name = by.as_ref().map(Dim::name);
                if let Some(n) = &name {
                    columns.push(n.as_str());
                }
                columns.extend(["calls", "p50_ms", "p95_ms", "p99_ms", "max_ms"]);
                let rows = out
                    .into_iter()
                    .map(|(e, v, k)| {
                        let mut row = vec![text(e)];
                        if by.is_some() {
                            row.push(text(v));
                        }
                        let q =
                            |p: f64| rollup::quantile(&k, p).map_or(Value::Null, |x| round(x, 2));
                        row.extend([json!(k.n()), q(0.5), q(0.95), q(0.99), q(1.0)]);
                        row
                    })
                    .collect();
                tables.insert("durations", table(&columns, rows));
            }
            Insight::Errors { by, top } => {
                let by_i = by.as_ref().and_then(dim_index);
                let mut rate: BTreeMap<Pair, (u64, u64)> = BTreeMap::new();
                let mut kinds: BTreeMap<Pair, (u64, Vec<_>)> = BTreeMap::new();
                for r in rows() {
                    let Some(outcome) = r.dim(rollup::OUTCOME) else {
                        continue;
                    };
                    let g = rate
                        .entry((r.dim(0), by_i.and_then(|i| r.dim(i))))
                        .or_default();
                    g.0 += r.events;
                    if outcome == "error" {
                        g.1 += r.events;
                        let k = kinds.entry((r.dim(0), r.dim(5))).or_default();
                        k.0 += r.events;
                        k.1.push(&r.installs);
                    }
                }
                let mut out: Vec<_> = rate.into_iter().collect();
                out.sort_by(|a, b| {
                    b.1.1
                        .cmp(&a.1.1)
                        .then(nulls_last(a.0.0, b.0.0))
                        .then(nulls_last(a.0.1, b.0.1))
                });
                let mut columns = vec!["event"];
                let name = by.as_ref().map(Dim::name);
                if let Some(n) = &name {
                    columns.push(n.as_str());
                }
                columns.extend(["calls", "errors", "error_rate"]);
                let rows = out
                    .into_iter()
                    .map(|((e, v), (calls, errors))| {
                        let mut row = vec![text(e)];
                        if by.is_some() {
                            row.push(text(v));
                        }
                        #[allow(clippy::cast_precision_loss)]
                        let r = errors as f64 / calls.max(1) as f64;
                        row.extend([json!(calls), json!(errors), round(r, 4)]);
                        row
                    })
                    .collect();
                tables.insert("error_rate", table(&columns, rows));
                let mut top_rows: Vec<_> = kinds
                    .into_iter()
                    .map(|((e, t), (n, s))| (e, t, n, distinct(&s)))
                    .collect();
                top_rows.sort_by(|a, b| {
                    b.2.cmp(&a.2)
                        .then(nulls_last(a.0, b.0))
                        .then(nulls_last(a.1, b.1))
                });
                top_rows.truncate(*top);
                let rows = top_rows
                    .into_iter()
                    .map(|(e, t, n, i)| vec![text(e), text(t), json!(n), json!(i)])
                    .collect();
                tables.insert(
                    "top_errors",
                    table(&["event", "error_type", "errors", "installs"], rows),
                );
            }
            Insight::NewReturning { interval } => {
                // First periods over all of history; activity only within `since`..`until`.
                let hashes = DayHashes::new(filter.all_days().day_sketches(parts));
                estimated |= hashes.estimated();
                let periods = hashes.periods(*interval);
                let mut counts = vec![(0usize, 0usize); periods.len()];
                hashes.each_active_period(
                    &periods,
                    *interval,
                    |d| filter.day_in_range(d),
                    |first, p| {
                        if first == p {
                            counts[p].0 += 1;
                        } else {
                            counts[p].1 += 1;
                        }
                    },
                );
                let rows = periods
                    .iter()
                    .zip(counts)
                    .filter(|(_, (new, returning))| new + returning > 0)
                    .map(|(p, (new, returning))| {
                        vec![
                            json!(date_text(i64::from(*p))),
                            json!(hashes.scale(new)),
                            json!(hashes.scale(returning)),
                        ]
                    })
                    .collect();
                tables.insert(
                    "new_returning",
                    table(&["period", "new", "returning"], rows),
                );
            }
            Insight::Retention => {
                // Cohorts and activity over all of history; cohorts from `since`'s week on.
                let hashes = DayHashes::new(filter.all_days().day_sketches(parts));
                estimated |= hashes.estimated();
                let weeks = hashes.periods(Interval::Week);
                let n = weeks.len();
                let mut cells = vec![0usize; n * n];
                hashes.each_active_period(
                    &weeks,
                    Interval::Week,
                    |_| true,
                    |first, week| cells[first * n + week] += 1,
                );
                let from = filter.from_day.map(|d| period_start(d, Interval::Week));
                let mut rows = Vec::new();
                for (c, cohort) in weeks.iter().enumerate() {
                    let size = cells[c * n + c];
                    if from.is_some_and(|f| *cohort < f) || size == 0 {
                        continue;
                    }
                    for (w, week) in weeks.iter().enumerate().skip(c) {
                        let installs = cells[c * n + w];
                        if installs == 0 {
                            continue;
                        }
                        #[allow(clippy::cast_precision_loss)]
                        let pct = 100.0 * installs as f64 / size as f64;
                        rows.push(vec![
                            json!(date_text(i64::from(*cohort))),
                            json!((week - cohort) / 7),
                            json!(hashes.scale(installs)),
                            round(pct, 1),
                        ]);
                    }
                }
                tables.insert(
                    "retention",
                    table(&["cohort", "week", "installs", "retained_pct"], rows),
                );
            }
            Insight::Friction { top } => {
                if !parts.iter().all(|p| p.has_sessions) {
                    return None;
                }
                // Errors per session, added up across parts: a session may span several.
                let mut pairs: HashMap<Pair, usize> = HashMap::new();
                let mut per_session: Vec<HashMap<u64, u64, HashKeyed>> = Vec::new();
                let mut failed: BTreeMap<Option<&str>, (Vec<_>, Vec<_>)> = BTreeMap::new();
                let mut by_version: BTreeMap<Option<&str>, (u64, u64)> = BTreeMap::new();
                let rows = parts.iter().enumerate().flat_map(|(i, p)| {
                    let covered = blocks.covered.get(i).copied().unwrap_or(false);
                    p.rows
                        .iter()
                        .filter(|r| filter.keeps(r))
                        .map(move |r| (covered, r))
                });
                for (covered, r) in rows {
                    let Some(outcome) = r.dim(rollup::OUTCOME) else {
                        continue;
                    };
                    let v = by_version.entry(r.dim(1)).or_default();
                    v.0 += r.events;
                    let f = failed.entry(r.dim(0)).or_default();
                    match outcome {
                        "error" => {
                            v.1 += r.events;
                            f.0.push(&r.installs);
                            let next = pairs.len();
                            let i = *pairs.entry((r.dim(0), r.dim(5))).or_insert(next);
                            if i == per_session.len() {
                                per_session.push(HashMap::default());
                            }
                            for (key, n) in &r.error_sessions {
                                *per_session[i].entry(*key).or_default() += u64::from(*n);
                            }
                        }
                        "ok" if !covered => f.1.push(&r.installs),
                        _ => {}
                    }
                }
                let mut repeated: Vec<(Pair, (u64, u64))> = pairs
                    .into_iter()
                    .map(|(pair, i)| {
                        let many = per_session[i].values().filter(|n| **n >= 2);
                        (pair, many.fold((0, 0), |(s, e), n| (s + 1, e + n)))
                    })
                    .filter(|(_, (sessions, _))| *sessions > 0)
                    .collect();
                repeated.sort_by(|a, b| {
                    b.1.0
                        .cmp(&a.1.0)
                        .then(nulls_last(a.0.0, b.0.0))
                        .then(nulls_last(a.0.1, b.0.1))
                });
                repeated.truncate(*top);
                let rows = repeated
                    .into_iter()
                    .map(|((e, t), (sessions, errors))| {
                        vec![text(e), text(t), json!(sessions), json!(errors)]
                    })
                    .collect();
                tables.insert(
                    "repeated_errors",
                    table(&["event", "error_type", "sessions", "errors"], rows),
                );
                // Installs whose calls of an event failed and never succeeded: A and not B, at
                // the smallest theta of both (a union of B would hash every install it saw).
                let mut never: Vec<(Option<&str>, u64)> = Vec::new();
                for (event, (errors, oks)) in failed {
                    if errors.is_empty() {
                        continue;
                    }
                    let merged: Vec<_> = blocks
                        .succeeded
                        .iter()
                        .filter_map(|b| b.get(event))
                        .collect();
                    let (mut theta, mut fraction) =
                        common_theta(errors.iter().chain(&oks).copied());
                    for m in &merged {
                        if m.theta < theta {
                            (theta, fraction) = (m.theta, m.fraction);
                        }
                    }
                    estimated |= theta != u64::MAX;
                    let mut only: std::collections::HashSet<u64, HashKeyed> =
                        std::collections::HashSet::with_capacity_and_hasher(
                            errors.iter().map(|s| s.num_retained()).sum(),
                            HashKeyed::default(),
                        );
                    only.extend(
                        errors
                            .iter()
                            .flat_map(|s| s.iter().map(|e| e.hash()))
                            .filter(|h| *h < theta),
                    );
                    for m in &merged {
                        for h in m.hashes.iter().take_while(|h| **h < theta) {
                            only.remove(h);
                        }
                    }
                    for ok in &oks {
                        if only.is_empty() {
                            break;
                        }
                        for h in ok.iter().map(|e| e.hash()) {
                            if h >= theta && ok.is_ordered() {
                                break;
                            }
                            only.remove(&h);
                        }
                    }
                    let n = scale(only.len(), fraction);
                    if n > 0 {
                        never.push((event, n));
                    }
                }
                never.sort_by(|a, b| b.1.cmp(&a.1).then(nulls_last(a.0, b.0)));
                never.truncate(*top);
                let rows = never
                    .into_iter()
                    .map(|(e, n)| vec![text(e), json!(n)])
                    .collect();
                tables.insert("never_succeeded", table(&["event", "installs"], rows));
                let mut by_version: Vec<_> = by_version.into_iter().collect();
                by_version.sort_by(|a, b| nulls_last(a.0, b.0));
                let rows = by_version
                    .into_iter()
                    .map(|(v, (calls, errors))| {
                        #[allow(clippy::cast_precision_loss)]
                        let r = errors as f64 / calls.max(1) as f64;
                        vec![text(v), json!(calls), json!(errors), round(r, 4)]
                    })
                    .collect();
                tables.insert(
                    "error_rate_by_version",
                    table(&["app_version", "calls", "errors", "error_rate"], rows),
                );
            }
            Insight::Funnel { .. } | Insight::Paths { .. } => return None,
        }
        Some(Answer { tables, estimated })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::insight::sketches::union_count;
    use crate::rollup::RollupRow;
    use datasketches::theta::ThetaSketchBuilder;

    /// A rollup row of `fit` on `day` whose installs are `ids`.
    fn row(day: i32, ids: std::ops::Range<u32>) -> RollupRow {
        let mut s = ThetaSketchBuilder::default()
            .lg_k(rollup::THETA_LG_K)
            .build()
            .unwrap();
        for id in ids.clone() {
            s.update(format!("install-{id}"));
        }
        RollupRow {
            day,
            dims: std::array::from_fn(|i| (i == 0).then(|| Arc::from("fit"))),
            events: u64::from(ids.end - ids.start),
            installs: s.compact(true),
            durations: rollup::durations(),
            error_sessions: Vec::new(),
        }
    }

    #[test]
    fn set_operations_past_the_sketches_exact_size_are_scaled_estimates() {
        // 2026-11-02 and 2026-11-09 are Mondays: 60,000 installs in the first week, then
        // 60,000 of which 20,000 came back — more than a row sketch holds exactly.
        let (d1, d2) = (20_759, 20_766);
        assert_eq!(date_text(d1.into()), "2026-11-02");
        let parts = vec![Arc::new(RollupSet::new(
            vec![row(d1, 0..60_000), row(d2, 40_000..100_000)],
            true,
        ))];
        let now = opentally_protocol::Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
        let ask = |kind: &str, q: &[(&str, &str)]| {
            let params: Vec<(String, String)> = q
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let a = InsightQuery::from_params(kind, &params, now)
                .unwrap()
                .from_rollups(&parts, &Blocks::default())
                .unwrap();
            assert!(
                a.estimated,
                "{kind}: past its exact size a sketch estimates"
            );
            a.tables
        };
        let near = |got: &Value, want: f64| {
            let got = got.as_f64().unwrap();
            assert!(
                (got - want).abs() <= 0.05 * want,
                "{got} is not within 5 % of {want}"
            );
        };
        let t = ask("new-returning", &[("interval", "week")]);
        let rows = &t["new_returning"].rows;
        assert_eq!(rows.len(), 2);
        near(&rows[0][1], 60_000.0);
        assert_eq!(rows[0][2], json!(0));
        near(&rows[1][1], 40_000.0);
        near(&rows[1][2], 20_000.0);
        let t = ask("retention", &[]);
        let rows = &t["retention"].rows;
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(
            (&rows[0][0], &rows[0][1]),
            (&json!("2026-11-02"), &json!(0))
        );
        near(&rows[0][2], 60_000.0);
        near(&rows[1][2], 20_000.0);
        near(&rows[1][3], 33.3);
        near(&rows[2][2], 40_000.0);
    }

    /// Counting from the smallest hashes gives what a union gives: exact below a count's size,
    /// the same estimate past it, on days with gaps.
    #[test]
    fn union_counts_are_those_of_the_union() {
        let days = [0, 1, 2, 5, 6, 7, 8, 9, 20, 21, 22, 40, 41, 70];
        let daily: Vec<(i32, CompactThetaSketch)> = days
            .iter()
            .map(|&d| {
                let u32_day = u32::try_from(d).unwrap();
                let from = u32_day * 700;
                let r = row(d, from..from + 1_500 + 100 * u32_day);
                (d, rollup::union([&r.installs]))
            })
            .collect();
        let (mut exact, mut estimates) = (0, 0);
        for n in [1, 7, 30] {
            for (day, _) in &daily {
                let window: Vec<&CompactThetaSketch> = daily
                    .iter()
                    .filter(|(d, _)| *d > day - n && d <= day)
                    .map(|(_, s)| s)
                    .collect();
                let union = rollup::union(window.iter().copied());
                let want = (rollup::count(&union), union.is_estimation_mode());
                assert_eq!(union_count(&window), Some(want), "{n} days up to day {day}");
                if want.1 { estimates += 1 } else { exact += 1 }
            }
        }
        assert!(
            exact > 0 && estimates > 0,
            "{exact} exact, {estimates} estimated"
        );
        assert_eq!(union_count(&[]), Some((0, false)));
    }

    #[test]
    fn periods_start_on_the_right_day() {
        // 2026-11-25 is a Wednesday, day 20_782 since the epoch.
        assert_eq!(date_text(20_782), "2026-11-25");
        assert_eq!(period(20_782, Interval::Week), "2026-11-23");
        assert_eq!(period(20_782, Interval::Month), "2026-11-01");
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(period(0, Interval::Week), "1969-12-29");
        assert_eq!(date_text(11_016), "2000-02-29");
        assert_eq!(date_text(-1), "1969-12-31");
    }
}
