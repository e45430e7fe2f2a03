//! Each insight compiled to SQL over the `events` table, so that every backend that speaks
//! this SQL answers the same types.

use std::fmt::Write as _;

use crate::insight::types::{Dim, Filters, Insight, InsightQuery, lit, ts_lit};

impl InsightQuery {
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
}
