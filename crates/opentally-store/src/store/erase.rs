//! Erasure and retention: parts rewritten without an install, a project or old days.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;

use crate::manifest::PartMeta;
use crate::parquet_io::read_part;
use crate::rollup::RollupRow;
use crate::schema;
use crate::store::order::today;
use crate::store::part::LivePart;
use crate::store::tail::TailBatch;
use crate::{Store, StoreError};
use opentally_log::segment::LogPos;

impl Store {
    /// Removes every event of `install` in `project`: rewrites the parts that hold it (the old
    /// files go once no query holds them), drops it from the tail, and records the erasure in
    /// the manifest so that reading the log again after a crash does not bring it back.
    /// Returns how many events were removed. Only the loading process may call this.
    pub fn erase(&self, project: &str, install: &str) -> Result<u64, StoreError> {
        let _one = self.lock_mutations();
        self.erase_locked(project, install)
    }

    /// [`Store::erase`], with the mutations lock held.
    pub(super) fn erase_locked(&self, project: &str, install: &str) -> Result<u64, StoreError> {
        let (parts, mut manifest, tail_pos) = {
            let s = self.read();
            let parts: Vec<Arc<LivePart>> = s
                .parts
                .iter()
                .filter(|p| p.meta.project == project)
                .cloned()
                .collect();
            (parts, s.manifest.clone(), s.tail_pos)
        };
        let mut removed = 0u64;
        let mut replaced: HashSet<u64> = HashSet::new();
        let mut added = Vec::new();
        // One id set aside for each part that may be rewritten, so the parts can be rewritten
        // side by side (an id a part does not use is skipped, never reused).
        let first_id = manifest.next_part;
        manifest.next_part += parts.len() as u64;
        let rewritten = on_every_core(&parts, |i, p| {
            self.part_without(p, first_id + i as u64, project, install)
        });
        let mut failed = None;
        for (p, outcome) in parts.iter().zip(rewritten) {
            match outcome {
                Ok(Some((n, written))) => {
                    removed += n;
                    replaced.insert(p.meta.id);
                    added.extend(written);
                }
                Ok(None) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            // Nothing is swapped in: the parts the other threads wrote go, and the erasure is
            // tried again from the log.
            for (meta, _) in &added {
                for file in [
                    Some(&meta.file),
                    meta.rollup.as_ref(),
                    meta.sequences.as_ref(),
                ]
                .into_iter()
                .flatten()
                {
                    let _ = std::fs::remove_file(self.dir.join(file));
                }
            }
            return Err(e);
        }
        // The tail: filtered in memory; the log keeps the events, so the erasure is recorded.
        let (new_tail, tail_removed) = self.tail_without(project, install)?;
        removed += tail_removed;
        if tail_removed > 0 || manifest.log < tail_pos {
            manifest.erased.push(crate::manifest::Erasure {
                project: project.to_owned(),
                install: install.to_owned(),
                before: tail_pos,
            });
        }
        let mut s = self.swap_parts(manifest, &replaced, added)?;
        if let Some(new_tail) = new_tail {
            s.tail.insert(project.to_owned(), new_tail);
            self.tail_rows.fetch_sub(
                usize::try_from(tail_removed).expect("a tail fits in memory"),
                Ordering::Relaxed,
            );
        }
        Ok(removed)
    }

    /// One part without the events of `install`: how many it held, and the part written in its
    /// place as number `id` (none when nothing else was left); `None` when it held none.
    #[allow(clippy::type_complexity)]
    fn part_without(
        &self,
        p: &LivePart,
        id: u64,
        project: &str,
        install: &str,
    ) -> Result<Option<(u64, Option<(PartMeta, Vec<RollupRow>)>)>, StoreError> {
        if !p.may_hold(install)? {
            return Ok(None);
        }
        let batch = concat_batches(&schema::schema(), &read_part(&p.path)?)?;
        let (kept, n) = without_install(&batch, install)?;
        if n == 0 {
            return Ok(None);
        }
        let written = if kept.num_rows() > 0 {
            Some(self.write_part(id, project, p.meta.day, &kept)?)
        } else {
            None
        };
        Ok(Some((n, written)))
    }

    /// Removes the events of `install` from the tail alone, for a store that reads the log but
    /// does not load it (a command's read-only view): the loading process rewrites the parts.
    pub(super) fn erase_from_tail(&self, project: &str, install: &str) -> Result<u64, StoreError> {
        let (new_tail, removed) = self.tail_without(project, install)?;
        if let Some(new_tail) = new_tail {
            self.write().tail.insert(project.to_owned(), new_tail);
            self.tail_rows.fetch_sub(
                usize::try_from(removed).expect("a tail fits in memory"),
                Ordering::Relaxed,
            );
        }
        Ok(removed)
    }

    /// The tail of `project` without the events of `install`, and how many those were; `None`
    /// when it holds none. A batch left as it was keeps its rollup and sequences.
    fn tail_without(
        &self,
        project: &str,
        install: &str,
    ) -> Result<(Option<Vec<TailBatch>>, u64), StoreError> {
        let tail: Vec<TailBatch> = self.read().tail.get(project).cloned().unwrap_or_default();
        let mut new_tail = Vec::with_capacity(tail.len());
        let mut removed = 0u64;
        for b in &tail {
            let (kept, n) = without_install(&b.rows, install)?;
            removed += n;
            new_tail.push(if n == 0 {
                b.clone()
            } else {
                TailBatch::new(kept)
            });
        }
        Ok(((removed > 0).then_some(new_tail), removed))
    }

    /// Removes every event of `project`: its parts (their files go once no query holds them),
    /// its tail, and, recorded in the manifest, its log records before `before` that are not
    /// sealed yet, so that reading the log again does not bring them back. Returns how many
    /// events were removed from parts and tail. Only the loading process may call this.
    pub fn drop_project(&self, project: &str, before: LogPos) -> Result<u64, StoreError> {
        let _one = self.lock_mutations();
        let mut manifest = self.read().manifest.clone();
        let gone: HashSet<u64> = manifest
            .parts
            .iter()
            .filter(|p| p.project == project)
            .map(|p| p.id)
            .collect();
        let mut removed: u64 = manifest
            .parts
            .iter()
            .filter(|p| p.project == project)
            .map(|p| p.rows)
            .sum();
        if manifest.log < before {
            manifest.dropped.retain(|d| d.project != project);
            manifest.dropped.push(crate::manifest::ProjectDrop {
                project: project.to_owned(),
                before,
            });
        }
        let mut s = self.swap_parts(manifest, &gone, Vec::new())?;
        if let Some(tail) = s.tail.remove(project) {
            let rows: usize = tail.iter().map(|b| b.rows.num_rows()).sum();
            removed += rows as u64;
            self.tail_rows.fetch_sub(rows, Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Drops the parts of `project` holding days before `keep_from_day` (days since the epoch):
    /// the retention job. Returns the parts and events dropped.
    pub fn drop_days_before(
        &self,
        project: &str,
        keep_from_day: i64,
    ) -> Result<(usize, u64), StoreError> {
        let _one = self.lock_mutations();
        let manifest = self.read().manifest.clone();
        let gone: Vec<&PartMeta> = manifest
            .parts
            .iter()
            .filter(|p| p.project == project && p.day < keep_from_day)
            .collect();
        if gone.is_empty() {
            return Ok((0, 0));
        }
        let dropped = (gone.len(), gone.iter().map(|p| p.rows).sum());
        let ids: HashSet<u64> = gone.iter().map(|p| p.id).collect();
        drop(self.swap_parts(manifest, &ids, Vec::new())?);
        Ok(dropped)
    }

    /// Drops every project's days older than `days` (counted back from today, UTC).
    pub fn apply_retention(&self, days: u32) -> Result<u64, StoreError> {
        let today = today();
        let mut dropped = 0;
        for project in self.projects() {
            let (parts, rows) = self.drop_days_before(&project, today - i64::from(days) + 1)?;
            if parts > 0 {
                tracing::info!(
                    project,
                    parts,
                    events = rows,
                    days,
                    "retention: dropped old days"
                );
            }
            dropped += rows;
        }
        Ok(dropped)
    }
}

/// The rows of `batch` whose install is not `install`, and how many were left out.
/// `f` over every item, on as many threads as there are cores (at most one an item); the
/// results in the items' order.
fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(items.len());
    if threads <= 1 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let next = AtomicUsize::new(0);
    let (f, next) = (&f, &next);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return mine;
                        };
                        mine.push((i, f(i, item)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

pub(super) fn without_install(
    batch: &RecordBatch,
    install: &str,
) -> Result<(RecordBatch, u64), StoreError> {
    let kept = schema::filter_install(batch, install, false)?;
    let removed = (batch.num_rows() - kept.num_rows()) as u64;
    Ok((kept, removed))
}
