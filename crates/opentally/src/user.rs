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
