//! The worker thread: takes the queue's events a batch at a time, writes them as Segment
//! messages, delivers them with retries and backoff, spools what cannot be delivered, and resends
//! the spool once the collector answers.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use opentally_protocol::{Control, Timestamp};

use crate::control::RemoteControl;
use crate::events::Event;
use crate::queue::{Core, Shared, lock};
use crate::transport::{Outcome, Reply};
use crate::{spool, wire};

pub(crate) struct Worker {
    pub(crate) core: Arc<Core>,
    pub(crate) shared: Arc<Shared>,
    /// The remote control remembered in the app's state folder, as last read or written.
    remembered: RefCell<Option<RemoteControl>>,
}

impl Worker {
    pub(crate) fn new(core: Arc<Core>, shared: Arc<Shared>) -> Worker {
        Worker {
            core,
            shared,
            remembered: RefCell::new(None),
        }
    }

    pub(crate) fn run(self) {
        self.recall_control();
        let mut spool_checked = false;
        loop {
            let (events, ticket, deadline) = self.next_batch();
            self.recheck_control();
            if !events.is_empty() && self.core.holding_back.load(Ordering::Relaxed) {
                // Queued before the control was known: never sent.
                self.core
                    .counters
                    .withheld
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
            } else if !events.is_empty() {
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
    pub(crate) fn next_batch(&self) -> (Vec<Event>, u64, Option<Instant>) {
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
    pub(crate) fn deliver(&self, array: &[u8], n: u64, deadline: Option<Instant>) -> bool {
        for attempt in 0..self.core.max_attempts {
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(self.core.request_timeout),
                    _ => return false,
                },
                None => self.core.request_timeout,
            };
            match self.core.transport.send(&wire::batch_body(array), timeout) {
                Outcome::Delivered { reply } => {
                    self.core.counters.sent.fetch_add(n, Ordering::Relaxed);
                    self.save_collector();
                    if let Reply::Answered(control) = reply {
                        self.obey(control);
                    }
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

    /// Records, once a process, the collector the app delivered to: what the user's `forget`
    /// and `export` ask. A failure is not the host's concern; the next process tries again.
    fn save_collector(&self) {
        if let Some(c) = &self.core.collector
            && !self.core.collector_saved.swap(true, Ordering::Relaxed)
        {
            let _ = c.save(&self.core.app_state);
        }
    }

    /// The control a former process remembered: obeyed before anything is sent, if it binds
    /// this app version still.
    fn recall_control(&self) {
        let remembered = RemoteControl::load(&self.core.app_state);
        let version = self.core.context.app.version.as_deref();
        if let Some(r) = &remembered
            && r.binds(version)
            && !r.control().admits(&self.core.install().id)
        {
            self.hold_back();
        }
        *self.remembered.borrow_mut() = remembered;
    }

    /// Once a stop is due to be asked again, lets events through: the next batch asks.
    fn recheck_control(&self) {
        if self.core.holding_back.load(Ordering::Relaxed)
            && self
                .remembered
                .borrow()
                .as_ref()
                .is_none_or(|r| !r.binds(self.core.context.app.version.as_deref()))
        {
            self.core.holding_back.store(false, Ordering::Relaxed);
        }
    }

    /// Follows the control a delivery's answer carried (none: collect as usual) and remembers
    /// it for the next process.
    fn obey(&self, control: Option<Control>) {
        let mut remembered = self.remembered.borrow_mut();
        let Some(control) = control else {
            if remembered.take().is_some() {
                let _ = RemoteControl::remove(&self.core.app_state);
            }
            self.core.holding_back.store(false, Ordering::Relaxed);
            return;
        };
        let fresh = RemoteControl::new(self.core.context.app.version.as_deref(), control);
        if remembered.as_ref().is_none_or(|r| r.stale_against(&fresh)) {
            // A control that cannot be written still holds for this process.
            let _ = fresh.save(&self.core.app_state);
            *remembered = Some(fresh);
        }
        drop(remembered);
        if control.admits(&self.core.install().id) {
            self.core.holding_back.store(false, Ordering::Relaxed);
        } else {
            self.hold_back();
        }
    }

    /// Stops this install: nothing more is recorded, and what waits in the queue and the spool
    /// is dropped (counted as withheld).
    fn hold_back(&self) {
        self.core.holding_back.store(true, Ordering::Relaxed);
        let queued = std::mem::take(&mut lock(&self.shared.queue).events);
        let spooled: u64 = spool::files(&self.core.spool_dir)
            .iter()
            .filter_map(|(path, _)| std::fs::read(path).ok().and_then(|b| wire::gunzip(&b)))
            .map(|array| wire::count_messages(&array))
            .sum();
        spool::clear(&self.core.spool_dir);
        self.core
            .counters
            .withheld
            .fetch_add(queued.len() as u64 + spooled, Ordering::Relaxed);
    }

    /// Sends spooled batches, oldest first; stops at the first that fails. Returns whether the
    /// spool is empty now.
    pub(crate) fn resend_spool(&self, deadline: Option<Instant>) -> bool {
        for (path, _) in spool::files(&self.core.spool_dir) {
            if self.core.holding_back.load(Ordering::Relaxed) {
                // The collector's control, learnt from the batch before, dropped the rest.
                return true;
            }
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
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(attempt.min(6));
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    let jitter = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX);
    base.mul_f64(0.5 + jitter)
}

/// The JSON array of Segment `track` messages for these events.
pub(crate) fn messages_json(core: &Core, shared: &Shared, events: &[Event]) -> Vec<u8> {
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

pub(crate) fn context_json(core: &Core, session: &str) -> String {
    let mut c = core.context.clone();
    session.clone_into(&mut c.session);
    c.ephemeral = core.install().ephemeral;
    serde_json::to_string(&c).expect("a context serialises")
}

/// Writes a batch to the spool and counts its events as spooled.
pub(crate) fn spool_write(core: &Core, array: &[u8], events: usize) {
    if spool::write(&core.spool_dir, array, core.spool_max_bytes).is_ok() {
        let n = if events == 0 {
            wire::count_messages(array)
        } else {
            events as u64
        };
        core.counters.spooled.fetch_add(n, Ordering::Relaxed);
    }
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
