//! What queries make from parts and keep: sequences within a memory budget, and spans (the
//! sequences of a block of days merged).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::StoreError;
use crate::rollup::{self, Succeeded};
use crate::sequence::{self, Sequences};
use crate::store::part::{LivePart, SequenceCache};

/// Spans: the sequences of a block of days' parts merged into one (see
/// [`Options::sequence_span_days`]), made by the first query that can use them and kept while
/// the block's parts stay the same.
#[derive(Debug)]
pub(super) struct SpanCache {
    /// By project, first day and days.
    pub(super) spans: std::sync::Mutex<HashMap<(String, i64, i64), Arc<Span>>>,
    /// Friction's merged "ok" installs, by the same blocks.
    pub(super) succeeded: std::sync::Mutex<HashMap<(String, i64, i64), SucceededBlock>>,
    pub(super) memory: Arc<SequenceCache>,
}

/// The merged "ok" installs of a block of days' parts, counted in the sequence cache's memory.
#[derive(Debug)]
pub(super) struct SucceededBlock {
    /// The ids of the parts merged.
    pub(super) parts: Vec<u64>,
    pub(super) made: Arc<Succeeded>,
    pub(super) memory: Arc<SequenceCache>,
}

impl Drop for SucceededBlock {
    fn drop(&mut self) {
        self.memory.release(self.made.size());
    }
}

#[derive(Debug)]
pub(super) struct Span {
    /// The ids of the parts merged, in walk order.
    pub(super) parts: Vec<u64>,
    pub(super) made: std::sync::Mutex<Made>,
    pub(super) memory: Arc<SequenceCache>,
}

#[derive(Debug)]
pub(super) enum Made {
    Not,
    /// Kept in memory (counted in the sequence cache).
    Kept(Arc<Sequences>),
    /// The parts hold an install's events out of time order: they cannot be joined.
    Unmergeable,
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Made::Kept(s) = self
            .made
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            self.memory.release(s.size());
        }
    }
}

impl SpanCache {
    /// The span of `parts` (one block of a project's days, in walk order): merged now if it
    /// was not yet; `None` when the parts cannot be joined.
    pub(super) fn get(
        &self,
        project: &str,
        first_day: i64,
        days: i64,
        parts: &[&Arc<LivePart>],
    ) -> Result<Option<Arc<Sequences>>, StoreError> {
        let ids: Vec<u64> = parts.iter().map(|p| p.meta.id).collect();
        let span = {
            let mut spans = self
                .spans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = spans
                .entry((project.to_owned(), first_day, days))
                .or_insert_with(|| self.empty(Vec::clone(&ids)));
            if slot.parts != ids {
                *slot = self.empty(ids);
            }
            slot.clone()
        };
        let mut made = span
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*made {
            Made::Kept(s) => return Ok(Some(s.clone())),
            Made::Unmergeable => return Ok(None),
            Made::Not => {}
        }
        // Joined only if it will stay: making it again at every query would cost more than
        // reading the parts. Its parts' files bound its size; what they keep in memory goes.
        let mut files = 0u64;
        let mut held = 0usize;
        for p in parts {
            let Some(path) = &p.sequences_path else {
                return Ok(None);
            };
            files += fs::metadata(path)?.len();
            held += p.kept_sequences_bytes();
        }
        let room = self.memory.limit.saturating_sub(
            self.memory
                .used
                .load(Ordering::Relaxed)
                .saturating_sub(held),
        );
        if files > room as u64 {
            return Ok(None);
        }
        let mut seqs = Vec::with_capacity(parts.len());
        for p in parts {
            let Some(s) = p.sequences()? else {
                return Ok(None);
            };
            seqs.push(s);
        }
        let refs: Vec<&Sequences> = seqs.iter().map(AsRef::as_ref).collect();
        let (names, codes) = sequence::shared_codes(&refs);
        let joined: Vec<(&Sequences, Vec<u32>)> = refs.into_iter().zip(codes).collect();
        let Some(bytes) = sequence::merge(&joined, &names, true) else {
            *made = Made::Unmergeable;
            return Ok(None);
        };
        let merged = Arc::new(
            Sequences::parse(bytes)
                .map_err(|e| StoreError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?,
        );
        // The span replaces its parts' sequences in memory.
        for p in parts {
            p.release_sequences();
        }
        if self.memory.reserve(merged.size()) {
            *made = Made::Kept(merged.clone());
        }
        Ok(Some(merged))
    }

    /// The merged "ok" installs of `parts` (one block of a project's days): merged now if they
    /// were not yet; `None` when the memory has no room to keep them (merging them at every
    /// query would cost more than reading the parts' rows).
    pub(super) fn succeeded(
        &self,
        project: &str,
        first_day: i64,
        days: i64,
        parts: &[&Arc<LivePart>],
    ) -> Result<Option<Arc<Succeeded>>, StoreError> {
        let ids: Vec<u64> = parts.iter().map(|p| p.meta.id).collect();
        let key = (project.to_owned(), first_day, days);
        let lock = || {
            self.succeeded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(b) = lock().get(&key).filter(|b| b.parts == ids) {
            return Ok(Some(b.made.clone()));
        }
        let sets = parts
            .iter()
            .map(|p| p.rollup())
            .collect::<Result<Vec<_>, _>>()?;
        // At most every hash of every "ok" row.
        let bound: usize = sets
            .iter()
            .flat_map(|s| &s.rows)
            .filter(|r| r.dim(rollup::OUTCOME) == Some("ok"))
            .map(|r| r.installs.num_retained() * 8)
            .sum();
        let room = self
            .memory
            .limit
            .saturating_sub(self.memory.used.load(Ordering::Relaxed));
        if bound > room {
            return Ok(None);
        }
        let made = Arc::new(Succeeded::of(sets.iter().map(AsRef::as_ref)));
        if !self.memory.reserve(made.size()) {
            return Ok(None);
        }
        let block = SucceededBlock {
            parts: ids,
            made: made.clone(),
            memory: self.memory.clone(),
        };
        lock().insert(key, block);
        Ok(Some(made))
    }

    pub(super) fn empty(&self, parts: Vec<u64>) -> Arc<Span> {
        Arc::new(Span {
            parts,
            made: std::sync::Mutex::new(Made::Not),
            memory: self.memory.clone(),
        })
    }

    /// Drops the spans that hold any of `parts` (replaced or erased: their events must not
    /// outlive them in memory).
    pub(super) fn forget(&self, parts: &HashSet<u64>) {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, span| !span.parts.iter().any(|id| parts.contains(id)));
        self.succeeded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, block| !block.parts.iter().any(|id| parts.contains(id)));
    }

    /// Blocks of merged "ok" installs kept in memory.
    pub(super) fn kept_succeeded(&self) -> usize {
        self.succeeded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Spans kept in memory.
    pub(super) fn kept(&self) -> usize {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|s| {
                matches!(
                    *s.made
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                    Made::Kept(_)
                )
            })
            .count()
    }
}
