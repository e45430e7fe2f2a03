//! Requests captured from segment-analytics-python 2.4.0 parse, validate, and read as expected.

use opentally_protocol::{Limits, MessageType, check_message, parse_batch};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/segment-python/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn segment_python_batches_parse_and_validate() {
    for name in ["batch-plain.json", "batch-gzip.json"] {
        let capture = fixture(name);
        let body = serde_json::to_vec(&capture["body"]).unwrap();
        let parsed = parse_batch(&body, &Limits::default()).unwrap();
        assert_eq!(
            parsed.items.len() as u64,
            capture["events_in_request"].as_u64().unwrap(),
            "{name}"
        );
        assert!(
            parsed.sent_at.is_some(),
            "{name}: sentAt with microseconds and +00:00 parses"
        );
        for item in &parsed.items {
            let m = item.message.as_ref().unwrap();
            assert_eq!(m.kind, MessageType::Track);
            assert_eq!(item.message_id, m.message_id);
            check_message(m, &Limits::default()).unwrap();
            assert!(m.timestamp.is_some());
            // `integrations: {}` is a field OpenTally does not read: kept, not rejected.
            assert!(m.extra.contains_key("integrations"));
        }
        insta::assert_debug_snapshot!(name, parsed);
    }
}
