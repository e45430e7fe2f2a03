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
use serde::de::DeserializeSeed as _;
use serde_json::Value;
use serde_json::value::RawValue;

use opentally_log::StoredEvent;
use opentally_log::record::EventView;
use opentally_protocol::message::CowStr;

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

/// The context flags held in boolean columns, in column order.
const CONTEXT_FLAGS: [&str; 2] = ["environment.ci", "environment.docker"];

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
        // One way from an event to its row: through the text the log would hold.
        let json = serde_json::to_string(e).expect("a stored event serialises");
        let view: EventView<'_> = serde_json::from_str(&json).expect("a stored event reads back");
        self.push_view(project, received_at, &view);
    }

    /// Adds one event read in place from the log.
    pub fn push_view(
        &mut self,
        project: &str,
        received_at: opentally_protocol::Timestamp,
        e: &EventView<'_>,
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
        let mut props: [Option<Value>; 3] = Default::default();
        if let Some(raw) = m.properties {
            static PROPERTIES_PICKED: LazyLock<Paths> =
                LazyLock::new(|| Paths::new(&[DURATION_MS, OUTCOME, ERROR_TYPE]));
            pick(raw, &PROPERTIES_PICKED, &mut props);
        }
        let [duration, outcome, error_type] = &props;
        self.duration
            .append_option(duration.as_ref().and_then(Value::as_f64));
        text[t::OUTCOME].append_option(outcome.as_ref().and_then(scalar_text));
        text[t::ERROR_TYPE].append_option(error_type.as_ref().and_then(scalar_text));
        // The text columns' paths, then the flags'.
        let mut ctx: [Option<Value>; CONTEXT_TEXT.len() + CONTEXT_FLAGS.len()] = Default::default();
        if let Some(raw) = m.context {
            static PICKED: LazyLock<Paths> = LazyLock::new(|| {
                Paths::new(&[CONTEXT_TEXT.as_slice(), CONTEXT_FLAGS.as_slice()].concat())
            });
            pick(raw, &PICKED, &mut ctx);
        }
        let (texts, flags) = ctx.split_at(CONTEXT_TEXT.len());
        for (i, v) in texts.iter().enumerate() {
            text[t::CONTEXT + i].append_option(v.as_ref().and_then(scalar_text));
        }
        let [ci, docker] = flags else {
            unreachable!("one value per flag")
        };
        self.env_ci
            .append_option(ci.as_ref().and_then(Value::as_bool));
        self.env_docker
            .append_option(docker.as_ref().and_then(Value::as_bool));
        text[t::PROPERTIES].append_option(object(m.properties));
        text[t::CONTEXT_JSON].append_option(object(m.context));
        text[t::EXTRA].append_option(extra_json(&m.rest));
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
/// event, properties and context), as a JSON object with sorted keys; none when there are none.
/// A page or screen name is in the `event` column and stays here too, so the message reads back
/// whole.
fn extra_json(rest: &[(std::borrow::Cow<'_, str>, &RawValue)]) -> Option<String> {
    if rest.is_empty() {
        return None;
    }
    let mut sorted: Vec<&(std::borrow::Cow<'_, str>, &RawValue)> = rest.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(
        2 + rest
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k.as_ref()).expect("a string serialises"));
        out.push(':');
        out.push_str(v.get());
    }
    out.push('}');
    Some(out)
}

/// A JSON object's text for its column; none when it is empty.
fn object(raw: Option<&RawValue>) -> Option<&str> {
    raw.map(RawValue::get).filter(|t| *t != "{}")
}

/// Dotted paths (none a prefix of another) as a tree of keys, so that reading an object compares
/// each key with the keys of its level only.
#[derive(Debug)]
struct Paths(Vec<(String, Node)>);

#[derive(Debug)]
enum Node {
    /// The value at the path numbered so.
    Leaf(usize),
    Inner(Paths),
}

impl Paths {
    fn new(paths: &[&str]) -> Paths {
        let mut root = Paths(Vec::new());
        for (i, path) in paths.iter().enumerate() {
            let mut level = &mut root;
            let mut keys = path.split('.').peekable();
            while let Some(key) = keys.next() {
                let at = if let Some(at) = level.0.iter().position(|(k, _)| k == key) {
                    at
                } else {
                    let node = if keys.peek().is_some() {
                        Node::Inner(Paths(Vec::new()))
                    } else {
                        Node::Leaf(i)
                    };
                    level.0.push((key.to_owned(), node));
                    level.0.len() - 1
                };
                match &mut level.0[at].1 {
                    Node::Inner(inner) if keys.peek().is_some() => level = inner,
                    _ => break,
                }
            }
        }
        root
    }

    fn get(&self, key: &str) -> Option<&Node> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }

    /// Sets every value under these paths to none.
    fn clear(&self, out: &mut [Option<Value>]) {
        for (_, node) in &self.0 {
            match node {
                Node::Leaf(i) => out[*i] = None,
                Node::Inner(inner) => inner.clear(out),
            }
        }
    }
}

/// Reads the values at `paths` from a JSON object's text into `out` (by the paths' numbers), in
/// one pass that parses only what lies on a path. A key given twice takes its last value, as in a
/// parsed map; a path through something other than an object reads nothing.
fn pick(raw: &RawValue, paths: &Paths, out: &mut [Option<Value>]) {
    let mut d = serde_json::Deserializer::from_str(raw.get());
    let _ = Pick { paths, out }.deserialize(&mut d);
}

/// [`pick`] within one object.
struct Pick<'p> {
    paths: &'p Paths,
    out: &'p mut [Option<Value>],
}

impl<'de> serde::de::DeserializeSeed<'de> for Pick<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Pick<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Pick { paths, out } = self;
        while let Some(CowStr(key)) = map.next_key()? {
            match paths.get(&key) {
                Some(Node::Leaf(i)) => out[*i] = Some(map.next_value()?),
                Some(Node::Inner(inner)) => {
                    // A later key of the same name replaces the whole object, as in a map.
                    inner.clear(out);
                    let raw: &RawValue = map.next_value()?;
                    let mut d = serde_json::Deserializer::from_str(raw.get());
                    let _ = Pick {
                        paths: inner,
                        out: &mut *out,
                    }
                    .deserialize(&mut d);
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The rows of `batch` whose install is `install` (`of_install`), or all the others: what an
/// export keeps, and what an erasure keeps.
pub fn filter_install(
    batch: &arrow::array::RecordBatch,
    install: &str,
    of_install: bool,
) -> Result<arrow::array::RecordBatch, arrow::error::ArrowError> {
    use arrow::array::AsArray as _;
    let col = batch
        .column_by_name("install")
        .expect("an install column")
        .as_string::<i32>();
    let keep: arrow::array::BooleanArray = col
        .iter()
        .map(|v| Some((v == Some(install)) == of_install))
        .collect();
    arrow::compute::filter_record_batch(batch, &keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one row of a finished batch: `(column, value as text)` for every non-null cell.
    fn row(batch: &RecordBatch) -> std::collections::BTreeMap<String, String> {
        let options = arrow::util::display::FormatOptions::default();
        batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(_, c)| c.is_valid(0))
            .map(|(f, c)| {
                let text = arrow::util::display::ArrayFormatter::try_new(c, &options)
                    .unwrap()
                    .value(0)
                    .to_string();
                (f.name().clone(), text)
            })
            .collect()
    }

    #[test]
    fn a_stored_event_becomes_its_row() {
        let message = serde_json::json!({
            "type": "page",
            "messageId": "m-1",
            "timestamp": "2026-11-20T10:00:00.25Z",
            "name": "Home",
            "category": "docs",
            "originalTimestamp": "2026-11-20T09:59:59Z",
            "properties": {"duration_ms": 12.5, "outcome": true, "error_type": 404, "x": [1]},
            "traits": {"plan": "pro"},
            "context": {
                "app": {"name": "nannyml", "version": "0.13.0", "build": 7},
                "library": {"name": "opentally", "version": {"major": 1}},
                "os.name": "flat keys with dots are not paths",
                "environment": {"ci": true, "docker": "yes", "notebook": "jupyter"},
                "session": 42,
                "runtime": "python"
            },
            "zeta": null,
            "groupId": null,
            "integrations": {"All": false},
            "a\"b": "é\n"
        });
        let mut stored = serde_json::json!({
            "messageId": "m-1",
            "install": "h1",
            "timestamp": "2026-11-20T10:00:00.25Z",
        });
        stored["message"] = message.clone();
        // The same event read in place from its text (nulls and all), as the loader reads it.
        let logged = serde_json::to_string(&stored).unwrap();
        let e: StoredEvent = serde_json::from_value(stored).unwrap();
        let received = opentally_protocol::Timestamp::parse("2026-11-20T10:00:01Z").unwrap();
        let mut b = BatchBuilder::new();
        b.push("p", received, &e);
        let got = row(&b.finish());
        b.push_view("p", received, &serde_json::from_str(&logged).unwrap());
        assert_eq!(row(&b.finish()), got);
        let text = |v: &serde_json::Value| serde_json::to_string(v).unwrap();
        let mut extra = message.as_object().unwrap().clone();
        // A field the message reads is absent when null; an unknown one is kept as sent.
        for k in [
            "type",
            "messageId",
            "timestamp",
            "properties",
            "context",
            "groupId",
        ] {
            extra.remove(k);
        }
        let expected: std::collections::BTreeMap<String, String> = [
            ("project", "p".to_owned()),
            ("message_id", "m-1".into()),
            ("install", "h1".into()),
            ("type", "page".into()),
            ("event", "Home".into()),
            ("ts", "2026-11-20T10:00:00.250Z".into()),
            ("received_at", "2026-11-20T10:00:01Z".into()),
            ("duration_ms", "12.5".into()),
            ("outcome", "true".into()),
            ("error_type", "404".into()),
            ("app_name", "nannyml".into()),
            ("app_version", "0.13.0".into()),
            ("library_name", "opentally".into()),
            ("env_ci", "true".into()),
            ("env_notebook", "jupyter".into()),
            ("session", "42".into()),
            ("properties", text(&message["properties"])),
            ("context", text(&message["context"])),
            ("extra", text(&serde_json::Value::Object(extra))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(got, expected);
        // The extra fields' keys are sorted, as a parsed map writes them.
        assert!(got["extra"].starts_with(r#"{"a\"b":"é\n","category":"docs","integrations""#));
    }

    #[test]
    fn a_key_given_twice_takes_its_last_value_as_in_a_map() {
        let text = r#"{"app":{"name":"a","version":"1"},"app":{"version":"2"},
            "session":1,"session":"s","os":{"name":"linux"},"os":"flat"}"#;
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        let paths = Paths::new(&["app.name", "app.version", "session", "os.name"]);
        let mut out = vec![None; 4];
        pick(&raw, &paths, &mut out);
        let parsed: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(
            out,
            [None, Some(Value::from("2")), Some(Value::from("s")), None]
        );
        assert_eq!(out[1].as_ref(), parsed["app"].get("version"));
        assert_eq!(parsed["app"].get("name"), None);
    }

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
