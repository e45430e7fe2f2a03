//! Every stored event as one JSON object per line, from the parts and the tail.

use std::io::{self, Write};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use opentally_protocol::Timestamp;
use serde_json::{Map, Value};

use crate::store::{Snapshot, StoreError, read_part};

fn ts_text(micros: i64) -> String {
    Timestamp::from_unix_nanos(i128::from(micros) * 1000)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Writes the rows of one batch; returns how many.
pub fn write_batch(batch: &RecordBatch, out: &mut dyn Write) -> io::Result<u64> {
    let text = |n: &str| {
        batch
            .column_by_name(n)
            .expect("a schema column")
            .as_string::<i32>()
            .clone()
    };
    let time = |n: &str| {
        batch
            .column_by_name(n)
            .expect("a schema column")
            .as_primitive::<TimestampMicrosecondType>()
            .clone()
    };
    let (project, message_id, install, kind, event) = (
        text("project"),
        text("message_id"),
        text("install"),
        text("type"),
        text("event"),
    );
    let (properties, context, extra) = (text("properties"), text("context"), text("extra"));
    let (ts, received_at) = (time("ts"), time("received_at"));
    let object = |a: &arrow::array::StringArray, i: usize| -> Option<Map<String, Value>> {
        if a.is_null(i) {
            return None;
        }
        match serde_json::from_str(a.value(i)) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    };
    for i in 0..batch.num_rows() {
        let mut line = Map::new();
        line.insert("project".into(), project.value(i).into());
        line.insert("messageId".into(), message_id.value(i).into());
        line.insert("install".into(), install.value(i).into());
        line.insert("receivedAt".into(), ts_text(received_at.value(i)).into());
        line.insert("type".into(), kind.value(i).into());
        line.insert("timestamp".into(), ts_text(ts.value(i)).into());
        let extra = object(&extra, i).unwrap_or_default();
        if !event.is_null(i) && !extra.contains_key("name") {
            line.insert("event".into(), event.value(i).into());
        }
        if let Some(p) = object(&properties, i) {
            line.insert("properties".into(), Value::Object(p));
        }
        if let Some(c) = object(&context, i) {
            line.insert("context".into(), Value::Object(c));
        }
        for (k, v) in extra {
            line.entry(k).or_insert(v);
        }
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(batch.num_rows() as u64)
}

/// Writes every event of a snapshot: the parts in manifest order, then the tail.
pub fn dump(snapshot: &Snapshot, out: &mut dyn Write) -> Result<u64, StoreError> {
    let mut n = 0;
    for p in &snapshot.parts {
        for b in read_part(&p.path)? {
            n += write_batch(&b, out)?;
        }
    }
    for b in snapshot.tail.iter().map(|b| &b.rows) {
        n += write_batch(b, out)?;
    }
    Ok(n)
}

/// Writes every event of `install` (its keyed hash) in a snapshot, as [`dump`] writes them, and
/// stops with an error once more than `max_bytes` are written. Parts whose sequences do not name
/// the install are skipped unread. Returns how many events.
pub fn export(
    snapshot: &Snapshot,
    install: &str,
    max_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<u64, ExportError> {
    let mut n = 0;
    let mut write = |b: &RecordBatch, out: &mut Vec<u8>| -> Result<(), ExportError> {
        let mine = crate::schema::filter_install(b, install, true)?;
        if mine.num_rows() > 0 {
            n += write_batch(&mine, out).map_err(StoreError::from)?;
            if out.len() > max_bytes {
                return Err(ExportError::TooLarge(max_bytes));
            }
        }
        Ok(())
    };
    for p in &snapshot.parts {
        if !p.may_hold(install)? {
            continue;
        }
        for b in read_part(&p.path)? {
            write(&b, out)?;
        }
    }
    for b in snapshot.tail.iter().map(|b| &b.rows) {
        write(b, out)?;
    }
    Ok(n)
}

/// Why an export has no answer.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the export is larger than {0} bytes")]
    TooLarge(usize),
}

impl From<arrow::error::ArrowError> for ExportError {
    fn from(e: arrow::error::ArrowError) -> ExportError {
        ExportError::Store(e.into())
    }
}
