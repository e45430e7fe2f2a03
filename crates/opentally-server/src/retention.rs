//! Each project's retention: the days of its events older than its `retention_days` (set with
//! `opentally project set-retention`, 365 for a new project) are dropped by the collector, at
//! start and then hourly. The store's own `store_retention_days`, when set, still caps every
//! project.

use opentally_store::Store;

use crate::meta::{MetaError, MetaStore};

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("cannot drop old days: {0}")]
    Store(#[from] opentally_store::StoreError),
}

/// Drops, for every project, the days before the last `retention_days` ending with `today`
/// (days since the Unix epoch, UTC: the clock is the caller's, so tests can move it). Returns
/// how many events were dropped.
pub fn enforce(meta: &MetaStore, store: &Store, today: i64) -> Result<u64, RetentionError> {
    let mut dropped = 0;
    for p in meta.list_projects()? {
        let keep_from = today - i64::from(p.retention_days) + 1;
        let (parts, events) = store.drop_days_before(&p.name, keep_from)?;
        if parts > 0 {
            tracing::info!(
                project = p.name,
                parts,
                events,
                days = p.retention_days,
                "retention: dropped days past the project's retention"
            );
        }
        dropped += events;
    }
    Ok(dropped)
}
