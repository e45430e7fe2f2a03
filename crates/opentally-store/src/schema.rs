//! The columns of the `events` table, and stored events turned into Arrow record batches.
//!
//! One fixed schema for every project: the fields every insight reads get their own column (the
//! `app`, `library`, `os` and `runtime` blocks, the environment flags, the reserved properties
//! `duration_ms`, `outcome` and `error_type`); the properties, the context and every other field
//! of the message are kept whole as JSON text, which [`json_get`](crate::query) reads for ad hoc
//! filters and breakdowns on any catalog property or context field.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use opentally_protocol::event::{DURATION_MS, ERROR_TYPE, OUTCOME};
use serde_json::Value;

use crate::stored::StoredEvent;

/// Time zone of every timestamp column.
pub const UTC: &str = "UTC";

/// The columns, in order. `(name, type, nullable)`.
const COLUMNS: &[(&str, Kind, bool)] = &[
    ("project", Kind::Text, false),
    ("message_id", Kind::Text, false),
    ("install", Kind::Text, false),
    ("type", Kind::Text, false),
    ("event", Kind::Text, true),
    ("ts", Kind::Time, false),
    ("received_at", Kind::Time, false),
    ("duration_ms", Kind::Float, true),
    ("outcome", Kind::Text, true),
    ("error_type", Kind::Text, true),
    ("app_name", Kind::Text, true),
    ("app_version", Kind::Text, true),
    ("library_name", Kind::Text, true),
    ("library_version", Kind::Text, true),
    ("os_name", Kind::Text, true),
    ("os_version", Kind::Text, true),
    ("runtime_name", Kind::Text, true),
    ("runtime_version", Kind::Text, true),
    ("env_ci", Kind::Bool, true),
    ("env_docker", Kind::Bool, true),
    ("env_notebook", Kind::Text, true),
    ("session", Kind::Text, true),
    ("properties", Kind::Text, true),
    ("context", Kind::Text, true),
    ("extra", Kind::Text, true),
];

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Time,
    Float,
    Bool,
}

/// Context fields with a column of their own: `(dotted path, column)`. Anything else in the
/// context is reached through `json_get(context, 'a.b')`.
pub const CONTEXT_COLUMNS: &[(&str, &str)] = &[
    ("app.name", "app_name"),
    ("app.version", "app_version"),
    ("library.name", "library_name"),
    ("library.version", "library_version"),
    ("os.name", "os_name"),
    ("os.version", "os_version"),
    ("runtime.name", "runtime_name"),
    ("runtime.version", "runtime_version"),
    ("environment.ci", "env_ci"),
    ("environment.docker", "env_docker"),
    ("environment.notebook", "env_notebook"),
    ("session", "session"),
];

/// The names of every column, in order.
pub fn column_names() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().map(|(n, _, _)| *n)
}

/// The Arrow schema of the `events` table.
pub fn schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(
            COLUMNS
                .iter()
                .map(|(name, kind, nullable)| {
                    let t = match kind {
                        Kind::Text => DataType::Utf8,
                        Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
                        Kind::Float => DataType::Float64,
                        Kind::Bool => DataType::Boolean,
                    };
                    Field::new(*name, t, *nullable)
                })
                .collect::<Vec<_>>(),
        ))
    });
    SCHEMA.clone()
}

/// Micro-seconds since the Unix epoch.
fn micros(t: opentally_protocol::Timestamp) -> i64 {
    i64::try_from(t.unix_nanos().div_euclid(1000)).expect("timestamps are clamped to years 0–9999")
}

fn text_at<'a>(map: &'a serde_json::Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = map.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// A JSON scalar as text: strings as they are, numbers and booleans printed, anything else none.
pub fn scalar_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        _ => None,
    }
}

/// Builds record batches of the `events` schema, one stored event at a time.
pub struct BatchBuilder {
    text: Vec<StringBuilder>,
    ts: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    duration: Float64Builder,
    env_ci: BooleanBuilder,
    env_docker: BooleanBuilder,
    rows: usize,
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Positions in `BatchBuilder::text`, in column order of the text columns.
mod t {
    pub const PROJECT: usize = 0;
    pub const MESSAGE_ID: usize = 1;
    pub const INSTALL: usize = 2;
    pub const TYPE: usize = 3;
    pub const EVENT: usize = 4;
    pub const OUTCOME: usize = 5;
    pub const ERROR_TYPE: usize = 6;
    /// The first of the context text columns, in `CONTEXT_TEXT` order.
    pub const CONTEXT: usize = 7;
    pub const PROPERTIES: usize = CONTEXT + super::CONTEXT_TEXT.len();
    pub const CONTEXT_JSON: usize = PROPERTIES + 1;
    pub const EXTRA: usize = PROPERTIES + 2;
    pub const COUNT: usize = PROPERTIES + 3;
}

/// The context fields held in text columns, in column order.
const CONTEXT_TEXT: [&str; 10] = [
    "app.name",
    "app.version",
    "library.name",
    "library.version",
    "os.name",
    "os.version",
    "runtime.name",
    "runtime.version",
    "environment.notebook",
    "session",
];

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        let tz: Arc<str> = UTC.into();
        BatchBuilder {
            text: (0..t::COUNT).map(|_| StringBuilder::new()).collect(),
            ts: TimestampMicrosecondBuilder::new().with_timezone(tz.clone()),
            received_at: TimestampMicrosecondBuilder::new().with_timezone(tz),
            duration: Float64Builder::new(),
            env_ci: BooleanBuilder::new(),
            env_docker: BooleanBuilder::new(),
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds one event of `project`, received at `received_at`.
    pub fn push(
        &mut self,
        project: &str,
        received_at: opentally_protocol::Timestamp,
        e: &StoredEvent,
    ) {
        let m = &e.message;
        let text = &mut self.text;
        text[t::PROJECT].append_value(project);
        text[t::MESSAGE_ID].append_value(&e.message_id);
        text[t::INSTALL].append_value(&e.install);
        text[t::TYPE].append_value(m.kind.as_str());
        text[t::EVENT].append_option(m.event.as_deref().or(m.name.as_deref()));
        self.ts.append_value(micros(e.timestamp));
        self.received_at.append_value(micros(received_at));
        self.duration
            .append_option(m.properties.get(DURATION_MS).and_then(Value::as_f64));
        let prop_text = |k: &str| m.properties.get(k).and_then(scalar_text);
        text[t::OUTCOME].append_option(prop_text(OUTCOME));
        text[t::ERROR_TYPE].append_option(prop_text(ERROR_TYPE));
        for (i, path) in CONTEXT_TEXT.iter().enumerate() {
            text[t::CONTEXT + i].append_option(text_at(&m.context, path).and_then(scalar_text));
        }
        self.env_ci
            .append_option(text_at(&m.context, "environment.ci").and_then(Value::as_bool));
        self.env_docker
            .append_option(text_at(&m.context, "environment.docker").and_then(Value::as_bool));
        let json = |map: &serde_json::Map<String, Value>| {
            (!map.is_empty()).then(|| serde_json::to_string(map).expect("a JSON map serialises"))
        };
        text[t::PROPERTIES].append_option(json(&m.properties));
        text[t::CONTEXT_JSON].append_option(json(&m.context));
        text[t::EXTRA].append_option(extra_json(m));
        self.rows += 1;
    }

    /// The rows added so far as one batch; the builder is empty again afterwards.
    pub fn finish(&mut self) -> RecordBatch {
        let mut text = self
            .text
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut next = || text.next().expect("one builder per text column");
        let project = next();
        let message_id = next();
        let install = next();
        let kind = next();
        let event = next();
        let outcome = next();
        let error_type = next();
        let ctx: Vec<ArrayRef> = (0..CONTEXT_TEXT.len()).map(|_| next()).collect();
        let properties = next();
        let context = next();
        let extra = next();
        let columns: Vec<ArrayRef> = vec![
            project,
            message_id,
            install,
            kind,
            event,
            Arc::new(self.ts.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.duration.finish()),
            outcome,
            error_type,
            ctx[0].clone(),
            ctx[1].clone(),
            ctx[2].clone(),
            ctx[3].clone(),
            ctx[4].clone(),
            ctx[5].clone(),
            ctx[6].clone(),
            ctx[7].clone(),
            Arc::new(self.env_ci.finish()),
            Arc::new(self.env_docker.finish()),
            ctx[8].clone(),
            ctx[9].clone(),
            properties,
            context,
            extra,
        ];
        self.rows = 0;
        RecordBatch::try_new(schema(), columns).expect("columns match the schema")
    }
}

/// The fields of a message that have no column (everything but type, messageId, timestamp,
/// event, properties and context), as a JSON object; none when there are none. A page or
/// screen name is in the `event` column and stays here too, so the message reads back whole.
fn extra_json(m: &opentally_protocol::Message) -> Option<String> {
    let Ok(Value::Object(mut all)) = serde_json::to_value(m) else {
        return None;
    };
    for k in [
        "type",
        "messageId",
        "timestamp",
        "event",
        "properties",
        "context",
    ] {
        all.remove(k);
    }
    (!all.is_empty()).then(|| serde_json::to_string(&all).expect("a JSON map serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_builder_agree() {
        let mut b = BatchBuilder::new();
        let batch = b.finish();
        assert_eq!(batch.schema(), schema());
        assert_eq!(
            batch.num_columns(),
            column_names().count(),
            "every column is built"
        );
        for (path, col) in CONTEXT_COLUMNS {
            assert!(schema().field_with_name(col).is_ok(), "{path} → {col}");
        }
    }
}
