//! What the log holds: one record per request, with the events accepted from it, normalised.

use opentally_protocol::{Message, Timestamp};
use serde::{Deserialize, Serialize};

/// One log record: the events of one request that were new.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    pub project: String,
    pub project_id: i64,
    pub received_at: Timestamp,
    pub events: Vec<StoredEvent>,
}

/// An event as stored: the message with its ids replaced by the keyed install hash, its
/// timestamp corrected for clock skew, and everything the catalog does not keep removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub message_id: String,
    /// Keyed hash of the install id (the server's secret), hex.
    pub install: String,
    /// When it happened, on the server's clock.
    pub timestamp: Timestamp,
    pub message: Message,
}

/// The receive day (days since the Unix epoch, UTC) of a timestamp.
pub fn day_of(t: Timestamp) -> i64 {
    t.unix_secs().div_euclid(86_400)
}
