//! What the log holds: one record per request, with the events accepted from it, normalised.
//!
//! The record's one definition: [`LogRecord`] and [`StoredEvent`] are what is written,
//! [`RecordWriter`] the one writer (the collector's, the demo's, the tests'), [`RecordView`] the
//! one reader (loading, and the collector's dedup replay).

use opentally_protocol::message::{CowStr, KNOWN_FIELDS};
use opentally_protocol::{Message, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One log record: the events of one request that were new, or one install's erasure.
///
/// Its payload is compact JSON: `{"project":…,"projectId":…,"receivedAt":…,"events":[…]}`, each
/// event as [`StoredEvent::write_json`] writes it. An erasure is a record with no events and an
/// `"erase":"<install hash>"` field after them ([`RecordWriter::end_with_erasure`]): whoever reads
/// the log removes every event of that install in the records before it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub project: String,
    pub project_id: i64,
    pub received_at: Timestamp,
    pub events: Vec<StoredEvent>,
}

impl LogRecord {
    /// Appends the record's payload to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut w = RecordWriter::begin(out, &self.project, self.project_id, self.received_at);
        for e in &self.events {
            w.event(e);
        }
        w.end();
    }
}

/// Writes one record's payload in place, its events one at a time: from [`StoredEvent`]s, or
/// from their JSON already written (the collector serialises events on the request's task and
/// copies them into the record on the writer's thread).
#[derive(Debug)]
pub struct RecordWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> RecordWriter<'a> {
    /// Starts a record at the end of `out`.
    pub fn begin(
        out: &'a mut Vec<u8>,
        project: &str,
        project_id: i64,
        received_at: Timestamp,
    ) -> RecordWriter<'a> {
        out.extend_from_slice(b"{\"project\":");
        opentally_protocol::json::write_str(out, project);
        out.extend_from_slice(
            format!(",\"projectId\":{project_id},\"receivedAt\":\"{received_at}\",\"events\":[")
                .as_bytes(),
        );
        RecordWriter { out, first: true }
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// Appends an event.
    pub fn event(&mut self, e: &StoredEvent) {
        self.separate();
        e.write_json(self.out);
    }

    /// Appends an event from its JSON, as [`StoredEvent::write_json`] wrote it.
    pub fn event_json(&mut self, json: &[u8]) {
        self.separate();
        self.out.extend_from_slice(json);
    }

    /// Ends the record.
    pub fn end(self) {
        self.out.extend_from_slice(b"]}");
    }

    /// Ends the record as the erasure of `install` (a keyed install hash): the events of that
    /// install in earlier records are to be removed.
    pub fn end_with_erasure(self, install: &str) {
        self.out.extend_from_slice(b"],\"erase\":");
        opentally_protocol::json::write_str(self.out, install);
        self.out.push(b'}');
    }
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

impl StoredEvent {
    /// Appends the event as compact JSON: byte for byte what `serde_json::to_vec` gives (the
    /// loader reads its properties and context back as the text of their columns), faster.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = opentally_protocol::json::ObjectWriter::new(out);
        o.str("messageId", &self.message_id);
        o.str("install", &self.install);
        o.str("timestamp", self.timestamp.rfc3339().as_str());
        self.message.write_json(o.key("message"));
        o.end();
    }
}

/// The receive day (days since the Unix epoch, UTC) of a timestamp.
pub fn day_of(t: Timestamp) -> i64 {
    t.unix_secs().div_euclid(86_400)
}

/// A log record read in place, borrowed from the record's bytes: the log's one reader.
///
/// Loading reads every event once, so it skips building a [`Message`]: the properties, the
/// context and the fields without a column stay as their JSON text from the log, which is already
/// the text their columns hold (the writer serialised them, compact and with sorted keys).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordView<'a> {
    #[serde(borrow)]
    pub project: std::borrow::Cow<'a, str>,
    /// Absent only in a record no collector wrote; loading does not need it, the dedup replay
    /// does.
    pub project_id: Option<i64>,
    pub received_at: Timestamp,
    #[serde(borrow)]
    pub events: Vec<EventView<'a>>,
    /// Set in an erasure record: the install whose events in earlier records are to go.
    #[serde(borrow, default)]
    pub erase: Option<std::borrow::Cow<'a, str>>,
}

/// A [`StoredEvent`] read in place.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView<'a> {
    #[serde(borrow)]
    pub message_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub install: std::borrow::Cow<'a, str>,
    pub timestamp: Timestamp,
    #[serde(borrow)]
    pub message: MessageView<'a>,
}

/// A stored [`Message`] read in place: the fields loading reads, and every other field as its
/// JSON text. A field that [`Message`] reads counts as absent when it is `null`, as there.
#[derive(Debug)]
pub struct MessageView<'a> {
    /// Required: a stored message without one is unreadable, as a [`Message`] would be.
    pub kind: opentally_protocol::MessageType,
    pub event: Option<std::borrow::Cow<'a, str>>,
    pub name: Option<std::borrow::Cow<'a, str>>,
    pub properties: Option<&'a RawValue>,
    pub context: Option<&'a RawValue>,
    /// The fields without a column of their own (`name` too), in the order read.
    pub rest: Vec<(std::borrow::Cow<'a, str>, &'a RawValue)>,
}

impl<'de: 'a, 'a> Deserialize<'de> for MessageView<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MessageView<'a>, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = MessageView<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a stored message")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MessageView<'a>, A::Error> {
                let (mut kind, mut event, mut name) = (None, None, None);
                let (mut properties, mut context, mut rest) = (None, None, Vec::new());
                while let Some(CowStr(key)) = map.next_key()? {
                    // Read as strings at once: null is absent, as in a `Message`.
                    match &*key {
                        "type" => {
                            let Some(CowStr(t)) = map.next_value()? else {
                                continue;
                            };
                            kind =
                                Some(opentally_protocol::MessageType::from_name(&t).ok_or_else(
                                    || serde::de::Error::custom(format!("unknown type {t:?}")),
                                )?);
                            continue;
                        }
                        "event" => {
                            event = map.next_value::<Option<CowStr<'de>>>()?.map(|s| s.0);
                            continue;
                        }
                        _ => {}
                    }
                    let raw: &'de RawValue = map.next_value()?;
                    // A known field that is null is absent; an unknown one is kept as sent.
                    if raw.get() == "null" && KNOWN_FIELDS.contains(&&*key) {
                        continue;
                    }
                    match &*key {
                        "properties" => properties = Some(raw),
                        "context" => context = Some(raw),
                        // These have columns, and are not kept in `extra`; a write key is never
                        // data (and never written).
                        "messageId" | "timestamp" | "writeKey" => {}
                        _ => {
                            if key == "name" {
                                let mut d = serde_json::Deserializer::from_str(raw.get());
                                let CowStr(n) = CowStr::deserialize(&mut d)
                                    .map_err(serde::de::Error::custom)?;
                                name = Some(n);
                            }
                            rest.push((key, raw));
                        }
                    }
                }
                Ok(MessageView {
                    kind: kind.ok_or_else(|| serde::de::Error::missing_field("type"))?,
                    event,
                    name,
                    properties,
                    context,
                    rest,
                })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentally_protocol::MessageType;

    #[test]
    fn a_written_record_reads_back() {
        let mut m = Message::new(MessageType::Track);
        m.event = Some("fit \"quoted\"".into());
        m.properties.insert("n".into(), serde_json::json!(1));
        let t = Timestamp::parse("2026-11-22T10:00:00.5Z").unwrap();
        let rec = LogRecord {
            project: "pro\"ject".into(),
            project_id: 7,
            received_at: t,
            events: (0..3)
                .map(|i| StoredEvent {
                    message_id: format!("m{i}"),
                    install: "h".into(),
                    timestamp: t,
                    message: m.clone(),
                })
                .collect(),
        };
        let mut out = b"before".to_vec();
        rec.write(&mut out);
        assert_eq!(&out[..6], b"before");
        let back: RecordView<'_> = serde_json::from_slice(&out[6..]).unwrap();
        assert_eq!(back.project, "pro\"ject");
        assert_eq!(back.project_id, Some(7));
        assert_eq!(back.received_at, t);
        let ids: Vec<&str> = back.events.iter().map(|e| &*e.message_id).collect();
        assert_eq!(ids, ["m0", "m1", "m2"]);
        for e in &back.events {
            assert_eq!(e.install, "h");
            assert_eq!(e.timestamp, t);
            assert_eq!(e.message.event.as_deref(), Some("fit \"quoted\""));
            assert_eq!(e.message.properties.unwrap().get(), r#"{"n":1}"#);
        }
        // An empty record is a record too.
        let mut empty = Vec::new();
        RecordWriter::begin(&mut empty, "p", 1, t).end();
        let back: RecordView<'_> = serde_json::from_slice(&empty).unwrap();
        assert!(back.events.is_empty());
        assert_eq!(back.erase, None);
        // An erasure names its install and carries no event.
        let mut erasure = Vec::new();
        RecordWriter::begin(&mut erasure, "p", 1, t).end_with_erasure("ab\"c");
        let back: RecordView<'_> = serde_json::from_slice(&erasure).unwrap();
        assert!(back.events.is_empty());
        assert_eq!(back.erase.as_deref(), Some("ab\"c"));
        assert_eq!(back.project_id, Some(1));
    }

    #[test]
    fn written_json_is_serde_json() {
        let mut m = Message::new(MessageType::Track);
        m.event = Some("fit \"quoted\"\n".into());
        m.message_id = Some("m".into());
        m.timestamp = Some(Timestamp::parse("2026-11-27T10:00:00.123456Z").unwrap());
        m.properties
            .insert("duration_ms".into(), serde_json::json!(12.5));
        m.context.insert(
            "library".into(),
            serde_json::json!({"name": "x", "v": [1, null]}),
        );
        m.extra.insert("vendor".into(), serde_json::json!(true));
        let e = StoredEvent {
            message_id: "m\u{1}".into(),
            install: "h".into(),
            timestamp: Timestamp::parse("2026-11-27T10:00:00Z").unwrap(),
            message: m,
        };
        let mut out = b"before".to_vec();
        e.write_json(&mut out);
        assert_eq!(&out[..6], b"before");
        assert_eq!(
            String::from_utf8(out[6..].to_vec()).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
    }
}
