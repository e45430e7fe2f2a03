//! What the author of a library or CLI sets when embedding OpenTally.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::consent::Default as ConsentDefault;
use crate::transport::Transport;

/// The first-run notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// OpenTally's text, naming the app, what is collected and how to opt out.
    Default,
    /// The author's own text.
    Text(String),
    /// No notice (the author shows one of their own).
    Off,
}

/// How an app embeds OpenTally. Build with [`Config::new`] and the setters.
#[derive(Clone)]
#[allow(clippy::struct_field_names)]
pub struct Config {
    pub(crate) app: String,
    pub(crate) version: Option<String>,
    pub(crate) write_key: String,
    pub(crate) endpoint: String,
    pub(crate) default: ConsentDefault,
    pub(crate) off_in_ci: bool,
    pub(crate) disable_vars: Vec<String>,
    pub(crate) enable_vars: Vec<String>,
    pub(crate) code: Option<bool>,
    pub(crate) notice: Notice,
    pub(crate) queue_capacity: usize,
    pub(crate) batch_size: usize,
    pub(crate) batch_interval: Duration,
    pub(crate) flush_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) spool_max_bytes: u64,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) policy_file: Option<PathBuf>,
    pub(crate) env: Option<HashMap<String, String>>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) transport: Option<Arc<dyn Transport>>,
    pub(crate) runtime: opentally_protocol::event::Runtime,
    pub(crate) notebook: Option<String>,
    pub(crate) library: (String, String),
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("app", &self.app)
            .field("version", &self.version)
            .field("write_key", &"****")
            .field("endpoint", &self.endpoint)
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// An app named `app` sending to `endpoint` (the collector's base URL) with `write_key`.
    /// Telemetry is on until refused (opt-out); see [`Config::opt_in_default`].
    pub fn new(
        app: impl Into<String>,
        write_key: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> Config {
        Config {
            app: app.into(),
            version: None,
            write_key: write_key.into(),
            endpoint: endpoint.into(),
            default: ConsentDefault::OptOut,
            off_in_ci: false,
            disable_vars: Vec::new(),
            enable_vars: Vec::new(),
            code: None,
            notice: Notice::Default,
            queue_capacity: 1000,
            batch_size: 100,
            batch_interval: Duration::from_secs(2),
            flush_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_attempts: 4,
            spool_max_bytes: 1024 * 1024,
            state_dir: None,
            config_file: None,
            policy_file: None,
            env: None,
            cwd: None,
            transport: None,
            runtime: opentally_protocol::event::Runtime {
                name: "rust".into(),
                ..Default::default()
            },
            notebook: None,
            library: ("opentally-rust".into(), env!("CARGO_PKG_VERSION").into()),
        }
    }

    /// The app's version, sent in `context.app.version`.
    #[must_use]
    pub fn version(mut self, v: impl Into<String>) -> Config {
        self.version = Some(v.into());
        self
    }

    /// Off until the user accepts (`OPENTALLY_TELEMETRY=on`, `opentally opt-in`, an enable variable).
    #[must_use]
    pub fn opt_in_default(mut self) -> Config {
        self.default = ConsentDefault::OptIn;
        self
    }

    /// With the opt-out default, stay off when running in CI.
    #[must_use]
    pub fn off_in_ci(mut self) -> Config {
        self.off_in_ci = true;
        self
    }

    /// A variable whose mere presence turns telemetry off (NannyML's `NML_DISABLE_USAGE_LOGGING`).
    #[must_use]
    pub fn disable_env(mut self, name: impl Into<String>) -> Config {
        self.disable_vars.push(name.into());
        self
    }

    /// A variable whose false value (`0`, `false`, `no`, `off`) turns telemetry off and whose true
    /// value consents (Flower's `FLWR_TELEMETRY_ENABLED`).
    #[must_use]
    pub fn enable_env(mut self, name: impl Into<String>) -> Config {
        self.enable_vars.push(name.into());
        self
    }

    /// The code's own say: `false` refuses; `true` consents (a user's refusal still wins).
    #[must_use]
    pub fn enabled(mut self, on: bool) -> Config {
        self.code = Some(on);
        self
    }

    /// The first-run notice: OpenTally's, the author's text, or none.
    #[must_use]
    pub fn notice(mut self, notice: Notice) -> Config {
        self.notice = notice;
        self
    }

    /// The longest the process waits at exit for events to leave (default 1 s; 0 allowed).
    #[must_use]
    pub fn flush_timeout(mut self, d: Duration) -> Config {
        self.flush_timeout = d;
        self
    }

    /// Events held in memory at most; beyond, new events are dropped and counted (default 1,000).
    #[must_use]
    pub fn queue_capacity(mut self, n: usize) -> Config {
        self.queue_capacity = n.max(1);
        self
    }

    /// Where the install's state lives (default: the platform's state folder).
    #[must_use]
    pub fn state_dir(mut self, p: impl Into<PathBuf>) -> Config {
        self.state_dir = Some(p.into());
        self
    }

    /// The user's opt-out file (default: the platform's config folder).
    #[must_use]
    pub fn config_file(mut self, p: impl Into<PathBuf>) -> Config {
        self.config_file = Some(p.into());
        self
    }

    /// The administrator's policy file (default `/etc/opentally/policy.toml` or the platform's
    /// equivalent).
    #[must_use]
    pub fn policy_file(mut self, p: impl Into<PathBuf>) -> Config {
        self.policy_file = Some(p.into());
        self
    }

    /// Deliver through this transport instead of HTTP (tests, or a host's own channel).
    #[must_use]
    pub fn transport(mut self, t: Arc<dyn Transport>) -> Config {
        self.transport = Some(t);
        self
    }

    /// The language runtime in `context.runtime` (the Python package sets `python`, its version,
    /// implementation and virtualenv/conda).
    #[must_use]
    pub fn runtime(mut self, runtime: opentally_protocol::event::Runtime) -> Config {
        self.runtime = runtime;
        self
    }

    /// The notebook front end when the host knows better than the environment variables (the
    /// Python package checks for a running IPython kernel).
    #[must_use]
    pub fn notebook(mut self, notebook: Option<String>) -> Config {
        self.notebook = notebook;
        self
    }

    /// The SDK in `context.library` (the Python package sets its own name and version).
    #[must_use]
    pub fn library(mut self, name: impl Into<String>, version: impl Into<String>) -> Config {
        self.library = (name.into(), version.into());
        self
    }

    /// Reads these variables instead of the process environment, and `.env` from `cwd` instead of
    /// the working directory. For tests of consent in one process.
    #[doc(hidden)]
    #[must_use]
    pub fn environment(mut self, env: HashMap<String, String>, cwd: Option<PathBuf>) -> Config {
        self.env = Some(env);
        self.cwd = cwd;
        self
    }

    /// Batch size and interval (defaults 100 events, 2 s).
    #[must_use]
    pub fn batching(mut self, size: usize, interval: Duration) -> Config {
        self.batch_size = size.max(1);
        self.batch_interval = interval;
        self
    }

    /// Timeouts of one HTTP attempt (defaults: connect 2 s, whole request 5 s).
    #[must_use]
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Config {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }
}
