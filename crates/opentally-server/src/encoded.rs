//! Events on their way into the log: serialised once, on the handler's task.

use opentally_log::{RecordWriter, StoredEvent};
use opentally_protocol::Timestamp;

/// A request's accepted events, serialised on the handler's task so that the writer thread only
/// filters duplicates and copies bytes. One buffer holds them all, sized from the first event:
/// one allocation a request, where each event had its own, grown by doubling.
#[derive(Debug, Clone, Default)]
pub struct EncodedEvents {
    json: Vec<u8>,
    /// Per event, in order: its dedup key ([`crate::dedup::message_hash`] of the project and
    /// messageId) and where its JSON ends in `json`.
    ends: Vec<(u128, usize)>,
}

/// The most [`EncodedEvents::push`] reserves from the first event's size; a request whose events
/// need more grows its buffer by doubling past this.
const FIRST_RESERVE_CAP: usize = 1 << 20;

impl EncodedEvents {
    /// Room for `events` events; the buffer is sized once the first one is written.
    pub fn with_capacity(events: usize) -> EncodedEvents {
        EncodedEvents {
            json: Vec::new(),
            ends: Vec::with_capacity(events),
        }
    }

    /// Appends an event as JSON, a [`StoredEvent`].
    pub fn push(&mut self, project_id: i64, event: &StoredEvent) {
        event.write_json(&mut self.json);
        if self.ends.is_empty() {
            // The events of a batch are alike: room for the rest at the first one's size and
            // an eighth more, up to a cap, so that one large event before many small ones
            // cannot reserve far more than the request holds.
            let first = self.json.len();
            let rest = self.ends.capacity().saturating_sub(1);
            self.json
                .reserve((rest * (first + first / 8)).min(FIRST_RESERVE_CAP));
        }
        self.ends.push((
            crate::dedup::message_hash(project_id, &event.message_id),
            self.json.len(),
        ));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each event's dedup key and JSON, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u128, &[u8])> + Clone {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|(_, end)| *end));
        self.ends
            .iter()
            .zip(starts)
            .map(|(&(hash, end), start)| (hash, &self.json[start..end]))
    }
}

/// Appends the payload of one log record of these events (each as [`EncodedEvents`] holds it)
/// to `out`, without parsing them again.
pub fn write_record_payload<'a>(
    out: &mut Vec<u8>,
    project: &str,
    project_id: i64,
    received_at: Timestamp,
    events: impl Iterator<Item = &'a [u8]> + Clone,
) {
    out.reserve(events.clone().map(|e| e.len() + 1).sum::<usize>() + project.len() + 96);
    let mut record = RecordWriter::begin(out, project, project_id, received_at);
    for e in events {
        record.event_json(e);
    }
    record.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentally_protocol::Message;

    /// One 32 KB event before 2,499 small ones must not reserve room for 2,499 large ones
    /// (90 MB, where the request's events take ~0.4 MB).
    #[test]
    fn a_large_first_event_does_not_reserve_for_many_like_it() {
        let stored = |m: Message, i: usize| StoredEvent {
            message_id: format!("m{i}"),
            install: "h".into(),
            timestamp: Timestamp::parse("2026-11-27T10:00:00Z").unwrap(),
            message: m,
        };
        let mut big = Message::new(opentally_protocol::MessageType::Track);
        big.properties
            .insert("p".into(), serde_json::Value::String("x".repeat(32_000)));
        let mut events = EncodedEvents::with_capacity(2500);
        events.push(1, &stored(big, 0));
        for i in 1..2500 {
            events.push(
                1,
                &stored(Message::new(opentally_protocol::MessageType::Track), i),
            );
        }
        assert_eq!(events.len(), 2500);
        assert!(
            events.json.capacity() < 4 << 20,
            "{} bytes reserved for {}",
            events.json.capacity(),
            events.json.len()
        );
    }

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
        let mut encoded = EncodedEvents::with_capacity(2);
        for e in &events {
            encoded.push(7, e);
        }
        assert_eq!(encoded.len(), 3);
        // Appended after what the buffer holds, as the writer appends a group's records.
        let mut payload = b"before".to_vec();
        write_record_payload(
            &mut payload,
            "pro\"ject",
            7,
            t,
            encoded.iter().map(|(_, json)| json),
        );
        assert_eq!(payload.drain(..6).as_slice(), b"before");
        let mut expected = Vec::new();
        opentally_log::LogRecord {
            project: "pro\"ject".into(),
            project_id: 7,
            received_at: t,
            events,
        }
        .write(&mut expected);
        assert_eq!(payload, expected);
    }
}
