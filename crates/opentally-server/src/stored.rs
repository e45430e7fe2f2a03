//! Events on their way into the log: serialised once, on the handler's task.

use opentally_protocol::Timestamp;
pub use opentally_store::stored::{LogRecord, StoredEvent, day_of};

/// An accepted event, serialised on the handler's task so that the writer thread only filters
/// duplicates and copies bytes.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    /// The dedup key, [`crate::dedup::message_hash`] of the project and messageId.
    pub hash: u128,
    /// The event as JSON, a [`StoredEvent`].
    pub json: Vec<u8>,
}

impl EncodedEvent {
    pub fn new(project_id: i64, event: &StoredEvent) -> EncodedEvent {
        EncodedEvent {
            hash: crate::dedup::message_hash(project_id, &event.message_id),
            json: serde_json::to_vec(event).expect("a stored event serialises"),
        }
    }
}

/// Appends the payload of one log record to `out`, byte for byte what serialising a [`LogRecord`]
/// of these events gives, without parsing them again.
pub fn write_record_payload<'a>(
    out: &mut Vec<u8>,
    project: &str,
    project_id: i64,
    received_at: Timestamp,
    events: impl Iterator<Item = &'a [u8]> + Clone,
) {
    out.reserve(events.clone().map(|e| e.len() + 1).sum::<usize>() + project.len() + 96);
    out.extend_from_slice(b"{\"project\":");
    out.extend_from_slice(&serde_json::to_vec(project).expect("a string serialises"));
    out.extend_from_slice(
        format!(",\"projectId\":{project_id},\"receivedAt\":\"{received_at}\",\"events\":[")
            .as_bytes(),
    );
    for (i, e) in events.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentally_protocol::Message;

    #[test]
    fn record_payload_reads_back_as_the_record() {
        let mut m = Message::new(opentally_protocol::MessageType::Track);
        m.event = Some("fit \"quoted\"".into());
        let t = Timestamp::parse("2026-11-22T10:00:00.5Z").unwrap();
        let events: Vec<StoredEvent> = (0..3)
            .map(|i| StoredEvent {
                message_id: format!("m{i}"),
                install: "h".into(),
                timestamp: t,
                message: m.clone(),
            })
            .collect();
        let encoded: Vec<EncodedEvent> = events.iter().map(|e| EncodedEvent::new(7, e)).collect();
        // Appended after what the buffer holds, as the writer appends a group's records.
        let mut payload = b"before".to_vec();
        write_record_payload(
            &mut payload,
            "pro\"ject",
            7,
            t,
            encoded.iter().map(|e| e.json.as_slice()),
        );
        assert_eq!(payload.drain(..6).as_slice(), b"before");
        let back: LogRecord = serde_json::from_slice(&payload).unwrap();
        let expected = LogRecord {
            project: "pro\"ject".into(),
            project_id: 7,
            received_at: t,
            events,
        };
        assert_eq!(back, expected);
        assert_eq!(payload, serde_json::to_vec(&expected).unwrap());
    }
}
