//! `opentally dump`: every stored event, one JSON object per line, from wherever it is held.
//! Today events are held in the durable log only.

use std::io::{self, Write};
use std::path::Path;

use serde_json::Value;

use crate::stored::LogRecord;
use crate::wal::{self, LogPos};

/// Writes every stored event (of `project`, if given) to `out`; returns how many.
pub fn dump(data: &Path, project: Option<&str>, out: &mut dyn Write) -> io::Result<u64> {
    let mut count = 0u64;
    let mut result = Ok(());
    let mut bad = 0u64;
    wal::read_from(&data.join("log"), LogPos::default(), |_, payload| {
        if result.is_err() {
            return;
        }
        let Ok(record) = serde_json::from_slice::<LogRecord>(payload) else {
            bad += 1;
            return;
        };
        if project.is_some_and(|p| p != record.project) {
            return;
        }
        for e in record.events {
            let mut line = serde_json::Map::new();
            line.insert("project".into(), Value::String(record.project.clone()));
            line.insert("messageId".into(), Value::String(e.message_id));
            line.insert("install".into(), Value::String(e.install));
            line.insert(
                "receivedAt".into(),
                Value::String(record.received_at.to_string()),
            );
            if let Ok(Value::Object(fields)) = serde_json::to_value(&e.message) {
                for (k, v) in fields {
                    line.entry(k).or_insert(v);
                }
            }
            result = serde_json::to_writer(&mut *out, &line)
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if result.is_err() {
                return;
            }
            count += 1;
        }
    })?;
    result?;
    if bad > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{bad} log records could not be read"),
        ));
    }
    Ok(count)
}
