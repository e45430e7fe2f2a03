//! OpenTally's SDK: privacy-first usage telemetry that a library or CLI embeds.
//!
//! ```no_run
//! let _guard = opentally::init(
//!     opentally::Config::new("hello", "otw_…", "https://telemetry.example.org")
//!         .version(env!("CARGO_PKG_VERSION"))
//!         .disable_env("HELLO_NO_TELEMETRY"),
//! );
//! opentally::track("greet", [("style", "formal".into())]);
//! // When `_guard` drops, queued events get at most 1 s to leave; the rest are kept for later.
//! ```
//!
//! Promises, each under test: every way a user may refuse works and any refusal wins; when off,
//! nothing is recorded, no thread starts, no file is written and no socket opens; `track` never
//! blocks, fails or prints; the process never waits at exit longer than the flush bound,
//! whatever the network does; a forked child's events are delivered, and the parent's are not
//! sent twice.

mod client;
mod config;
pub mod consent;
pub mod control;
mod environment;
mod events;
mod fork;
pub mod identity;
pub mod network;
mod notice;
pub mod paths;
mod queue;
pub mod rights;
mod spool;
pub mod transport;
pub mod user;
mod wire;
mod worker;

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

pub use client::{Client, Suppressed, suppress_begin, suppress_end};
pub use config::{Config, Notice};
pub use consent::{Decision, Mode, Source, Verdict};
pub use events::{CounterSnapshot, Prop, TimedEvent};
pub use paths::Paths;

static GLOBAL: OnceLock<Client> = OnceLock::new();

/// Flushes the global client when dropped, within the configured bound (default 1 s).
#[derive(Debug)]
#[must_use = "dropping the guard flushes at once; keep it alive until the program ends"]
pub struct Guard {
    flush_timeout: Duration,
}

impl Drop for Guard {
    fn drop(&mut self) {
        flush(self.flush_timeout);
    }
}

/// Starts OpenTally for this process. The first call wins; later calls return a guard for it.
pub fn init(config: Config) -> Guard {
    let flush_timeout = config.flush_timeout;
    GLOBAL.get_or_init(|| Client::new(config));
    Guard { flush_timeout }
}

/// The global client, if [`init`] was called.
pub fn client() -> Option<&'static Client> {
    GLOBAL.get()
}

/// Records an event with properties. Never blocks or fails; does nothing before [`init`], when
/// telemetry is off, or inside [`suppressed`].
pub fn track<I>(event: impl Into<std::borrow::Cow<'static, str>>, props: I)
where
    I: IntoIterator<Item = (&'static str, Prop)>,
{
    if let Some(c) = GLOBAL.get() {
        c.track(event, props);
    }
}

/// Waits at most `timeout` for queued events to leave; the rest go to the spool.
pub fn flush(timeout: Duration) -> bool {
    GLOBAL.get().is_none_or(|c| c.flush(timeout))
}

/// Turns telemetry off for this process (code source). Queued events are forgotten.
pub fn disable() {
    if let Some(c) = GLOBAL.get() {
        c.set_enabled(false);
    }
}

/// Consents from code for this process; a user's or administrator's refusal still wins.
pub fn enable() {
    if let Some(c) = GLOBAL.get() {
        c.set_enabled(true);
    }
}

/// Saves the user's refusal for this app in their config file (what `opentally opt-out --app`
/// writes).
pub fn opt_out() -> std::io::Result<()> {
    GLOBAL.get().map_or(Ok(()), |c| c.set_user_choice(false))
}

/// Saves the user's consent for this app in their config file.
pub fn opt_in() -> std::io::Result<()> {
    GLOBAL.get().map_or(Ok(()), |c| c.set_user_choice(true))
}

/// Erases everything the app's collector stores under this machine's install id and replaces
/// the id (what `opentally forget --app APP` does). Telemetry is off for the rest of this
/// process either way; the id and the spool are kept unless the collector confirmed the erasure,
/// so that it can be asked again.
pub fn forget() -> Result<String, rights::RightsError> {
    GLOBAL
        .get()
        .ok_or(rights::RightsError::NotInitialised)
        .and_then(Client::forget)
}

/// Every event the app's collector stores under this machine's install id, as JSON (what
/// `opentally export --app APP` prints).
pub fn export() -> Result<String, rights::RightsError> {
    GLOBAL
        .get()
        .ok_or(rights::RightsError::NotInitialised)
        .and_then(Client::export)
}

/// What OpenTally is doing in this process and why.
pub fn status() -> Option<Status> {
    GLOBAL.get().map(Client::status)
}

/// Nothing tracked on this thread while the returned value lives is recorded.
pub fn suppressed() -> Suppressed {
    Suppressed::new()
}

/// Times a piece of work and records it with `duration_ms`, `outcome` and `error_type`.
///
/// ```no_run
/// let span = opentally::span("export_report").prop("format", "html");
/// match std::fs::write("/tmp/report.html", "…") {
///     Ok(()) => span.ok(),
///     Err(e) => span.error(&format!("io::ErrorKind::{:?}", e.kind())),
/// }
/// ```
/// A span dropped without a verdict records `ok`, or `error` with `error_type = "panic"` when
/// dropped during a panic.
#[derive(Debug)]
pub struct Span {
    event: std::borrow::Cow<'static, str>,
    props: Vec<(std::borrow::Cow<'static, str>, Prop)>,
    started: Instant,
    done: bool,
}

/// Starts a [`Span`].
pub fn span(event: impl Into<std::borrow::Cow<'static, str>>) -> Span {
    Span {
        event: event.into(),
        props: Vec::new(),
        started: Instant::now(),
        done: false,
    }
}

impl Span {
    /// Adds a property.
    #[must_use]
    pub fn prop(mut self, key: &'static str, value: impl Into<Prop>) -> Span {
        self.props.push((key.into(), value.into()));
        self
    }

    /// Records success.
    pub fn ok(mut self) {
        self.finish(None);
    }

    /// Records failure with the error's type name (`ValueError`, `io::ErrorKind::NotFound`),
    /// never its message.
    pub fn error(mut self, error_type: &str) {
        self.finish(Some(error_type));
    }

    fn finish(&mut self, error_type: Option<&str>) {
        if self.done {
            return;
        }
        self.done = true;
        let Some(c) = GLOBAL.get() else { return };
        let mut props = std::mem::take(&mut self.props);
        props.push((
            "duration_ms".into(),
            Prop::Float(self.started.elapsed().as_secs_f64() * 1000.0),
        ));
        props.push((
            "outcome".into(),
            Prop::Str(if error_type.is_some() { "error" } else { "ok" }.into()),
        ));
        if let Some(t) = error_type {
            props.push(("error_type".into(), Prop::Str(t.to_owned())));
        }
        c.enqueue(events::Event {
            name: std::mem::take(&mut self.event),
            props,
            at: SystemTime::now(),
        });
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.finish(Some("panic"));
        } else {
            self.finish(None);
        }
    }
}

/// Runs `f`, recording its duration and outcome; an `Err` is recorded with the error type's
/// short name.
pub fn timed<T, E>(event: &'static str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let s = span(event);
    let result = f();
    if result.is_ok() {
        s.ok();
    } else {
        let full = std::any::type_name::<E>();
        s.error(full.rsplit("::").next().unwrap_or(full));
    }
    result
}

/// What `status()` and `opentally status` show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub app: String,
    pub decision: Decision,
    /// `None` while telemetry is off and no id exists yet (none is made up just to be shown).
    pub install_id: Option<String>,
    pub ephemeral: bool,
    pub counters: CounterSnapshot,
    pub spool_files: usize,
    pub spool_bytes: u64,
    /// The collector the app has delivered to from this machine, which `forget` and `export`
    /// ask; `None` before its first delivery.
    pub collector: Option<String>,
    /// The last remote control the collector sent for this app, as remembered here.
    pub control: Option<control::RemoteControl>,
    pub paths: Paths,
    pub app_state: std::path::PathBuf,
}

impl serde::Serialize for Paths {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Paths", 3)?;
        st.serialize_field("state_dir", &self.state_dir)?;
        st.serialize_field("config_file", &self.config_file)?;
        st.serialize_field("policy_file", &self.policy_file)?;
        st.end()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        writeln!(
            f,
            "telemetry for {}: {} (decided by {})",
            self.app, d.mode, d.decided_by
        )?;
        writeln!(f)?;
        writeln!(f, "sources, strongest first (any refusal wins):")?;
        for s in &d.sources {
            let said = match s.verdict {
                Verdict::Off => "off",
                Verdict::Local => "local",
                Verdict::On => "on",
                Verdict::Silent => "-",
            };
            let mark = if s.source == d.decided_by { "*" } else { " " };
            writeln!(
                f,
                " {mark} {:<20} {said:<6} {}",
                s.source.to_string(),
                s.detail
            )?;
        }
        writeln!(f)?;
        let ephemeral = if self.ephemeral {
            " (ephemeral: lives as long as the process)"
        } else {
            ""
        };
        match &self.install_id {
            Some(id) => writeln!(f, "install id:  {id}{ephemeral}")?,
            None => writeln!(f, "install id:  none (telemetry is off and no id is kept)")?,
        }
        let c = &self.counters;
        writeln!(
            f,
            "counters:    queued {} sent {} dropped {} retried {} spooled {} rejected {} withheld {}",
            c.queued, c.sent, c.dropped, c.retried, c.spooled, c.rejected, c.withheld
        )?;
        writeln!(
            f,
            "spool:       {} file(s), {} bytes",
            self.spool_files, self.spool_bytes
        )?;
        match &self.collector {
            Some(c) => writeln!(f, "collector:   {c}")?,
            None => writeln!(
                f,
                "collector:   none yet (nothing delivered from this machine)"
            )?,
        }
        if let Some(c) = &self.control {
            let mut line = c.to_string();
            if c.collect
                && let (Some(rate), Some(id)) = (c.sample, &self.install_id)
            {
                line.push_str(if opentally_protocol::control::sampled_in(id, rate) {
                    "; this install is in the sample"
                } else {
                    "; this install is outside the sample and sends nothing"
                });
            }
            writeln!(f, "control:     {line}")?;
        }
        writeln!(f, "state:       {}", self.app_state.display())?;
        writeln!(f, "user config: {}", self.paths.config_file.display())?;
        write!(f, "policy:      {}", self.paths.policy_file.display())
    }
}
