//! The dashboard's pages. Each page is a list of panels; a panel is one typed insight, drawn as a
//! chart with its table beside it (the chart's text alternative), and every table it answered
//! exports as CSV and JSON from a URL that names the same insight. The date range and filters
//! live in the URL, so any view can be shared; sharing it shares no credential.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use opentally_protocol::Timestamp;
use opentally_store::{InsightQuery, InsightResult, QueryError, Table};
use serde_json::Value;

use super::charts;
use super::session::Signed;
use crate::AppState;

/// The query string's pairs, in order (percent escapes that are not UTF-8 become U+FFFD).
fn pairs(uri: &Uri) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

fn one<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// The filters every page passes to its insights: the range (30 days unless given), the
/// interval and the `where` conditions.
fn filters(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = vec![(
        "since".to_owned(),
        one(pairs, "since").unwrap_or("30d").to_owned(),
    )];
    for key in ["until", "interval"] {
        if let Some(v) = one(pairs, key) {
            out.push((key.to_owned(), v.to_owned()));
        }
    }
    out.extend(
        pairs
            .iter()
            .filter(|(k, v)| k == "where" && !v.is_empty())
            .cloned(),
    );
    out
}

/// [`filters`] without the interval, for insights that have none of their own.
fn range_filters(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let mut f = filters(pairs);
    f.retain(|(k, _)| k != "interval");
    f
}

fn with(mut base: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in extra {
        base.retain(|(bk, _)| bk != k);
        base.push(((*k).to_owned(), (*v).to_owned()));
    }
    base
}

fn query_string(pairs: &[(String, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// How a panel draws its answer.
#[derive(Debug, Clone)]
enum Show {
    /// Columns `values` of `table` as lines over column `x`.
    Lines {
        table: &'static str,
        x: &'static str,
        values: &'static [&'static str],
    },
    /// One line per value of column `key` (the `top` largest), of column `value` over `x`.
    LinesBy {
        table: &'static str,
        x: &'static str,
        key: &'static str,
        value: &'static str,
        top: usize,
    },
    /// Column `value` summed per value of column `key` over the periods, as bars with a table
    /// of the sums and their shares; `link` makes each value a link to that event's page.
    Sums {
        table: &'static str,
        key: String,
        value: &'static str,
        link: bool,
    },
    /// Column `value` per row as bars labelled by column `label`.
    Bars {
        table: &'static str,
        label: &'static str,
        value: &'static str,
    },
    /// Retention: cohorts down, weeks across.
    Cohorts,
    /// The tables as they are.
    Tables,
}

struct Panel {
    title: String,
    kind: &'static str,
    params: Vec<(String, String)>,
    show: Show,
    note: Option<&'static str>,
}

impl Panel {
    fn new(
        title: impl Into<String>,
        kind: &'static str,
        params: Vec<(String, String)>,
        show: Show,
    ) -> Panel {
        Panel {
            title: title.into(),
            kind,
            params,
            show,
            note: None,
        }
    }
}

/// Runs every panel's insight, one after the other on one of the query threads.
async fn run(
    state: &AppState,
    project: &str,
    panels: &[Panel],
) -> Vec<Result<InsightResult, QueryError>> {
    let now = Timestamp::now();
    let mut answers = Vec::with_capacity(panels.len());
    for p in panels {
        answers.push(
            InsightQuery::from_params(p.kind, &p.params, now)
                .map(|q| state.backend.insight(project, q, state.config.query_limits)),
        );
    }
    let all = state
        .queries
        .run(async move {
            let mut out = Vec::with_capacity(answers.len());
            for a in answers {
                out.push(match a {
                    Ok(fut) => fut.await,
                    Err(e) => Err(e),
                });
            }
            Ok(out)
        })
        .await;
    match all {
        Ok(out) => out,
        Err(e) => panels.iter().map(|_| Err(e.clone())).collect(),
    }
}

fn col(t: &Table, name: &str) -> Option<usize> {
    t.columns.iter().position(|c| c == name)
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "(none)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cell(v: &Value) -> Markup {
    match v {
        Value::Number(n) => {
            let shown = n
                .as_f64()
                .filter(|_| n.is_f64())
                .map_or_else(|| n.to_string(), |f| format!("{f:.2}"));
            html! { td.num { (shown) } }
        }
        Value::Null => html! { td {} },
        other => html! { td { (text(other)) } },
    }
}

fn table_markup(t: &Table) -> Markup {
    html! {
        table {
            thead { tr { @for c in &t.columns { th { (c) } } } }
            tbody {
                @for row in &t.rows { tr { @for v in row { (cell(v)) } } }
            }
        }
        @if t.truncated { p.muted { "Rows past the row limit were left off." } }
    }
}

fn exports(kind: &str, params: &[(String, String)], table: &str) -> Markup {
    let link = |format: &str| {
        format!(
            "/dashboard/export/{kind}?{}",
            query_string(&with(
                params.to_vec(),
                &[("table", table), ("format", format)]
            ))
        )
    };
    html! {
        span.exports { "Export " (table) ": " a href=(link("csv")) { "CSV" } " · " a href=(link("json")) { "JSON" } }
    }
}

/// Sums of `value` per `key` over a table's rows, largest first.
fn sums(t: &Table, key: &str, value: &str) -> Vec<(String, f64)> {
    let (Some(k), Some(v)) = (col(t, key), col(t, value)) else {
        return Vec::new();
    };
    let mut by: BTreeMap<String, f64> = BTreeMap::new();
    for row in &t.rows {
        *by.entry(text(&row[k])).or_default() += num(&row[v]).unwrap_or(0.0);
    }
    let mut out: Vec<_> = by.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

fn draw(
    show: &Show,
    result: &InsightResult,
    title: &str,
    link_params: &[(String, String)],
) -> Markup {
    let get = |name: &str| result.tables.get(name);
    match show {
        Show::Lines { table, x, values } => {
            let Some(t) = get(table) else { return html! {} };
            let Some(xi) = col(t, x) else { return html! {} };
            let labels: Vec<String> = t.rows.iter().map(|r| text(&r[xi])).collect();
            let series: Vec<(String, Vec<Option<f64>>)> = values
                .iter()
                .filter_map(|v| {
                    col(t, v)
                        .map(|i| ((*v).to_owned(), t.rows.iter().map(|r| num(&r[i])).collect()))
                })
                .collect();
            charts::lines(title, &labels, &series)
        }
        Show::LinesBy {
            table,
            x,
            key,
            value,
            top,
        } => {
            let Some(t) = get(table) else { return html! {} };
            let (Some(xi), Some(ki), Some(vi)) = (col(t, x), col(t, key), col(t, value)) else {
                return html! {};
            };
            let mut xs: Vec<String> = t.rows.iter().map(|r| text(&r[xi])).collect();
            xs.dedup();
            let biggest: Vec<String> = sums(t, key, value)
                .into_iter()
                .take(*top)
                .map(|(k, _)| k)
                .collect();
            let series: Vec<(String, Vec<Option<f64>>)> = biggest
                .iter()
                .map(|k| {
                    let points = xs
                        .iter()
                        .map(|x| {
                            t.rows
                                .iter()
                                .find(|r| text(&r[xi]) == *x && text(&r[ki]) == *k)
                                .and_then(|r| num(&r[vi]))
                        })
                        .collect();
                    (k.clone(), points)
                })
                .collect();
            charts::lines(title, &xs, &series)
        }
        Show::Sums {
            table,
            key,
            value,
            link,
        } => {
            let Some(t) = get(table) else { return html! {} };
            let totals = sums(t, key, value);
            let all: f64 = totals.iter().map(|(_, v)| v).sum();
            let shown: Vec<(String, f64)> = totals.iter().take(15).cloned().collect();
            html! {
                div.grid2 {
                    (charts::bars(title, &shown))
                    table {
                        thead { tr { th { (key) } th.num { (value) } th.num { "share" } } }
                        tbody {
                            @for (k, v) in &totals {
                                tr {
                                    td {
                                        @if *link {
                                            a href=(format!("/dashboard/event?{}", query_string(&with(link_params.to_vec(), &[("event", k)])))) { (k) }
                                        } @else { (k) }
                                    }
                                    td.num { (charts::short(*v)) }
                                    td.num { (format!("{:.1} %", if all > 0.0 { 100.0 * v / all } else { 0.0 })) }
                                }
                            }
                        }
                    }
                }
            }
        }
        Show::Bars {
            table,
            label,
            value,
        } => {
            let Some(t) = get(table) else { return html! {} };
            let (Some(li), Some(vi)) = (col(t, label), col(t, value)) else {
                return html! {};
            };
            let items: Vec<(String, f64)> = t
                .rows
                .iter()
                .take(25)
                .map(|r| (text(&r[li]), num(&r[vi]).unwrap_or(0.0)))
                .collect();
            charts::bars(title, &items)
        }
        Show::Cohorts => {
            let Some(t) = get("retention") else {
                return html! {};
            };
            let (Some(ci), Some(wi), Some(ii), Some(pi)) = (
                col(t, "cohort"),
                col(t, "week"),
                col(t, "installs"),
                col(t, "retained_pct"),
            ) else {
                return html! {};
            };
            let mut weeks: Vec<i64> = t.rows.iter().filter_map(|r| r[wi].as_i64()).collect();
            weeks.sort_unstable();
            weeks.dedup();
            let mut cohorts: Vec<String> = t.rows.iter().map(|r| text(&r[ci])).collect();
            cohorts.dedup();
            html! {
                table.heat aria-label=(title) {
                    thead { tr { th { "cohort (first week)" } th.num { "installs" } @for w in &weeks { th.num { "week " (w) } } } }
                    tbody {
                        @for c in &cohorts {
                            @let rows: Vec<&Vec<Value>> = t.rows.iter().filter(|r| text(&r[ci]) == *c).collect();
                            tr {
                                td { (c) }
                                td.num { (rows.iter().find(|r| r[wi].as_i64() == Some(0)).and_then(|r| num(&r[ii])).map(charts::short).unwrap_or_default()) }
                                @for w in &weeks {
                                    @match rows.iter().find(|r| r[wi].as_i64() == Some(*w)).and_then(|r| num(&r[pi])) {
                                        Some(p) => td.num style=(format!("background: rgba(47,111,223,{:.2})", (p / 100.0).clamp(0.0, 1.0) * 0.6)) { (format!("{p:.1} %")) },
                                        None => td {},
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Show::Tables => html! {},
    }
}

fn panel_markup(
    p: &Panel,
    answer: &Result<InsightResult, QueryError>,
    link_params: &[(String, String)],
) -> Markup {
    html! {
        section.panel {
            h2 { (p.title) }
            @if let Some(n) = p.note { p.muted { (n) } }
            @match answer {
                Err(e) => {
                    p.error role="alert" { (e.to_string()) }
                    p.muted { "Change the range or filters above and try again." }
                }
                Ok(r) if r.tables.values().all(|t| t.rows.is_empty()) => {
                    p.muted { "No events in this range." }
                }
                Ok(r) => {
                    (draw(&p.show, r, &p.title, link_params))
                    @for (name, t) in &r.tables {
                        details.table open[matches!(p.show, Show::Tables)] {
                            summary { "Table: " (name) " (" (t.rows.len()) " rows) · " (r.source) ", " (r.distinct) }
                            (table_markup(t))
                        }
                        p { (exports(p.kind, &p.params, name)) }
                    }
                }
            }
        }
    }
}

const PAGES: [(&str, &str); 7] = [
    ("/dashboard", "Overview"),
    ("/dashboard/environment", "Environment"),
    ("/dashboard/retention", "Retention"),
    ("/dashboard/funnel", "Funnel"),
    ("/dashboard/paths", "Paths"),
    ("/dashboard/friction", "Friction"),
    ("/dashboard/live", "Live"),
];

fn nav(signed: &Signed, current: &str, range: &[(String, String)]) -> Markup {
    let q = query_string(range);
    html! {
        nav {
            strong { (signed.project.name) }
            @for (path, name) in PAGES {
                @if path == current {
                    a href=(format!("{path}?{q}")) aria-current="page" { (name) }
                } @else {
                    a href=(format!("{path}?{q}")) { (name) }
                }
            }
            a href=(format!("/p/{}/privacy", signed.project.name)) { "Transparency page" }
            form method="post" action="/logout" {
                input type="hidden" name="csrf" value=(signed.csrf);
                button type="submit" { "Sign out" }
            }
        }
    }
}

/// The range and filter form; `extra` are the page's own fields.
fn filter_form(action: &str, pairs: &[(String, String)], extra: &Markup) -> Markup {
    let since = one(pairs, "since").unwrap_or("30d");
    let until = one(pairs, "until").unwrap_or("");
    let interval = one(pairs, "interval").unwrap_or("day");
    let wheres: Vec<&str> = pairs
        .iter()
        .filter(|(k, v)| k == "where" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    html! {
        form.filters method="get" action=(action) {
            (extra)
            label { "since" input name="since" value=(since) size="10" placeholder="30d or 2026-11-01"; }
            label { "until" input name="until" value=(until) size="10" placeholder="(now)"; }
            label { "interval"
                select name="interval" {
                    @for i in ["day", "week", "month"] {
                        option value=(i) selected[i == interval] { (i) }
                    }
                }
            }
            label { "where" input name="where" value=(wheres.first().copied().unwrap_or("")) size="24" placeholder="os.name=linux,macos"; }
            @for w in wheres.iter().skip(1) { input type="hidden" name="where" value=(w); }
            button type="submit" { "Apply" }
        }
    }
}

/// A page: where it is, its title, its own fields in the filter form and what stands above its
/// panels.
struct Page<'a> {
    current: &'a str,
    title: &'a str,
    fields: Markup,
    before: Markup,
}

async fn render(
    state: &AppState,
    signed: &Signed,
    pairs: &[(String, String)],
    page: Page<'_>,
    panels: &[Panel],
) -> Response {
    let answers = run(state, &signed.project.name, panels).await;
    let range = filters(pairs);
    let body = html! {
        main {
            h1 { (page.title) }
            (filter_form(page.current, pairs, &page.fields))
            (page.before)
            @for (p, a) in panels.iter().zip(&answers) { (panel_markup(p, a, &range)) }
        }
    };
    super::document(page.title, Some(nav(signed, page.current, &range)), &body)
}

/// Whether the project has no event at all: the overview then says how to send the first one.
async fn is_empty(state: &AppState, project: &str) -> bool {
    let Ok(q) = InsightQuery::from_params(
        "trend",
        &[("interval".into(), "month".into())],
        Timestamp::now(),
    ) else {
        return false;
    };
    let answer = state.backend.insight(project, q, state.config.query_limits);
    matches!(state.queries.run(answer).await, Ok(r) if r.tables.values().all(|t| t.rows.is_empty()))
}

fn first_event(host: &str, project: &str) -> Markup {
    let curl = format!(
        "curl -u \"$WRITE_KEY:\" -H 'Content-Type: application/json' \\\n  -d '{{\"event\": \"hello\", \"anonymousId\": \"test-install\", \"properties\": {{}}}}' \\\n  http://{host}/v1/track"
    );
    let py = format!(
        "import opentally\nopentally.init(app=\"{project}\", version=\"1.0.0\", write_key=WRITE_KEY,\n               endpoint=\"http://{host}\")\n\n@opentally.log_usage\ndef fit(): ..."
    );
    let node = format!(
        "import {{ init, track }} from \"opentally\";\ninit({{ app: \"{project}\", version: \"1.0.0\", writeKey: WRITE_KEY, endpoint: \"http://{host}\" }});\ntrack(\"hello\");"
    );
    html! {
        section.panel {
            h2 { "Send your first event" }
            p { "This project has no events yet. With the write key " code { "opentally project create" } " printed (" code { "opentally project rotate-key " (project) } " makes a new one):" }
            pre { (curl) }
            p { "From Python:" }
            pre { (py) }
            p { "From Node:" }
            pre { (node) }
            p { "Then watch it arrive on the " a href="/dashboard/live" { "live view" } "." }
        }
    }
}

/// `GET /dashboard`: events and installs over time, active installs, version adoption, and the
/// split by event, OS and runtime.
pub async fn overview(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let pairs = pairs(&uri);
    let f = filters(&pairs);
    if is_empty(&state, &signed.project.name).await {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
            })
            .unwrap_or("127.0.0.1:8080");
        let body = first_event(host, &signed.project.name);
        return super::document(
            "Overview",
            Some(nav(&signed, "/dashboard", &f)),
            &html! { main { h1 { "Overview" } (body) } },
        );
    }
    let panels = [
        Panel::new(
            "Events and installs",
            "trend",
            f.clone(),
            Show::Lines {
                table: "trend",
                x: "period",
                values: &["events", "installs"],
            },
        ),
        Panel::new(
            "Active installs (daily, 7-day, 30-day)",
            "active",
            f.clone(),
            Show::Lines {
                table: "active",
                x: "day",
                values: &["dau", "wau", "mau"],
            },
        ),
        Panel::new(
            "Version adoption (installs per version)",
            "versions",
            f.clone(),
            Show::LinesBy {
                table: "versions",
                x: "period",
                key: "app_version",
                value: "installs",
                top: 6,
            },
        ),
        Panel::new(
            "Events by name",
            "trend",
            with(f.clone(), &[("by", "event")]),
            Show::Sums {
                table: "trend",
                key: "event".into(),
                value: "events",
                link: true,
            },
        ),
        Panel::new(
            "Events by operating system",
            "trend",
            with(f.clone(), &[("by", "os.name")]),
            Show::Sums {
                table: "trend",
                key: "os_name".into(),
                value: "events",
                link: false,
            },
        ),
        Panel::new(
            "Events by runtime",
            "trend",
            with(f.clone(), &[("by", "runtime.name")]),
            Show::Sums {
                table: "trend",
                key: "runtime_name".into(),
                value: "events",
                link: false,
            },
        ),
    ];
    render(
        &state,
        &signed,
        &pairs,
        Page {
            current: "/dashboard",
            title: "Overview",
            fields: html! {},
            before: html! {},
        },
        &panels,
    )
    .await
}

/// `GET /dashboard/environment`: events split by CI, docker, notebook and runtime version. These
/// are not kept in rollups, so the page reads the events: slower than the overview.
pub async fn environment(State(state): State<Arc<AppState>>, signed: Signed, uri: Uri) -> Response {
    let pairs = pairs(&uri);
    let f = filters(&pairs);
    let split = |title: &str, dim: &str, col: &str| {
        let mut p = Panel::new(
            title,
            "trend",
            with(f.clone(), &[("by", dim)]),
            Show::Sums {
                table: "trend",
                key: col.to_owned(),
                value: "events",
                link: false,
            },
        );
        p.note = Some(
            "Read from the events, not from rollups: this page takes longer on a large project.",
        );
        p
    };
    let panels = [
        split("Events in CI", "environment.ci", "env_ci"),
        split("Events in docker", "environment.docker", "env_docker"),
        split(
            "Events in notebooks",
            "environment.notebook",
            "env_notebook",
        ),
        split(
            "Events by runtime version",
            "runtime.version",
            "runtime_version",
        ),
    ];
    render(
        &state,
        &signed,
        &pairs,
        Page {
            current: "/dashboard/environment",
            title: "Environment",
            fields: html! {},
            before: html! {},
        },
        &panels,
    )
    .await
}

/// The dimensions an event can be broken down by: its catalog properties, then the context.
fn breakdowns(signed: &Signed, event: &str) -> Vec<String> {
    let mut out: Vec<String> = signed
        .project
        .catalog
        .as_ref()
        .and_then(|c| c.events.get(event))
        .map(|e| {
            e.properties
                .keys()
                .map(|k| format!("properties.{k}"))
                .collect()
        })
        .unwrap_or_default();
    out.extend(
        [
            "app.version",
            "os.name",
            "os.version",
            "runtime.name",
            "runtime.version",
            "library.version",
            "environment.ci",
            "environment.docker",
            "environment.notebook",
            "outcome",
            "error_type",
        ]
        .map(str::to_owned),
    );
    out
}

/// `GET /dashboard/event?event=NAME&by=DIM`: one event's count, installs, durations, error rate
/// and top errors, broken down by any catalog property or context field.
pub async fn event(State(state): State<Arc<AppState>>, signed: Signed, uri: Uri) -> Response {
    let pairs = pairs(&uri);
    let Some(event) = one(&pairs, "event").map(str::to_owned) else {
        return super::error_page(
            StatusCode::BAD_REQUEST,
            "Which event?",
            "Open an event from the overview's “Events by name”, or add ?event=NAME to the address.",
        );
    };
    let by = one(&pairs, "by").map(str::to_owned);
    let f = with(filters(&pairs), &[("event", &event)]);
    let with_by = |extra: &[(&str, &str)]| {
        let mut p = with(f.clone(), extra);
        if let Some(b) = &by {
            p.push(("by".into(), b.clone()));
        }
        p
    };
    let by_col = by
        .as_deref()
        .and_then(|b| opentally_store::Dim::parse(b).ok())
        .map(|d| d.name());
    let mut panels = vec![Panel::new(
        format!("{event}: calls and installs"),
        "trend",
        f.clone(),
        Show::Lines {
            table: "trend",
            x: "period",
            values: &["events", "installs"],
        },
    )];
    panels.push(Panel::new(
        "Durations (ms)",
        "durations",
        with_by(&[]),
        Show::Tables,
    ));
    panels.push(Panel::new(
        "Errors",
        "errors",
        with_by(&[("top", "10")]),
        Show::Bars {
            table: "top_errors",
            label: "error_type",
            value: "errors",
        },
    ));
    if let Some(c) = &by_col {
        panels.push(Panel::new(
            format!("Calls by {}", by.as_deref().unwrap_or_default()),
            "trend",
            with_by(&[]),
            Show::Sums {
                table: "trend",
                key: c.clone(),
                value: "events",
                link: false,
            },
        ));
    }
    let options = breakdowns(&signed, &event);
    let extra = html! {
        input type="hidden" name="event" value=(event);
        label { "break down by"
            select name="by" {
                option value="" { "(nothing)" }
                @for o in &options { option value=(o) selected[by.as_deref() == Some(o.as_str())] { (o) } }
            }
        }
    };
    render(
        &state,
        &signed,
        &pairs,
        Page {
            current: "/dashboard/event",
            title: &format!("Event {event}"),
            fields: extra,
            before: html! {},
        },
        &panels,
    )
    .await
}

/// `GET /dashboard/retention`: weekly cohorts and how many come back.
pub async fn retention(State(state): State<Arc<AppState>>, signed: Signed, uri: Uri) -> Response {
    let pairs = pairs(&uri);
    let f = range_filters(&pairs);
    let panels = [Panel::new(
        "Retention by weekly cohort (% of the cohort active in each later week)",
        "retention",
        f,
        Show::Cohorts,
    )];
    render(
        &state,
        &signed,
        &pairs,
        Page {
            current: "/dashboard/retention",
            title: "Retention",
            fields: html! {},
            before: html! {},
        },
        &panels,
    )
    .await
}

/// `GET /dashboard/funnel?steps=a,b,c&window=1d`: the funnel builder.
pub async fn funnel(State(state): State<Arc<AppState>>, signed: Signed, uri: Uri) -> Response {
    let pairs = pairs(&uri);
    let steps = one(&pairs, "steps").unwrap_or("").to_owned();
    let window = one(&pairs, "window").unwrap_or("1d").to_owned();
    let extra = html! {
        label { "steps, in order" input name="steps" value=(steps) size="30" placeholder="import,fit,plot" required; }
        label { "within" input name="window" value=(window) size="5" placeholder="1d"; }
    };
    let f: Vec<_> = range_filters(&pairs);
    let panels: Vec<Panel> = if steps.is_empty() {
        Vec::new()
    } else {
        vec![Panel::new(
            "Funnel",
            "funnel",
            with(f, &[("steps", &steps), ("window", &window)]),
            Show::Bars {
                table: "funnel",
                label: "event",
                value: "installs",
            },
        )]
    };
    let hint = html! { @if steps.is_empty() { p.muted { "Name two or more events, separated by commas: how many installs did each after the one before, within the window." } } };
    render(
        &state,
        &signed,
        &pairs,
        Page {
            current: "/dashboard/funnel",
            title: "Funnel",
            fields: extra,
            before: hint,
        },
        &panels,
    )
    .await
}

/// `GET /dashboard/paths?event=NAME`: what installs do next after an event, in the session.
pub async fn paths(State(state): State<Arc<AppState>>, signed: Signed, uri: Uri) -> Response {
    let pairs = pairs(&uri);
    let event = one(&pairs, "event").unwrap_or("").to_owned();
    let extra =
        html! { label { "after event" input name="event" value=(event) size="16" required; } };
    let f: Vec<_> = range_filters(&pairs);
    let panels: Vec<Panel> = if event.is_empty() {
        Vec::new()
    } else {
        vec![Panel::new(
            format!("After {event}"),
            "paths",
            with(f, &[("event", &event), ("top", "15")]),
            Show::Bars {
                table: "paths",
                label: "next_event",
                value: "times",
            },
        )]
    };
    let hint = html! { @if event.is_empty() { p.muted { "Name an event: the page shows what installs did next in the same session ((end) when the session ended)." } } };
    render(
        &state,
        &signed,
        &pairs,
        Page {
            current: "/dashboard/paths",
            title: "Paths",
            fields: extra,
            before: hint,
        },
        &panels,
    )
    .await
}

/// `GET /dashboard/friction`: where users get stuck.
pub async fn friction(State(state): State<Arc<AppState>>, signed: Signed, uri: Uri) -> Response {
    let pairs = pairs(&uri);
    let f: Vec<_> = range_filters(&pairs);
    let panels = [
        Panel::new(
            "Error rate by version",
            "friction",
            f.clone(),
            Show::Bars {
                table: "error_rate_by_version",
                label: "app_version",
                value: "error_rate",
            },
        ),
        Panel::new(
            "Calls that only ever failed (installs per event)",
            "friction",
            f.clone(),
            Show::Bars {
                table: "never_succeeded",
                label: "event",
                value: "installs",
            },
        ),
        Panel::new(
            "Errors repeated within a session",
            "friction",
            f,
            Show::Bars {
                table: "repeated_errors",
                label: "error_type",
                value: "sessions",
            },
        ),
    ];
    render(
        &state,
        &signed,
        &pairs,
        Page {
            current: "/dashboard/friction",
            title: "Where users get stuck",
            fields: html! {},
            before: html! {},
        },
        &panels,
    )
    .await
}

/// `GET /dashboard/live`: the latest events as they arrive, filtered by event and install hash.
pub async fn live_page(signed: Signed, uri: Uri) -> Response {
    let pairs = pairs(&uri);
    let event = one(&pairs, "event").unwrap_or("");
    let install = one(&pairs, "install").unwrap_or("");
    let body = html! {
        main {
            h1 { "Live events" }
            form.filters method="get" action="/dashboard/live" {
                label { "event" input name="event" value=(event) size="16"; }
                label { "install hash starts with" input name="install" value=(install) size="16"; }
                button type="submit" { "Filter" }
            }
            p #live-status.muted role="status" { "Connecting…" }
            table #live data-event=(event) data-install=(install) {
                thead { tr { th { "received" } th { "event" } th { "install" } th { "version" } th { "OS" } th.num { "ms" } th { "outcome" } th { "error type" } th { "properties" } } }
                tbody {}
            }
            noscript { p { "The live view needs JavaScript; the other pages do not." } }
            script src="/dashboard/assets/live.js" {}
        }
    };
    super::document(
        "Live events",
        Some(nav(&signed, "/dashboard/live", &filters(&[]))),
        &body,
    )
}

/// `GET /dashboard/live/events?after=N&event=…&install=…`: the events after number `after`.
pub async fn live_events(State(state): State<Arc<AppState>>, signed: Signed, uri: Uri) -> Response {
    let pairs = pairs(&uri);
    let after = one(&pairs, "after")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let event = one(&pairs, "event").map(str::to_owned);
    let install = one(&pairs, "install").map(str::to_owned);
    let poll = state.dashboard.live.poll(signed.project.id, after, |e| {
        event
            .as_ref()
            .is_none_or(|want| e["message"]["event"].as_str() == Some(want))
            && install.as_ref().is_none_or(|p| {
                e["install"]
                    .as_str()
                    .is_some_and(|i| i.starts_with(p.as_str()))
            })
    });
    let mut r = Json(poll).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// `GET /dashboard/export/{kind}?table=NAME&format=csv|json&…`: one table of an insight.
pub async fn export(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    axum::extract::Path(kind): axum::extract::Path<String>,
    uri: Uri,
) -> Response {
    let pairs = pairs(&uri);
    let table = one(&pairs, "table").unwrap_or("").to_owned();
    let format = one(&pairs, "format").unwrap_or("csv").to_owned();
    let params: Vec<_> = pairs
        .into_iter()
        .filter(|(k, _)| k != "table" && k != "format")
        .collect();
    let fail = |status: StatusCode, msg: String| {
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            msg + "\n",
        )
            .into_response()
    };
    if format != "csv" && format != "json" {
        return fail(
            StatusCode::BAD_REQUEST,
            format!("format `{format}`: expected csv or json"),
        );
    }
    let q = match InsightQuery::from_params(&kind, &params, Timestamp::now()) {
        Ok(q) => q,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let answer = state
        .backend
        .insight(&signed.project.name, q, state.config.query_limits);
    let result = match state.queries.run(answer).await {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let Some(t) = result.tables.get(table.as_str()) else {
        let names: Vec<&str> = result.tables.keys().copied().collect();
        return fail(
            StatusCode::NOT_FOUND,
            format!("table `{table}`: this insight answers {}", names.join(", ")),
        );
    };
    let file = format!("{}-{kind}-{table}.{format}", signed.project.name);
    let disposition = format!("attachment; filename=\"{file}\"");
    let (body, ctype) = if format == "csv" {
        (t.to_csv(), "text/csv; charset=utf-8")
    } else {
        (
            serde_json::to_string(t).unwrap_or_default(),
            "application/json",
        )
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    if let Ok(v) = header::HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    r
}
