//! The end user's commands, `status`, `opt-out` and `opt-in`, as text: shared by the `opentally`
//! binary and the Python package's console script, so both behave and print the same.

use std::fmt::Write as _;

use crate::{Client, Config, Mode, Notice};

/// A client that only reads: no notice and no event, so no file is written and no socket opened.
fn reader(app: Option<&str>) -> Client {
    Client::new(Config::new(app.unwrap_or("*"), "", "").notice(Notice::Off))
}

/// A status as pretty JSON.
pub fn status_json(status: &crate::Status) -> String {
    serde_json::to_string_pretty(status).expect("a status serialises")
}

/// `opentally status [--app A] [--json]`.
pub fn status(app: Option<&str>, json: bool) -> String {
    let status = reader(app).status();
    if json {
        status_json(&status)
    } else {
        format!(
            "{status}\n\nThe app's own variables and its default are set in its code; the app's own \
             status (opentally.status() in Python) shows them too."
        )
    }
}

/// `opentally opt-out|opt-in [--app A]`: saves the choice in the user's config file and says
/// what it did, and whether a refusal elsewhere still keeps telemetry off.
pub fn choose(app: Option<&str>, on: bool) -> std::io::Result<String> {
    let file = reader(app).status().paths.config_file;
    let mode = if on { Mode::On } else { Mode::Off };
    crate::consent::write_user_setting(&file, app, mode)?;
    let who = app.unwrap_or("every app");
    let mut text = format!(
        "telemetry {} for {who} (saved in {})",
        if on { "allowed" } else { "refused" },
        file.display()
    );
    if on {
        let now = reader(app).status().decision;
        if now.mode == Mode::Off {
            let _ = write!(
                text,
                "
telemetry stays off: {} refuses it",
                now.decided_by
            );
        }
    }
    Ok(text)
}

/// `opentally forget --app A`: asks the app's collector to erase everything stored under this
/// machine's install id, then deletes what is still spooled under it and rotates the id, so the
/// next one is unrelated. Nothing changes here unless the collector confirmed the erasure, so a
/// failed attempt can be repeated.
pub fn forget(app: &str) -> Result<String, crate::rights::RightsError> {
    let (status, collector, old) = recorded(app)?;
    collector.erase(&old)?;
    crate::spool::clear(&status.app_state.join("spool"));
    crate::identity::rotate(&status.app_state)?;
    crate::rights::SavedCollector::remove(&status.app_state)?;
    let new = reader(Some(app)).status().install_id;
    Ok(format!(
        "{} erased every event of {app} stored under install id {old}.\n\
         Events not yet sent were deleted, and the install id was replaced: {}.",
        collector.endpoint,
        new.map_or_else(
            || "a new one is made when the app next sends".to_owned(),
            |id| format!("the new one, {id}, has nothing in common with the old one")
        ),
    ))
}

/// `opentally export --app A`: every event the app's collector stores under this machine's
/// install id, as pretty JSON.
pub fn export(app: &str) -> Result<String, crate::rights::RightsError> {
    let (_, collector, id) = recorded(app)?;
    let text = collector.export(&id)?;
    Ok(serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text))
}

/// The app's status, the collector it delivered to, and the install id it sent: what `forget`
/// and `export` ask with.
fn recorded(
    app: &str,
) -> Result<(crate::Status, crate::rights::SavedCollector, String), crate::rights::RightsError> {
    use crate::rights::{RightsError, SavedCollector};
    let status = reader(Some(app)).status();
    let collector = SavedCollector::load(&status.app_state)
        .ok_or_else(|| RightsError::NoCollector(app.to_owned()))?;
    let id = status
        .install_id
        .clone()
        .ok_or_else(|| RightsError::NoInstallId(app.to_owned()))?;
    Ok((status, collector, id))
}
