//! The standard insights answered from rollups instead of events: trends, active installs,
//! new vs returning, version adoption, durations, errors, retention and friction, when every
//! filter and breakdown is a rollup dimension. The answers have the same columns and order as
//! the SQL the insight compiles to.
//!
//! New vs returning and retention need each install's first period: the install sketches'
//! retained hashes stand for the installs, read at the smallest theta of every sketch involved
//! (the rule theta set operations follow), so they are exact while every sketch is exact and
//! estimates scaled by that theta otherwise.

use std::cell::Cell;
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
use crate::rollup::{self, Blocks, RollupRow, RollupSet, common_theta};

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
        let r = Rollups {
            parts,
            blocks,
            // Without a filter on a dimension, whole days can be read from the per-day totals.
            whole_days: filter.dims.is_empty(),
            filter,
            estimated: Cell::new(false),
        };
        let mut tables = BTreeMap::new();
        match &self.insight {
            Insight::Trend { interval, by } => r.trend(*interval, by.as_ref(), &mut tables),
            Insight::Active => r.active(&mut tables),
            Insight::Versions { interval } => r.versions(*interval, &mut tables),
            Insight::Durations { by } => r.durations(by.as_ref(), &mut tables),
            Insight::Errors { by, top } => r.errors(by.as_ref(), *top, &mut tables),
            Insight::NewReturning { interval } => r.new_returning(*interval, &mut tables),
            Insight::Retention => r.retention(&mut tables),
            Insight::Friction { top } => r.friction(*top, &mut tables)?,
            Insight::Funnel { .. } | Insight::Paths { .. } => return None,
        }
        Some(Answer {
            tables,
            estimated: r.estimated.get(),
        })
    }
}

/// The tables of an answer, by name.
type Tables = BTreeMap<&'static str, Table>;

/// What every answer from rollups reads: the rollup rows a query's filters keep, the blocks of
/// past days whose parts' installs are merged once, and the distinct counts, noting whether any
/// was estimated. One method per insight.
/// A list of sketches to count the union of.
type Sketches<'a> = Vec<&'a CompactThetaSketch>;

struct Rollups<'a> {
    parts: &'a [Arc<RollupSet>],
    blocks: &'a Blocks,
    filter: RowFilter,
    whole_days: bool,
    estimated: Cell<bool>,
}

impl<'a> Rollups<'a> {
    /// The rows the filter keeps.
    fn rows(&self) -> impl Iterator<Item = &'a RollupRow> + '_ {
        self.parts
            .iter()
            .flat_map(|p| p.rows.iter())
            .filter(|r| self.filter.keeps(r))
    }

    /// Notes that a count was estimated (when `estimated`).
    fn note_estimated(&self, estimated: bool) {
        if estimated {
            self.estimated.set(true);
        }
    }

    /// The installs in the union of `sketches`.
    fn distinct(&self, sketches: &[&CompactThetaSketch]) -> u64 {
        let (n, e) = union_count(sketches).unwrap_or_else(|| {
            let u = rollup::union(sketches.iter().copied());
            (rollup::count(&u), u.is_estimation_mode())
        });
        self.note_estimated(e);
        n
    }

    /// Events and installs per period.
    fn trend(&self, interval: Interval, by: Option<&Dim>, tables: &mut Tables) {
        let by_i = by.and_then(dim_index);
        let mut groups: BTreeMap<(String, Option<&str>), (u64, Sketches<'_>)> = BTreeMap::new();
        if self.whole_days && by_i.is_none() {
            for (day, (events, sketch)) in self.parts.iter().flat_map(|p| p.days.iter()) {
                if self.filter.day_in_range(*day) {
                    let g = groups.entry((period(*day, interval), None)).or_default();
                    g.0 += events;
                    g.1.push(sketch);
                }
            }
        } else {
            for r in self.rows() {
                let g = groups
                    .entry((period(r.day, interval), by_i.and_then(|i| r.dim(i))))
                    .or_default();
                g.0 += r.events;
                g.1.push(&r.installs);
            }
        }
        let mut out: Vec<(String, Option<&str>, u64, u64)> = groups
            .into_iter()
            .map(|((p, v), (events, sketches))| (p, v, events, self.distinct(&sketches)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0).then(nulls_last(a.1, b.1)));
        let mut columns = vec!["period"];
        let name = by.map(Dim::name);
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

    /// Daily, weekly and monthly active installs.
    fn active(&self, tables: &mut Tables) {
        // Days before `since` count towards WAU and MAU: read 29 more days.
        let wide = RowFilter {
            from_day: self.filter.from_day.map(|d| d - 29),
            ..self.filter.clone()
        };
        let days = wide.day_sketches(self.parts);
        let daily: Vec<(i32, CompactThetaSketch)> = days
            .into_iter()
            .map(|(d, s)| (d, rollup::union(s)))
            .collect();
        let count = |n: i32, day: i32| {
            let i = daily.partition_point(|(d, _)| *d <= day);
            let from = daily[..i].partition_point(|(d, _)| *d <= day - n);
            let window: Sketches<'_> = daily[from..i].iter().map(|(_, s)| s).collect();
            self.distinct(&window)
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

    /// Installs per app version and period.
    fn versions(&self, interval: Interval, tables: &mut Tables) {
        let mut by_version: BTreeMap<(String, Option<&str>), Sketches<'_>> = BTreeMap::new();
        let mut totals: BTreeMap<String, Sketches<'_>> = BTreeMap::new();
        for r in self.rows() {
            let p = period(r.day, interval);
            totals.entry(p.clone()).or_default().push(&r.installs);
            by_version
                .entry((p, r.dim(1)))
                .or_default()
                .push(&r.installs);
        }
        let totals: HashMap<String, u64> = totals
            .into_iter()
            .map(|(p, s)| (p, self.distinct(&s)))
            .collect();
        let mut out: Vec<(String, Option<&str>, u64)> = by_version
            .into_iter()
            .map(|((p, v), s)| (p, v, self.distinct(&s)))
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

    /// Duration percentiles per event.
    fn durations(&self, by: Option<&Dim>, tables: &mut Tables) {
        let by_i = by.and_then(dim_index);
        let mut groups: BTreeMap<(Option<&str>, Option<&str>), Vec<_>> = BTreeMap::new();
        if self.whole_days && by_i.is_none() {
            for ((day, event), d) in self.parts.iter().flat_map(|p| p.event_durations.iter()) {
                if self.filter.day_in_range(*day) {
                    groups.entry((event.as_deref(), None)).or_default().push(d);
                }
            }
        } else {
            for r in self.rows().filter(|r| !r.durations.is_empty()) {
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
        let name = by.map(Dim::name);
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
                let q = |p: f64| rollup::quantile(&k, p).map_or(Value::Null, |x| round(x, 2));
                row.extend([json!(k.n()), q(0.5), q(0.95), q(0.99), q(1.0)]);
                row
            })
            .collect();
        tables.insert("durations", table(&columns, rows));
    }

    /// Error counts and rates, and the top error types.
    fn errors(&self, by: Option<&Dim>, top: usize, tables: &mut Tables) {
        let by_i = by.and_then(dim_index);
        let mut rate: BTreeMap<Pair, (u64, u64)> = BTreeMap::new();
        let mut kinds: BTreeMap<Pair, (u64, Sketches<'_>)> = BTreeMap::new();
        for r in self.rows() {
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
        let name = by.map(Dim::name);
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
            .map(|((e, t), (n, s))| (e, t, n, self.distinct(&s)))
            .collect();
        top_rows.sort_by(|a, b| {
            b.2.cmp(&a.2)
                .then(nulls_last(a.0, b.0))
                .then(nulls_last(a.1, b.1))
        });
        top_rows.truncate(top);
        let rows = top_rows
            .into_iter()
            .map(|(e, t, n, i)| vec![text(e), text(t), json!(n), json!(i)])
            .collect();
        tables.insert(
            "top_errors",
            table(&["event", "error_type", "errors", "installs"], rows),
        );
    }

    /// New and returning installs per period.
    fn new_returning(&self, interval: Interval, tables: &mut Tables) {
        // First periods over all of history; activity only within `since`..`until`.
        let hashes = DayHashes::new(self.filter.all_days().day_sketches(self.parts));
        self.note_estimated(hashes.estimated());
        let periods = hashes.periods(interval);
        let mut counts = vec![(0usize, 0usize); periods.len()];
        hashes.each_active_period(
            &periods,
            interval,
            |d| self.filter.day_in_range(d),
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

    /// Weekly retention cohorts.
    fn retention(&self, tables: &mut Tables) {
        // Cohorts and activity over all of history; cohorts from `since`'s week on.
        let hashes = DayHashes::new(self.filter.all_days().day_sketches(self.parts));
        self.note_estimated(hashes.estimated());
        let weeks = hashes.periods(Interval::Week);
        let n = weeks.len();
        let mut cells = vec![0usize; n * n];
        hashes.each_active_period(
            &weeks,
            Interval::Week,
            |_| true,
            |first, week| cells[first * n + week] += 1,
        );
        let from = self
            .filter
            .from_day
            .map(|d| period_start(d, Interval::Week));
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

    /// Where installs get stuck: repeated errors, failures never followed by a success, error rate by version.
    fn friction(&self, top: usize, tables: &mut Tables) -> Option<()> {
        if !self.parts.iter().all(|p| p.has_sessions) {
            return None;
        }
        // Errors per session, added up across self.parts: a session may span several.
        let mut pairs: HashMap<Pair, usize> = HashMap::new();
        let mut per_session: Vec<HashMap<u64, u64, HashKeyed>> = Vec::new();
        let mut failed: BTreeMap<Option<&str>, (Vec<_>, Vec<_>)> = BTreeMap::new();
        let mut by_version: BTreeMap<Option<&str>, (u64, u64)> = BTreeMap::new();
        let rows = self.parts.iter().enumerate().flat_map(|(i, p)| {
            let covered = self.blocks.covered.get(i).copied().unwrap_or(false);
            p.rows
                .iter()
                .filter(|r| self.filter.keeps(r))
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
        repeated.truncate(top);
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
            let merged: Vec<_> = self
                .blocks
                .succeeded
                .iter()
                .filter_map(|b| b.get(event))
                .collect();
            let (mut theta, mut fraction) = common_theta(errors.iter().chain(&oks).copied());
            for m in &merged {
                if m.theta < theta {
                    (theta, fraction) = (m.theta, m.fraction);
                }
            }
            self.note_estimated(theta != u64::MAX);
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
        never.truncate(top);
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
        Some(())
    }
}
