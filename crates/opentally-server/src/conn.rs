//! Connections: at most `max_connections` open at once, each closed if it takes longer than
//! `header_timeout` to send a request's headers, and, when all are taken, the longest-idle one
//! (waiting for headers, a slowloris socket or a quiet keep-alive) closed to make room, so that
//! held sockets delay a new client by one accept, not by a header timeout. A shutdown stops
//! accepting, closes the idle connections and waits at most `shutdown_grace` for requests in
//! flight.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// File descriptors kept free of connections: the log, its segments, parts being written and
/// read, the project database, the dedup files.
const RESERVED_FDS: u64 = 128;

/// The connection cap: the configured one, lowered to what the open-file limit leaves.
fn connection_cap(configured: usize) -> usize {
    #[cfg(target_os = "linux")]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(soft) = limit.current {
            let room =
                usize::try_from(soft.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
            if room < configured {
                tracing::warn!(
                    configured,
                    open_file_limit = soft,
                    cap = room,
                    "max_connections lowered to what the open-file limit leaves"
                );
                return room;
            }
        }
    }
    configured
}

/// One open connection, as the accept loop sees it.
#[derive(Debug, Default)]
struct Conn {
    /// No request in progress: waiting for a request's headers.
    idle: AtomicBool,
    /// Told to close (it is idle and its slot is needed).
    close: tokio::sync::Notify,
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Open {
    next: u64,
    conns: BTreeMap<u64, Arc<Conn>>,
}

impl Open {
    fn add(&mut self) -> (u64, Arc<Conn>) {
        let id = self.next;
        self.next += 1;
        let conn = Arc::new(Conn {
            idle: AtomicBool::new(true),
            close: tokio::sync::Notify::new(),
        });
        self.conns.insert(id, conn.clone());
        (id, conn)
    }

    /// Tells the oldest idle connection to close; false if every one is busy.
    fn evict_oldest_idle(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .find(|(_, c)| c.idle.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.conns.remove(&id)) {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Open {
    /// Tells every idle connection to close.
    fn close_idle(&mut self) {
        self.conns.retain(|_, c| {
            let idle = c.idle.load(Ordering::Relaxed);
            if idle {
                c.close.notify_one();
            }
            !idle
        });
    }
}

fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Accepts connections on `listener` and serves `router` on them until `shutdown`, then waits
/// at most `config.shutdown_grace` for the ones open.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    config: &crate::Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let cap = connection_cap(config.max_connections);
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = if let Ok(s) = slots.clone().try_acquire_owned() {
            s
        } else {
            // Full: make room by closing the longest-idle connection, if any is idle;
            // otherwise wait for one to finish.
            lock(&open).evict_oldest_idle();
            tokio::select! {
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            }
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning on the error.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (id, conn) = lock(&open).add();
        let service = Tracked {
            inner: TowerToHyperService::new(router.clone()),
            conn: conn.clone(),
        };
        let serving = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let serving = graceful.watch(serving);
        let open = open.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = serving => {}
                // Dropping the connection closes its socket; it had no request in progress.
                () = conn.close.notified() => {}
            }
            lock(&open).conns.remove(&id);
            drop(slot);
        });
    }
    drop(listener);
    // Idle connections have nothing to finish: closed now. Busy ones get the grace.
    lock(&open).close_idle();
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?config.shutdown_grace,
            "connections still open at the end of the shutdown grace; closing them"
        );
    }
}

/// A connection's service that marks it busy while a request is in progress.
#[derive(Debug, Clone)]
struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S, B> hyper::service::Service<hyper::Request<B>> for Tracked<S>
where
    S: hyper::service::Service<hyper::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: hyper::Request<B>) -> Self::Future {
        self.conn.idle.store(false, Ordering::Relaxed);
        let conn = self.conn.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            conn.idle.store(true, Ordering::Relaxed);
            r
        })
    }
}
