//! The dashboard `opentally serve` renders itself: HTML made on the server from the same typed
//! insights the API answers, SVG charts each with its table beside it, one small script for the
//! live view, nothing fetched from anywhere else.
//!
//! `session` signs maintainers in with their project's admin token; `views` renders the pages
//! and the CSV and JSON exports of their tables; `charts` draws; `live` keeps the latest events
//! of watched projects for the live view.

pub mod charts;
pub mod live;
pub mod session;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use crate::AppState;
use crate::pages::{html_response, shell};

/// What the dashboard keeps in memory: sessions and the live feed.
#[derive(Debug, Default)]
pub struct DashboardState {
    pub sessions: session::Sessions,
    pub live: live::LiveFeed,
}

/// The live view's script: polls for new events and adds them to the table as text.
const SCRIPT: &str = include_str!("live.js");

/// Scripts only from this server (the live view's), styles inline, forms post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

const DASHBOARD_STYLE: &str = "
body { max-width: 72rem; }
nav { display: flex; flex-wrap: wrap; gap: 0.3rem 1rem; align-items: center; border-bottom: 1px solid var(--line); padding-bottom: 0.5rem; }
nav a { text-decoration: none; }
nav a[aria-current] { font-weight: bold; text-decoration: underline; }
nav form { margin-left: auto; }
.narrow { max-width: 26rem; margin: 3rem auto; }
.narrow input, .narrow button { display: block; width: 100%; margin: 0.4rem 0 1rem; padding: 0.5rem; font: inherit; box-sizing: border-box; }
.error { color: #c92a2a; border-left: 3px solid #c92a2a; padding-left: 0.6rem; }
form.filters { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: end; margin: 1rem 0; }
form.filters label { display: flex; flex-direction: column; font-size: 0.85rem; }
form.filters input, form.filters select { font: inherit; padding: 0.2rem; }
section.panel { margin: 1.5rem 0; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr)); gap: 0 2rem; }
figure.chart { margin: 0.5rem 0; }
figure.chart svg { width: 100%; height: auto; font: 11px system-ui, sans-serif; fill: currentColor; }
figure.chart .grid { stroke: var(--line); }
.legend span { margin-right: 1rem; font-size: 0.85rem; }
.legend i { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.3rem; vertical-align: middle; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.exports { font-size: 0.85rem; }
details.table summary { cursor: pointer; color: var(--muted); font-size: 0.9rem; }
.heat td.num { position: relative; }
";

/// The dashboard's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/login", get(session::login_get).post(session::login_post))
        .route("/logout", post(session::logout))
        .route("/dashboard", get(views::overview))
        .route("/dashboard/event", get(views::event))
        .route("/dashboard/environment", get(views::environment))
        .route("/dashboard/retention", get(views::retention))
        .route("/dashboard/funnel", get(views::funnel))
        .route("/dashboard/paths", get(views::paths))
        .route("/dashboard/friction", get(views::friction))
        .route("/dashboard/live", get(views::live_page))
        .route("/dashboard/live/events", get(views::live_events))
        .route("/dashboard/export/{kind}", get(views::export))
        .route("/dashboard/assets/live.js", get(script))
        // Browsers ask for it on every site; there is none.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// A whole dashboard document: `nav` (when signed in) above `body`.
pub(crate) fn document(title: &str, nav: Option<Markup>, body: &Markup) -> Response {
    let body = html! {
        @if let Some(n) = nav { (n) }
        (body)
    };
    let markup = shell(&format!("{title} · OpenTally"), DASHBOARD_STYLE, &body);
    let mut r = html_response(markup, CSP);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// A page that says what went wrong and what to do.
pub(crate) fn error_page(status: StatusCode, title: &str, what_to_do: &str) -> Response {
    let mut r = document(
        title,
        None,
        &html! {
            main.narrow {
                h1 { (title) }
                p { (what_to_do) }
                p { a href="/dashboard" { "Back to the dashboard" } }
            }
        },
    );
    *r.status_mut() = status;
    r
}
