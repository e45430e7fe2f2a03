//! The embedded store: the log loaded into an in-memory tail, sealed into Parquet parts.
//!
//! The pipeline, a file each: `load` reads the log into the `tail`; `seal` writes the
//! tail as `part`s; `compact` merges a day's small parts (`merge` is the streaming merge,
//! in the row `order` every part keeps); `erase` rewrites parts for erasure and retention;
//! a `snapshot` is what a query reads; `cache` keeps what queries make from parts.

mod cache;
mod compact;
mod erase;
mod load;
mod merge;
mod order;
mod part;
mod seal;
mod snapshot;
mod tail;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::manifest::Manifest;
use opentally_log::segment::LogPos;

pub use crate::error::StoreError;
pub use crate::options::Options;
pub use crate::parquet_io::read_part;
use crate::store::cache::SpanCache;
use crate::store::part::SequenceCache;
pub use crate::store::tail::TailBatch;
pub use part::LivePart;
pub use snapshot::Snapshot;

#[derive(Debug, Default)]
struct State {
    manifest: Manifest,
    parts: Vec<Arc<LivePart>>,
    /// Events read from the log after `manifest.log`, per project.
    tail: HashMap<String, Vec<TailBatch>>,
    /// The log position the tail reaches.
    tail_pos: LogPos,
    tail_since: Option<Instant>,
    /// Parts replaced by compaction, deleted once no query holds them.
    retired: Vec<Arc<LivePart>>,
}

/// Figures for `/metrics` and the CLI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub parts: usize,
    pub part_rows: u64,
    pub part_bytes: u64,
    pub tail_rows: usize,
    pub loaded_to: LogPos,
    pub sealed_to: LogPos,
    /// Memory the parts and spans keep their sequences in (for funnels and paths), and the
    /// blocks their merged "ok" installs (for friction).
    pub sequence_cache_bytes: usize,
    /// Blocks of days whose sequences are kept joined in memory.
    pub sequence_spans: usize,
    /// Blocks of days whose "ok" installs are kept merged for friction.
    pub succeeded_blocks: usize,
    /// Rounds the loader has finished.
    pub load_rounds: u64,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    log_dir: PathBuf,
    options: Options,
    state: RwLock<State>,
    mutations: std::sync::Mutex<()>,
    sequence_cache: Arc<SequenceCache>,
    spans: Arc<SpanCache>,
    /// Events read from the log since the store was opened (erased ones too).
    loaded_events: std::sync::atomic::AtomicU64,
    load_rounds: std::sync::atomic::AtomicU64,
    /// Events in the tail. Changed only under the state's write lock, with the tail, but read
    /// without the lock: every ingest request asks, and must never queue behind the loader
    /// waiting to write.
    tail_rows: std::sync::atomic::AtomicUsize,
    /// Set by [`Store::prepare_loading`]: this process loads the store, so an erasure read
    /// from the log rewrites parts; otherwise it only leaves the tail.
    loading: std::sync::atomic::AtomicBool,
    /// The log segment of the last erasure applied, until a seal reaches past it: the loader
    /// seals every round until then, so that the segment, which holds the erased events, is
    /// removed within a round of the collector starting a new one.
    erasure_segment: std::sync::Mutex<Option<u64>>,
}

impl Store {
    /// Opens the store of the data dir `data`, reading the whole log after the manifest's
    /// position into the tail. Read-only: nothing on disk changes until
    /// [`Store::prepare_loading`].
    pub fn open(data: &Path, options: Options) -> Result<Store, StoreError> {
        Store::open_until(data, options, None)
    }

    /// Like [`Store::open`], reading the log only up to `until` (what the writer made durable).
    pub fn open_until(
        data: &Path,
        options: Options,
        until: Option<LogPos>,
    ) -> Result<Store, StoreError> {
        let store = Store::open_behind(data, options)?;
        store.catch_up(until)?;
        Ok(store)
    }

    /// Opens the store without reading the log: the tail starts empty at the manifest's
    /// position. For the loader, which reads what follows with [`Store::load_step`] a piece at
    /// a time and seals each piece: however much of the log is unsealed (after a crash, say),
    /// memory holds one piece, and a crash while catching up keeps the pieces already sealed.
    pub fn open_behind(data: &Path, options: Options) -> Result<Store, StoreError> {
        let layout = opentally_log::DataDir::new(data);
        let dir = layout.store();
        let manifest = Manifest::load(&dir)?;
        let sequence_cache = Arc::new(SequenceCache {
            used: std::sync::atomic::AtomicUsize::new(0),
            limit: options.sequence_cache_bytes,
        });
        let parts = manifest
            .parts
            .iter()
            .map(|m| LivePart::new(&dir, m.clone(), None, &sequence_cache))
            .collect();
        let state = State {
            tail_pos: manifest.log,
            manifest,
            parts,
            ..State::default()
        };
        Ok(Store {
            dir,
            log_dir: layout.log(),
            options,
            state: RwLock::new(state),
            mutations: std::sync::Mutex::new(()),
            spans: Arc::new(SpanCache {
                spans: std::sync::Mutex::default(),
                succeeded: std::sync::Mutex::default(),
                memory: sequence_cache.clone(),
            }),
            sequence_cache,
            loaded_events: std::sync::atomic::AtomicU64::new(0),
            load_rounds: std::sync::atomic::AtomicU64::new(0),
            tail_rows: std::sync::atomic::AtomicUsize::new(0),
            loading: std::sync::atomic::AtomicBool::new(false),
            erasure_segment: std::sync::Mutex::new(None),
        })
    }

    /// Makes this process the loader: creates the directories and deletes part files that no
    /// manifest names (written by a seal that crashed before its manifest swap).
    pub fn prepare_loading(&self) -> Result<usize, StoreError> {
        let parts_dir = self.dir.join("parts");
        fs::create_dir_all(&parts_dir)?;
        let live: HashSet<PathBuf> = self
            .read()
            .parts
            .iter()
            .flat_map(|p| p.files().cloned())
            .collect();
        let mut removed = 0;
        for project in fs::read_dir(&parts_dir)? {
            let project = project?.path();
            if !project.is_dir() {
                continue;
            }
            for f in fs::read_dir(&project)? {
                let f = f?.path();
                if !live.contains(&f) {
                    fs::remove_file(&f)?;
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed part files of an unfinished seal");
        }
        self.loading.store(true, Ordering::Relaxed);
        Ok(removed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn options(&self) -> &Options {
        &self.options
    }
}

impl Store {
    /// The parts and tail of `project`, as they are now.
    pub fn snapshot(&self, project: &str) -> Snapshot {
        let s = self.read();
        Snapshot {
            project: project.to_owned(),
            spans: self.spans.clone(),
            span_days: self.options.sequence_span_days,
            parts: s
                .parts
                .iter()
                .filter(|p| p.meta.project == project)
                .cloned()
                .collect(),
            tail: s.tail.get(project).cloned().unwrap_or_default(),
        }
    }

    /// Every project with events, in name order.
    pub fn projects(&self) -> Vec<String> {
        let s = self.read();
        let mut names: Vec<String> = s
            .parts
            .iter()
            .map(|p| p.meta.project.clone())
            .chain(s.tail.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Events read from the log since the store was opened, the read at opening included:
    /// what a writer that counts the events it appends compares to know how far loading lags.
    pub fn loaded_events(&self) -> u64 {
        self.loaded_events.load(Ordering::Relaxed)
    }

    /// Events loaded but not sealed; reads no lock.
    pub fn tail_rows(&self) -> usize {
        self.tail_rows.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Stats {
        let s = self.read();
        Stats {
            parts: s.parts.len(),
            part_rows: s.parts.iter().map(|p| p.meta.rows).sum(),
            part_bytes: s.parts.iter().map(|p| p.meta.bytes).sum(),
            tail_rows: self.tail_rows(),
            loaded_to: s.tail_pos,
            sealed_to: s.manifest.log,
            sequence_cache_bytes: self
                .sequence_cache
                .used
                .load(std::sync::atomic::Ordering::Relaxed),
            sequence_spans: self.spans.kept(),
            succeeded_blocks: self.spans.kept_succeeded(),
            load_rounds: self.load_rounds.load(Ordering::Relaxed),
        }
    }
}

impl Store {
    /// Held by whatever rewrites parts or the manifest, so the loader, erasure and retention
    /// never interleave.
    fn lock_mutations(&self) -> std::sync::MutexGuard<'_, ()> {
        self.mutations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
