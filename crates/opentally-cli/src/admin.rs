//! `opentally project …`: projects, keys and catalogs. Works while a server runs on the same
//! data dir (SQLite in WAL mode; the server notices changes within a second).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use opentally_server::config::RawConfig;
use opentally_server::meta::{MetaError, MetaStore};

use crate::{DataArgs, resolve_config};

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project; prints its write key (send-only) and admin token (read), once.
    Create {
        /// Lowercase letters, digits, `-` and `_`.
        name: String,
        /// The project's event catalog; without one the project accepts any event (open mode).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Print {"project","write_key","admin_token"} as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List projects.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Replace a project's write key; the old key stops working within a second.
    RotateKey {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Replace a project's admin token; the old token stops working within a second.
    RotateToken {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Delete a project with every event it holds; its keys stop working within a second.
    /// Asks for the project's name to confirm, unless --yes.
    Delete {
        name: String,
        /// Do not ask: for scripts.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Set how many days of a project's events are kept; older days are dropped hourly.
    SetRetention {
        name: String,
        /// Days kept, 1 to 3650 (a new project keeps 365).
        days: u32,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Stop or sample collection from a range of app versions. Each batch's answer carries the
    /// rule to the SDKs, which stop sending (--off) or keep a stable fraction of installs
    /// (--sample); the collector drops what they should not have sent. --on removes the rule.
    #[command(
        disable_version_flag = true,
        group(clap::ArgGroup::new("what").required(true).args(["off", "on", "sample"]))
    )]
    SetCollection {
        name: String,
        /// The app versions the rule covers, as a range (`<1.3`, `>=2.0, <2.1`); every version
        /// when absent. Pre-release suffixes are ignored: `1.3.0rc1` counts as 1.3.0.
        #[arg(long = "version", id = "versions", value_name = "RANGE")]
        versions: Option<String>,
        /// Stop collection from these versions; their SDKs clear what they spooled.
        #[arg(long)]
        off: bool,
        /// Remove the rule for these versions: collect as usual.
        #[arg(long)]
        on: bool,
        /// Keep this fraction of installs (above 0, below 1), chosen stably from the install id.
        #[arg(long)]
        sample: Option<f64>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Set a project's catalog (or remove it with --none: open mode).
    SetCatalog {
        name: String,
        /// The catalog's TOML file.
        #[arg(required_unless_present = "none")]
        file: Option<PathBuf>,
        /// Remove the catalog: the project accepts any event.
        #[arg(long, conflicts_with = "file")]
        none: bool,
        #[command(flatten)]
        data: DataArgs,
    },
}

fn open(data: &DataArgs) -> anyhow::Result<MetaStore> {
    let cfg = resolve_config(data, RawConfig::default())?;
    MetaStore::open(&cfg.data)
        .with_context(|| format!("cannot open the data dir {}", cfg.data.display()))
}

fn read_catalog(path: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read catalog {}", p.display()))
    })
    .transpose()
}

pub fn project(cmd: ProjectCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        ProjectCommand::Create {
            name,
            catalog,
            json,
            data,
        } => {
            let src = read_catalog(catalog.as_ref())?;
            let created = open(&data)?.create_project(&name, src.as_deref())?;
            if json {
                let v = serde_json::json!({
                    "project": created.project.name,
                    "write_key": created.write_key.expose(),
                    "admin_token": created.admin_token.expose(),
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "created project {name}")?;
                writeln!(out, "write key:   {}", created.write_key.expose())?;
                writeln!(out, "admin token: {}", created.admin_token.expose())?;
                writeln!(
                    out,
                    "keys are stored hashed: copy them now, they cannot be shown again"
                )?;
            }
        }
        ProjectCommand::List { json, data } => {
            let projects = open(&data)?.list_projects()?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&projects)?)?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:<26} {:>9} {:>10}",
                    "NAME", "CREATED", "CATALOG", "RETENTION"
                )?;
                for p in projects {
                    let catalog = if p.catalog.is_some() {
                        format!("{} events", p.events_in_catalog)
                    } else {
                        "open".to_owned()
                    };
                    writeln!(
                        out,
                        "{:<24} {:<26} {:>9} {:>9}d",
                        p.name, p.created_at, catalog, p.retention_days
                    )?;
                }
            }
        }
        ProjectCommand::RotateKey { name, json, data } => {
            let key = open(&data)?.rotate_write_key(&name)?;
            print_new_secret(
                &mut out,
                json,
                &name,
                "write_key",
                "write key",
                key.expose(),
            )?;
        }
        ProjectCommand::RotateToken { name, json, data } => {
            let token = open(&data)?.rotate_admin_token(&name)?;
            print_new_secret(
                &mut out,
                json,
                &name,
                "admin_token",
                "admin token",
                token.expose(),
            )?;
        }
        ProjectCommand::Delete { name, yes, data } => {
            drop(out);
            return delete(&name, yes, &data);
        }
        ProjectCommand::SetRetention { name, days, data } => {
            open(&data)?.set_retention_days(&name, days)?;
            writeln!(
                out,
                "{name} keeps {days} days of events; older days are dropped within the hour by the running collector"
            )?;
        }
        ProjectCommand::SetCollection {
            name,
            versions,
            off,
            on: _,
            sample,
            data,
        } => {
            let control = if off {
                Some(opentally_protocol::Control {
                    collect: false,
                    sample: None,
                })
            } else {
                sample.map(|rate| opentally_protocol::Control {
                    collect: true,
                    sample: Some(rate),
                })
            };
            let rules = open(&data)?.set_collection(&name, versions.as_deref(), control)?;
            if rules.is_empty() {
                writeln!(out, "{name} collects from every app version")?;
            } else {
                writeln!(
                    out,
                    "{name}'s remote controls (the strictest that covers a version wins):"
                )?;
                for r in rules {
                    let what = match r.control.sample {
                        _ if !r.control.collect => "off".to_owned(),
                        Some(rate) => format!("sample {rate}"),
                        None => "on".to_owned(),
                    };
                    writeln!(out, "  {:<20} {what}", r.versions)?;
                }
            }
            writeln!(
                out,
                "the running collector applies it within a second; SDKs learn it from their next batch"
            )?;
        }
        ProjectCommand::SetCatalog {
            name,
            file,
            none: _,
            data,
        } => {
            let src = read_catalog(file.as_ref())?;
            open(&data)?.set_catalog(&name, src.as_deref())?;
            match &file {
                Some(f) => writeln!(out, "catalog of {name} set from {}", f.display())?,
                None => writeln!(
                    out,
                    "catalog of {name} removed: the project accepts any event"
                )?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a rotated secret: `{"project", FIELD}` as JSON, or a line naming it.
fn print_new_secret(
    out: &mut impl Write,
    json: bool,
    project: &str,
    field: &str,
    label: &str,
    secret: &str,
) -> std::io::Result<()> {
    if json {
        let mut v = serde_json::json!({ "project": project });
        v[field] = secret.into();
        writeln!(out, "{v}")
    } else {
        writeln!(out, "new {label} for {project}: {secret}")
    }
}

/// `opentally project delete`: confirms, deletes the project's row (its keys stop working),
/// then removes its events itself when no collector runs on the data dir, or leaves that to the
/// running collector, which does it within a second (and again once requests in flight are
/// done).
fn delete(name: &str, yes: bool, data: &DataArgs) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead as _, IsTerminal as _};
    let cfg = resolve_config(data, RawConfig::default())?;
    let meta = MetaStore::open(&cfg.data)
        .with_context(|| format!("cannot open the data dir {}", cfg.data.display()))?;
    if meta.project_by_name(name)?.is_none() {
        return Err(MetaError::NotFound(name.to_owned()).into());
    }
    if !yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            anyhow::bail!(
                "deleting project {name} removes every event it holds and cannot be undone: \
                 pass --yes to confirm without a terminal"
            );
        }
        let mut err = std::io::stderr().lock();
        write!(
            err,
            "Delete project {name} and every event it holds? This cannot be undone.\n\
             Type the project's name to confirm: "
        )?;
        err.flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if answer.trim() != name {
            writeln!(err, "not deleted")?;
            return Ok(ExitCode::from(1));
        }
    }
    meta.delete_project(name)?;
    let mut out = std::io::stdout().lock();
    match opentally_server::lock::DataDirLock::try_acquire(&cfg.data)? {
        Some(_lock) => {
            // No collector runs here: the events go now, with anything of an earlier deletion
            // that a collector stopped before finishing.
            let store = opentally_store::Store::open_behind(&cfg.data, cfg.store.clone())?;
            store.prepare_loading()?;
            let (mut log, _) = opentally_log::LogWriter::open(
                &opentally_log::DataDir::new(&cfg.data).log(),
                cfg.segment_bytes,
                true,
            )?;
            let removed = opentally_server::deletion::remove_now(&meta, &store, log.position())?;
            // The records still in the log are never loaded again; closing the segment lets
            // the next collector remove it once it has sealed past it.
            log.start_new_segment()?;
            let events: u64 = removed
                .iter()
                .filter(|(p, _)| p == name)
                .map(|(_, n)| n)
                .sum();
            writeln!(out, "deleted project {name} and its {events} stored events")?;
        }
        None => writeln!(
            out,
            "deleted project {name}: its keys no longer work; the collector running on {} \
             removes its events now",
            cfg.data.display()
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The demo project's secrets, for the `serve --demo` banner.
pub struct Demo {
    pub name: String,
    pub write_key: String,
    pub admin_token: String,
}

/// Creates the demo project on first use; later starts give it a fresh write key and admin
/// token (both are stored hashed, so the old ones cannot be shown again).
pub fn demo_project(meta: &MetaStore, catalog: &str) -> anyhow::Result<Demo> {
    let name = "demo";
    match meta.create_project(name, Some(catalog)) {
        Ok(p) => Ok(Demo {
            name: name.into(),
            write_key: p.write_key.expose().to_owned(),
            admin_token: p.admin_token.expose().to_owned(),
        }),
        Err(MetaError::Exists(_)) => Ok(Demo {
            name: name.into(),
            write_key: meta.rotate_write_key(name)?.expose().to_owned(),
            admin_token: meta.rotate_admin_token(name)?.expose().to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}
