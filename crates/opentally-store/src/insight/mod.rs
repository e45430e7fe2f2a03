//! Insights as typed queries (DESIGN §7), each compiled to SQL over the `events` table, so every
//! backend that speaks this SQL runs the same types.
//!
//! `types` parses a query; `sql` compiles it to SQL over the `events` table; `rollups`
//! answers the standard insights from rollups (`sketches` counts their installs) and
//! `sequences` funnels and paths from per-install sequences, when they can; [`InsightQuery::run`]
//! picks the cheapest that can.

mod answer;
mod rollups;
mod sequences;
mod sketches;
mod sql;
#[cfg(test)]
mod tests;
mod types;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::query::{self, Limits, QueryError};
use crate::store::Snapshot;

pub use answer::InsightResult;
pub use rollups::Answer;
pub use types::{Dim, Filters, Insight, InsightQuery, Interval, MAX_FUNNEL_STEPS, parse_time};

impl InsightQuery {
    /// Runs the insight over a snapshot.
    pub async fn run(
        &self,
        snapshot: &Snapshot,
        limits: &Limits,
    ) -> Result<InsightResult, QueryError> {
        let started = Instant::now();
        if self.rollups_answer() {
            let internal = |e: crate::StoreError| QueryError::Internal(e.to_string());
            let rollups = snapshot.rollups().map_err(internal)?;
            let blocks = match self.blocks_range() {
                Some((from, until)) => snapshot.blocks_of_rollups(from, until).map_err(internal)?,
                None => crate::rollup::Blocks::default(),
            };
            if let Some(a) = self.from_rollups(&rollups, &blocks) {
                return Ok(InsightResult {
                    kind: self.insight.kind(),
                    tables: a.tables,
                    source: "rollups",
                    distinct: if a.estimated {
                        "estimated: theta sketches, exact up to 4,096 installs per count"
                    } else {
                        "exact"
                    },
                    query_ms: started.elapsed().as_secs_f64() * 1000.0,
                });
            }
        }
        if let Some(tables) = self.sequences_answer(snapshot)? {
            return Ok(InsightResult {
                kind: self.insight.kind(),
                tables,
                source: "sequences",
                distinct: "exact",
                query_ms: started.elapsed().as_secs_f64() * 1000.0,
            });
        }
        // The time spent finding that rollups and sequences could not answer counts too.
        let mut scanned = self.scan(snapshot, limits).await?;
        scanned.query_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(scanned)
    }

    /// Runs the insight's SQL over the events, even when rollups could answer it.
    pub async fn scan(
        &self,
        snapshot: &Snapshot,
        limits: &Limits,
    ) -> Result<InsightResult, QueryError> {
        let started = Instant::now();
        // One session for all of the insight's statements: building it lists the parts.
        let ctx = tokio::time::timeout(limits.time, query::session(snapshot, limits))
            .await
            .map_err(|_| QueryError::Timeout(limits.time))??;
        let mut tables = BTreeMap::new();
        for (name, sql) in self.to_sql() {
            tables.insert(name, query::run_in(&ctx, &sql, limits).await?);
        }
        Ok(InsightResult {
            kind: self.insight.kind(),
            tables,
            source: "events",
            distinct: "exact",
            query_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}
