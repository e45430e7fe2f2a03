//! OpenTally's durable log: the collector's one write path and the store's one input.
//!
//! - [`record`]: what a record holds (the events of one request), its one writer and one reader;
//! - [`segment`]: records framed with a checksum in numbered segment files, appended with fsync,
//!   recovered to the last whole record after a crash, read by position;
//! - [`DataDir`]: every path in a data dir.

pub mod data_dir;
pub mod record;
pub mod segment;

pub use data_dir::DataDir;
pub use record::{LogRecord, RecordView, RecordWriter, StoredEvent, day_of};
pub use segment::{LogPos, LogWriter, Recovery};
