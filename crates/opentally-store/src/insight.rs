//! Insights as typed queries (DESIGN §7), each compiled to SQL over the `events` table, so every
//! backend that speaks this SQL runs the same types.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use opentally_protocol::Timestamp;
use serde::Serialize;
use serde_json::json;

use crate::from_rollups::{round, table};
use crate::query::{self, Limits, QueryError, Table};
use crate::schema::{CONTEXT_COLUMNS, column_names};
use crate::sequence::{self, Sequences};
use crate::store::Snapshot;

/// How paths name the end of a session.
const END: &str = "(end)";

/// What an insight is broken down or filtered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A column of the `events` table.
    Column(&'static str),
    /// A property of the event (`properties.method`, or a bare catalog property name).
    Property(String),
    /// A context field without a column of its own (`context.hardware.arch`).
    Context(String),
}

fn bad(msg: impl Into<String>) -> QueryError {
    QueryError::BadQuery(msg.into())
}

fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('.').all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

impl Dim {
    /// Reads `app.version`, `os.name`, `outcome`, `properties.method`, `method`,
    /// `context.hardware.arch`…
    pub fn parse(s: &str) -> Result<Dim, QueryError> {
        /// Columns that are not dimensions: JSON blobs and unique ids.
        const OPAQUE: [&str; 4] = ["properties", "context", "extra", "message_id"];
        if let Some((_, col)) = CONTEXT_COLUMNS.iter().find(|(path, _)| *path == s) {
            return Ok(Dim::Column(col));
        }
        if let Some(rest) = s.strip_prefix("context.") {
            if let Some((_, col)) = CONTEXT_COLUMNS.iter().find(|(path, _)| *path == rest) {
                return Ok(Dim::Column(col));
            }
            return if valid_path(rest) {
                Ok(Dim::Context(rest.to_owned()))
            } else {
                Err(bad(format!("`{s}` is not a context field name")))
            };
        }
        if let Some(rest) = s.strip_prefix("properties.") {
            return if valid_path(rest) {
                Ok(Dim::Property(rest.to_owned()))
            } else {
                Err(bad(format!("`{s}` is not a property name")))
            };
        }
        if let Some(col) = column_names().find(|c| *c == s && !OPAQUE.contains(c)) {
            return Ok(Dim::Column(col));
        }
        if valid_path(s) {
            return Ok(Dim::Property(s.to_owned()));
        }
        Err(bad(format!(
            "`{s}` is neither a field (app.version, os.name, outcome, error_type…) nor a property name"
        )))
    }

    /// The SQL expression, as text.
    pub fn sql(&self) -> String {
        match self {
            Dim::Column(c) => (*c).to_owned(),
            Dim::Property(p) => format!("json_get(properties, {})", lit(p)),
            Dim::Context(p) => format!("json_get(context, {})", lit(p)),
        }
    }

    /// The result column's name, quoted as a SQL identifier (a property may be `a-b`).
    pub fn quoted_name(&self) -> String {
        format!("\"{}\"", self.name().replace('"', "\"\""))
    }

    /// The result column's name.
    pub fn name(&self) -> String {
        match self {
            Dim::Column(c) => (*c).to_owned(),
            Dim::Property(p) => p.replace('.', "_"),
            Dim::Context(p) => format!("context_{}", p.replace('.', "_")),
        }
    }
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ts_lit(t: Timestamp) -> String {
    format!("TIMESTAMP '{t}'")
}

/// Calendar buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interval {
    #[default]
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn parse(s: &str) -> Result<Interval, QueryError> {
        match s {
            "day" => Ok(Interval::Day),
            "week" => Ok(Interval::Week),
            "month" => Ok(Interval::Month),
            _ => Err(bad(format!("interval `{s}`: expected day, week or month"))),
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}

/// Filters every insight takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only this event (not for funnels and paths, whose steps name their events).
    pub event: Option<String>,
    /// Each dimension must have one of the values.
    pub wheres: Vec<(Dim, Vec<String>)>,
}

impl Filters {
    /// The conditions as a SQL boolean, for the table aliased `alias` (empty for none);
    /// `with_since: false` leaves the lower time bound out (first-seen questions need history).
    fn sql(&self, alias: &str, with_since: bool, with_event: bool) -> String {
        let a = if alias.is_empty() {
            String::new()
        } else {
            format!("{alias}.")
        };
        let mut conds = vec!["TRUE".to_owned()];
        if let Some(s) = self.since.filter(|_| with_since) {
            conds.push(format!("{a}ts >= {}", ts_lit(s)));
        }
        if let Some(u) = self.until {
            conds.push(format!("{a}ts < {}", ts_lit(u)));
        }
        if let Some(e) = self.event.as_ref().filter(|_| with_event) {
            conds.push(format!("{a}event = {}", lit(e)));
        }
        for (dim, values) in &self.wheres {
            let expr = match dim {
                Dim::Column(c) => format!("{a}{c}"),
                Dim::Property(p) => format!("json_get({a}properties, {})", lit(p)),
                Dim::Context(p) => format!("json_get({a}context, {})", lit(p)),
            };
            let list: Vec<String> = values.iter().map(|v| lit(v)).collect();
            conds.push(format!("CAST({expr} AS VARCHAR) IN ({})", list.join(", ")));
        }
        conds.join(" AND ")
    }
}

/// One insight: what to compute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insight {
    /// Events and distinct installs per period, optionally per value of a dimension.
    Trend { interval: Interval, by: Option<Dim> },
    /// Distinct installs active on each day, in the 7 and in the 30 days up to it.
    Active,
    /// Per period: installs seen for the first time, and installs seen before.
    NewReturning { interval: Interval },
    /// Per period: installs per app version and their share of the period's installs.
    Versions { interval: Interval },
    /// Duration percentiles per event (and dimension).
    Durations { by: Option<Dim> },
    /// Error rate per event (and dimension), and the most frequent error types.
    Errors { by: Option<Dim>, top: usize },
    /// Weekly cohorts by first week seen: how many installs come back in each later week.
    Retention,
    /// Installs that did each step after the one before, within `window_secs` of the first.
    Funnel {
        steps: Vec<String>,
        window_secs: u64,
    },
    /// What installs do next after `event`, in the same session.
    Paths { event: String, top: usize },
    /// Where users get stuck: errors repeated in a session, installs whose calls of an event
    /// only ever failed, and error rate by version.
    Friction { top: usize },
}

impl Insight {
    pub const KINDS: [&'static str; 10] = [
        "trend",
        "active",
        "new-returning",
        "versions",
        "durations",
        "errors",
        "retention",
        "funnel",
        "paths",
        "friction",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Insight::Trend { .. } => "trend",
            Insight::Active => "active",
            Insight::NewReturning { .. } => "new-returning",
            Insight::Versions { .. } => "versions",
            Insight::Durations { .. } => "durations",
            Insight::Errors { .. } => "errors",
            Insight::Retention => "retention",
            Insight::Funnel { .. } => "funnel",
            Insight::Paths { .. } => "paths",
            Insight::Friction { .. } => "friction",
        }
    }
}

/// An insight with its filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightQuery {
    pub insight: Insight,
    pub filters: Filters,
}

/// Reads a time bound: `30d`, `12h`, `2w` before `now`, or a date or timestamp.
pub fn parse_time(s: &str, now: Timestamp) -> Result<Timestamp, QueryError> {
    let rel = |n: &str, unit: i128| {
        n.parse::<u32>()
            .ok()
            .and_then(|n| now.checked_add_nanos(-i128::from(n) * unit * 1_000_000_000))
    };
    let found = if let Some(n) = s.strip_suffix('d') {
        rel(n, 86_400)
    } else if let Some(n) = s.strip_suffix('h') {
        rel(n, 3_600)
    } else if let Some(n) = s.strip_suffix('w') {
        rel(n, 7 * 86_400)
    } else if s.len() == 10 {
        Timestamp::parse(&format!("{s}T00:00:00Z")).ok()
    } else {
        Timestamp::parse(s).ok()
    };
    found.ok_or_else(|| {
        bad(format!(
            "time `{s}`: expected 30d, 12h, 2w, a date (2026-11-01) or an ISO-8601 timestamp"
        ))
    })
}

/// The longest funnel window: a year.
const MAX_WINDOW_SECS: u64 = 366 * 86_400;

/// The most steps a funnel may have: each is a join, and a plan grows with them.
pub const MAX_FUNNEL_STEPS: usize = 20;

fn parse_window(s: &str) -> Result<u64, QueryError> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    n.parse::<u64>()
        .ok()
        .filter(|_| mult > 0)
        .and_then(|n| n.checked_mul(mult))
        .filter(|secs| (1..=MAX_WINDOW_SECS).contains(secs))
        .ok_or_else(|| bad(format!("window `{s}`: expected 30m, 1h, 7d… up to 366d")))
}

impl InsightQuery {
    /// Builds a query from named parameters, as the API's query string and the CLI's flags give
    /// them: `event`, `by`, `since`, `until`, `interval`, `where` (`dim=v1,v2`, repeatable),
    /// `steps` (comma-separated), `window`, `top`.
    pub fn from_params(
        kind: &str,
        params: &[(String, String)],
        now: Timestamp,
    ) -> Result<InsightQuery, QueryError> {
        let mut one: BTreeMap<&str, &str> = BTreeMap::new();
        let mut wheres = Vec::new();
        for (k, v) in params {
            match k.as_str() {
                "where" => {
                    let (d, vals) = v.split_once('=').ok_or_else(|| {
                        bad(format!("where `{v}`: expected dimension=value[,value…]"))
                    })?;
                    wheres.push((Dim::parse(d)?, vals.split(',').map(str::to_owned).collect()));
                }
                "event" | "by" | "since" | "until" | "interval" | "steps" | "window" | "top" => {
                    one.insert(k.as_str(), v.as_str());
                }
                other => return Err(bad(format!("unknown parameter `{other}`"))),
            }
        }
        let by = one.get("by").map(|b| Dim::parse(b)).transpose()?;
        let interval = one
            .get("interval")
            .map(|i| Interval::parse(i))
            .transpose()?
            .unwrap_or_default();
        let top = one
            .get("top")
            .map(|t| {
                t.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad(format!("top `{t}`: expected 1 to 1000")))
            })
            .transpose()?
            .unwrap_or(10);
        let event = one.get("event").map(|e| (*e).to_owned());
        let no_by = |what: &str| -> Result<(), QueryError> {
            if by.is_some() {
                Err(bad(format!("`by` does not apply to {what}")))
            } else {
                Ok(())
            }
        };
        let insight = match kind {
            "trend" => Insight::Trend {
                interval,
                by: by.clone(),
            },
            "active" => {
                no_by("active")?;
                Insight::Active
            }
            "new-returning" => {
                no_by("new-returning")?;
                Insight::NewReturning { interval }
            }
            "versions" => {
                no_by("versions")?;
                Insight::Versions { interval }
            }
            "durations" => Insight::Durations { by: by.clone() },
            "errors" => Insight::Errors {
                by: by.clone(),
                top,
            },
            "retention" => {
                no_by("retention")?;
                Insight::Retention
            }
            "funnel" => {
                let steps: Vec<String> = one
                    .get("steps")
                    .ok_or_else(|| bad("a funnel needs `steps`, e.g. steps=fit,estimate,plot"))?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                if steps.len() < 2 || steps.iter().any(String::is_empty) {
                    return Err(bad("a funnel needs at least two non-empty steps"));
                }
                if steps.len() > MAX_FUNNEL_STEPS {
                    return Err(bad(format!(
                        "a funnel has at most {MAX_FUNNEL_STEPS} steps, not {}",
                        steps.len()
                    )));
                }
                Insight::Funnel {
                    steps,
                    window_secs: one.get("window").map_or(Ok(86_400), |w| parse_window(w))?,
                }
            }
            "paths" => Insight::Paths {
                event: event
                    .clone()
                    .ok_or_else(|| bad("paths need an `event` to start from"))?,
                top,
            },
            "friction" => Insight::Friction { top },
            other => {
                return Err(bad(format!(
                    "unknown insight `{other}`; one of: {}",
                    Insight::KINDS.join(", ")
                )));
            }
        };
        let event_filter = !matches!(insight, Insight::Funnel { .. } | Insight::Paths { .. });
        // Insights count whole UTC days: `since` starts at its day's midnight, `until` ends at
        // the next one (unless it is a midnight itself), as the per-day rollups see them.
        let midnight = |t: Timestamp, up: bool| {
            let secs = t.unix_secs();
            let floor = secs.div_euclid(86_400) * 86_400;
            let at = if up && (secs != floor || t.subsec_nanos() != 0) {
                floor + 86_400
            } else {
                floor
            };
            Timestamp::from_unix(at, 0).unwrap_or(t)
        };
        let filters = Filters {
            since: one
                .get("since")
                .map(|s| parse_time(s, now).map(|t| midnight(t, false)))
                .transpose()?,
            until: one
                .get("until")
                .map(|s| parse_time(s, now).map(|t| midnight(t, true)))
                .transpose()?,
            event: event.filter(|_| event_filter),
            wheres,
        };
        Ok(InsightQuery { insight, filters })
    }

    /// The statements, each with the name of the table it answers.
    pub fn to_sql(&self) -> Vec<(&'static str, String)> {
        let f = &self.filters;
        let w = f.sql("", true, true);
        let by_cols = |by: &Option<Dim>| {
            by.as_ref()
                .map(|d| {
                    (
                        format!(", {} AS {}", d.sql(), d.quoted_name()),
                        format!(", {}", d.quoted_name()),
                    )
                })
                .unwrap_or_default()
        };
        match &self.insight {
            Insight::Trend { interval, by } => {
                let (sel, order) = by_cols(by);
                vec![(
                    "trend",
                    format!(
                        "SELECT CAST(date_trunc('{iv}', ts) AS DATE) AS period{sel}, count(*) AS events, \
                         count(DISTINCT install) AS installs FROM events WHERE {w} \
                         GROUP BY period{order} ORDER BY period{order}",
                        iv = interval.sql()
                    ),
                )]
            }
            Insight::Active => {
                let wide = Filters {
                    since: f
                        .since
                        .and_then(|s| s.checked_add_nanos(-29 * 86_400 * 1_000_000_000)),
                    ..f.clone()
                };
                let since = f.since.map_or_else(
                    || "TRUE".to_owned(),
                    |s| format!("day >= CAST({} AS DATE)", ts_lit(s)),
                );
                vec![(
                    "active",
                    format!(
                        "WITH d AS (SELECT DISTINCT CAST(ts AS DATE) AS day, install FROM events WHERE {wide}), \
                         cal AS (SELECT DISTINCT day FROM d WHERE {since}) \
                         SELECT cal.day AS day, \
                         count(DISTINCT CASE WHEN d.day = cal.day THEN d.install END) AS dau, \
                         count(DISTINCT CASE WHEN d.day > cal.day - INTERVAL '7 days' THEN d.install END) AS wau, \
                         count(DISTINCT d.install) AS mau \
                         FROM cal JOIN d ON d.day <= cal.day AND d.day > cal.day - INTERVAL '30 days' \
                         GROUP BY cal.day ORDER BY cal.day",
                        wide = wide.sql("", true, true)
                    ),
                )]
            }
            Insight::NewReturning { interval } => {
                let iv = interval.sql();
                vec![(
                    "new_returning",
                    format!(
                        "WITH fs AS (SELECT install, CAST(date_trunc('{iv}', min(ts)) AS DATE) AS first_period \
                         FROM events WHERE {all} GROUP BY install), \
                         act AS (SELECT DISTINCT CAST(date_trunc('{iv}', ts) AS DATE) AS period, install FROM events WHERE {w}) \
                         SELECT act.period AS period, \
                         count(*) FILTER (WHERE fs.first_period = act.period) AS new, \
                         count(*) FILTER (WHERE fs.first_period < act.period) AS returning \
                         FROM act JOIN fs ON act.install = fs.install GROUP BY act.period ORDER BY act.period",
                        all = f.sql("", false, true)
                    ),
                )]
            }
            Insight::Versions { interval } => {
                let iv = interval.sql();
                vec![(
                    "versions",
                    format!(
                        "WITH v AS (SELECT CAST(date_trunc('{iv}', ts) AS DATE) AS period, app_version, \
                         count(DISTINCT install) AS installs FROM events WHERE {w} GROUP BY 1, 2), \
                         t AS (SELECT CAST(date_trunc('{iv}', ts) AS DATE) AS period, count(DISTINCT install) AS total \
                         FROM events WHERE {w} GROUP BY 1) \
                         SELECT v.period AS period, v.app_version AS app_version, v.installs AS installs, \
                         round(100.0 * v.installs / t.total, 1) AS share_pct \
                         FROM v JOIN t ON v.period = t.period \
                         ORDER BY period, installs DESC, app_version"
                    ),
                )]
            }
            Insight::Durations { by } => {
                let (sel, order) = by_cols(by);
                let pct = |p: &str| {
                    // Nearest rank: the smallest duration with at least p of the calls at or
                    // below it, as the rollups' REQ sketches give it.
                    format!(
                        "round(array_element(array_agg(duration_ms ORDER BY duration_ms), \
                         CAST(greatest(ceil({p} * count(duration_ms) - 1e-9), 1) AS BIGINT)), 2)"
                    )
                };
                vec![(
                    "durations",
                    format!(
                        "SELECT event{sel}, count(duration_ms) AS calls, {p50} AS p50_ms, {p95} AS p95_ms, \
                         {p99} AS p99_ms, max(duration_ms) AS max_ms FROM events \
                         WHERE {w} AND duration_ms IS NOT NULL GROUP BY event{order} \
                         ORDER BY calls DESC, event{order}",
                        p50 = pct("0.5"),
                        p95 = pct("0.95"),
                        p99 = pct("0.99")
                    ),
                )]
            }
            Insight::Errors { by, top } => {
                let (sel, order) = by_cols(by);
                vec![
                    (
                        "error_rate",
                        format!(
                            "SELECT event{sel}, count(*) AS calls, count(*) FILTER (WHERE outcome = 'error') AS errors, \
                             round(CAST(count(*) FILTER (WHERE outcome = 'error') AS DOUBLE) / count(*), 4) AS error_rate \
                             FROM events WHERE {w} AND outcome IS NOT NULL GROUP BY event{order} \
                             ORDER BY errors DESC, event{order}"
                        ),
                    ),
                    (
                        "top_errors",
                        format!(
                            "SELECT event, error_type, count(*) AS errors, count(DISTINCT install) AS installs \
                             FROM events WHERE {w} AND outcome = 'error' GROUP BY event, error_type \
                             ORDER BY errors DESC, event, error_type LIMIT {top}"
                        ),
                    ),
                ]
            }
            Insight::Retention => {
                let all = f.sql("", false, true);
                let since = f.since.map_or_else(
                    || "TRUE".to_owned(),
                    |s| {
                        format!(
                            "c.cohort >= CAST(date_trunc('week', {}) AS DATE)",
                            ts_lit(s)
                        )
                    },
                );
                vec![(
                    "retention",
                    format!(
                        "WITH fs AS (SELECT install, CAST(date_trunc('week', min(ts)) AS DATE) AS cohort \
                         FROM events WHERE {all} GROUP BY install), \
                         act AS (SELECT DISTINCT install, CAST(date_trunc('week', ts) AS DATE) AS week \
                         FROM events WHERE {all}), \
                         c AS (SELECT fs.cohort AS cohort, \
                         CAST((CAST(act.week AS INT) - CAST(fs.cohort AS INT)) / 7 AS BIGINT) AS week, \
                         count(*) AS installs FROM act JOIN fs ON act.install = fs.install GROUP BY 1, 2) \
                         SELECT c.cohort, c.week, c.installs, \
                         round(100.0 * c.installs / first_value(c.installs) OVER (PARTITION BY c.cohort ORDER BY c.week), 1) AS retained_pct \
                         FROM c WHERE {since} ORDER BY c.cohort, c.week"
                    ),
                )]
            }
            Insight::Funnel { steps, window_secs } => {
                let mut sql = format!(
                    "WITH s1 AS (SELECT install, min(ts) AS t, min(ts) AS start FROM events \
                     WHERE {w} AND event = {} GROUP BY install)",
                    lit(&steps[0])
                );
                let we = f.sql("e", true, false);
                for (i, step) in steps.iter().enumerate().skip(1) {
                    let _ = write!(
                        sql,
                        ", s{n} AS (SELECT p.install AS install, min(e.ts) AS t, p.start AS start \
                         FROM s{i} p JOIN events e ON e.install = p.install \
                         WHERE {we} AND e.event = {ev} AND e.ts > p.t \
                         AND e.ts <= p.start + INTERVAL '{window_secs} seconds' GROUP BY p.install, p.start)",
                        n = i + 1,
                        ev = lit(step)
                    );
                }
                let counts: Vec<String> = steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        format!(
                            "SELECT {n} AS step, {ev} AS event, count(*) AS installs FROM s{n}",
                            n = i + 1,
                            ev = lit(s)
                        )
                    })
                    .collect();
                let _ = write!(
                    sql,
                    ", c AS ({}) SELECT step, event, installs, \
                     round(100.0 * installs / first_value(installs) OVER (ORDER BY step), 1) AS pct_of_first \
                     FROM c ORDER BY step",
                    counts.join(" UNION ALL ")
                );
                vec![("funnel", sql)]
            }
            Insight::Paths { event, top } => vec![(
                "paths",
                format!(
                    "SELECT coalesce(next_event, '(end)') AS next_event, count(*) AS times, \
                     count(DISTINCT install) AS installs FROM (SELECT install, event, \
                     lead(event) OVER (PARTITION BY install, session ORDER BY ts, message_id) AS next_event \
                     FROM events WHERE {wn}) WHERE event = {ev} \
                     GROUP BY 1 ORDER BY times DESC, next_event LIMIT {top}",
                    wn = f.sql("", true, false),
                    ev = lit(event)
                ),
            )],
            Insight::Friction { top } => vec![
                (
                    "repeated_errors",
                    format!(
                        "SELECT event, error_type, count(*) AS sessions, sum(n) AS errors FROM \
                         (SELECT install, session, event, error_type, count(*) AS n FROM events \
                         WHERE {w} AND outcome = 'error' GROUP BY 1, 2, 3, 4) WHERE n >= 2 \
                         GROUP BY event, error_type ORDER BY sessions DESC, event, error_type LIMIT {top}"
                    ),
                ),
                (
                    "never_succeeded",
                    format!(
                        "SELECT event, count(*) AS installs FROM (SELECT install, event, \
                         bool_or(outcome = 'ok') AS ok, bool_or(outcome = 'error') AS failed \
                         FROM events WHERE {w} AND outcome IS NOT NULL GROUP BY 1, 2) \
                         WHERE failed AND NOT ok GROUP BY event ORDER BY installs DESC, event LIMIT {top}"
                    ),
                ),
                (
                    "error_rate_by_version",
                    format!(
                        "SELECT app_version, count(*) AS calls, count(*) FILTER (WHERE outcome = 'error') AS errors, \
                         round(CAST(count(*) FILTER (WHERE outcome = 'error') AS DOUBLE) / count(*), 4) AS error_rate \
                         FROM events WHERE {w} AND outcome IS NOT NULL GROUP BY app_version ORDER BY app_version"
                    ),
                ),
            ],
        }
    }

    /// Runs the insight over a snapshot.
    pub async fn run(
        &self,
        snapshot: &Snapshot,
        limits: &Limits,
    ) -> Result<InsightResult, QueryError> {
        let started = Instant::now();
        if self.rollups_answer() {
            let internal = |e: crate::StoreError| QueryError::Internal(e.to_string());
            let rollups = snapshot.rollups().map_err(internal)?;
            let blocks = match self.blocks_range() {
                Some((from, until)) => snapshot.blocks_of_rollups(from, until).map_err(internal)?,
                None => crate::rollup::Blocks::default(),
            };
            if let Some(a) = self.from_rollups(&rollups, &blocks) {
                return Ok(InsightResult {
                    kind: self.insight.kind(),
                    tables: a.tables,
                    source: "rollups",
                    distinct: if a.estimated {
                        "estimated: theta sketches, exact up to 4,096 installs per count"
                    } else {
                        "exact"
                    },
                    query_ms: started.elapsed().as_secs_f64() * 1000.0,
                });
            }
        }
        if let Some(tables) = self.sequences_answer(snapshot)? {
            return Ok(InsightResult {
                kind: self.insight.kind(),
                tables,
                source: "sequences",
                distinct: "exact",
                query_ms: started.elapsed().as_secs_f64() * 1000.0,
            });
        }
        // The time spent finding that rollups and sequences could not answer counts too.
        let mut scanned = self.scan(snapshot, limits).await?;
        scanned.query_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(scanned)
    }

    /// Funnels and paths from the parts' per-install event sequences, when no filter needs the
    /// events' other columns; `None` when the events must be scanned (a filter on a dimension, a
    /// part without sequences, or a day whose parts hold an install's events out of order).
    fn sequences_answer(
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

    /// Runs the insight's SQL over the events, even when rollups could answer it.
    pub async fn scan(
        &self,
        snapshot: &Snapshot,
        limits: &Limits,
    ) -> Result<InsightResult, QueryError> {
        let started = Instant::now();
        // One session for all of the insight's statements: building it lists the parts.
        let ctx = tokio::time::timeout(limits.time, query::session(snapshot, limits))
            .await
            .map_err(|_| QueryError::Timeout(limits.time))??;
        let mut tables = BTreeMap::new();
        for (name, sql) in self.to_sql() {
            tables.insert(name, query::run_in(&ctx, &sql, limits).await?);
        }
        Ok(InsightResult {
            kind: self.insight.kind(),
            tables,
            source: "events",
            distinct: "exact",
            query_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}

/// An insight's answer: one or more named tables.
#[derive(Debug, Clone, Serialize)]
pub struct InsightResult {
    pub kind: &'static str,
    pub tables: BTreeMap<&'static str, Table>,
    /// What answered: `rollups` (per-day sketches made at sealing), `sequences` (per-install
    /// event sequences made at sealing: funnels and paths) or `events` (a scan).
    pub source: &'static str,
    /// How distinct installs were counted: `exact`, or estimated by a theta sketch (only
    /// rollups estimate: counts of more than 4,096 installs, and set operations over
    /// sketches past their exact size).
    pub distinct: &'static str,
    /// How long the query took, in milliseconds.
    pub query_ms: f64,
}
