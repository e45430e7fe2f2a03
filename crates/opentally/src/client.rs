//! The client: consent decided once, a bounded queue the caller only pushes to, and one worker
//! thread that batches, compresses, sends, retries and spools.
//!
//! What the caller's thread does in `track`: a thread-local check (suppressed scope), one atomic
//! load (the mode), one more (fork epoch), a short lock to push the event (the worker holds the
//! same lock only to swap the whole queue out), and a wake-up only when a batch is full. It never
//! waits on the network, the disk or the worker.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use opentally_protocol::Timestamp;
use opentally_protocol::event::{Context, NameVersion};

use crate::config::{Config, Notice};
use crate::consent::{self, Decision, Mode};
use crate::identity::{self, InstallId};
use crate::paths::Paths;
use crate::transport::{HttpTransport, LocalFile, Outcome, Transport};
use crate::{environment, fork, spool, wire};

/// A property value. Numbers that could identify (row counts, sizes) should be bucketed into
/// strings before they get here.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    Str(String),
    /// A string known for the life of the program (reserved values such as `ok`): no copy.
    Static(&'static str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for Prop {
    fn from(v: &str) -> Prop {
        Prop::Str(v.to_owned())
    }
}
impl From<String> for Prop {
    fn from(v: String) -> Prop {
        Prop::Str(v)
    }
}
impl From<i64> for Prop {
    fn from(v: i64) -> Prop {
        Prop::Int(v)
    }
}
impl From<i32> for Prop {
    fn from(v: i32) -> Prop {
        Prop::Int(i64::from(v))
    }
}
impl From<u32> for Prop {
    fn from(v: u32) -> Prop {
        Prop::Int(i64::from(v))
    }
}
impl From<f64> for Prop {
    fn from(v: f64) -> Prop {
        Prop::Float(v)
    }
}
impl From<bool> for Prop {
    fn from(v: bool) -> Prop {
        Prop::Bool(v)
    }
}

impl serde::Serialize for Prop {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Prop::Str(v) => s.serialize_str(v),
            Prop::Static(v) => s.serialize_str(v),
            Prop::Int(v) => s.serialize_i64(*v),
            // JSON has no NaN or infinity; such a value is sent as null (absent).
            Prop::Float(v) if !v.is_finite() => s.serialize_none(),
            Prop::Float(v) => s.serialize_f64(*v),
            Prop::Bool(v) => s.serialize_bool(*v),
        }
    }
}

/// An event a binding collected itself: name, properties, and when it happened.
pub type TimedEvent = (
    Cow<'static, str>,
    Vec<(Cow<'static, str>, Prop)>,
    SystemTime,
);

/// One tracked event, as small as it can be on the caller's thread.
#[derive(Debug)]
pub(crate) struct Event {
    pub name: Cow<'static, str>,
    pub props: Vec<(Cow<'static, str>, Prop)>,
    pub at: SystemTime,
}

/// What the client has done, for `status()` and inspect mode.
#[derive(Debug, Default)]
pub struct Counters {
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub retried: AtomicU64,
    pub spooled: AtomicU64,
    pub rejected: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    pub queued: u64,
    pub sent: u64,
    pub dropped: u64,
    pub retried: u64,
    pub spooled: u64,
    pub rejected: u64,
}

impl Counters {
    fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            queued: l(&self.queued),
            sent: l(&self.sent),
            dropped: l(&self.dropped),
            retried: l(&self.retried),
            spooled: l(&self.spooled),
            rejected: l(&self.rejected),
        }
    }
}

const MODE_OFF: u8 = 0;
const MODE_LOCAL: u8 = 1;
const MODE_ON: u8 = 2;

fn mode_code(m: Mode) -> u8 {
    match m {
        Mode::Off => MODE_OFF,
        Mode::Local => MODE_LOCAL,
        Mode::On => MODE_ON,
    }
}

#[derive(Debug, Default)]
struct Queue {
    events: Vec<Event>,
    /// Flush requests made and answered; the worker answers every request up to `requested`.
    requested: u64,
    answered: u64,
    deadline: Option<Instant>,
}

/// The state of one process (a forked child gets a fresh one).
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    answered: Condvar,
    /// The JSON array of the batch being sent, for the exit flush to spool if time runs out.
    in_flight: Mutex<Option<Arc<Vec<u8>>>>,
    /// This process's session id.
    session: String,
    /// `context` as JSON with the session and install facts, built by the worker.
    context_json: OnceLock<String>,
    started: AtomicBool,
}

/// Settings and services the worker shares with the client.
#[derive(Debug)]
struct Core {
    batch_size: usize,
    batch_interval: Duration,
    request_timeout: Duration,
    max_attempts: u32,
    queue_capacity: usize,
    spool_dir: PathBuf,
    spool_max_bytes: u64,
    transport: Arc<dyn Transport>,
    counters: Counters,
    inspect: bool,
    /// Settled when the first event is recorded, so that a client that is never used (or is
    /// turned off before its first event) writes nothing.
    install: OnceLock<InstallId>,
    app: String,
    app_state: PathBuf,
    container: bool,
    context: Context,
}

impl Core {
    fn install(&self) -> &InstallId {
        self.install
            .get_or_init(|| identity::install_id(&self.app, &self.app_state, self.container, true))
    }
}

/// An OpenTally client. Most hosts use the global one through [`crate::init`]; tests and hosts
/// with several apps can hold their own.
#[derive(Debug)]
pub struct Client {
    config: Config,
    env: HashMap<String, String>,
    paths: Paths,
    app_state: PathBuf,
    decision: Mutex<Decision>,
    mode: AtomicU8,
    epoch: AtomicU64,
    core: Arc<Core>,
    shared: ArcSwap<Shared>,
}

thread_local! {
    static SUPPRESSED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// While alive, nothing this thread tracks is recorded (`with opentally.suppressed():`).
#[derive(Debug)]
pub struct Suppressed(());

impl Suppressed {
    pub fn new() -> Suppressed {
        SUPPRESSED.with(|s| s.set(s.get() + 1));
        Suppressed(())
    }
}

impl Default for Suppressed {
    fn default() -> Suppressed {
        Suppressed::new()
    }
}

/// Starts a suppressed scope on this thread without a guard value (for bindings whose scopes
/// are `__enter__`/`__exit__` calls); pair with [`suppress_end`].
#[doc(hidden)]
pub fn suppress_begin() {
    SUPPRESSED.with(|s| s.set(s.get() + 1));
}

/// Ends a scope started by [`suppress_begin`].
#[doc(hidden)]
pub fn suppress_end() {
    SUPPRESSED.with(|s| s.set(s.get().saturating_sub(1)));
}

impl Drop for Suppressed {
    fn drop(&mut self) {
        SUPPRESSED.with(|s| s.set(s.get().saturating_sub(1)));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data is still consistent
    // (a queue of events), and the host must never be failed by telemetry.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn context_json(core: &Core, session: &str) -> String {
    let mut c = core.context.clone();
    session.clone_into(&mut c.session);
    c.ephemeral = core.install().ephemeral;
    serde_json::to_string(&c).expect("a context serialises")
}

impl Client {
    /// Reads consent (every source, once) and prepares the client. Starts no thread, opens no
    /// socket and writes no file: the worker starts with the first event, and only if telemetry
    /// is on or local.
    pub fn new(config: Config) -> Client {
        fork::register();
        let env: HashMap<String, String> = config
            .env
            .clone()
            .unwrap_or_else(|| std::env::vars().collect());
        let var = |k: &str| env.get(k).cloned();
        let mut paths = Paths::from_env(&var);
        if let Some(p) = &config.state_dir {
            paths.state_dir.clone_from(p);
        }
        if let Some(p) = &config.config_file {
            paths.config_file.clone_from(p);
        }
        if let Some(p) = &config.policy_file {
            paths.policy_file.clone_from(p);
        }
        let app_state = paths.app_state(&config.app);
        let decision = decide(&config, &env, &paths, config.code);
        let mode = decision.mode;
        let container = environment::in_container(&env);
        let endpoint = var("OPENTALLY_ENDPOINT").unwrap_or_else(|| config.endpoint.clone());
        let write_key = var("OPENTALLY_WRITE_KEY").unwrap_or_else(|| config.write_key.clone());
        let transport: Arc<dyn Transport> = match (&config.transport, mode) {
            (_, Mode::Local) => Arc::new(LocalFile {
                path: app_state.join("events.jsonl"),
            }),
            (Some(t), _) => t.clone(),
            (None, _) => Arc::new(HttpTransport::new(
                &endpoint,
                &write_key,
                config.connect_timeout,
            )),
        };
        let context = Context {
            library: NameVersion {
                name: config.library.0.clone(),
                version: Some(config.library.1.clone()),
            },
            app: NameVersion {
                name: config.app.clone(),
                version: config.version.clone(),
            },
            os: environment::os(),
            runtime: config.runtime.clone(),
            environment: {
                let mut e = environment::environment(&env);
                if config.notebook.is_some() {
                    e.notebook.clone_from(&config.notebook);
                }
                e
            },
            hardware: environment::hardware(),
            session: String::new(),
            ephemeral: false,
        };
        let core = Arc::new(Core {
            batch_size: config.batch_size,
            batch_interval: config.batch_interval,
            request_timeout: config.request_timeout,
            max_attempts: config.max_attempts.max(1),
            queue_capacity: config.queue_capacity,
            spool_dir: app_state.join("spool"),
            spool_max_bytes: config.spool_max_bytes,
            transport,
            counters: Counters::default(),
            inspect: env
                .get("OPENTALLY_LOG")
                .is_some_and(|v| !v.is_empty() && v != "0"),
            install: OnceLock::new(),
            app: config.app.clone(),
            app_state: app_state.clone(),
            container,
            context,
        });
        let shared = new_shared();
        let client = Client {
            env,
            paths,
            app_state,
            decision: Mutex::new(decision),
            mode: AtomicU8::new(mode_code(mode)),
            epoch: AtomicU64::new(fork::epoch()),
            core,
            shared: ArcSwap::from_pointee(shared),
            config,
        };
        if mode != Mode::Off {
            client.first_run_notice();
        }
        client
    }

    /// Records an event. Never blocks, never fails; when off, suppressed or full, does nothing
    /// (a full queue counts the drop). Names and keys are usually literals, so they are taken as
    /// `'static` and never copied; the values are moved in.
    pub fn track<I>(&self, event: impl Into<Cow<'static, str>>, props: I)
    where
        I: IntoIterator<Item = (&'static str, Prop)>,
    {
        if !self.recording() {
            return;
        }
        let props = props
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), v))
            .collect();
        self.enqueue(Event {
            name: event.into(),
            props,
            at: SystemTime::now(),
        });
    }

    /// Records an event whose name and keys are only known at run time (language bindings).
    pub fn track_owned(&self, event: String, props: Vec<(String, Prop)>) {
        if !self.recording() {
            return;
        }
        let props = props.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect();
        self.enqueue(Event {
            name: Cow::Owned(event),
            props,
            at: SystemTime::now(),
        });
    }

    /// The general form: any mix of borrowed and owned names and keys (bindings that register
    /// their event names once and reuse them).
    pub fn track_cow(&self, event: Cow<'static, str>, props: Vec<(Cow<'static, str>, Prop)>) {
        if !self.recording() {
            return;
        }
        self.enqueue(Event {
            name: event,
            props,
            at: SystemTime::now(),
        });
    }

    /// Records events that a binding collected itself, each with the time it happened: one lock
    /// for the whole group. Beyond the queue's capacity, the rest are dropped and counted.
    pub fn track_many(&self, events: Vec<TimedEvent>) {
        if !self.recording() || events.is_empty() {
            return;
        }
        let shared = self.current();
        let n = events.len() as u64;
        let (len, kept) = {
            let mut q = lock(&shared.queue);
            let room = self.core.queue_capacity.saturating_sub(q.events.len());
            let kept = events.len().min(room);
            q.events.extend(
                events
                    .into_iter()
                    .take(kept)
                    .map(|(name, props, at)| Event { name, props, at }),
            );
            (q.events.len(), kept as u64)
        };
        self.core.counters.queued.fetch_add(kept, Ordering::Relaxed);
        if kept < n {
            self.core
                .counters
                .dropped
                .fetch_add(n - kept, Ordering::Relaxed);
        }
        if !shared.started.load(Ordering::Acquire) {
            self.start_worker(&shared);
        }
        if len >= self.core.batch_size {
            shared.wake.notify_one();
        }
    }

    /// Whether this thread is inside a suppressed scope.
    pub fn suppressed_here() -> bool {
        SUPPRESSED.with(std::cell::Cell::get) > 0
    }

    /// Whether an event tracked now on this thread would be recorded.
    pub fn recording(&self) -> bool {
        SUPPRESSED.with(std::cell::Cell::get) == 0 && self.mode.load(Ordering::Relaxed) != MODE_OFF
    }

    /// Records a prepared event (the span and the bindings build their own).
    pub(crate) fn enqueue(&self, event: Event) {
        if SUPPRESSED.with(std::cell::Cell::get) > 0
            || self.mode.load(Ordering::Relaxed) == MODE_OFF
        {
            return;
        }
        let shared = self.current();
        let len = {
            let mut q = lock(&shared.queue);
            if q.events.len() >= self.core.queue_capacity {
                drop(q);
                self.core.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.events.push(event);
            q.events.len()
        };
        self.core.counters.queued.fetch_add(1, Ordering::Relaxed);
        if !shared.started.load(Ordering::Acquire) {
            self.start_worker(&shared);
        }
        if len >= self.core.batch_size {
            shared.wake.notify_one();
        }
    }

    /// This process's state, replaced first if the process is a forked child that has not
    /// noticed yet: everything that touches the queue goes through here, so a child never waits
    /// on, spools or clears its parent's copy.
    fn current(&self) -> arc_swap::Guard<Arc<Shared>> {
        if fork::epoch() != self.epoch.load(Ordering::Relaxed) {
            self.after_fork();
        }
        self.shared.load()
    }

    fn current_full(&self) -> Arc<Shared> {
        if fork::epoch() != self.epoch.load(Ordering::Relaxed) {
            self.after_fork();
        }
        self.shared.load_full()
    }

    /// In a forked child: a fresh queue and worker, and a new session. The parent's queued events
    /// stay the parent's.
    fn after_fork(&self) {
        self.epoch.store(fork::epoch(), Ordering::Relaxed);
        // The old state may hold a lock that the parent's worker took: leak it rather than touch it.
        let old = self.shared.swap(Arc::new(new_shared()));
        std::mem::forget(old);
    }

    fn start_worker(&self, shared: &Arc<Shared>) {
        if shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let core = self.core.clone();
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("opentally".into())
            .spawn(move || Worker { core, shared }.run());
        // Without a thread (the host is out of threads) events stay queued, then are dropped and
        // counted once the queue is full, and the exit flush spools what is queued.
        drop(spawned);
    }

    /// Waits at most `timeout` for queued events to be delivered; what is left is written to the
    /// spool (if `timeout` is not zero) for a later process. Returns whether everything left.
    pub fn flush(&self, timeout: Duration) -> bool {
        let shared = self.current_full();
        if !shared.started.load(Ordering::Acquire) {
            return true;
        }
        let deadline = Instant::now() + timeout;
        let mut q = lock(&shared.queue);
        q.requested += 1;
        let ticket = q.requested;
        q.deadline = Some(deadline);
        shared.wake.notify_all();
        while q.answered < ticket {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            q = shared
                .answered
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let done = q.answered >= ticket && q.events.is_empty();
        if done || timeout.is_zero() {
            return done;
        }
        // Out of time: keep what is queued and what is in flight for the next process.
        let leftover = std::mem::take(&mut q.events);
        drop(q);
        if !leftover.is_empty() {
            let array = messages_json(&self.core, &shared, &leftover);
            spool_write(&self.core, &array, leftover.len());
        }
        if let Some(in_flight) = lock(&shared.in_flight).take() {
            spool_write(&self.core, &in_flight, 0);
        }
        false
    }

    /// Turns telemetry off (`false`) or consents (`true`) from code, for this process.
    pub fn set_enabled(&self, on: bool) {
        let decision = decide(&self.config, &self.env, &self.paths, Some(on));
        self.apply(decision);
    }

    /// Persists the user's choice for this app in the user config file, then applies it.
    pub fn set_user_choice(&self, on: bool) -> std::io::Result<()> {
        let mode = if on { Mode::On } else { Mode::Off };
        consent::write_user_setting(&self.paths.config_file, Some(&self.config.app), mode)?;
        self.reload_consent();
        Ok(())
    }

    /// Reads every consent source again.
    pub fn reload_consent(&self) {
        let code = lock(&self.decision)
            .sources
            .iter()
            .find(|s| s.source == consent::Source::Code)
            .and_then(|s| match s.verdict {
                consent::Verdict::Off => Some(false),
                consent::Verdict::On => Some(true),
                _ => None,
            });
        let decision = decide(&self.config, &self.env, &self.paths, code);
        self.apply(decision);
    }

    fn apply(&self, decision: Decision) {
        let mode = decision.mode;
        self.mode.store(mode_code(mode), Ordering::Relaxed);
        *lock(&self.decision) = decision;
        if mode == Mode::Off {
            // Off means nothing leaves: forget what was queued.
            lock(&self.current().queue).events.clear();
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        lock(&self.decision).mode
    }

    /// Everything a user may want to know: every consent source, the decision, the install id,
    /// the counters, the spool and the paths.
    pub fn status(&self) -> crate::Status {
        let (spool_files, spool_bytes) = spool::size(&self.core.spool_dir);
        // When telemetry is on, the id shown is the one events carry (settled now if need be).
        // When it is off, looking is not using: nothing is written, and an id that would only
        // be invented for this look (a container with none stored) is not shown at all.
        let install = if self.mode() == Mode::Off {
            self.core.install.get().cloned().or_else(|| {
                let id = identity::install_id(
                    &self.config.app,
                    &self.app_state,
                    self.core.container,
                    false,
                );
                (!id.ephemeral).then_some(id)
            })
        } else {
            Some(self.core.install().clone())
        };
        crate::Status {
            app: self.config.app.clone(),
            decision: lock(&self.decision).clone(),
            ephemeral: install.as_ref().is_some_and(|i| i.ephemeral),
            install_id: install.map(|i| i.id),
            counters: self.core.counters.snapshot(),
            spool_files,
            spool_bytes,
            paths: self.paths.clone(),
            app_state: self.app_state.clone(),
        }
    }

    fn first_run_notice(&self) {
        let text = match &self.config.notice {
            Notice::Off => return,
            Notice::Text(t) => t.clone(),
            Notice::Default => {
                crate::notice::default_text(&self.config.app, &self.config.disable_vars)
            }
        };
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return;
        }
        let marker = self.app_state.join("notice-shown");
        if marker.exists() {
            return;
        }
        if std::fs::create_dir_all(&self.app_state).is_ok() && std::fs::write(&marker, b"").is_ok()
        {
            let _ = writeln!(std::io::stderr(), "{text}");
        }
    }
}

fn decide(
    config: &Config,
    env: &HashMap<String, String>,
    paths: &Paths,
    code: Option<bool>,
) -> Decision {
    let cwd = config.cwd.clone().or_else(|| std::env::current_dir().ok());
    consent::decide(&consent::Inputs {
        app: &config.app,
        env,
        cwd: cwd.as_deref(),
        policy_file: &paths.policy_file,
        config_file: &paths.config_file,
        code,
        disable_vars: &config.disable_vars,
        enable_vars: &config.enable_vars,
        default: config.default,
        off_in_ci: config.off_in_ci,
        in_ci: environment::in_ci(env),
    })
}

fn new_shared() -> Shared {
    Shared {
        queue: Mutex::new(Queue::default()),
        wake: Condvar::new(),
        answered: Condvar::new(),
        in_flight: Mutex::new(None),
        session: identity::random_uuid(),
        context_json: OnceLock::new(),
        started: AtomicBool::new(false),
    }
}

/// The JSON array of Segment `track` messages for these events.
fn messages_json(core: &Core, shared: &Shared, events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 600);
    out.push(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let since =
            e.at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
        let ts = Timestamp::from_unix(
            i64::try_from(since.as_secs()).unwrap_or(0),
            since.subsec_nanos(),
        )
        .unwrap_or(Timestamp::UNIX_EPOCH);
        let start = out.len();
        // Built by hand around the pre-serialised context, which is the same for every event.
        out.extend_from_slice(b"{\"type\":\"track\",\"event\":");
        out.extend_from_slice(&serde_json::to_vec(&e.name).expect("a string serialises"));
        out.extend_from_slice(format!(",\"messageId\":\"{}\",\"anonymousId\":\"{}\",\"timestamp\":\"{ts}\",\"properties\":", uuid::Uuid::now_v7(), core.install().id).as_bytes());
        // Properties written straight from the event, without building a JSON map first: the
        // worker shares the host's cores. A repeated key is written twice; readers keep the
        // last, which is how the reserved properties (added last) win over metadata.
        out.push(b'{');
        for (i, (k, v)) in e.props.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, k.as_ref()).expect("writing to memory");
            out.push(b':');
            serde_json::to_writer(&mut out, v).expect("writing to memory");
        }
        out.push(b'}');
        out.extend_from_slice(b",\"context\":");
        out.extend_from_slice(
            shared
                .context_json
                .get_or_init(|| context_json(core, &shared.session))
                .as_bytes(),
        );
        out.push(b'}');
        if core.inspect {
            let _ = writeln!(
                std::io::stderr(),
                "opentally: {}",
                String::from_utf8_lossy(&out[start..])
            );
        }
    }
    out.push(b']');
    out
}

/// Writes a batch to the spool and counts its events as spooled.
fn spool_write(core: &Core, array: &[u8], events: usize) {
    if spool::write(&core.spool_dir, array, core.spool_max_bytes).is_ok() {
        let n = if events == 0 {
            wire::count_messages(array)
        } else {
            events as u64
        };
        core.counters.spooled.fetch_add(n, Ordering::Relaxed);
    }
}

struct Worker {
    core: Arc<Core>,
    shared: Arc<Shared>,
}

impl Worker {
    fn run(self) {
        let mut spool_checked = false;
        loop {
            let (events, ticket, deadline) = self.next_batch();
            if !events.is_empty() {
                let array = Arc::new(messages_json(&self.core, &self.shared, &events));
                *lock(&self.shared.in_flight) = Some(array.clone());
                let delivered = self.deliver(&array, events.len() as u64, deadline);
                // If the exit flush ran out of time it took the batch and spooled it; otherwise
                // it is still ours to keep.
                let still_ours = lock(&self.shared.in_flight).take().is_some();
                if !delivered && still_ours {
                    spool_write(&self.core, &array, events.len());
                    // Resend it from here too once the collector answers again, not only from
                    // a later process.
                    spool_checked = false;
                }
            }
            // Batches a former process could not send go out once this one has sent its own: when
            // idle, or at the exit flush if time is left.
            if events.is_empty() && !spool_checked && (deadline.is_some() || ticket == 0) {
                spool_checked = self.resend_spool(deadline);
            }
            if ticket > 0 && !spool_checked && lock(&self.shared.queue).events.is_empty() {
                spool_checked = self.resend_spool(deadline);
            }
            if ticket > 0 {
                let mut q = lock(&self.shared.queue);
                if q.events.is_empty() {
                    q.answered = q.answered.max(ticket);
                    q.deadline = None;
                    self.shared.answered.notify_all();
                }
            }
        }
    }

    /// Waits for a full batch, the batch interval, or a flush request; takes the events.
    fn next_batch(&self) -> (Vec<Event>, u64, Option<Instant>) {
        let mut q = lock(&self.shared.queue);
        let until = Instant::now() + self.core.batch_interval;
        loop {
            if q.requested > q.answered {
                let take = q.events.len().min(self.core.batch_size);
                let events: Vec<Event> = q.events.drain(..take).collect();
                return (events, q.requested, q.deadline);
            }
            let now = Instant::now();
            if q.events.len() >= self.core.batch_size || (now >= until && !q.events.is_empty()) {
                let take = q.events.len().min(self.core.batch_size);
                return (q.events.drain(..take).collect(), 0, None);
            }
            let wait = if now >= until {
                self.core.batch_interval
            } else {
                until - now
            };
            q = self
                .shared
                .wake
                .wait_timeout(q, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            if q.events.is_empty() && q.requested == q.answered && Instant::now() >= until {
                return (Vec::new(), 0, None);
            }
        }
    }

    /// Sends one batch of `n` messages with retries; false if it could not be delivered (the
    /// caller spools it).
    fn deliver(&self, array: &[u8], n: u64, deadline: Option<Instant>) -> bool {
        for attempt in 0..self.core.max_attempts {
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(self.core.request_timeout),
                    _ => return false,
                },
                None => self.core.request_timeout,
            };
            match self.core.transport.send(&wire::batch_body(array), timeout) {
                Outcome::Delivered => {
                    self.core.counters.sent.fetch_add(n, Ordering::Relaxed);
                    return true;
                }
                Outcome::Rejected { .. } => {
                    // Never retried: resending what the collector refused cannot succeed.
                    self.core.counters.rejected.fetch_add(n, Ordering::Relaxed);
                    return true;
                }
                Outcome::Retry { after } => {
                    self.core.counters.retried.fetch_add(1, Ordering::Relaxed);
                    if attempt + 1 == self.core.max_attempts {
                        break;
                    }
                    let wait = after
                        .unwrap_or_else(|| backoff(attempt))
                        .min(Duration::from_secs(30));
                    if deadline.is_some_and(|d| Instant::now() + wait >= d) {
                        return false;
                    }
                    std::thread::sleep(wait);
                }
            }
        }
        false
    }

    /// Sends spooled batches, oldest first; stops at the first that fails. Returns whether the
    /// spool is empty now.
    fn resend_spool(&self, deadline: Option<Instant>) -> bool {
        for (path, _) in spool::files(&self.core.spool_dir) {
            let Some(array) = std::fs::read(&path).ok().and_then(|b| wire::gunzip(&b)) else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            // A spooled batch is counted once, here; a fresh one's count is known.
            if !self.deliver(&array, wire::count_messages(&array), deadline) {
                return false;
            }
            let _ = std::fs::remove_file(&path);
        }
        true
    }
}

/// Exponential backoff with jitter: 0.5 s, 1 s, 2 s… each ±50 %.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(attempt.min(6));
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    let jitter = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX);
    base.mul_f64(0.5 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_jittered() {
        for attempt in 0..4 {
            let d = backoff(attempt);
            let base = 500u64 << attempt;
            assert!(
                d >= Duration::from_millis(base / 2) && d <= Duration::from_millis(base * 3 / 2),
                "{attempt}: {d:?}"
            );
        }
    }
}
