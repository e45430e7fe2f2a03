//! Segment v1 messages: typed where OpenTally reads a field, a JSON map for everything else.
//!
//! Parsing is lenient in the ways real clients need (JSON `null` is the same as an absent field,
//! numeric ids become strings, unknown fields are kept) and strict about what would corrupt data
//! (a timestamp that does not parse, an object where an id belongs). Every failure names the
//! field, so a client author can fix it from the response alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reject::{Reason, Rejection};
use crate::timestamp::Timestamp;

/// A JSON object, as held in `properties`, `traits`, `context` and unknown fields.
pub type Map = serde_json::Map<String, Value>;

/// The six Segment message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [
        MessageType::Track,
        MessageType::Identify,
        MessageType::Page,
        MessageType::Screen,
        MessageType::Group,
        MessageType::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Track => "track",
            MessageType::Identify => "identify",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }

    /// Reads a type name as sent on the wire; `None` for anything else.
    pub fn from_name(name: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Segment message. Fields that a type does not use stay `None` or empty.
///
/// Its JSON is also written by hand, in [`Message::write_json`]: a field added here goes there
/// too (a property test compares the two writers).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: MessageType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_timestamp: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
    /// `track`: the event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// `page` and `screen`: the page or screen name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `page`: the page category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// `group`: the group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// `alias`: the previous id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub properties: Map,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub traits: Map,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub context: Map,
    /// Every field OpenTally does not read (`integrations`, vendor fields…), kept as sent.
    #[serde(flatten)]
    pub extra: Map,
}

/// The wire names of the fields that [`Message`] reads (and `writeKey`, which it drops); all
/// others go to `extra`. Kept in step with `Fields::slot`.
pub const KNOWN_FIELDS: [&str; 16] = [
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "event",
    "name",
    "category",
    "groupId",
    "previousId",
    "properties",
    "traits",
    "context",
    // Sent inside single messages by some clients; read by the envelope, never kept per message.
    "writeKey",
];

impl Message {
    /// An empty message of the given type.
    pub fn new(kind: MessageType) -> Message {
        Message {
            kind,
            message_id: None,
            user_id: None,
            anonymous_id: None,
            timestamp: None,
            original_timestamp: None,
            sent_at: None,
            event: None,
            name: None,
            category: None,
            group_id: None,
            previous_id: None,
            properties: Map::new(),
            traits: Map::new(),
            context: Map::new(),
            extra: Map::new(),
        }
    }

    /// Parses one message from its JSON value.
    ///
    /// `implied` is the type named by the endpoint (`/v1/track`); a message without `type` takes
    /// it, and one whose `type` differs is rejected.
    pub fn from_value(value: Value, implied: Option<MessageType>) -> Result<Message, Rejection> {
        match value {
            Value::Object(map) => Message::from_map(map, implied),
            other => Err(Rejection::new(
                Reason::NotAnObject,
                format!("a message must be a JSON object, not {}", json_kind(&other)),
            )),
        }
    }

    /// Parses one message from a JSON object; see [`Message::from_value`].
    pub fn from_map(map: Map, implied: Option<MessageType>) -> Result<Message, Rejection> {
        Message::from_fields(Fields::from_map(map), implied)
    }

    /// Parses one message from its JSON text in one pass, without building a map of its
    /// top-level fields first (the collector's hot path). Same results as
    /// [`Message::from_value`], rejections included.
    pub fn from_json(text: &str, implied: Option<MessageType>) -> Result<Message, Rejection> {
        match serde_json::from_str::<Fields>(text) {
            Ok(fields) => Message::from_fields(fields, implied),
            // Not an object (or not JSON): the slow path says which, in the usual words.
            Err(_) => match serde_json::from_str::<Value>(text) {
                Ok(v) => Message::from_value(v, implied),
                Err(e) => Err(Rejection::new(Reason::NotAnObject, e.to_string())),
            },
        }
    }

    pub(crate) fn from_fields(
        f: Fields,
        implied: Option<MessageType>,
    ) -> Result<Message, Rejection> {
        let kind = match (string(f.kind, "type")?, implied) {
            (None, Some(t)) => t,
            (None, None) => {
                return Err(Rejection::new(Reason::MissingType, "`type` is required"));
            }
            (Some(name), implied) => {
                let Some(t) = MessageType::from_name(&name) else {
                    return Err(Rejection::new(
                        Reason::UnknownType,
                        format!(
                            "`type` is {name:?}; expected one of track, identify, page, screen, group, alias"
                        ),
                    ));
                };
                if let Some(i) = implied.filter(|i| *i != t) {
                    return Err(Rejection::new(
                        Reason::TypeMismatch,
                        format!("`type` is {t} but the message was sent to the {i} endpoint"),
                    ));
                }
                t
            }
        };
        let mut m = Message::new(kind);
        m.message_id = id(f.message_id, "messageId")?;
        m.user_id = id(f.user_id, "userId")?;
        m.anonymous_id = id(f.anonymous_id, "anonymousId")?;
        m.timestamp = timestamp(f.timestamp, "timestamp")?;
        m.original_timestamp = timestamp(f.original_timestamp, "originalTimestamp")?;
        m.sent_at = timestamp(f.sent_at, "sentAt")?;
        m.event = string(f.event, "event")?;
        m.name = string(f.name, "name")?;
        m.category = string(f.category, "category")?;
        m.group_id = id(f.group_id, "groupId")?;
        m.previous_id = id(f.previous_id, "previousId")?;
        m.properties = object(f.properties, "properties")?;
        m.traits = object(f.traits, "traits")?;
        m.context = object(f.context, "context")?;
        m.extra = f.extra;
        Ok(m)
    }

    /// Appends the message as compact JSON: byte for byte what `serde_json::to_vec` gives, the
    /// fields in the same order, faster (see [`crate::json`]).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = crate::json::ObjectWriter::new(out);
        o.str("type", self.kind.as_str());
        o.opt_str("messageId", self.message_id.as_deref());
        o.opt_str("userId", self.user_id.as_deref());
        o.opt_str("anonymousId", self.anonymous_id.as_deref());
        for (key, t) in [
            ("timestamp", self.timestamp),
            ("originalTimestamp", self.original_timestamp),
            ("sentAt", self.sent_at),
        ] {
            if let Some(t) = t {
                o.str(key, t.rfc3339().as_str());
            }
        }
        o.opt_str("event", self.event.as_deref());
        o.opt_str("name", self.name.as_deref());
        o.opt_str("category", self.category.as_deref());
        o.opt_str("groupId", self.group_id.as_deref());
        o.opt_str("previousId", self.previous_id.as_deref());
        for (key, map) in [
            ("properties", &self.properties),
            ("traits", &self.traits),
            ("context", &self.context),
        ] {
            if !map.is_empty() {
                crate::json::write_map(o.key(key), map);
            }
        }
        for (k, v) in &self.extra {
            crate::json::write_value(o.key(k), v);
        }
        o.end();
    }

    /// The id that identifies the sender: `anonymousId` when present, else `userId`. An empty
    /// id is absent: this is the one place that says so, for validation and hashing alike.
    pub fn install_id(&self) -> Option<&str> {
        fn present(id: Option<&String>) -> Option<&str> {
            id.map(String::as_str).filter(|s| !s.is_empty())
        }
        present(self.anonymous_id.as_ref()).or_else(|| present(self.user_id.as_ref()))
    }

    /// Fills context keys that the message lacks from a batch-level `context`; the message's own
    /// keys win, as in Segment's batch API.
    pub fn merge_context(&mut self, batch_context: &Map) {
        for (k, v) in batch_context {
            if !self.context.contains_key(k) {
                self.context.insert(k.clone(), v.clone());
            }
        }
    }
}

impl<'de> Deserialize<'de> for Message {
    /// The same lenient reading as [`Message::from_value`], for stored messages.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Message, D::Error> {
        let v = Value::deserialize(d)?;
        Message::from_value(v, None).map_err(serde::de::Error::custom)
    }
}

/// The JSON type of a value, as a noun for error messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> Rejection {
    Rejection::new(
        Reason::InvalidType,
        format!("`{field}` must be {expected}, not {}", json_kind(got)),
    )
}

fn string(v: Option<Value>, field: &str) -> Result<Option<String>, Rejection> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(field, "a string", &other)),
    }
}

/// Ids may arrive as numbers from clients that use database keys; they are kept as their text.
fn id(v: Option<Value>, field: &str) -> Result<Option<String>, Rejection> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(wrong_type(field, "a string or a number", &other)),
    }
}

fn timestamp(v: Option<Value>, field: &str) -> Result<Option<Timestamp>, Rejection> {
    match string(v, field)? {
        None => Ok(None),
        Some(s) => Timestamp::parse(&s)
            .map(Some)
            .map_err(|e| Rejection::new(Reason::InvalidTimestamp, format!("`{field}` {s:?}: {e}"))),
    }
}

fn object(v: Option<Value>, field: &str) -> Result<Map, Rejection> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o),
        Some(other) => Err(wrong_type(field, "an object", &other)),
    }
}

/// A JSON string, borrowed from the input unless it has escapes (a plain `Cow<str>` is always
/// copied: serde borrows only where told to).
#[derive(Debug)]
pub struct CowStr<'a>(pub std::borrow::Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CowStr<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(s.into()))
            }
            fn visit_str<E>(self, s: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(s.to_owned().into()))
            }
            fn visit_string<E>(self, s: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(s.into()))
            }
        }
        d.deserialize_str(V)
    }
}

/// A message's top-level fields, each as sent, before they are checked.
#[derive(Default)]
pub(crate) struct Fields {
    kind: Option<Value>,
    pub(crate) message_id: Option<Value>,
    user_id: Option<Value>,
    anonymous_id: Option<Value>,
    timestamp: Option<Value>,
    original_timestamp: Option<Value>,
    sent_at: Option<Value>,
    event: Option<Value>,
    name: Option<Value>,
    category: Option<Value>,
    group_id: Option<Value>,
    previous_id: Option<Value>,
    properties: Option<Value>,
    traits: Option<Value>,
    context: Option<Value>,
    extra: Map,
}

impl Fields {
    /// The slot of a known field, `None` for the rest. `writeKey` has a slot that is never read:
    /// the envelope reads it, and a copy inside a message is a credential, never data.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Value>> {
        Some(match key {
            "type" => &mut self.kind,
            "messageId" => &mut self.message_id,
            "userId" => &mut self.user_id,
            "anonymousId" => &mut self.anonymous_id,
            "timestamp" => &mut self.timestamp,
            "originalTimestamp" => &mut self.original_timestamp,
            "sentAt" => &mut self.sent_at,
            "event" => &mut self.event,
            "name" => &mut self.name,
            "category" => &mut self.category,
            "groupId" => &mut self.group_id,
            "previousId" => &mut self.previous_id,
            "properties" => &mut self.properties,
            "traits" => &mut self.traits,
            "context" => &mut self.context,
            _ => return None,
        })
    }

    fn from_map(map: Map) -> Fields {
        let mut f = Fields::default();
        for (k, v) in map {
            if k == "writeKey" {
                continue;
            }
            match f.slot(&k) {
                Some(slot) => *slot = Some(v),
                None => {
                    f.extra.insert(k, v);
                }
            }
        }
        f
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut f = Fields::default();
                while let Some(CowStr(key)) = map.next_key()? {
                    let value: Value = map.next_value()?;
                    if key == "writeKey" {
                        continue;
                    }
                    match f.slot(&key) {
                        Some(slot) => *slot = Some(value),
                        None => {
                            f.extra.insert(key.into_owned(), value);
                        }
                    }
                }
                Ok(f)
            }
        }
        d.deserialize_map(V)
    }
}
