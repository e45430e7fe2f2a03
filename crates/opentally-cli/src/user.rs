//! End users' commands: `status`, `opt-out`, `opt-in`. They share the SDK's code, so they read
//! and write exactly what an app embedding OpenTally reads.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use opentally::{Client, Config, Mode, Notice};

#[derive(Debug, Args)]
pub struct AppArgs {
    /// The app (as its author named it, e.g. `nannyml`); without it, every app.
    #[arg(long)]
    app: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// A client that only reads: no notice, no event, so no file is written and no socket opened.
fn reader(app: &str) -> Client {
    Client::new(Config::new(app, "", "").notice(Notice::Off))
}

pub fn status(args: &AppArgs) -> anyhow::Result<ExitCode> {
    let app = args.app.as_deref().unwrap_or("*");
    let status = reader(app).status();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
    } else {
        writeln!(out, "{status}")?;
        writeln!(
            out,
            "\nThe app's own variables and its default are set in its code; the app's own status \
             (opentally.status() in Python) shows them too."
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn choose(args: &AppArgs, on: bool) -> anyhow::Result<ExitCode> {
    let client = reader(args.app.as_deref().unwrap_or("*"));
    let file = client.status().paths.config_file;
    let mode = if on { Mode::On } else { Mode::Off };
    opentally::consent::write_user_setting(&file, args.app.as_deref(), mode)?;
    let who = args
        .app
        .as_deref()
        .map_or_else(|| "every app".to_owned(), ToOwned::to_owned);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "telemetry {} for {who} (saved in {})",
        if on { "allowed" } else { "refused" },
        file.display()
    )?;
    if on {
        // Consent never overrides a refusal: say so when one remains.
        let now = reader(args.app.as_deref().unwrap_or("*")).status().decision;
        if now.mode == Mode::Off {
            writeln!(out, "telemetry stays off: {} refuses it", now.decided_by)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
