//! Loading: the log read into the tail, a round at a time, by the loader thread.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::schema::BatchBuilder;
use crate::store::tail::TailBatch;
use crate::{Store, StoreError};
use opentally_log::segment::{self as wal, LogPos};
use opentally_log::{RecordView, StoredEvent};

impl Store {
    /// Reads log records after the tail's position (and before `until`, when given) into the
    /// tail, applying the erasures among them; returns how many events were added.
    pub fn catch_up(&self, until: Option<LogPos>) -> Result<usize, StoreError> {
        let _one = self.lock_mutations();
        let mut added = 0;
        loop {
            let (n, more) = self.catch_up_locked(until, usize::MAX)?;
            added += n;
            if !more {
                return Ok(added);
            }
        }
    }

    /// Reads log records into the tail until `until`, until a record takes it to `most` events
    /// read, or until an erasure, which is applied once the records before it are in the tail;
    /// returns how many events were added and whether the log may hold more before `until`.
    pub(super) fn catch_up_locked(
        &self,
        until: Option<LogPos>,
        most: usize,
    ) -> Result<(usize, bool), StoreError> {
        let (from, erased, dropped) = {
            let s = self.read();
            (
                s.tail_pos,
                s.manifest.erased.clone(),
                s.manifest.dropped.clone(),
            )
        };
        let mut builders: HashMap<String, BatchBuilder> = HashMap::new();
        let mut bad = 0u64;
        let mut read = 0usize;
        let mut stopped = false;
        let mut erasure: Option<(String, String, LogPos)> = None;
        let end = wal::read_range_while(&self.log_dir, from, until, |pos, payload| {
            match serde_json::from_slice::<RecordView<'_>>(payload) {
                Ok(rec)
                    if dropped
                        .iter()
                        .any(|d| pos < d.before && d.project == rec.project) =>
                {
                    read += rec.events.len();
                }
                Ok(RecordView {
                    project,
                    erase: Some(install),
                    ..
                }) => {
                    // Stop here: the records before it go into the tail, then it is applied.
                    erasure = Some((project.into_owned(), install.into_owned(), pos));
                    stopped = true;
                    return ControlFlow::Break(());
                }
                Ok(rec) => {
                    if !builders.contains_key(&*rec.project) {
                        builders.insert(rec.project.to_string(), BatchBuilder::new());
                    }
                    let b = builders.get_mut(&*rec.project).expect("inserted above");
                    for e in &rec.events {
                        let gone = erased.iter().any(|x| {
                            pos < x.before && x.project == rec.project && x.install == e.install
                        });
                        if !gone {
                            b.push_view(&rec.project, rec.received_at, e);
                        }
                    }
                    read += rec.events.len();
                }
                Err(_) => bad += 1,
            }
            if read >= most {
                stopped = true;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        self.loaded_events.fetch_add(read as u64, Ordering::Relaxed);
        if bad > 0 {
            tracing::error!(
                bad,
                "log records with a valid checksum but unreadable content"
            );
        }
        // Rollups are made before the state is locked.
        let batches: Vec<(String, TailBatch)> = builders
            .into_iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(project, mut b)| (project, TailBatch::new(b.finish())))
            .collect();
        let mut added = 0;
        {
            let mut state = self.write();
            for (project, batch) in batches {
                added += batch.rows.num_rows();
                state.tail.entry(project).or_default().push(batch);
            }
            if added > 0 && state.tail_since.is_none() {
                state.tail_since = Some(Instant::now());
            }
            self.tail_rows.fetch_add(added, Ordering::Relaxed);
            // Up to an erasure, the tail reaches the record before it until it is applied: a
            // round that fails to apply it reads it again.
            state.tail_pos = erasure.as_ref().map_or(end, |e| e.2).max(from);
        }
        if let Some((project, install, pos)) = erasure {
            // Neither the install nor its hash is logged: the erasure is itself a secret.
            let removed = if self.loading.load(Ordering::Relaxed) {
                let n = self.erase_locked(&project, &install)?;
                *self
                    .erasure_segment
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pos.segment);
                n
            } else {
                self.erase_from_tail(&project, &install)?
            };
            tracing::info!(project, events = removed, "erased an install's events");
            self.write().tail_pos = end.max(from);
        }
        // `stopped` only says the log may hold more: a stop on its last record before `until`
        // is found out by the next round, which reads nothing.
        Ok((added, stopped))
    }

    /// Adds events that did not come through the log (generated demo data) and seals them at
    /// once. Only for a data dir no server is loading.
    pub fn import(&self, project: &str, events: &[StoredEvent]) -> Result<usize, StoreError> {
        let _one = self.lock_mutations();
        let mut b = BatchBuilder::new();
        for e in events {
            b.push(project, e.timestamp, e);
        }
        {
            let mut s = self.write();
            s.tail
                .entry(project.to_owned())
                .or_default()
                .push(TailBatch::new(b.finish()));
            self.tail_rows.fetch_add(events.len(), Ordering::Relaxed);
        }
        self.seal_locked()
    }
}

impl Store {
    /// The loader: tails the log up to what `durable` says is durable, seals and compacts, and
    /// deletes log segments that are sealed and before `keep_from` (what the log's writer still
    /// needs), until `stop` is set (then unpark the thread); then loads and seals what is left.
    pub fn run_loader(
        &self,
        durable: &dyn Fn() -> LogPos,
        keep_from: &dyn Fn() -> LogPos,
        stop: &AtomicBool,
    ) {
        let mut failing = false;
        let mut retention_due = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if let Some(days) = self
                .options
                .retention_days
                .filter(|_| Instant::now() >= retention_due)
            {
                retention_due = Instant::now() + Duration::from_secs(3600);
                if let Err(e) = self.apply_retention(days) {
                    tracing::error!(error = %e, "the retention job failed");
                }
            }
            let result = self
                .load_step(durable(), stopping)
                .and_then(|more| self.remove_loaded_segments(keep_from()).map(|_| more));
            let more = match result {
                Ok(more) => {
                    failing = false;
                    more
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "loading into the store failed; retrying");
                    }
                    failing = true;
                    false
                }
            };
            if stopping && !more {
                break;
            }
            if !more {
                // Whoever sets `stop` unparks this thread, so stopping never waits out a poll.
                std::thread::park_timeout(self.options.poll);
            }
        }
    }

    /// One round of the loader: reads the log until the tail holds `seal_rows` events (so the
    /// tail's memory stays bounded however far behind loading is: `seal_rows` and the rest of
    /// the last record read), seals when due, compacts. Returns whether the log holds more
    /// before `durable`.
    pub fn load_step(&self, durable: LogPos, force_seal: bool) -> Result<bool, StoreError> {
        let _one = self.lock_mutations();
        let room = self.options.seal_rows.saturating_sub(self.tail_rows());
        // A full tail (its seal failed last round) is sealed before anything more is read.
        let more = room == 0 || self.catch_up_locked(Some(durable), room)?.1;
        let nonempty = self.tail_rows() > 0;
        if self.seal_due() || (force_seal && nonempty && !more) {
            self.seal_locked()?;
        }
        // Compaction rewrites parts, work that can mostly wait for loading to catch up: while
        // the log holds more, only a day with `compact_behind_parts` small parts is compacted.
        self.compact_locked(if more {
            self.options.compact_behind_parts
        } else {
            self.options.compact_parts
        })?;
        self.delete_retired()?;
        self.load_rounds.fetch_add(1, Ordering::Relaxed);
        Ok(more)
    }
}

impl Store {
    /// Deletes the log segments wholly before both the sealed position and `keep_from`.
    /// Returns how many.
    pub fn remove_loaded_segments(&self, keep_from: LogPos) -> Result<usize, StoreError> {
        let sealed = self.read().manifest.log;
        Ok(wal::remove_before(&self.log_dir, sealed.min(keep_from))?)
    }
}
