//! `opentally query` and `opentally sql`: insights and read-only SQL over a data dir, the same
//! typed queries the API runs. They read the data dir without changing it, so they work while a
//! server runs on it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use opentally_protocol::Timestamp;
use opentally_server::config::RawConfig;
use opentally_store::{Backend, InsightQuery, Options, Store, Table};

use crate::{DataArgs, resolve_config};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Trend,
    Active,
    NewReturning,
    Versions,
    Durations,
    Errors,
    Retention,
    Funnel,
    Paths,
    Friction,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Trend => "trend",
            Kind::Active => "active",
            Kind::NewReturning => "new-returning",
            Kind::Versions => "versions",
            Kind::Durations => "durations",
            Kind::Errors => "errors",
            Kind::Retention => "retention",
            Kind::Funnel => "funnel",
            Kind::Paths => "paths",
            Kind::Friction => "friction",
        }
    }
}

/// How results are printed.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON (the API's response body).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV.
    #[arg(long)]
    csv: bool,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The insight.
    kind: Kind,
    #[command(flatten)]
    data: DataArgs,
    /// The project.
    #[arg(long)]
    project: String,
    /// Only this event (for paths: the event to start from).
    #[arg(long)]
    event: Option<String>,
    /// Break down by a field (app.version, os.name, runtime.name, outcome…) or a property.
    #[arg(long)]
    by: Option<String>,
    /// From: 30d, 12h, 2w, a date or a timestamp.
    #[arg(long)]
    since: Option<String>,
    /// Until (exclusive), in the same forms.
    #[arg(long)]
    until: Option<String>,
    /// day, week or month.
    #[arg(long)]
    interval: Option<String>,
    /// Keep only events where a field has one of the values: `app.version=1.2,1.3`. Repeatable.
    #[arg(long = "where")]
    wheres: Vec<String>,
    /// Funnel steps, comma-separated: fit,estimate,plot.
    #[arg(long)]
    steps: Option<String>,
    /// Funnel window: 30m, 1h, 7d…
    #[arg(long)]
    window: Option<String>,
    /// How many rows the top-N tables keep.
    #[arg(long)]
    top: Option<usize>,
    /// Print the SQL the insight compiles to, one statement per line, instead of running it.
    #[arg(long)]
    print_sql: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// One read-only statement over the project's `events` table.
    statement: String,
    #[command(flatten)]
    data: DataArgs,
    /// The project.
    #[arg(long)]
    project: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// The query threads, as the server runs them: deep stacks, so a deep plan is an error, not a
/// crash.
fn runner() -> anyhow::Result<opentally_store::guard::QueryRunner> {
    Ok(opentally_store::guard::QueryRunner::new(2, 1)?)
}

/// The project's backend (the embedded store) and the query limits the data dir's config sets.
fn open(
    data: &DataArgs,
    project: &str,
) -> anyhow::Result<(Box<dyn Backend>, opentally_store::Limits)> {
    let cfg = resolve_config(data, RawConfig::default())?;
    let meta = opentally_server::meta::MetaStore::open(&cfg.data)
        .with_context(|| format!("cannot open the data dir {}", cfg.data.display()))?;
    if meta.project_by_name(project)?.is_none() {
        anyhow::bail!(
            "no project named `{project}` in {} (`opentally project list` shows them)",
            cfg.data.display()
        );
    }
    let store = Store::open(&cfg.data, Options::default())
        .with_context(|| format!("cannot open the store in {}", cfg.data.display()))?;
    Ok((Box::new(store), cfg.query_limits))
}

fn print_table(out: &mut dyn Write, output: &OutputArgs, table: &Table) -> std::io::Result<()> {
    if output.csv {
        out.write_all(table.to_csv().as_bytes())
    } else {
        out.write_all(table.to_text().as_bytes())?;
        if table.truncated {
            writeln!(out, "(more rows were left off)")?;
        }
        Ok(())
    }
}

pub fn query(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            params.push((k.to_owned(), v));
        }
    };
    put("event", args.event.clone());
    put("by", args.by.clone());
    put("since", args.since.clone());
    put("until", args.until.clone());
    put("interval", args.interval.clone());
    put("steps", args.steps.clone());
    put("window", args.window.clone());
    put("top", args.top.map(|t| t.to_string()));
    for w in &args.wheres {
        params.push(("where".into(), w.clone()));
    }
    let q = InsightQuery::from_params(args.kind.name(), &params, Timestamp::now())?;
    if args.print_sql {
        let mut out = std::io::stdout().lock();
        for (name, sql) in q.to_sql() {
            writeln!(out, "{name}\t{sql}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (backend, limits) = open(&args.data, &args.project)?;
    let result = runner()?.block_on(backend.insight(&args.project, q, limits))?;
    let mut out = std::io::stdout().lock();
    if args.output.json {
        serde_json::to_writer_pretty(&mut out, &result)?;
        writeln!(out)?;
    } else {
        let many = result.tables.len() > 1;
        for (i, (name, table)) in result.tables.iter().enumerate() {
            if many {
                if i > 0 {
                    writeln!(out)?;
                }
                if !args.output.csv {
                    writeln!(out, "{name}")?;
                }
            }
            print_table(&mut out, &args.output, table)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sql(args: &SqlArgs) -> anyhow::Result<ExitCode> {
    let (backend, limits) = open(&args.data, &args.project)?;
    let table = runner()?.block_on(backend.sql(&args.project, args.statement.clone(), limits))?;
    let mut out = std::io::stdout().lock();
    if args.output.json {
        serde_json::to_writer_pretty(&mut out, &table)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &args.output, &table)?;
    }
    Ok(ExitCode::SUCCESS)
}
