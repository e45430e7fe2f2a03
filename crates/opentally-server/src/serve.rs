//! Running the collector on a socket: background upkeep, request timeouts, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use tower_http::timeout::TimeoutLayer;

use crate::{AppState, Collector, app};

/// Serves until `shutdown` resolves, then stops accepting, finishes the requests in flight, lets
/// the writer commit what it holds, checkpoints the dedup index, and returns.
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
    let timeout = state.config.request_timeout;
    let writer = state.writer.clone();
    let router = app(state).layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        timeout,
    ));
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
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
    served
}

/// Once a second: free disk space against the low-water mark, and key changes made by admin
/// commands. Once a minute: forget rate-limit state of idle installs.
async fn upkeep(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
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
        if let Err(e) = state.keys.refresh_if_changed() {
            tracing::warn!(error = %e, "cannot read the project database");
        }
        if n % 60 == 0 {
            state.install_limiter.retain_recent();
            state.install_limiter.shrink_to_fit();
            state.key_limiter.retain_recent();
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
