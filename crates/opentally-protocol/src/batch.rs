//! The request envelope: a batch (`/v1/batch`) or a single message (`/v1/track` and friends).
//!
//! A request is refused whole only when it is permanently unreadable (not JSON, over the size
//! limit, too many messages); everything else is decided per message, so one bad item never
//! costs the others.

use serde::{Deserialize as _, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::message::{CowStr, Map, Message, MessageType, json_kind};
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
    // One pass over the body: each item is kept as raw text (so that a message's size is its
    // size on the wire and one bad item is rejected alone), the other fields as values. The body
    // is parsed again only to explain a failure.
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

/// A batch body read in one pass.
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
            message: Err(Rejection::new(
                Reason::MessageTooLarge,
                format!(
                    "the message is {size} bytes; the limit is {}",
                    limits.max_message_bytes
                ),
            )),
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

fn id_of(v: &Value) -> Option<String> {
    match v.get("messageId")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
