//! `opentally demo generate`: a realistic demo project written straight into the store.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use opentally_protocol::Timestamp;
use opentally_server::config::RawConfig;
use opentally_server::meta::{MetaError, MetaStore};
use opentally_store::{Options, Store};

use crate::{DEMO_CATALOG, DataArgs, resolve_config};

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Write a generated history (installs with churn and retention, versions adopted over time,
    /// log-normal durations, errors clustered in one version, a funnel) into a project. Run it
    /// while no server uses the data dir.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    data: DataArgs,
    /// How many events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// The project (created with the example catalog if it does not exist).
    #[arg(long, default_value = "demo")]
    project: String,
    /// Days of history, ending now.
    #[arg(long, default_value_t = 90)]
    days: u32,
    /// Seed of the generator: the same seed gives the same history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn demo(cmd: DemoCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DemoCommand::Generate(args) => {
            let cfg = resolve_config(&args.data, RawConfig::default())?;
            let meta = MetaStore::open(&cfg.data)
                .with_context(|| format!("cannot open the data dir {}", cfg.data.display()))?;
            match meta.create_project(&args.project, Some(DEMO_CATALOG)) {
                Ok(_) | Err(MetaError::Exists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let started = std::time::Instant::now();
            let n = generate(
                &cfg.data,
                &args.project,
                args.events,
                args.days,
                args.seed,
                !args.quiet,
            )?;
            let secs = started.elapsed().as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let rate = n as f64 / secs.max(1e-9);
            writeln!(
                std::io::stdout().lock(),
                "generated {n} events for project {} in {secs:.1} s ({rate:.0} events/s)",
                args.project
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Generates `events` events of `project` into the store of `data`, sealed into parts.
pub fn generate(
    data: &std::path::Path,
    project: &str,
    events: u64,
    days: u32,
    seed: u64,
    progress: bool,
) -> anyhow::Result<u64> {
    let store = Store::open(data, Options::default())
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    store.prepare_loading()?;
    let bar = if progress {
        indicatif::ProgressBar::new(events)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .expect("a valid template"),
    );
    let mut chunk = Vec::new();
    let mut failed = None;
    let n = opentally_store::demo::generate(events, days, Timestamp::now(), seed, &mut |day| {
        chunk.extend(day);
        if chunk.len() >= 100_000 && failed.is_none() {
            bar.inc(chunk.len() as u64);
            failed = store.import(project, &std::mem::take(&mut chunk)).err();
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    bar.inc(chunk.len() as u64);
    store.import(project, &chunk)?;
    // A pass merges at most `compact_max_parts` parts a day: passes until none is left to merge.
    while store.compact()? > 0 {}
    store.delete_retired()?;
    bar.finish_and_clear();
    Ok(n)
}
