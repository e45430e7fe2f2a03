//! End users' commands: `status`, `opt-out`, `opt-in`, `forget`, `export`. The text comes from
//! the SDK (`opentally::user`), which the Python package's console script uses too.

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

#[derive(Debug, Args)]
pub struct OptOutArgs {
    #[command(flatten)]
    app: AppArgs,
    /// Also erase what the app already sent from this machine (needs --app), as `forget` does.
    #[arg(long)]
    forget: bool,
}

pub fn opt_out(args: &OptOutArgs) -> anyhow::Result<ExitCode> {
    if args.forget && args.app.app.is_none() {
        anyhow::bail!("--forget needs --app: erasure is asked of one app's collector");
    }
    choose(&args.app, false)?;
    match &args.app.app {
        Some(app) if args.forget => forget(&RightsArgs { app: app.clone() }),
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[derive(Debug, Args)]
pub struct RightsArgs {
    /// The app (as its author named it, e.g. `nannyml`).
    #[arg(long)]
    app: String,
}

pub fn forget(args: &RightsArgs) -> anyhow::Result<ExitCode> {
    let text = opentally::user::forget(&args.app)?;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: &RightsArgs) -> anyhow::Result<ExitCode> {
    let text = opentally::user::export(&args.app)?;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(ExitCode::SUCCESS)
}
