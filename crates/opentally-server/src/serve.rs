//! Running the collector on a socket: background upkeep, request timeouts, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use tower_http::timeout::TimeoutLayer;

use crate::{AppState, Collector, app};

/// Serves until `shutdown` resolves, then stops accepting, finishes the requests in flight
/// (waiting at most `shutdown_grace`), lets the writer commit what it holds, checkpoints the
/// dedup index, and returns.
pub async fn serve(
    collector: Collector,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Collector {
        state,
        writer_thread,
        mut loader,
        ..
    } = collector;
    let upkeep = tokio::spawn(upkeep(state.clone()));
    let config = state.config.clone();
    let writer = state.writer.clone();
    let router = app(state).layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        config.request_timeout,
    ));
    crate::conn::accept_loop(listener, router, &config, shutdown).await;
    upkeep.abort();
    let _ = upkeep.await;
    // Every request in flight has had its answer; the writer commits whatever is still queued,
    // checkpoints the dedup index, and ends.
    tokio::task::spawn_blocking(move || {
        writer.stop();
        let joined = writer_thread.join();
        // Then the loader seals what the writer committed last.
        loader.stop();
        joined
    })
    .await
    .map_err(std::io::Error::other)?
    .map_err(|_| std::io::Error::other("the log writer panicked"))?;
    Ok(())
}

/// Once a second: free disk space against the low-water mark, and key changes made by admin
/// commands. Once a minute: forget rate-limit state of idle installs. Once an hour: each
/// project's retention.
async fn upkeep(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    let mut deletions = Some(crate::deletion::Deletions::default());
    loop {
        tick.tick().await;
        n += 1;
        let data = state.config.data.clone();
        let free = tokio::task::spawn_blocking(move || fs4::available_space(&data)).await;
        if let Ok(Ok(free)) = free {
            let low = free < state.config.disk_low_water_bytes;
            if state.disk_low.swap(low, Ordering::Relaxed) != low {
                if low {
                    tracing::warn!(
                        free_bytes = free,
                        "free disk space below the low-water mark: ingest answers 503"
                    );
                } else {
                    tracing::info!(
                        free_bytes = free,
                        "free disk space recovered: ingest resumes"
                    );
                }
            }
        }
        if let Err(e) = state.refresh_projects() {
            tracing::warn!(error = %e, "cannot read the project database");
        }
        // Deleted projects' events, once their keys are gone from the cache (just above).
        if let Some(mut d) = deletions.take() {
            let st = state.clone();
            let done = tokio::task::spawn_blocking(move || {
                // Time for a request authorised just before the keys went to be written.
                let settle = st.config.request_timeout + Duration::from_secs(2);
                let r = d.step(&st.meta, &st.store, st.writer.durable_pos(), settle);
                (d, r)
            })
            .await;
            match done {
                Ok((mut d, r)) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "cannot remove a deleted project's events; will retry");
                    }
                    if d.take_finished() {
                        state.writer.start_new_segment();
                    }
                    deletions = Some(d);
                }
                Err(e) => {
                    tracing::error!(error = %e, "removing deleted projects' events panicked");
                    deletions = Some(crate::deletion::Deletions::default());
                }
            }
        }
        // Each project's retention: soon after start, then hourly.
        if n % 3600 == 5 {
            let st = state.clone();
            let today = opentally_log::day_of(opentally_protocol::Timestamp::now());
            // Not awaited: it waits for the store's lock, and the checks above must go on.
            drop(tokio::task::spawn_blocking(move || {
                if let Err(e) = crate::retention::enforce(&st.meta, &st.store, today) {
                    tracing::warn!(error = %e, "the retention job failed; retrying in an hour");
                }
            }));
        }
        if n % 60 == 0 {
            state.install_limiter.retain_recent();
            state.install_limiter.shrink_to_fit();
            state.key_limiter.retain_recent();
            state.privacy_limiter.retain_recent();
            state.privacy_project_limiter.retain_recent();
            state.dashboard.sessions.prune();
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
