//! Connections: at most `max_connections` open at once, each closed if it takes longer than
//! `header_timeout` to send a request's headers, and, when all are taken, the one idle the
//! longest (waiting for headers: a slowloris socket or a quiet keep-alive), or busy the longest
//! with a request that has shown no valid key yet (a body trickled in before its `writeKey`),
//! closed to make room once it has been so for a second, so that held sockets delay a new
//! client by a second at most, not by a header timeout. A shutdown stops
//! accepting, closes the idle connections and waits at most `shutdown_grace` for requests in
//! flight.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

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

/// How long a connection must have been idle, or busy with a request whose credentials are not
/// checked yet, before it may be closed to make room: a client just accepted gets this long to
/// send its request.
const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// Waiting for a request's headers.
const IDLE: u8 = 0;
/// Serving a request whose key or token has not been checked yet (a body being read before
/// its `writeKey` can be found, say).
const UNCHECKED: u8 = 1;
/// Serving a request from a client that showed a valid key or token.
const CHECKED: u8 = 2;

/// Milliseconds since the process's first connection, for the connections' timestamps.
fn now_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Conn {
    /// [`IDLE`], [`UNCHECKED`] or [`CHECKED`].
    state: AtomicU8,
    /// When it entered that state ([`now_ms`]).
    since: AtomicU64,
    /// Told to close (its slot is needed).
    close: tokio::sync::Notify,
}

impl Conn {
    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Relaxed);
        self.since.store(now_ms(), Ordering::Relaxed);
    }

    /// When it became closable to make room, if it is: idle, or serving a request with
    /// no valid credentials yet.
    fn evictable_since(&self) -> Option<u64> {
        (self.state.load(Ordering::Relaxed) != CHECKED).then(|| self.since.load(Ordering::Relaxed))
    }
}

/// Who sent a request, for per-client rate limits, without the address: a hash of the peer's IP
/// address keyed with a secret drawn when the process starts, so it means nothing outside this
/// process and is never written anywhere. Behind a proxy, the proxy is the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(pub u128);

impl ClientKey {
    fn of(ip: std::net::IpAddr) -> ClientKey {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("the OS random source is available");
            u64::from_le_bytes(b)
        });
        let bytes = match ip.to_canonical() {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        ClientKey(xxhash_rust::xxh3::xxh3_128_with_seed(&bytes, seed))
    }
}

tokio::task_local! {
    /// The connection whose request is being served, for [`checked`].
    static CURRENT: Arc<Conn>;
}

/// Marks the connection serving the current request as a client with valid credentials: it is
/// no longer closed to make room for others. Called by the handlers once a key or token checks.
pub fn checked() {
    let _ = CURRENT.try_with(|c| c.set(CHECKED));
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
            state: AtomicU8::new(IDLE),
            since: AtomicU64::new(now_ms()),
            close: tokio::sync::Notify::new(),
        });
        self.conns.insert(id, conn.clone());
        (id, conn)
    }

    /// Tells the connection that has been idle (or busy without credentials) the longest, and
    /// at least [`EVICTABLE_AFTER`], to close; false if there is none.
    fn evict_oldest_idle(&mut self) -> bool {
        let limit =
            now_ms().saturating_sub(u64::try_from(EVICTABLE_AFTER.as_millis()).unwrap_or(u64::MAX));
        let oldest = self
            .conns
            .iter()
            .filter_map(|(id, c)| c.evictable_since().map(|since| (since, *id)))
            .filter(|(since, _)| *since <= limit)
            .min()
            .map(|(_, id)| id);
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
            let idle = c.state.load(Ordering::Relaxed) == IDLE;
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
        let slot = loop {
            if let Ok(s) = slots.clone().try_acquire_owned() {
                break Some(s);
            }
            // Full: make room by closing the longest-idle connection; if none has been idle
            // long enough, wait a moment (or for one to finish) and look again.
            lock(&open).evict_oldest_idle();
            tokio::select! {
                s = slots.clone().acquire_owned() => break s.ok(),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = &mut shutdown => break None,
            }
        };
        let Some(slot) = slot else { break };
        let (stream, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => (stream, ClientKey::of(peer.ip())),
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
            client,
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
    client: ClientKey,
}

impl<S, B> hyper::service::Service<hyper::Request<B>> for Tracked<S>
where
    S: hyper::service::Service<hyper::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, mut req: hyper::Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.client);
        self.conn.set(UNCHECKED);
        let conn = self.conn.clone();
        let answer = CURRENT.scope(conn.clone(), self.inner.call(req));
        Box::pin(async move {
            let r = answer.await;
            conn.set(IDLE);
            r
        })
    }
}
