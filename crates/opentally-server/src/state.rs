//! What the request handlers share: the collector's state, built by [`crate::Collector::open`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use governor::DefaultKeyedRateLimiter;

use crate::error::IngestError;
use crate::meta::{MetaStore, Project};
use crate::{Config, auth, conn, metrics, writer};

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub(crate) config: Config,
    pub(crate) meta: Arc<MetaStore>,
    pub(crate) keys: auth::KeyCache,
    pub(crate) writer: writer::WriterHandle,
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// HMAC-SHA256 keyed with the server's install secret (kept in the project database).
    pub(crate) install_mac: ring::hmac::Key,
    /// Set by the disk watcher while free space is below the low-water mark.
    pub(crate) disk_low: AtomicBool,
    pub(crate) key_limiter: DefaultKeyedRateLimiter<i64>,
    pub(crate) install_limiter: DefaultKeyedRateLimiter<u128>,
    /// Erase and export requests, per project and client (a keyed hash of the peer address).
    pub(crate) privacy_limiter: DefaultKeyedRateLimiter<(i64, u128)>,
    /// Erase and export requests, per project: ten times a client's allowance.
    pub(crate) privacy_project_limiter: DefaultKeyedRateLimiter<i64>,
    /// The embedded store, loaded from the log by the loader thread.
    pub(crate) store: Arc<opentally_store::Store>,
    /// Where insights and SQL are answered: the embedded store.
    pub(crate) backend: Arc<dyn opentally_store::Backend>,
    /// Events the store had read from the log when the writer started appending.
    pub(crate) loaded_at_start: u64,
    /// Runs insights and SQL on threads of their own, a few at a time.
    pub(crate) queries: opentally_store::guard::QueryRunner,
    /// The dashboard's sessions and live feed.
    pub(crate) dashboard: crate::dashboard::DashboardState,
}

impl AppState {
    /// The embedded store.
    pub fn store(&self) -> &Arc<opentally_store::Store> {
        &self.store
    }

    /// The project database.
    pub fn meta(&self) -> &Arc<MetaStore> {
        &self.meta
    }

    /// Notices changes another process (an admin command) made to the project database: keys,
    /// catalogs, remote controls. The upkeep task calls it every second.
    pub fn refresh_projects(&self) -> Result<(), crate::meta::MetaError> {
        self.keys.refresh_if_changed()
    }

    /// The collector's counters, as `/metrics` shows them.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Events acknowledged that the store's loader has not read from the log yet.
    pub fn unloaded_events(&self) -> u64 {
        let loaded = self
            .store
            .loaded_events()
            .saturating_sub(self.loaded_at_start);
        self.writer.appended_events().saturating_sub(loaded)
    }

    /// Events acknowledged but not yet sealed into parts, read or not: the store's lag.
    pub fn store_lag(&self) -> u64 {
        self.unloaded_events() + self.store.tail_rows() as u64
    }

    /// The project of a write key, once the key's request rate allows another request.
    pub(crate) fn authorise(&self, key: &str) -> Result<Arc<Project>, IngestError> {
        let project = match self.keys.project_for_write_key(key) {
            Ok(Some(p)) => p,
            Ok(None) => return Err(IngestError::BadKey),
            Err(e) => return Err(IngestError::Unavailable(e.to_string())),
        };
        if self.key_limiter.check_key(&project.id).is_err() {
            return Err(IngestError::RateLimited);
        }
        conn::checked();
        Ok(project)
    }
}
