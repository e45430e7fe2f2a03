//! The `opentally` binary: the only place that prints to stdout or picks exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use opentally_protocol::Catalog;

/// Privacy-first usage telemetry for open-source software.
#[derive(Debug, Parser)]
#[command(name = "opentally", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with event catalogs, the published list of what a project collects.
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Check a catalog file and report every problem with its line and column.
    Check {
        /// The catalog's TOML file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Catalog(CatalogCommand::Check { file }) => catalog_check(&file),
    }
}

fn catalog_check(file: &PathBuf) -> anyhow::Result<ExitCode> {
    let src = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read catalog {}", file.display()))?;
    match Catalog::from_toml_str(&src) {
        Ok(catalog) => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{}: ok ({} events, {} properties, {} mode)",
                file.display(),
                catalog.events.len(),
                catalog.property_count(),
                match catalog.mode {
                    opentally_protocol::Mode::Strict => "strict",
                    opentally_protocol::Mode::Lenient => "lenient",
                }
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            for e in &errors {
                writeln!(
                    err,
                    "{}:{}:{}: error: {}",
                    file.display(),
                    e.line,
                    e.column,
                    e.message
                )?;
                if let Some(hint) = &e.hint {
                    writeln!(err, "  hint: {hint}")?;
                }
            }
            let n = errors.len();
            writeln!(
                err,
                "{n} error{} in {}",
                if n == 1 { "" } else { "s" },
                file.display()
            )?;
            Ok(ExitCode::from(1))
        }
    }
}
