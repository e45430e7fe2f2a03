//! The one writer: group commit of accepted events to the durable log.
//!
//! Handlers parse and validate on their own tasks, then hand a [`Submission`] to this thread.
//! It drains everything queued, filters duplicates, appends one record per request, syncs once
//! for the whole group, and only then marks the ids as seen and answers every handler. If the
//! append or the sync fails, nothing is marked seen and every handler in the group gets an
//! error, so the clients' retries are not mistaken for duplicates.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentally_protocol::Timestamp;
use tokio::sync::oneshot;

use crate::dedup::{DedupIndex, message_hash};
use crate::encoded::{EncodedEvents, write_record_payload};
use crate::metrics::Metrics;
use opentally_log::segment::{self as wal, LogWriter};
use opentally_log::{RecordView, RecordWriter, day_of};

/// Accepted events of one request, waiting to be made durable.
#[derive(Debug)]
pub struct Submission {
    pub project: Arc<str>,
    pub project_id: i64,
    pub received_at: Timestamp,
    pub events: EncodedEvents,
    /// An erasure instead of events: the keyed hash of the install whose events are to go.
    pub erase: Option<String>,
    pub reply: oneshot::Sender<Result<Committed, WriteError>>,
}

/// The outcome of a durable write: for each submitted event, whether it was new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub new: Vec<bool>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the disk is full")]
    DiskFull,
    #[error("the log could not be written: {0}")]
    Io(String),
}

/// Why a submission was not queued.
#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full: the writer is behind.
    Busy,
    /// The writer has stopped.
    Closed,
}

/// Settings of the writer thread.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub log_dir: std::path::PathBuf,
    pub dedup_dir: std::path::PathBuf,
    pub dedup_window_days: u32,
    pub max_segment_bytes: u64,
    pub fsync: bool,
    pub queue: usize,
    /// Checkpoint the dedup index this often…
    pub checkpoint_every: Duration,
    /// …or once this many ids came since the last one: a restart replays at most about this many
    /// events' worth of log into the index.
    pub checkpoint_ids: usize,
}

/// The handlers' side of the writer.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    /// `None` asks the writer to commit what it holds and stop.
    tx: SyncSender<Option<Submission>>,
    depth: Arc<AtomicUsize>,
    alive: Arc<AtomicBool>,
    durable: Arc<std::sync::Mutex<wal::LogPos>>,
    checkpointed: Arc<std::sync::Mutex<wal::LogPos>>,
    appended: Arc<AtomicU64>,
    new_segment: Arc<AtomicBool>,
}

impl WriterHandle {
    /// Asks the writer to close the log's current segment and checkpoint the dedup index, so
    /// that the segment is removed once the store has loaded it: after a project's deletion,
    /// its records leave the disk within a seal instead of when the segment fills.
    pub fn start_new_segment(&self) {
        self.new_segment.store(true, Ordering::Relaxed);
    }

    /// Events made durable since the writer started (new ones; duplicates are not written).
    /// Counted before [`WriterHandle::durable_pos`] moves past them.
    pub fn appended_events(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// Where the dedup index's last checkpoint reaches: a restart replays the log from here, so
    /// segments before it are not needed by the writer.
    pub fn checkpoint_pos(&self) -> wal::LogPos {
        *self
            .checkpointed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How far the log is durable: every record before this position has been synced.
    pub fn durable_pos(&self) -> wal::LogPos {
        *self
            .durable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a submission without waiting.
    pub fn submit(&self, s: Submission) -> Result<(), SubmitError> {
        match self.tx.try_send(Some(s)) {
            Ok(()) => {
                self.depth.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(SubmitError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Closed),
        }
    }

    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Asks the writer to commit everything queued before this call, checkpoint, and stop. Blocks
    /// while the queue is full. Later submissions get [`SubmitError::Closed`].
    pub fn stop(&self) {
        let _ = self.tx.send(None);
    }
}

/// What starting the writer found on disk.
#[derive(Debug, Clone)]
pub struct StartReport {
    pub recovery: wal::Recovery,
    pub replayed_records: usize,
    pub ids_in_memory: usize,
}

/// Opens the log and the dedup index (replaying the log after the last checkpoint) and starts
/// the writer thread. The thread ends when every handle is dropped, after a last checkpoint.
pub fn start(
    cfg: &WriterConfig,
    metrics: Arc<Metrics>,
) -> std::io::Result<(WriterHandle, JoinHandle<()>, StartReport)> {
    let (log, recovery) = LogWriter::open(&cfg.log_dir, cfg.max_segment_bytes, cfg.fsync)?;
    let today = day_of(Timestamp::now());
    let mut index = DedupIndex::open(&cfg.dedup_dir, cfg.dedup_window_days, today)?;
    let mut replayed_records = 0;
    let mut bad_records = 0;
    wal::read_from(
        &cfg.log_dir,
        index.checkpoint(),
        |_, payload| match serde_json::from_slice::<RecordView<'_>>(payload) {
            Ok(RecordView {
                project_id: Some(project_id),
                received_at,
                events,
                ..
            }) => {
                replayed_records += 1;
                let day = day_of(received_at);
                for e in &events {
                    index.insert(day, message_hash(project_id, &e.message_id));
                }
            }
            Ok(_) | Err(_) => bad_records += 1,
        },
    )?;
    if bad_records > 0 {
        tracing::error!(
            bad_records,
            "log records with a valid checksum but unreadable content"
        );
    }
    index.expire(today)?;
    let report = StartReport {
        recovery,
        replayed_records,
        ids_in_memory: index.ids_in_memory(),
    };
    let (tx, rx) = sync_channel(cfg.queue);
    let depth = Arc::new(AtomicUsize::new(0));
    let alive = Arc::new(AtomicBool::new(true));
    let durable = Arc::new(std::sync::Mutex::new(log.position()));
    let checkpointed = Arc::new(std::sync::Mutex::new(index.checkpoint()));
    let appended = Arc::new(AtomicU64::new(0));
    let new_segment = Arc::new(AtomicBool::new(false));
    let mut state = WriterState {
        new_segment: new_segment.clone(),
        appended: appended.clone(),
        durable: durable.clone(),
        checkpointed: checkpointed.clone(),
        log,
        index,
        metrics,
        depth: depth.clone(),
        checkpoint_every: cfg.checkpoint_every,
        checkpoint_ids: cfg.checkpoint_ids,
        last_checkpoint: Instant::now(),
        today,
        framed: Vec::new(),
    };
    let alive_thread = alive.clone();
    let join = std::thread::Builder::new()
        .name("opentally-writer".into())
        .spawn(move || {
            state.run(&rx);
            alive_thread.store(false, Ordering::Relaxed);
        })?;
    Ok((
        WriterHandle {
            tx,
            depth,
            alive,
            durable,
            checkpointed,
            appended,
            new_segment,
        },
        join,
        report,
    ))
}

struct WriterState {
    log: LogWriter,
    /// Set by [`WriterHandle::start_new_segment`].
    new_segment: Arc<AtomicBool>,
    appended: Arc<AtomicU64>,
    durable: Arc<std::sync::Mutex<wal::LogPos>>,
    checkpointed: Arc<std::sync::Mutex<wal::LogPos>>,
    index: DedupIndex,
    metrics: Arc<Metrics>,
    depth: Arc<AtomicUsize>,
    checkpoint_every: Duration,
    checkpoint_ids: usize,
    last_checkpoint: Instant,
    today: i64,
    /// The last group's framed records: the next reuses the buffer rather than growing a new one.
    framed: Vec<u8>,
}

/// The most requests committed as one group; bounds the latency of the first in the group.
const MAX_GROUP: usize = 512;

/// The most buffer kept from one group's framed records to the next.
const KEEP_FRAMED_BYTES: usize = 4 << 20;

impl WriterState {
    fn run(&mut self, rx: &Receiver<Option<Submission>>) {
        let mut stopping = false;
        while !stopping {
            let first = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(Some(s)) => s,
                Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.housekeeping(false);
                    continue;
                }
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Some(s)) => group.push(s),
                    Ok(None) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.depth.fetch_sub(group.len(), Ordering::Relaxed);
            self.commit(group);
            self.housekeeping(false);
        }
        // Dropping the receiver makes every later submission fail at once with `Closed`.
        self.housekeeping(true);
    }

    fn commit(&mut self, group: Vec<Submission>) {
        let mut seen_in_group: HashSet<u128> = HashSet::new();
        // The group's records, framed, in a buffer kept (cleared) from group to group.
        let mut framed = std::mem::take(&mut self.framed);
        let mut results = Vec::with_capacity(group.len());
        let mut new_ids: Vec<(i64, u128)> = Vec::new();
        let mut lookup_failed = None;
        for s in &group {
            let mut new = Vec::with_capacity(s.events.len());
            for (hash, _) in s.events.iter() {
                let is_new = match self.index.contains(hash) {
                    Ok(found) => !found && seen_in_group.insert(hash),
                    Err(err) => {
                        lookup_failed = Some(err.to_string());
                        false
                    }
                };
                new.push(is_new);
                if is_new {
                    new_ids.push((day_of(s.received_at), hash));
                }
            }
            if new.iter().any(|n| *n) {
                let fresh = s
                    .events
                    .iter()
                    .zip(&new)
                    .filter(|(_, n)| **n)
                    .map(|((_, json), _)| json);
                wal::frame_with(&mut framed, |out| {
                    write_record_payload(out, &s.project, s.project_id, s.received_at, fresh);
                });
            }
            if let Some(install) = &s.erase {
                wal::frame_with(&mut framed, |out| {
                    RecordWriter::begin(out, &s.project, s.project_id, s.received_at)
                        .end_with_erasure(install);
                });
            }
            results.push(new);
        }
        let outcome = match lookup_failed {
            Some(e) => Err(WriteError::Io(format!("dedup index: {e}"))),
            None if framed.is_empty() => Ok(()),
            None => {
                let started = Instant::now();
                let r = self.log.append_durable(&framed);
                self.metrics
                    .fsync_seconds
                    .observe(started.elapsed().as_secs_f64());
                r.map_err(|e| {
                    if e.raw_os_error() == Some(28) {
                        WriteError::DiskFull
                    } else {
                        WriteError::Io(e.to_string())
                    }
                })
            }
        };
        #[allow(clippy::cast_precision_loss)]
        self.metrics.group_requests.observe(group.len() as f64);
        match outcome {
            Ok(()) => {
                self.metrics.log_bytes.inc_by(framed.len() as u64);
                self.appended
                    .fetch_add(new_ids.len() as u64, Ordering::Release);
                *self
                    .durable
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = self.log.position();
                // Each was looked up above and is unique in the group.
                for (day, h) in new_ids {
                    self.index.insert_absent(day, h);
                }
                for (s, new) in group.into_iter().zip(results) {
                    let _ = s.reply.send(Ok(Committed { new }));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = group.len(), "group not written; clients will retry");
                for s in group {
                    let _ = s.reply.send(Err(e.clone()));
                }
            }
        }
        // Kept for the next group, but not beyond what a busy group of ordinary batches needs.
        framed.clear();
        framed.shrink_to(KEEP_FRAMED_BYTES);
        self.framed = framed;
    }

    /// Seals days at midnight and checkpoints the dedup index now and then, or once enough ids
    /// wait for it (and at the end).
    fn housekeeping(&mut self, finishing: bool) {
        let today = day_of(Timestamp::now());
        let rotated = self.new_segment.swap(false, Ordering::Relaxed);
        if rotated {
            match self.log.start_new_segment() {
                Ok(()) => {
                    // Nothing is pending: the new segment's start is durable.
                    *self
                        .durable
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = self.log.position();
                }
                Err(e) => tracing::warn!(error = %e, "cannot start a new log segment"),
            }
        }
        let due = rotated
            || finishing
            || today != self.today
            || self.last_checkpoint.elapsed() >= self.checkpoint_every
            || self.index.ids_since_checkpoint() >= self.checkpoint_ids;
        if !due {
            if let Err(e) = self.index.spill() {
                // Not fatal: the ids stay in memory and the next spill or checkpoint writes them.
                tracing::warn!(error = %e, "dedup ids not written");
            }
            return;
        }
        self.today = today;
        self.last_checkpoint = Instant::now();
        let pos = self.log.position();
        let result = self
            .index
            .expire(today)
            .and_then(|()| self.index.write_checkpoint(pos));
        if result.is_ok() {
            *self
                .checkpointed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = pos;
        }
        if let Err(e) = result {
            // Not fatal: the log still holds everything and the next start replays more of it.
            tracing::warn!(error = %e, "dedup checkpoint failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentally_log::StoredEvent;
    use opentally_protocol::{Message, MessageType};

    /// The dedup index checkpoints once `checkpoint_ids` ids came since the last one, however long
    /// before `checkpoint_every`: the log a restart replays stays bounded under any load.
    #[test]
    fn a_checkpoint_comes_once_enough_ids_wait() {
        let dir = std::env::temp_dir().join(format!("opentally-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = WriterConfig {
            log_dir: dir.join("log"),
            dedup_dir: dir.join("dedup"),
            dedup_window_days: 7,
            max_segment_bytes: 1 << 20,
            fsync: false,
            queue: 16,
            checkpoint_every: Duration::from_secs(3600),
            checkpoint_ids: 3,
        };
        let (w, join, _) = start(&cfg, Arc::new(Metrics::default())).unwrap();
        let submit = |ids: &[&str]| {
            let (reply, wait) = oneshot::channel();
            let mut events = EncodedEvents::with_capacity(ids.len());
            for id in ids {
                let e = StoredEvent {
                    message_id: (*id).to_owned(),
                    install: "i".into(),
                    timestamp: Timestamp::now(),
                    message: Message::new(MessageType::Track),
                };
                events.push(1, &e);
            }
            w.submit(Submission {
                project: Arc::from("p"),
                project_id: 1,
                received_at: Timestamp::now(),
                events,
                erase: None,
                reply,
            })
            .unwrap();
            wait.blocking_recv().unwrap().unwrap();
        };
        // Housekeeping follows each commit, after its answer: wait for it by a second commit.
        let start = w.checkpoint_pos();
        submit(&["a", "b"]);
        submit(&["a"]);
        assert_eq!(w.checkpoint_pos(), start, "two ids wait");
        submit(&["c"]);
        submit(&["c"]);
        assert_ne!(w.checkpoint_pos(), start, "three ids are checkpointed");
        w.stop();
        join.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
