//! OpenTally's collector: the Segment-compatible ingest API with durable acknowledgements.
//!
//! The server is a value: [`Collector::open`] prepares the data dir (project database, durable
//! log, dedup index) and [`app`] builds the router over it, so tests can drive it with no socket.
//! It knows nothing of SQL dialects or storage engines: what it accepts goes to the durable log,
//! which the store reads.

pub mod api;
pub mod auth;
pub mod config;
pub mod conn;
pub mod control;
pub mod dashboard;
pub mod dedup;
pub mod deletion;
pub mod dump;
pub mod encoded;
pub mod error;
pub mod ingest;
pub mod lock;
pub mod meta;
pub mod metrics;
pub mod pages;
pub mod perms;
pub mod privacy;
pub mod retention;
pub mod secret;
pub mod serve;
pub mod state;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use governor::{Quota, RateLimiter};
use opentally_protocol::MessageType;

pub use config::Config;
use meta::MetaStore;
pub use state::AppState;

/// A collector over an open data dir; dropping it (after the server stops) lets the writer
/// finish and checkpoint.
#[derive(Debug)]
pub struct Collector {
    pub state: Arc<AppState>,
    pub writer_thread: std::thread::JoinHandle<()>,
    pub loader: Loader,
    pub report: writer::StartReport,
}

/// The thread that loads the durable log into the store. Stopping it (or dropping it) loads
/// and seals what is left.
#[derive(Debug)]
pub struct Loader {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The data dir's lock: this process loads the store. Released with the loader.
    _lock: lock::DataDirLock,
}

impl Loader {
    fn start(
        store: Arc<opentally_store::Store>,
        writer: writer::WriterHandle,
        nice: i32,
        lock: lock::DataDirLock,
    ) -> std::io::Result<Loader> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let thread = std::thread::Builder::new()
            .name("opentally-loader".into())
            .spawn(move || {
                lower_priority(nice);
                let durable = || {
                    let pos = writer.durable_pos();
                    // An erasure applied from the segment still being appended to: close it,
                    // so that it (and the erased events in it) can be deleted once sealed.
                    if store.erasure_segment().is_some_and(|s| s >= pos.segment) {
                        writer.start_new_segment();
                    }
                    pos
                };
                store.run_loader(&durable, &|| writer.checkpoint_pos(), &stop_thread);
            })?;
        Ok(Loader {
            stop,
            thread: Some(thread),
            _lock: lock,
        })
    }

    /// Loads and seals what the log holds, then ends the thread. Call after the writer stopped.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (`store_loader_nice`): above the
/// handlers' and the writer's, under a burst the cores go to acknowledging events, and loading
/// (work that can wait, bounded by `store_max_unsealed_events`) takes what is left. On Linux nice
/// is per thread; elsewhere it would be the whole process's, so it is left alone.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0
        && let Err(e) = rustix::process::setpriority_process(None, nice)
    {
        tracing::warn!(error = %e, "could not lower the loader's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
    #[error("cannot open the data dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the log in {path}: {source}")]
    Log {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store: {0}")]
    Store(#[from] opentally_store::StoreError),
    #[error(
        "another `opentally serve` runs on the data dir {}; stop it first, or give this one another --data",
        .0.display()
    )]
    Busy(std::path::PathBuf),
    #[error("cannot start the query threads: {0}")]
    Queries(std::io::Error),
}

/// Threads that run queries: as many as the machines this is sized for have cores; the
/// handlers and the writer keep theirs.
const QUERY_THREADS: usize = 2;

fn nonzero(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n.max(1)).expect("at least one")
}

impl Collector {
    /// Opens the data dir: project database, durable log (recovering its tail) and dedup index.
    pub fn open(config: Config) -> Result<Collector, StartError> {
        perms::restrict_umask();
        let lock = lock::DataDirLock::try_acquire(&config.data)
            .map_err(|source| StartError::DataDir {
                path: config.data.clone(),
                source,
            })?
            .ok_or_else(|| StartError::Busy(config.data.clone()))?;
        let meta = Arc::new(MetaStore::open(&config.data)?);
        let install_secret = meta.server_secret()?;
        let metrics = Arc::new(metrics::Metrics::default());
        let layout = opentally_log::DataDir::new(&config.data);
        let wcfg = writer::WriterConfig {
            log_dir: layout.log(),
            dedup_dir: layout.dedup(),
            dedup_window_days: config.dedup_window_days,
            max_segment_bytes: config.segment_bytes,
            fsync: config.fsync,
            queue: config.writer_queue,
            checkpoint_every: std::time::Duration::from_secs(60),
            // A restart replays at most about a million events into the index.
            checkpoint_ids: 1 << 20,
        };
        let (writer, writer_thread, report) =
            writer::start(&wcfg, metrics.clone()).map_err(|source| StartError::Log {
                path: wcfg.log_dir.clone(),
                source,
            })?;
        let key_quota = Quota::per_second(nonzero(config.key_requests_per_sec))
            .allow_burst(nonzero(config.key_requests_per_sec.saturating_mul(2)));
        let install_quota = Quota::per_second(nonzero(config.install_events_per_sec))
            .allow_burst(nonzero(config.install_events_burst));
        let store = Arc::new(opentally_store::Store::open_behind(
            &config.data,
            config.store.clone(),
        )?);
        store.prepare_loading()?;
        // What the log held unsealed at start (all the store had not sealed when the last run
        // ended, by a crash say) is loaded and sealed before the first request, as a clean stop
        // would have, a piece at a time with a seal after each: memory holds one piece however
        // large the backlog, and a crash while catching up keeps the pieces already sealed, so
        // repeated crashes still make progress. A failure (a full disk, say) does not keep the
        // server from starting: the loader thread goes on trying.
        let started = std::time::Instant::now();
        let durable = writer.durable_pos();
        loop {
            match store.load_step(durable, true) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "loading the log's unsealed events failed; retrying");
                    break;
                }
            }
        }
        let loaded_at_start = store.loaded_events();
        if loaded_at_start > 0 {
            tracing::info!(
                events = loaded_at_start,
                ms = started.elapsed().as_millis(),
                "loaded the log's unsealed events"
            );
        }
        let loader = Loader::start(store.clone(), writer.clone(), config.loader_nice, lock)
            .map_err(|source| StartError::Log {
                path: wcfg.log_dir.clone(),
                source,
            })?;
        let queries =
            opentally_store::guard::QueryRunner::new(QUERY_THREADS, config.query_max_concurrent)
                .map_err(StartError::Queries)?;
        let state = Arc::new(AppState {
            backend: store.clone(),
            store,
            loaded_at_start,
            queries,
            keys: auth::KeyCache::new(meta.clone()),
            meta,
            writer,
            metrics,
            install_mac: ingest::install_mac(&install_secret),
            disk_low: AtomicBool::new(false),
            key_limiter: RateLimiter::keyed(key_quota),
            install_limiter: RateLimiter::keyed(install_quota),
            privacy_limiter: RateLimiter::keyed(Quota::per_minute(nonzero(
                config.privacy_requests_per_minute,
            ))),
            privacy_project_limiter: RateLimiter::keyed(Quota::per_minute(nonzero(
                config.privacy_requests_per_minute.saturating_mul(10),
            ))),
            dashboard: dashboard::DashboardState::default(),
            config,
        });
        Ok(Collector {
            state,
            writer_thread,
            loader,
            report,
        })
    }
}

/// The router: ingest, health and metrics.
pub fn app(state: Arc<AppState>) -> Router {
    let single = |kind: MessageType| post(move |s, h, b| ingest::ingest(s, Some(kind), h, b));
    Router::new()
        .route("/v1/batch", post(|s, h, b| ingest::ingest(s, None, h, b)))
        .route("/v1/b", post(|s, h, b| ingest::ingest(s, None, h, b)))
        .route("/v1/track", single(MessageType::Track))
        .route("/v1/t", single(MessageType::Track))
        .route("/v1/identify", single(MessageType::Identify))
        .route("/v1/i", single(MessageType::Identify))
        .route("/v1/page", single(MessageType::Page))
        .route("/v1/p", single(MessageType::Page))
        .route("/v1/screen", single(MessageType::Screen))
        .route("/v1/s", single(MessageType::Screen))
        .route("/v1/group", single(MessageType::Group))
        .route("/v1/g", single(MessageType::Group))
        .route("/v1/alias", single(MessageType::Alias))
        .route("/v1/a", single(MessageType::Alias))
        .route("/v1/privacy/erase", post(privacy::erase))
        .route("/v1/privacy/export", get(privacy::export))
        .route(
            "/api/v1/projects/{project}/insights/{kind}",
            get(api::insight),
        )
        .route(
            "/api/v1/projects/{project}/sql",
            post(api::sql).layer(axum::extract::DefaultBodyLimit::max(64 * 1024)),
        )
        .route("/p/{project}/privacy", get(pages::transparency))
        .route("/privacy", get(pages::privacy_model))
        .merge(dashboard::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        // Bodies are read with their own cap in the handler, which answers in JSON.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if !state.writer.is_alive() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the log writer has stopped\n",
        );
    }
    if state.disk_low.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "free disk space is below the low-water mark\n",
        );
    }
    (StatusCode::OK, "ready\n")
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    #[allow(clippy::cast_possible_wrap)]
    state
        .metrics
        .queue_depth
        .set(state.writer.queue_depth() as i64);
    let store = state.store.stats();
    let m = &state.metrics;
    #[allow(clippy::cast_possible_wrap)]
    {
        m.store_tail_events.set(store.tail_rows as i64);
        m.store_unloaded_events.set(state.unloaded_events() as i64);
        m.store_parts.set(store.parts as i64);
        m.store_part_bytes.set(store.part_bytes as i64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
