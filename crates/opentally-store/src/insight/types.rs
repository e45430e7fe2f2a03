//! Insight queries: their kinds, dimensions and filters, parsed from query parameters.

use std::collections::BTreeMap;

use opentally_protocol::Timestamp;
use opentally_protocol::timestamp::{civil_from_days, days_from_civil};

use crate::query::QueryError;
use crate::schema::{CONTEXT_COLUMNS, column_names};

/// How paths name the end of a session.
pub(super) const END: &str = "(end)";

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

pub(super) fn bad(msg: impl Into<String>) -> QueryError {
    QueryError::BadQuery(msg.into())
}

pub(super) fn valid_path(p: &str) -> bool {
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
pub(super) fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(super) fn ts_lit(t: Timestamp) -> String {
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

    pub(super) fn sql(self) -> &'static str {
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
    pub(super) fn sql(&self, alias: &str, with_since: bool, with_event: bool) -> String {
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
pub(super) const MAX_WINDOW_SECS: u64 = 366 * 86_400;

/// The most steps a funnel may have: each is a join, and a plan grows with them.
pub const MAX_FUNNEL_STEPS: usize = 20;

pub(super) fn parse_window(s: &str) -> Result<u64, QueryError> {
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
}

/// A day (days since the epoch) as `YYYY-MM-DD`.
pub(super) fn date_text(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The first day of the period holding `day`, as text (weeks start on Monday).
pub(super) fn period(day: i32, interval: Interval) -> String {
    date_text(i64::from(period_start(day, interval)))
}

/// The first day of the period holding `day`, in days since the epoch (weeks start on Monday).
pub(super) fn period_start(day: i32, interval: Interval) -> i32 {
    match interval {
        Interval::Day => day,
        Interval::Week => day - (day + 3).rem_euclid(7),
        Interval::Month => {
            let (y, m, _) = civil_from_days(i64::from(day));
            #[allow(clippy::cast_possible_truncation)]
            let start = days_from_civil(y, m, 1) as i32;
            start
        }
    }
}
