//! Deleted projects (`opentally project delete`): the project's row goes at once, so its keys
//! stop working; its events are removed by the process that loads the store, from the parts,
//! the tail and the log records not yet sealed, and the deletion is then marked done.
//!
//! A running collector removes them twice: at once, and again once the longest request has had
//! time to finish, for a request authorised just before its keys went; then it closes the log's
//! current segment, so that the records still in it are removed with it once it is loaded and
//! sealed. With no collector running, the command removes them itself, holding the data dir's
//! lock, and closes the segment for the next collector to remove.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentally_log::LogPos;
use opentally_store::Store;

use crate::meta::{MetaError, MetaStore};

#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("cannot remove the project's events: {0}")]
    Store(#[from] opentally_store::StoreError),
}

/// The deletions a running collector has made a first pass of, and when.
#[derive(Debug, Default)]
pub struct Deletions {
    first_pass: HashMap<String, Instant>,
    /// A deletion finished since [`Deletions::take_finished`] last asked.
    finished: bool,
}

impl Deletions {
    /// Takes the pending deletions one step further: a first pass for a new one, the last pass
    /// for one whose first is older than `settle`. `durable` is the end of what the log holds.
    /// Returns the events removed, per project.
    pub fn step(
        &mut self,
        meta: &MetaStore,
        store: &Store,
        durable: LogPos,
        settle: Duration,
    ) -> Result<Vec<(String, u64)>, DeletionError> {
        let pending = meta.pending_deletions()?;
        self.first_pass.retain(|name, _| pending.contains(name));
        let mut removed = Vec::new();
        for name in pending {
            match self.first_pass.get(&name) {
                None => {
                    let n = store.drop_project(&name, durable)?;
                    tracing::info!(
                        project = name,
                        events = n,
                        "deleted project: events removed"
                    );
                    self.first_pass.insert(name.clone(), Instant::now());
                    removed.push((name, n));
                }
                Some(first) if first.elapsed() >= settle => {
                    let n = store.drop_project(&name, durable)?;
                    meta.finish_deletion(&name)?;
                    self.finished = true;
                    self.first_pass.remove(&name);
                    tracing::info!(project = name, events = n, "deleted project: done");
                    removed.push((name, n));
                }
                Some(_) => {}
            }
        }
        Ok(removed)
    }
}

impl Deletions {
    /// True once if a deletion finished since the last call: the log's current segment, which
    /// may still hold the project's records, should be closed so that it can go.
    pub fn take_finished(&mut self) -> bool {
        std::mem::take(&mut self.finished)
    }
}

/// Removes the events of every pending deletion at once and marks them done: for a process
/// that holds the data dir's lock with no collector running, so no request can add more.
pub fn remove_now(
    meta: &MetaStore,
    store: &Store,
    durable: LogPos,
) -> Result<Vec<(String, u64)>, DeletionError> {
    let mut removed = Vec::new();
    for name in meta.pending_deletions()? {
        let n = store.drop_project(&name, durable)?;
        meta.finish_deletion(&name)?;
        removed.push((name, n));
    }
    Ok(removed)
}
