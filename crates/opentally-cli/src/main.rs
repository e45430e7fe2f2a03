//! The `opentally` binary: the only place that prints to stdout or picks exit codes.

mod admin;
mod bench;
mod demo;
mod query;
mod user;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use opentally_protocol::Catalog;
use opentally_server::config::{self, RawConfig};

/// The collector allocates and frees many small JSON values per event; mimalloc measured faster
/// than the system allocator for that on the ingest benchmark (docs/benchmarks.md). Its version 2
/// (the `v2` feature) returns freed memory to the OS after 10 ms; version 3 keeps it for a second,
/// which at half the full ingest rate cost ~20 MB of peak RSS for no gain in events/s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process. mimalloc asks for them on its arenas, and
/// the kernel then backs each freshly touched arena with a 2 MiB page it zeroes whole: on the
/// ingest benchmark that cost the collector a third of its peak RSS and 5 % of its handlers' CPU
/// (docs/benchmarks.md). Best effort: a kernel without the switch keeps its default.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "transparent huge pages stay as the kernel sets them");
    }
}

/// Privacy-first usage telemetry for open-source software.
#[derive(Debug, Parser)]
#[command(name = "opentally", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector: the Segment-compatible ingest API with durable acks.
    Serve(ServeArgs),
    /// Create and manage projects, their keys and catalogs.
    #[command(subcommand)]
    Project(admin::ProjectCommand),
    /// Print every stored event, one JSON object per line.
    Dump {
        #[command(flatten)]
        data: DataArgs,
        /// Only this project's events.
        #[arg(long)]
        project: Option<String>,
    },
    /// Run an insight over a project's events and print it as a table, CSV or JSON.
    Query(query::QueryArgs),
    /// Run one read-only SQL statement over a project's `events` table.
    Sql(query::SqlArgs),
    /// Generate demo data.
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Measure the collector under load (on this machine).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Work with event catalogs, the published list of what a project collects.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Show whether telemetry is on for an app, which source decided, and your install id.
    Status(user::AppArgs),
    /// Refuse telemetry for one app (--app) or for every app using OpenTally; with --forget,
    /// erase what the app already sent.
    OptOut(user::OptOutArgs),
    /// Consent to telemetry for one app (--app) or for every app; any refusal elsewhere still wins.
    OptIn(user::AppArgs),
    /// Erase everything an app's collector stores under your install id, then replace the id.
    Forget(user::RightsArgs),
    /// Print everything an app's collector stores under your install id, as JSON.
    Export(user::RightsArgs),
}

/// Where the data lives; shared by every command that opens it.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// Data directory [default: ./opentally-data, or `data` in the config file, or OPENTALLY_DATA]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Config file [default: ./opentally.toml if present, or OPENTALLY_CONFIG]
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<String>,
    /// Acknowledge before the log is synced to disk (measurement only: a crash loses acked events).
    #[arg(long)]
    no_fsync: bool,
    /// Start with a demo project (created on first use) and print its write key and a ready curl line.
    #[arg(long)]
    demo: bool,
    /// Events of history generated for a new demo project.
    #[arg(long, default_value_t = 300_000, requires = "demo")]
    demo_events: u64,
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
    // A data dir holds events, hashed keys and the install-hash secret; and a user's own
    // settings are theirs: whatever this command creates is its owner's alone.
    opentally_server::perms::restrict_umask();
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
        Command::Serve(args) => serve(&args),
        Command::Project(cmd) => admin::project(cmd),
        Command::Dump { data, project } => dump(&data, project.as_deref()),
        Command::Query(args) => query::query(&args),
        Command::Sql(args) => query::sql(&args),
        Command::Demo(cmd) => demo::demo(cmd),
        Command::Bench(cmd) => bench::bench(cmd),
        Command::Catalog(CatalogCommand::Check { file }) => catalog_check(&file),
        Command::Status(args) => user::status(&args),
        Command::OptOut(args) => user::opt_out(&args),
        Command::Forget(args) => user::forget(&args),
        Command::Export(args) => user::export(&args),
        Command::OptIn(args) => user::choose(&args, true),
    }
}

/// Resolves the settings: flags > environment > config file > defaults.
pub fn resolve_config(data: &DataArgs, mut flags: RawConfig) -> anyhow::Result<config::Config> {
    flags.data = data.data.clone().or(flags.data);
    let env = |k: &str| std::env::var(k).ok();
    let file_path = data
        .config
        .clone()
        .or_else(|| env("OPENTALLY_CONFIG").map(PathBuf::from));
    let file = match file_path {
        Some(p) => RawConfig::from_file(&p)?,
        None if Path::new("opentally.toml").exists() => {
            RawConfig::from_file(Path::new("opentally.toml"))?
        }
        None => RawConfig::default(),
    };
    Ok(config::resolve(file, RawConfig::from_env(env)?, flags)?)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENTALLY_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
}

/// The example catalog, used by the demo project.
pub const DEMO_CATALOG: &str = include_str!("../../../examples/catalog.toml");

fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    no_huge_pages();
    let flags = RawConfig {
        listen: args.listen.clone(),
        fsync: args.no_fsync.then_some(false),
        ..RawConfig::default()
    };
    let cfg = resolve_config(&args.data, flags)?;
    let demo = if args.demo {
        let meta = opentally_server::meta::MetaStore::open(&cfg.data)
            .with_context(|| format!("cannot open the data dir {}", cfg.data.display()))?;
        let d = admin::demo_project(&meta, DEMO_CATALOG)?;
        let store = opentally_store::Store::open(&cfg.data, opentally_store::Options::default())?;
        let empty = store.snapshot(&d.name).parts.is_empty() && store.stats().tail_rows == 0;
        drop(store);
        if empty {
            tracing::info!(
                events = args.demo_events,
                "generating the demo project's history"
            );
            demo::generate(&cfg.data, &d.name, args.demo_events, 90, 1, false)?;
        }
        Some(d)
    } else {
        None
    };
    let collector = opentally_server::Collector::open(cfg.clone())
        .with_context(|| format!("cannot open the data dir {}", cfg.data.display()))?;
    let r = &collector.report;
    tracing::info!(
        segments = r.recovery.segments,
        truncated_bytes = r.recovery.truncated_bytes,
        replayed_records = r.replayed_records,
        dedup_ids_in_memory = r.ids_in_memory,
        "log recovered"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "opentally serve: listening on http://{addr} (data: {})", cfg.data.display())?;
        if !cfg.fsync {
            writeln!(out, "warning: fsync is off; a crash can lose acknowledged events")?;
        }
        if let Some(d) = demo {
            writeln!(out, "demo project: {}", d.name)?;
            writeln!(out, "  write key:   {}", d.write_key)?;
            writeln!(out, "  admin token: {}", d.admin_token)?;
            writeln!(out, "send an event:")?;
            writeln!(
                out,
                "  curl -sS http://{addr}/v1/batch -u '{}:' -H 'content-type: application/json' \\\n    -d '{{\"batch\":[{{\"type\":\"track\",\"event\":\"fit\",\"anonymousId\":\"demo-install\",\"properties\":{{\"method\":\"cbpe\",\"duration_ms\":812.4}}}}]}}'",
                d.write_key
            )?;
            writeln!(out, "see it stored:\n  opentally dump --data {} --project {}", cfg.data.display(), d.name)?;
            writeln!(out, "ask the project's history (90 days, generated on first start):")?;
            writeln!(out, "  opentally query trend --data {} --project {} --interval week --by app.version", cfg.data.display(), d.name)?;
            writeln!(out, "  opentally query errors --data {} --project {} --by app.version", cfg.data.display(), d.name)?;
            writeln!(
                out,
                "  curl -sS 'http://{addr}/api/v1/projects/{}/insights/active?since=30d' -H 'authorization: Bearer {}'",
                d.name, d.admin_token
            )?;
            writeln!(out, "the dashboard (sign in with the admin token above):\n  http://{addr}/dashboard")?;
            writeln!(out, "what its users are told (public, no login):\n  http://{addr}/p/{}/privacy", d.name)?;
        }
        drop(out);
        opentally_server::serve::serve(collector, listener, opentally_server::serve::shutdown_signal()).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn dump(data: &DataArgs, project: Option<&str>) -> anyhow::Result<ExitCode> {
    let cfg = resolve_config(data, RawConfig::default())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    opentally_server::dump::dump(&cfg.data, project, &mut out)
        .with_context(|| format!("cannot read the events in {}", cfg.data.display()))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
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

#[cfg(test)]
mod tests {
    /// clap checks a command's definition only when that command is parsed: this checks all of
    /// them (two arguments with one name, say) before a user finds one.
    #[test]
    fn every_command_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
