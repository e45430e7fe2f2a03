//! The request envelope: a batch (`/v1/batch`) or a single message (`/v1/track` and friends).
//!
//! A request is refused whole only when it is permanently unreadable (not JSON, over the size
//! limit, too many messages); everything else is decided per message, so one bad item never
//! costs the others.

use serde::{Deserialize as _, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::message::{CowStr, Fields, Map, Message, MessageType, json_kind};
use crate::reject::{Reason, Rejection};
use crate::timestamp::Timestamp;

/// Size and count limits of the ingest API (DESIGN §2); every one is configurable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest message, as its JSON text within the request.
    pub max_message_bytes: usize,
    /// The largest request body after decompression.
    pub max_body_bytes: usize,
    /// The most messages in one batch.
    pub max_batch_messages: usize,
    /// The longest `messageId`, in characters.
    pub max_message_id_chars: usize,
    /// The longest `userId`, `anonymousId`, `groupId` or `previousId`, in characters.
    pub max_id_chars: usize,
    /// The longest event, page or screen name, in characters.
    pub max_name_chars: usize,
    /// How far a timestamp may lie before receipt, in seconds, once clock skew is corrected.
    pub max_past_secs: i64,
    /// How far a timestamp may lie after receipt, in seconds; anything within is clamped to
    /// the receipt time, anything beyond is rejected.
    pub max_future_secs: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 32 * 1024,
            max_body_bytes: 500 * 1024,
            max_batch_messages: 2500,
            max_message_id_chars: 100,
            max_id_chars: 200,
            max_name_chars: 200,
            max_past_secs: 366 * 86_400,
            max_future_secs: 86_400,
        }
    }
}

/// Why a whole request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the body is {size} bytes; the limit is {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("the body has no `batch` array")]
    MissingBatch,
    #[error("`batch` must be an array, not {0}")]
    BatchNotArray(&'static str),
    #[error("the batch has {count} messages; the limit is {limit}")]
    TooManyMessages { count: usize, limit: usize },
    #[error(
        "the batch's context is {context} bytes: copied into each of its {messages} messages, \
         the batch would be {size} bytes; the limit is {limit}"
    )]
    ContextTooLarge {
        context: usize,
        messages: usize,
        size: usize,
        limit: usize,
    },
}

impl BatchError {
    /// A stable snake_case code for responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            BatchError::BodyTooLarge { .. } => "body_too_large",
            BatchError::InvalidJson(_) => "invalid_json",
            BatchError::NotAnObject(_) => "not_an_object",
            BatchError::MissingBatch => "missing_batch",
            BatchError::BatchNotArray(_) => "batch_not_array",
            BatchError::TooManyMessages { .. } => "too_many_messages",
            BatchError::ContextTooLarge { .. } => "context_too_large",
        }
    }
}

/// A write key: public and send-only, but still not something to leave in logs, so its `Debug`
/// prints `****`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct WriteKey(String);

impl WriteKey {
    pub fn new(key: impl Into<String>) -> WriteKey {
        WriteKey(key.into())
    }

    /// The key itself, for authentication only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WriteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

/// A request as read: the envelope's fields and, per item, the message or why it was rejected.
#[derive(Debug)]
pub struct ParsedRequest {
    pub items: Vec<Item>,
    /// The envelope's `sentAt`; an unreadable one is treated as absent (it only tunes clock-skew
    /// correction, which is not worth losing the batch for).
    pub sent_at: Option<Timestamp>,
    pub write_key: Option<WriteKey>,
    /// Batch-level `context`, to be merged under each message's own with
    /// [`Message::merge_context`].
    pub context: Map,
    /// Unknown envelope fields, kept as sent.
    pub extra: Map,
}

/// One item of a request.
#[derive(Debug)]
pub struct Item {
    /// The `messageId` if it could be read, even from a rejected item, for the response.
    pub message_id: Option<String>,
    pub message: Result<Message, Rejection>,
}

/// A batch as the SDK sends it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    pub batch: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_key: Option<WriteKey>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub context: Map,
}

fn check_body_size(body: &[u8], limits: &Limits) -> Result<(), BatchError> {
    if body.len() > limits.max_body_bytes {
        return Err(BatchError::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    Ok(())
}

fn invalid_json(e: &serde_json::Error) -> BatchError {
    BatchError::InvalidJson(format!("{e}"))
}

/// Reads a `/v1/batch` body (already decompressed).
pub fn parse_batch(body: &[u8], limits: &Limits) -> Result<ParsedRequest, BatchError> {
    check_body_size(body, limits)?;
    // Checked as UTF-8 once, the body's strings need no check each.
    let parsed = match std::str::from_utf8(body)
        .ok()
        .and_then(|text| OnePass::new(text).batch(limits))
    {
        Some(parsed) => parsed,
        None => parse_batch_in_two_passes(body, limits)?,
    };
    check_context_copies(body.len(), &parsed, limits)?;
    Ok(parsed)
}

/// A batch-level `context` is copied into every message that is stored, so a large one with many
/// small messages would turn a body within the limit into hundreds of times its size. The batch
/// as stored, context copied, must fit the body limit too.
fn check_context_copies(
    body: usize,
    parsed: &ParsedRequest,
    limits: &Limits,
) -> Result<(), BatchError> {
    if parsed.context.is_empty() {
        return Ok(());
    }
    let context = serde_json::to_vec(&parsed.context).map_or(0, |c| c.len());
    let messages = parsed.items.len();
    let size = body.saturating_add(context.saturating_mul(messages));
    if size > limits.max_body_bytes {
        return Err(BatchError::ContextTooLarge {
            context,
            messages,
            size,
            limit: limits.max_body_bytes,
        });
    }
    Ok(())
}

/// The same reading as [`parse_batch`], always in two passes: one to split the body, one per
/// item. Only for a body the one pass gave up on, which this reads again to say what is wrong
/// with it, or to read its odd items one by one.
fn parse_batch_in_two_passes(body: &[u8], limits: &Limits) -> Result<ParsedRequest, BatchError> {
    // Each item is kept as raw text (so that a message's size is its size on the wire and one
    // bad item is rejected alone), the other fields as values. The body is parsed again only to
    // explain a failure.
    let Envelope { batch, fields } = match serde_json::from_slice::<Envelope<'_>>(body) {
        Ok(e) => e,
        Err(e) => {
            return Err(match serde_json::from_slice::<Value>(body) {
                Ok(v) if !v.is_object() => BatchError::NotAnObject(json_kind(&v)),
                _ => invalid_json(&e),
            });
        }
    };
    let items_raw = match batch {
        BatchField::Items(items) => items,
        BatchField::Missing => return Err(BatchError::MissingBatch),
        BatchField::NotArray(kind) => return Err(BatchError::BatchNotArray(kind)),
    };
    if items_raw.len() > limits.max_batch_messages {
        return Err(BatchError::TooManyMessages {
            count: items_raw.len(),
            limit: limits.max_batch_messages,
        });
    }
    let items = items_raw
        .iter()
        .map(|r| read_item(r, None, limits))
        .collect();
    Ok(envelope_parts(fields, items))
}

/// A batch body read in one pass, each item parsed straight into its message; a message's size
/// on the wire is where its parse ended less where it began.
///
/// Splitting the body first (each item as raw text, then parsed) scanned every byte twice: on
/// the load generator's batches the split took over a quarter of the parse. This pass reads the
/// envelope's own punctuation itself and leaves every value to `serde_json`, so it gives up
/// (`None`) wherever the two could differ: not an object, invalid JSON, an item that is not a
/// message object, more items than allowed. [`parse_batch_in_two_passes`] then reads the body.
struct OnePass<'a> {
    body: &'a str,
    pos: usize,
}

impl<'a> OnePass<'a> {
    fn new(body: &'a str) -> OnePass<'a> {
        OnePass { body, pos: 0 }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.body.as_bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then takes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.body.as_bytes().get(self.pos) == Some(&byte);
        if found {
            self.pos += 1;
        }
        found
    }

    /// Parses the JSON value that starts here (after whitespace) and moves past it.
    fn value<T: serde::Deserialize<'a>>(&mut self) -> Option<T> {
        let mut values =
            serde_json::Deserializer::from_str(&self.body[self.pos..]).into_iter::<T>();
        let v = values.next()?.ok()?;
        self.pos += values.byte_offset();
        Some(v)
    }

    fn batch(mut self, limits: &Limits) -> Option<ParsedRequest> {
        if !self.eat(b'{') {
            return None;
        }
        let mut items = None;
        let mut fields = Map::new();
        if !self.eat(b'}') {
            loop {
                let CowStr(key) = self.value()?;
                if !self.eat(b':') {
                    return None;
                }
                if key == "batch" {
                    // The last `batch` wins, as in a map.
                    items = Some(self.items(limits)?);
                } else {
                    let value: Value = self.value()?;
                    fields.insert(key.into_owned(), value);
                }
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
            }
        }
        self.skip_whitespace();
        if self.pos != self.body.len() {
            return None;
        }
        Some(envelope_parts(fields, items?))
    }

    fn items(&mut self, limits: &Limits) -> Option<Vec<Item>> {
        if !self.eat(b'[') {
            return None;
        }
        let mut items = Vec::new();
        if self.eat(b']') {
            return Some(items);
        }
        loop {
            if items.len() == limits.max_batch_messages {
                return None;
            }
            self.skip_whitespace();
            let start = self.pos;
            let fields: Fields = self.value()?;
            let size = self.pos - start;
            items.push(if size > limits.max_message_bytes {
                Item {
                    message_id: fields.message_id.as_ref().and_then(id_text),
                    message: Err(too_large(size, limits)),
                }
            } else {
                match Message::from_fields(fields, None) {
                    Ok(m) => Item {
                        message_id: m.message_id.clone(),
                        message: Ok(m),
                    },
                    Err(rejection) => Item {
                        // Read again, as the two-pass reading does, to name the message.
                        message_id: serde_json::from_str::<Value>(&self.body[start..self.pos])
                            .ok()
                            .and_then(|v| id_of(&v)),
                        message: Err(rejection),
                    },
                }
            });
            if self.eat(b']') {
                return Some(items);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }
}

/// A batch body as the first of the two passes splits it: the items as raw text, the other
/// fields as values.
struct Envelope<'a> {
    batch: BatchField<'a>,
    fields: Map,
}

/// What the `batch` field held.
enum BatchField<'a> {
    Items(Vec<&'a RawValue>),
    Missing,
    NotArray(&'static str),
}

impl<'de> serde::Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut batch = BatchField::Missing;
                let mut fields = Map::new();
                while let Some(CowStr(key)) = map.next_key()? {
                    if key == "batch" {
                        batch = map.next_value::<BatchField<'de>>()?;
                    } else {
                        let value: Value = map.next_value()?;
                        fields.insert(key.into_owned(), value);
                    }
                }
                Ok(Envelope { batch, fields })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> serde::Deserialize<'de> for BatchField<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BatchField<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    items.push(item);
                }
                Ok(BatchField::Items(items))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(BatchField::Missing)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(BatchField::Missing)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                serde::de::IgnoredAny::deserialize(serde::de::value::MapAccessDeserializer::new(
                    map,
                ))?;
                Ok(BatchField::NotArray("an object"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(BatchField::NotArray("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(BatchField::NotArray("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(BatchField::NotArray("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(BatchField::NotArray("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(BatchField::NotArray("a string"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a single-message body (`/v1/track`, `/v1/identify`…); `kind` is the endpoint's type.
pub fn parse_single(
    body: &[u8],
    kind: MessageType,
    limits: &Limits,
) -> Result<ParsedRequest, BatchError> {
    check_body_size(body, limits)?;
    let raw: &RawValue = serde_json::from_slice(body).map_err(|e| invalid_json(&e))?;
    let top: Value = serde_json::from_str(raw.get()).map_err(|e| invalid_json(&e))?;
    let Value::Object(map) = top else {
        return Err(BatchError::NotAnObject(json_kind(&top)));
    };
    let write_key = map
        .get("writeKey")
        .and_then(Value::as_str)
        .map(WriteKey::new);
    let mut item = read_item(raw, Some(kind), limits);
    // The message's own `sentAt` serves as the envelope's for skew correction.
    let sent_at = item.message.as_ref().ok().and_then(|m| m.sent_at);
    if let Ok(m) = item.message.as_mut() {
        m.sent_at = None;
    }
    Ok(ParsedRequest {
        items: vec![item],
        sent_at,
        write_key,
        context: Map::new(),
        extra: Map::new(),
    })
}

fn envelope_parts(mut envelope: Map, items: Vec<Item>) -> ParsedRequest {
    let sent_at = match envelope.remove("sentAt") {
        Some(Value::String(s)) => Timestamp::parse(&s).ok(),
        _ => None,
    };
    let write_key = match envelope.remove("writeKey") {
        Some(Value::String(s)) => Some(WriteKey(s)),
        _ => None,
    };
    let context = match envelope.remove("context") {
        Some(Value::Object(c)) => c,
        _ => Map::new(),
    };
    ParsedRequest {
        items,
        sent_at,
        write_key,
        context,
        extra: envelope,
    }
}

fn read_item(raw: &RawValue, implied: Option<MessageType>, limits: &Limits) -> Item {
    let size = raw.get().len();
    if size > limits.max_message_bytes {
        // Parsed only to name the message in the response.
        let message_id = serde_json::from_str::<Value>(raw.get())
            .ok()
            .and_then(|v| id_of(&v));
        return Item {
            message_id,
            message: Err(too_large(size, limits)),
        };
    }
    let message = Message::from_json(raw.get(), implied);
    let message_id = match &message {
        Ok(m) => m.message_id.clone(),
        // A rejected message is still named in the response when its id is readable.
        Err(_) => serde_json::from_str::<Value>(raw.get())
            .ok()
            .and_then(|v| id_of(&v)),
    };
    Item {
        message_id,
        message,
    }
}

fn too_large(size: usize, limits: &Limits) -> Rejection {
    Rejection::new(
        Reason::MessageTooLarge,
        format!(
            "the message is {size} bytes; the limit is {}",
            limits.max_message_bytes
        ),
    )
}

fn id_of(v: &Value) -> Option<String> {
    id_text(v.get("messageId")?)
}

/// A `messageId` as text, for a response: a string or a number.
fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z\"\\\\\u{e9}\n]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{0,4}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// An item: mostly messages, some with fields of the wrong type, some any JSON at all.
    fn item() -> impl Strategy<Value = Value> {
        let id = prop_oneof![
            "[a-z0-9-]{0,12}".prop_map(Value::String),
            any::<u32>().prop_map(Value::from),
            Just(Value::Null),
            Just(serde_json::json!({"not": "an id"})),
        ];
        let kind = prop_oneof![
            Just(Value::from("track")),
            Just(Value::from("identify")),
            Just(Value::from("nonsense")),
            Just(Value::from(5)),
        ];
        let message = (kind, id, json_value(), json_value(), any::<bool>()).prop_map(
            |(kind, id, props, extra, write_key)| {
                let mut m = serde_json::json!({
                    "type": kind, "event": "fit", "messageId": id,
                    "anonymousId": "a", "properties": props, "vendor": extra,
                });
                if write_key {
                    m["writeKey"] = Value::from("in the message");
                }
                m
            },
        );
        prop_oneof![12 => message, 1 => json_value()]
    }

    /// JSON text of `v`, compact or spread over lines.
    fn text(v: &Value, pretty: bool) -> String {
        if pretty {
            serde_json::to_string_pretty(v).unwrap()
        } else {
            serde_json::to_string(v).unwrap()
        }
    }

    /// Envelope keys, some twice (`x\u0041` is `xA`).
    fn key() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "batch", "batch", "sentAt", "writeKey", "context", "context", "x\\u0041", "xA",
        ])
    }

    fn space() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", " ", "\n  ", "\t", "\r\n"])
    }

    prop_compose! {
        /// A batch body written by hand, so that keys repeat, come in any order and sit between
        /// any whitespace; now and then cut short or with one byte changed.
        fn body()(
            entries in prop::collection::vec(
                (key(), prop::collection::vec(item(), 0..5), json_value(), any::<bool>()),
                0..6),
            spaces in prop::collection::vec(space(), 64),
            damage in prop::option::weighted(
                0.1,
                (any::<prop::sample::Index>(), any::<u8>(), any::<bool>()),
            ),
        ) -> Vec<u8> {
            let mut sp = spaces.iter().copied().cycle();
            let mut sp = move || sp.next().unwrap();
            let mut body = String::new();
            body.push_str(sp());
            body.push('{');
            for (i, (key, items, value, pretty)) in entries.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                for part in [sp(), "\"", key, "\"", sp(), ":", sp()] {
                    body.push_str(part);
                }
                match *key {
                    "batch" if !items.is_empty() || *pretty => {
                        body.push('[');
                        for (j, it) in items.iter().enumerate() {
                            if j > 0 {
                                body.push(',');
                            }
                            for part in [sp(), &text(it, *pretty), sp()] {
                                body.push_str(part);
                            }
                        }
                        body.push_str(sp());
                        body.push(']');
                    }
                    "sentAt" if *pretty => body.push_str("\"2026-11-27T10:00:00Z\""),
                    _ => body.push_str(&text(value, *pretty)),
                }
                body.push_str(sp());
            }
            body.push('}');
            body.push_str(sp());
            let mut body = body.into_bytes();
            if let Some((at, byte, cut)) = damage {
                let at = at.index(body.len());
                if cut {
                    body.truncate(at);
                } else {
                    body[at] = byte;
                }
            }
            body
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The one pass either gives up or reads exactly what the two passes read: the same
        /// items, the same rejections, the same envelope.
        #[test]
        fn one_pass_reads_what_two_passes_read(
            body in body(),
            max_message_bytes in 20usize..300,
            max_batch_messages in 0usize..6,
        ) {
            let limits = Limits { max_message_bytes, max_batch_messages, ..Limits::default() };
            let two = format!("{:?}", parse_batch_in_two_passes(&body, &limits));
            let text = std::str::from_utf8(&body).ok();
            if let Some(one) = text.and_then(|b| OnePass::new(b).batch(&limits)) {
                prop_assert_eq!(&format!("{:?}", Ok::<_, BatchError>(one)), &two);
            }
            prop_assert_eq!(format!("{:?}", parse_batch(&body, &limits)), two);
        }
    }

    /// The one pass must not give up on ordinary batches, or it saves nothing.
    #[test]
    fn one_pass_reads_an_sdk_batch_and_its_odd_items() {
        let body = br#" { "batch" : [
            {"type":"track","event":"fit","messageId":"m1","anonymousId":"a"},
            {"type":5,"messageId":7},
            {"type":"track","messageId":"big","anonymousId":"a",
             "properties":{"p":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}} ],
            "sentAt":"2026-11-27T10:00:00Z", "writeKey":"k", "context":{"library":{"name":"x"}} } "#;
        let limits = Limits {
            max_message_bytes: 100,
            ..Limits::default()
        };
        let text = std::str::from_utf8(body).unwrap();
        let one = OnePass::new(text).batch(&limits).expect("read in one pass");
        assert_eq!(
            format!("{:?}", Ok::<_, BatchError>(one)),
            format!("{:?}", parse_batch_in_two_passes(body, &limits))
        );
        let one = OnePass::new(text).batch(&limits).unwrap();
        let reasons: Vec<_> = one
            .items
            .iter()
            .map(|i| {
                (
                    i.message_id.as_deref(),
                    i.message.as_ref().err().map(|r| r.reason),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            [
                (Some("m1"), None),
                (Some("7"), Some(Reason::InvalidType)),
                (Some("big"), Some(Reason::MessageTooLarge)),
            ]
        );
        assert_eq!(one.write_key.as_ref().map(WriteKey::expose), Some("k"));
    }
}
