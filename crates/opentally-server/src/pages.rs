//! The public pages `opentally serve` renders itself, server-side, with nothing fetched from
//! elsewhere: a project's transparency page (`/p/{project}/privacy`), generated from the catalog
//! the collector enforces so that it cannot drift from it, and the privacy model it links to
//! (`/privacy`, this repository's PRIVACY.md as the binary was built with it).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use opentally_protocol::catalog::{Catalog, PropertyType};

use crate::AppState;
use crate::meta::Project;

/// The privacy model, served at `/privacy`.
const PRIVACY_MODEL: &str = include_str!("../../../PRIVACY.md");

/// Readable on a phone, light or dark as the reader's system is; no web font, no script.
pub(crate) const STYLE: &str = "
:root { color-scheme: light dark; --muted: #666; --line: #ddd; --code: #f4f4f4; }
@media (prefers-color-scheme: dark) { :root { --muted: #aaa; --line: #444; --code: #2a2a2a; } }
body { font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid var(--line); }
code, pre { background: var(--code); border-radius: 3px; padding: 0.1em 0.3em; }
pre { padding: 0.6em; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; display: block; overflow-x: auto; }
th, td { text-align: left; vertical-align: top; padding: 0.3em 0.6em 0.3em 0; border-bottom: 1px solid var(--line); }
.muted { color: var(--muted); }
";

fn page(title: &str, body: &Markup) -> Response {
    // Nothing on these pages is loaded from anywhere else, and nothing may frame them.
    html_response(
        shell(title, "", body),
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    )
}

/// The document every page of the server is: readable on a phone, [`STYLE`] and `more_style`
/// inline, `body` as given.
pub(crate) fn shell(title: &str, more_style: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) (PreEscaped(more_style)) }
            }
            body { (body) }
        }
    }
}

/// An HTML document with the security headers every page of the server carries: its content
/// security policy `csp`, no MIME sniffing, no referrer.
pub(crate) fn html_response(markup: Markup, csp: &'static str) -> Response {
    let mut response = markup.into_string().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn not_found(project: &str) -> Response {
    let mut r = page(
        "No such project",
        &html! {
            h1 { "No such project" }
            p { "This collector has no project named " code { (project) } "." }
        },
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// `GET /p/{project}/privacy`: what the project collects, keeps and never collects, for how long,
/// and every way to turn it off or to see and erase one's data. Public: no login.
pub async fn transparency(
    State(state): State<Arc<AppState>>,
    Path(project): Path<String>,
) -> Response {
    match state.meta.project_by_name(&project) {
        Ok(Some(p)) => page(
            &format!("{}: what is collected", p.name),
            &transparency_body(&p),
        ),
        Ok(None) => not_found(&project),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the project database");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the project database cannot be read\n",
            )
                .into_response()
        }
    }
}

/// `GET /privacy`: the privacy model the transparency pages link to, as plain text.
pub async fn privacy_model() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PRIVACY_MODEL,
    )
        .into_response()
}

fn property_type(kind: &PropertyType) -> String {
    let bounds = |min: Option<String>, max: Option<String>| match (min, max) {
        (None, None) => String::new(),
        (min, max) => format!(
            " from {} to {}",
            min.unwrap_or_else(|| "any".into()),
            max.unwrap_or_else(|| "any".into())
        ),
    };
    match kind {
        PropertyType::String { max_length } => format!("text, at most {max_length} characters"),
        PropertyType::Integer { min, max } => format!(
            "whole number{}",
            bounds(min.map(|v| v.to_string()), max.map(|v| v.to_string()))
        ),
        PropertyType::Number { min, max } => format!(
            "number{}",
            bounds(min.map(|v| v.to_string()), max.map(|v| v.to_string()))
        ),
        PropertyType::Boolean => "true or false".into(),
        PropertyType::Enum { values } => format!("one of: {}", values.join(", ")),
    }
}

fn catalog_section(c: &Catalog) -> Markup {
    html! {
        @if let Some(d) = &c.description { p { (d) } }
        p {
            "The collector stores only these events and properties; anything else is "
            @if c.mode == opentally_protocol::Mode::Strict { "refused." } @else { "dropped before it is stored." }
            " Every event may also carry " code { "duration_ms" } ", " code { "outcome" }
            " (ok or error) and " code { "error_type" } " (an error's class name, never its message)."
        }
        @for (name, event) in &c.events {
            h3 { code { (name) } }
            p { (event.description.as_deref().unwrap_or("No description given.")) }
            @if event.properties.is_empty() {
                p.muted { "No properties." }
            } @else {
                table {
                    thead { tr { th { "property" } th { "type" } th { "meaning" } } }
                    tbody {
                        @for (pname, spec) in &event.properties {
                            tr {
                                td { code { (pname) } @if spec.required { " (always sent)" } }
                                td { (property_type(&spec.kind)) }
                                td { (spec.description.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "About the machine" }
        p {
            "With each event, only these facts about the program and the machine are kept: "
            @for (i, path) in c.context_keep.iter().enumerate() {
                @if i > 0 { ", " }
                code { (path) }
            }
            " (each a short value: a name, a version, a yes or no)."
        }
    }
}

fn transparency_body(p: &Project) -> Markup {
    let catalog = p.catalog.as_deref();
    let opt_out = catalog.and_then(|c| c.opt_out.as_ref());
    let app = opt_out.map_or("APP", |o| o.app.as_str());
    html! {
        h1 { (p.name) }
        p.muted { "What this project's usage telemetry collects, generated from the catalog its collector enforces." }

        h2 { "What is collected" }
        @match catalog {
            Some(c) => { (catalog_section(c)) }
            None => {
                p {
                    strong { "This project has not published a catalog." }
                    " Its collector accepts any event name and short property values, and still "
                    "drops everything listed below as never collected."
                }
            }
        }

        h2 { "What is never collected" }
        ul {
            li { "Your IP address: the collector does not store it anywhere." }
            li { "Your install id: the collector stores a keyed hash of it instead, which cannot be joined with other projects or machines." }
            li { "Names, e-mail addresses, user names, host names, file paths, or free text in any field." }
            li { "Error messages: only an error's class name." }
        }

        h2 { "How long it is kept" }
        p { "Events are deleted after " strong { (p.retention_days) " days" } "." }

        h2 { "How to turn it off" }
        p { "Any one of these turns it off; none of the others can turn it back on." }
        ul {
            li { "For every tool that honours it: " code { "DO_NOT_TRACK=1" } }
            li { "For every app using OpenTally: " code { "OPENTALLY_TELEMETRY=off" } " (or " code { "local" } " to keep events in a local file, never sent)" }
            @if let Some(o) = opt_out {
                @for var in &o.env {
                    li { "For this app only: " code { (var) "=1" } }
                }
            }
            li { "Saved for this app: " code { "opentally opt-out --app " (app) } }
            li { "In a project folder: a " code { ".env" } " file with " code { "DO_NOT_TRACK=1" } ", in the working directory or a parent" }
            li { "For every user of a machine (administrators): " code { "telemetry = \"off\"" } " in " code { "/etc/opentally/policy.toml" } }
        }
        @if opt_out.is_none() {
            p.muted { "The catalog does not name the app, so " code { "APP" } " stands for the app's name." }
        }

        h2 { "Your data" }
        ul {
            li { "See what is sent and why: " code { "opentally status --app " (app) } "; " code { "OPENTALLY_LOG=1" } " prints every event as it is sent." }
            li { "Get every event stored for your install: " code { "opentally export --app " (app) } }
            li { "Erase them and start over with an unrelated id: " code { "opentally forget --app " (app) } }
            li { "Turn it off and erase what was sent: " code { "opentally opt-out --app " (app) " --forget" } }
        }
        p { "The whole privacy model: " a href="/privacy" { "how OpenTally handles data" } "." }
    }
}
