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
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use opentally_protocol::event::{Context, NameVersion};

use crate::config::{Config, Notice};
use crate::consent::{self, Decision, Mode};
use crate::events::{Counters, Event, Prop, TimedEvent};
use crate::paths::Paths;
use crate::queue::{Core, Shared, lock, new_shared};
use crate::transport::{HttpTransport, LocalFile, Transport};
use crate::worker::{Worker, messages_json, spool_write};
use crate::{environment, fork, identity, spool};

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
                &crate::network::Network::from_env(&endpoint, &var),
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
            collector: (config.transport.is_none() && mode != Mode::Local).then(|| {
                crate::rights::SavedCollector {
                    endpoint: endpoint.clone(),
                    write_key: write_key.clone(),
                }
            }),
            collector_saved: AtomicBool::new(false),
            holding_back: AtomicBool::new(false),
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
        self.enqueue_all(
            events
                .into_iter()
                .map(|(name, props, at)| Event { name, props, at }),
        );
    }

    /// Whether this thread is inside a suppressed scope.
    pub fn suppressed_here() -> bool {
        SUPPRESSED.with(std::cell::Cell::get) > 0
    }

    /// Whether an event tracked now on this thread would be recorded.
    pub fn recording(&self) -> bool {
        SUPPRESSED.with(std::cell::Cell::get) == 0
            && self.mode.load(Ordering::Relaxed) != MODE_OFF
            && !self.core.holding_back.load(Ordering::Relaxed)
    }

    /// Records a prepared event (the span and the bindings build their own): the path every
    /// single `track` takes, a push under the queue's lock.
    pub(crate) fn enqueue(&self, event: Event) {
        if !self.recording() {
            return;
        }
        let shared = self.current();
        let len = {
            let mut q = lock(&shared.queue);
            if q.events.len() >= self.core.queue_capacity {
                drop(q);
                self.count(&shared, 0, 0, 1);
                return;
            }
            q.events.push(event);
            q.events.len()
        };
        self.count(&shared, len, 1, 0);
    }

    /// Records prepared events under one lock (a binding's collected calls); beyond the
    /// queue's capacity the rest are dropped.
    fn enqueue_all(&self, events: impl ExactSizeIterator<Item = Event>) {
        if !self.recording() {
            return;
        }
        let n = events.len();
        let shared = self.current();
        let (len, kept) = {
            let mut q = lock(&shared.queue);
            let kept = n.min(self.core.queue_capacity.saturating_sub(q.events.len()));
            q.events.extend(events.take(kept));
            (q.events.len(), kept)
        };
        self.count(&shared, len, kept, n - kept);
    }

    /// The accounting of every enqueue, in one place: `queued` events went in (the queue now
    /// holds `len`), `dropped` did not fit. Starts the worker at the first event and wakes it
    /// when a batch is full.
    // Always inlined: callgrind counted 15 more instructions a `track` call (801 → 816) when the
    // compiler kept it a call.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn count(&self, shared: &Arc<Shared>, len: usize, queued: usize, dropped: usize) {
        let counters = &self.core.counters;
        if dropped > 0 {
            counters
                .dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if queued == 0 {
            return;
        }
        counters.queued.fetch_add(queued as u64, Ordering::Relaxed);
        if !shared.started.load(Ordering::Acquire) {
            self.start_worker(shared);
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
            .spawn(move || Worker::new(core, shared).run());
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

    /// Erases what this app sent from this machine (see [`crate::user::forget`]) after turning
    /// telemetry off for the rest of this process: what is queued is dropped, and a batch on the
    /// wire is given up to two seconds to land first, so that nothing sent under the old install
    /// id arrives after its erasure. The next process uses the new id.
    pub fn forget(&self) -> Result<String, crate::rights::RightsError> {
        self.set_enabled(false);
        let until = Instant::now() + Duration::from_secs(2);
        while lock(&self.current().in_flight).is_some() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        crate::user::forget(&self.config.app)
    }

    /// Every event the app's collector stores under this machine's install id, as JSON.
    pub fn export(&self) -> Result<String, crate::rights::RightsError> {
        crate::user::export(&self.config.app)
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
            collector: crate::rights::SavedCollector::load(&self.app_state).map(|c| c.endpoint),
            control: crate::control::RemoteControl::load(&self.app_state),
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
