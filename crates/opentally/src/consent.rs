//! Consent: every source a user, an administrator or an author might use to say yes or no, read
//! once, and combined so that **any refusal wins**. If nothing refuses, the first explicit
//! consent decides, and failing that the author's default.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a say on telemetry came from, in the order they are read and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The administrator's policy file.
    SystemPolicy,
    /// The host program's code: `disable()`, `enable()`, `Config::enabled`.
    Code,
    /// `DO_NOT_TRACK`, the console convention.
    DoNotTrack,
    /// `OPENTALLY_TELEMETRY=off|local|on`.
    OpentallyTelemetry,
    /// The app's own environment variables, declared by its author.
    AppVariable,
    /// A `.env` file in the working directory or a parent.
    DotEnv,
    /// The user's config file (`opentally opt-out`).
    UserConfig,
    /// The author's default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::SystemPolicy => "system policy",
            Source::Code => "code",
            Source::DoNotTrack => "DO_NOT_TRACK",
            Source::OpentallyTelemetry => "OPENTALLY_TELEMETRY",
            Source::AppVariable => "app variable",
            Source::DotEnv => ".env file",
            Source::UserConfig => "user config",
            Source::Default => "default",
        })
    }
}

/// What one source said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Refuses: nothing is recorded.
    Off,
    /// Refuses upload: events go to a local file only.
    Local,
    /// Consents.
    On,
    /// Says nothing.
    Silent,
}

/// What telemetry does in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Off,
    Local,
    On,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Off => "off",
            Mode::Local => "local",
            Mode::On => "on",
        })
    }
}

/// One source's say, with what it was (a variable's value, a file's path).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceReport {
    pub source: Source,
    pub verdict: Verdict,
    pub detail: String,
}

/// The outcome: the mode, the source that decided it, and what every source said.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub mode: Mode,
    pub decided_by: Source,
    pub sources: Vec<SourceReport>,
}

/// The author's default when no source speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    /// On until refused.
    OptOut,
    /// Off until accepted.
    OptIn,
}

/// Everything a decision is made from; built from the real process by the client, and by hand in
/// tests.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub app: &'a str,
    /// Environment variables of the process.
    pub env: &'a HashMap<String, String>,
    /// Where `.env` is looked for (then its parents).
    pub cwd: Option<&'a Path>,
    pub policy_file: &'a Path,
    pub config_file: &'a Path,
    /// The code's say (`disable()`/`enable()` or the builder's `enabled`).
    pub code: Option<bool>,
    /// Presence-style variables: set to anything, telemetry is off.
    pub disable_vars: &'a [String],
    /// Value-style variables: a false value (`0`, `false`, `no`, `off`) turns telemetry off, a
    /// true value is a consent.
    pub enable_vars: &'a [String],
    pub default: Default,
    /// The author turns telemetry off in CI by default.
    pub off_in_ci: bool,
    pub in_ci: bool,
}

fn falsy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off" | "disable" | "disabled"
    )
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on" | "enable" | "enabled"
    )
}

fn report(source: Source, verdict: Verdict, detail: impl Into<String>) -> SourceReport {
    SourceReport {
        source,
        verdict,
        detail: detail.into(),
    }
}

/// `DO_NOT_TRACK`: any value but empty, `0` or `false` refuses.
fn do_not_track(vars: &HashMap<String, String>, source: Source) -> SourceReport {
    match vars.get("DO_NOT_TRACK") {
        Some(v) if !v.trim().is_empty() && !falsy(v) => {
            report(source, Verdict::Off, format!("DO_NOT_TRACK={v}"))
        }
        Some(v) => report(
            source,
            Verdict::Silent,
            format!("DO_NOT_TRACK={v} (not a refusal)"),
        ),
        None => report(source, Verdict::Silent, "DO_NOT_TRACK not set"),
    }
}

fn opentally_telemetry(vars: &HashMap<String, String>, source: Source) -> SourceReport {
    let Some(v) = vars.get("OPENTALLY_TELEMETRY") else {
        return report(source, Verdict::Silent, "OPENTALLY_TELEMETRY not set");
    };
    let verdict = match v.trim().to_ascii_lowercase().as_str() {
        "local" => Verdict::Local,
        x if falsy(x) => Verdict::Off,
        x if truthy(x) => Verdict::On,
        _ => {
            return report(
                source,
                Verdict::Silent,
                format!("OPENTALLY_TELEMETRY={v} (not off, local or on)"),
            );
        }
    };
    report(source, verdict, format!("OPENTALLY_TELEMETRY={v}"))
}

fn app_variables(
    vars: &HashMap<String, String>,
    inputs: &Inputs<'_>,
    source: Source,
) -> SourceReport {
    for name in inputs.disable_vars {
        if let Some(v) = vars.get(name) {
            return report(source, Verdict::Off, format!("{name}={v} (set: off)"));
        }
    }
    let mut consent = None;
    for name in inputs.enable_vars {
        match vars.get(name) {
            Some(v) if falsy(v) => return report(source, Verdict::Off, format!("{name}={v}")),
            Some(v) if truthy(v) => consent = consent.or(Some(format!("{name}={v}"))),
            _ => {}
        }
    }
    match consent {
        Some(d) => report(source, Verdict::On, d),
        None if inputs.disable_vars.is_empty() && inputs.enable_vars.is_empty() => {
            report(source, Verdict::Silent, "the app declares no variables")
        }
        None => {
            let names: Vec<&str> = inputs
                .disable_vars
                .iter()
                .chain(inputs.enable_vars)
                .map(String::as_str)
                .collect();
            report(
                source,
                Verdict::Silent,
                format!("{} not set", names.join(", ")),
            )
        }
    }
}

/// Reads `KEY=VALUE` lines: `export` prefixes, quotes and `#` comments as dotenv tools write them.
pub fn parse_dotenv(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if let Some(q) = v.strip_prefix('"').and_then(|v| v.split_once('"')) {
            q.0
        } else if let Some(q) = v.strip_prefix('\'').and_then(|v| v.split_once('\'')) {
            q.0
        } else {
            v.split(" #").next().unwrap_or(v).trim()
        };
        vars.insert(k.trim().to_owned(), v.to_owned());
    }
    vars
}

/// The nearest `.env` at or above `cwd`.
fn find_dotenv(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .map(|d| d.join(".env"))
        .find(|p| p.is_file())
}

fn dotenv(inputs: &Inputs<'_>) -> SourceReport {
    let Some(path) = inputs.cwd.and_then(find_dotenv) else {
        return report(Source::DotEnv, Verdict::Silent, "no .env file");
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return report(
            Source::DotEnv,
            Verdict::Silent,
            format!("{} unreadable", path.display()),
        );
    };
    let vars = parse_dotenv(&text);
    // The strongest say in the file: a refusal, then local, then a consent.
    let candidates = [
        do_not_track(&vars, Source::DotEnv),
        opentally_telemetry(&vars, Source::DotEnv),
        app_variables(&vars, inputs, Source::DotEnv),
    ];
    for wanted in [Verdict::Off, Verdict::Local, Verdict::On] {
        if let Some(r) = candidates.iter().find(|r| r.verdict == wanted) {
            return report(
                Source::DotEnv,
                wanted,
                format!("{}: {}", path.display(), r.detail),
            );
        }
    }
    report(
        Source::DotEnv,
        Verdict::Silent,
        format!("{}: says nothing about telemetry", path.display()),
    )
}

/// Reads `telemetry = "off"|"local"|"on"` globally and under `[apps.NAME]`; the app's own entry
/// and the global one are both honoured, a refusal in either wins.
fn telemetry_file(path: &Path, app: &str, source: Source) -> SourceReport {
    let Ok(text) = std::fs::read_to_string(path) else {
        return report(
            source,
            Verdict::Silent,
            format!("{} not present", path.display()),
        );
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        // An unreadable file was meant to say something; the safe reading is a refusal.
        return report(
            source,
            Verdict::Off,
            format!("{} is not valid TOML: read as off", path.display()),
        );
    };
    let read = |t: Option<&toml::Value>| match t.and_then(toml::Value::as_str) {
        Some(v) if v.eq_ignore_ascii_case("local") => Some(Verdict::Local),
        Some(v) if falsy(v) => Some(Verdict::Off),
        Some(v) if truthy(v) => Some(Verdict::On),
        Some(_) => Some(Verdict::Off),
        None => None,
    };
    let global = read(table.get("telemetry"));
    let per_app = read(
        table
            .get("apps")
            .and_then(|a| a.get(app))
            .and_then(|a| a.get("telemetry")),
    );
    let combined = [per_app, global]
        .into_iter()
        .flatten()
        .min_by_key(|v| match v {
            Verdict::Off => 0,
            Verdict::Local => 1,
            Verdict::On => 2,
            Verdict::Silent => 3,
        });
    match combined {
        Some(v) => {
            let scope = match (per_app, global) {
                (Some(_), Some(_)) => format!("global and [apps.{app}]"),
                (Some(_), None) => format!("[apps.{app}]"),
                _ => "global".to_owned(),
            };
            report(source, v, format!("{} ({scope})", path.display()))
        }
        None => report(
            source,
            Verdict::Silent,
            format!("{}: nothing for this app", path.display()),
        ),
    }
}

/// Reads every source and decides.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let code = match inputs.code {
        Some(false) => report(Source::Code, Verdict::Off, "disabled in code"),
        Some(true) => report(Source::Code, Verdict::On, "enabled in code"),
        None => report(Source::Code, Verdict::Silent, "no call"),
    };
    let default = match inputs.default {
        Default::OptIn => report(Source::Default, Verdict::Off, "opt-in: off until accepted"),
        Default::OptOut if inputs.off_in_ci && inputs.in_ci => report(
            Source::Default,
            Verdict::Off,
            "opt-out, but off in CI (CI detected)",
        ),
        Default::OptOut => report(Source::Default, Verdict::On, "opt-out: on until refused"),
    };
    let sources = vec![
        telemetry_file(inputs.policy_file, inputs.app, Source::SystemPolicy),
        code,
        do_not_track(inputs.env, Source::DoNotTrack),
        opentally_telemetry(inputs.env, Source::OpentallyTelemetry),
        app_variables(inputs.env, inputs, Source::AppVariable),
        dotenv(inputs),
        telemetry_file(inputs.config_file, inputs.app, Source::UserConfig),
        default,
    ];
    let explicit = &sources[..sources.len() - 1];
    let pick = |v: Verdict| explicit.iter().find(|r| r.verdict == v).map(|r| r.source);
    let (mode, decided_by) = if let Some(s) = pick(Verdict::Off) {
        (Mode::Off, s)
    } else if let Some(s) = pick(Verdict::Local) {
        (Mode::Local, s)
    } else if let Some(s) = pick(Verdict::On) {
        (Mode::On, s)
    } else {
        let last = sources.last().expect("the default is always there");
        (
            if last.verdict == Verdict::On {
                Mode::On
            } else {
                Mode::Off
            },
            Source::Default,
        )
    };
    Decision {
        mode,
        decided_by,
        sources,
    }
}

/// Writes `telemetry = value` for one app (or globally) into the user's config file, keeping the
/// rest of the file's settings.
pub fn write_user_setting(
    config_file: &Path,
    app: Option<&str>,
    value: Mode,
) -> std::io::Result<()> {
    let mut table = std::fs::read_to_string(config_file)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .unwrap_or_default();
    let value = toml::Value::String(value.to_string());
    match app {
        None => {
            table.insert("telemetry".into(), value);
        }
        Some(app) => {
            let apps = table
                .entry("apps")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(apps) = apps {
                let entry = apps
                    .entry(app)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(entry) = entry {
                    entry.insert("telemetry".into(), value);
                }
            }
        }
    }
    if let Some(dir) = config_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = format!(
        "# OpenTally telemetry settings, written by `opentally opt-out` / `opt-in`.\n{}",
        toml::to_string(&table).map_err(std::io::Error::other)?
    );
    let tmp = config_file.with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, config_file)
}
