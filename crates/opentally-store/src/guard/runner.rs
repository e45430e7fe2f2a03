//! The query threads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::query::QueryError;

/// Runs queries on a runtime of their own: threads with deep stacks (a planner's recursion
/// over a deep plan stays on them, never on the threads serving ingest), at most a few at a
/// time, each under its time limit, and cancelled when its caller stops waiting.
#[derive(Debug)]
pub struct QueryRunner {
    runtime: Option<tokio::runtime::Runtime>,
    permits: Arc<tokio::sync::Semaphore>,
    max_concurrent: usize,
}

/// The stack each query thread gets: deep plans recurse, and an overflow aborts the process.
const QUERY_STACK_BYTES: usize = 64 << 20;

/// How long a query waits for one of the running ones to finish before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

impl QueryRunner {
    /// A runner with `threads` threads that runs at most `max_concurrent` queries at once.
    pub fn new(threads: usize, max_concurrent: usize) -> std::io::Result<QueryRunner> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("opentally-query")
            .thread_stack_size(QUERY_STACK_BYTES)
            .enable_time()
            .build()?;
        Ok(QueryRunner {
            runtime: Some(runtime),
            permits: Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
            max_concurrent: max_concurrent.max(1),
        })
    }

    /// Runs `work` on the query threads. Waits at most a few seconds for a turn
    /// ([`QueryError::Busy`] after that); dropping the returned future cancels the query.
    pub async fn run<T, F>(&self, work: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let permit = tokio::time::timeout(QUEUE_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| QueryError::Busy(self.max_concurrent))?
            .map_err(|_| QueryError::Internal("the query runner has stopped".into()))?;
        let Some(runtime) = &self.runtime else {
            return Err(QueryError::Internal("the query runner has stopped".into()));
        };
        let mut task = AbortOnDrop(runtime.spawn(async move {
            let _permit = permit;
            work.await
        }));
        match (&mut task.0).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(QueryError::Internal("the query panicked".into())),
            Err(_) => Err(QueryError::Internal("the query was cancelled".into())),
        }
    }

    /// Runs `work` to its end from a thread outside any runtime (the CLI).
    pub fn block_on<T, F>(&self, work: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(QueryError::Internal("the query runner has stopped".into()));
        };
        runtime.block_on(self.run(work))
    }
}

impl Drop for QueryRunner {
    fn drop(&mut self) {
        // Dropped from async code too, where a blocking shutdown would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Aborts the task when the caller stops waiting for it (a client that hung up).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
