//! The seam between the insights API and where events are kept: the typed insights and SQL go
//! to a [`Backend`], which the embedded [`Store`] implements. A second backend slots in beside it
//! without the HTTP API or the CLI changing.

use std::future::Future;
use std::pin::Pin;

use crate::insight::{InsightQuery, InsightResult};
use crate::query::{self, Limits, QueryError, Table};
use crate::store::Store;

/// A query's answer, to be awaited on the query threads. Owns what it reads (a snapshot for the
/// embedded store), so it outlives the call that made it.
pub type Answer<T> = Pin<Box<dyn Future<Output = Result<T, QueryError>> + Send + 'static>>;

/// Where insights and SQL are answered.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// A short name for logs and answers: `embedded`, say.
    fn name(&self) -> &'static str;

    /// Answers a typed insight over one project's events.
    fn insight(&self, project: &str, query: InsightQuery, limits: Limits) -> Answer<InsightResult>;

    /// Runs one read-only SQL statement over one project's `events` table.
    fn sql(&self, project: &str, statement: String, limits: Limits) -> Answer<Table>;

    /// Every stored event of one install (its keyed hash) in one project, one JSON object a
    /// line, as `opentally dump` writes them; a [`QueryError::Memory`] past `limits`' memory.
    fn export(&self, project: &str, install: &str, limits: Limits) -> Answer<Vec<u8>>;
}

impl Backend for Store {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn insight(&self, project: &str, query: InsightQuery, limits: Limits) -> Answer<InsightResult> {
        // The snapshot is taken now: the answer reads the parts and tail of this moment.
        let snapshot = self.snapshot(project);
        Box::pin(async move { query.run(&snapshot, &limits).await })
    }

    fn sql(&self, project: &str, statement: String, limits: Limits) -> Answer<Table> {
        let snapshot = self.snapshot(project);
        Box::pin(async move { query::run_sql(&snapshot, &statement, &limits).await })
    }

    fn export(&self, project: &str, install: &str, limits: Limits) -> Answer<Vec<u8>> {
        let snapshot = self.snapshot(project);
        let install = install.to_owned();
        Box::pin(async move {
            let mut out = Vec::new();
            match crate::dump::export(&snapshot, &install, limits.memory_bytes, &mut out) {
                Ok(_) => Ok(out),
                Err(crate::dump::ExportError::TooLarge(n)) => Err(QueryError::Memory(format!(
                    "the install's events take more than {n} bytes as JSON"
                ))),
                Err(crate::dump::ExportError::Store(e)) => Err(QueryError::Internal(e.to_string())),
            }
        })
    }
}
