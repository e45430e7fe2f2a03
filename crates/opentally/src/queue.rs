//! The state the client shares with its worker: the settings and services both use (`Core`),
//! and one process's queue, wake-ups and session (`Shared`; a forked child gets a fresh one).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use opentally_protocol::event::Context;

use crate::events::{Counters, Event};
use crate::identity::{self, InstallId};
use crate::transport::Transport;

#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) events: Vec<Event>,
    /// Flush requests made and answered; the worker answers every request up to `requested`.
    pub(crate) requested: u64,
    pub(crate) answered: u64,
    pub(crate) deadline: Option<Instant>,
}

/// The state of one process (a forked child gets a fresh one).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) queue: Mutex<Queue>,
    pub(crate) wake: Condvar,
    pub(crate) answered: Condvar,
    /// The JSON array of the batch being sent, for the exit flush to spool if time runs out.
    pub(crate) in_flight: Mutex<Option<Arc<Vec<u8>>>>,
    /// This process's session id.
    pub(crate) session: String,
    /// `context` as JSON with the session and install facts, built by the worker.
    pub(crate) context_json: OnceLock<String>,
    pub(crate) started: AtomicBool,
}

/// Settings and services the worker shares with the client.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) batch_size: usize,
    pub(crate) batch_interval: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) queue_capacity: usize,
    pub(crate) spool_dir: PathBuf,
    pub(crate) spool_max_bytes: u64,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) counters: Counters,
    pub(crate) inspect: bool,
    /// Settled when the first event is recorded, so that a client that is never used (or is
    /// turned off before its first event) writes nothing.
    pub(crate) install: OnceLock<InstallId>,
    pub(crate) app: String,
    pub(crate) app_state: PathBuf,
    pub(crate) container: bool,
    pub(crate) context: Context,
    /// The collector the HTTP transport sends to, recorded in the app's state folder after the
    /// first delivery (for `opentally forget` and `export`); `None` for other transports.
    pub(crate) collector: Option<crate::rights::SavedCollector>,
    pub(crate) collector_saved: AtomicBool,
    /// The collector's remote control stops this install (or samples it out): nothing is
    /// recorded or sent until the control lifts or is due to be asked again.
    pub(crate) holding_back: AtomicBool,
}

impl Core {
    pub(crate) fn install(&self) -> &InstallId {
        self.install
            .get_or_init(|| identity::install_id(&self.app, &self.app_state, self.container, true))
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data is still consistent
    // (a queue of events), and the host must never be failed by telemetry.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn new_shared() -> Shared {
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
