//! OpenTally's embedded analytics store.
//!
//! The collector's durable log (the `opentally-log` crate) is the one write path. A loader tails
//! it into an in-memory Arrow tail and seals the tail into immutable Parquet parts, one per project
//! and day, recording in an atomically replaced manifest how far into the log the parts reach; a
//! restart rebuilds the tail from that position, so nothing is loaded twice. Queries run on Apache
//! DataFusion over a project's parts and its share of the tail; the insights API reaches them
//! through the [`Backend`] trait.

pub mod backend;
pub mod demo;
pub mod dump;
mod error;
pub mod guard;
mod hashing;
pub mod insight;
pub mod manifest;
mod options;
mod parquet_io;
pub mod query;
pub mod rollup;
pub mod schema;
pub mod sequence;
pub mod store;

pub use backend::Backend;
pub use insight::{Dim, Filters, Insight, InsightQuery, InsightResult, Interval};
pub use query::{Limits, QueryError, Table};
pub use store::{Options, Snapshot, Store, StoreError};
