//! End users' commands: `status`, `opt-out`, `opt-in`. The text comes from the SDK
//! (`opentally::user`), which the Python package's console script uses too.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct AppArgs {
    /// The app (as its author named it, e.g. `nannyml`); without it, every app.
    #[arg(long)]
    app: Option<String>,
    /// Print as JSON (status only).
    #[arg(long)]
    json: bool,
}

pub fn status(args: &AppArgs) -> anyhow::Result<ExitCode> {
    writeln!(
        std::io::stdout().lock(),
        "{}",
        opentally::user::status(args.app.as_deref(), args.json)
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn choose(args: &AppArgs, on: bool) -> anyhow::Result<ExitCode> {
    writeln!(
        std::io::stdout().lock(),
        "{}",
        opentally::user::choose(args.app.as_deref(), on)?
    )?;
    Ok(ExitCode::SUCCESS)
}
