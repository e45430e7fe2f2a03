//! Property tests: what we serialise, we parse back unchanged; no input makes the parser panic.

use opentally_protocol::message::KNOWN_FIELDS;
use opentally_protocol::{
    Batch, Limits, Map, Message, MessageType, Timestamp, WriteKey, parse_batch,
};
use proptest::prelude::*;
use serde_json::Value;

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // The whole representable range: years 0000 to 9999.
    (-62_167_219_200i64..=253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(s, n)| Timestamp::from_unix(s, n).unwrap())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn map() -> impl Strategy<Value = Map> {
    prop::collection::btree_map(".{0,8}", json_value(), 0..4).prop_map(|m| m.into_iter().collect())
}

/// Unknown fields: any name that is not a field the message reads.
fn extra() -> impl Strategy<Value = Map> {
    prop::collection::btree_map(
        ".{1,8}".prop_filter("not a known field", |k| !KNOWN_FIELDS.contains(&k.as_str())),
        json_value(),
        0..3,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of(".{0,16}")
}

prop_compose! {
    fn message()(
        kind in prop::sample::select(MessageType::ALL.to_vec()),
        ids in (opt_string(), opt_string(), opt_string()),
        times in (prop::option::of(timestamp()), prop::option::of(timestamp()), prop::option::of(timestamp())),
        names in (opt_string(), opt_string(), opt_string(), opt_string(), opt_string()),
        maps in (map(), map(), map()),
        extra in extra(),
    ) -> Message {
        let mut m = Message::new(kind);
        (m.message_id, m.user_id, m.anonymous_id) = ids;
        (m.timestamp, m.original_timestamp, m.sent_at) = times;
        (m.event, m.name, m.category, m.group_id, m.previous_id) = names;
        (m.properties, m.traits, m.context) = maps;
        m.extra = extra;
        m
    }
}

fn unlimited() -> Limits {
    Limits {
        max_message_bytes: usize::MAX,
        max_body_bytes: usize::MAX,
        ..Limits::default()
    }
}

proptest! {
    #[test]
    fn message_serialise_then_parse_is_identity(m in message()) {
        let json = serde_json::to_vec(&m).unwrap();
        let back = Message::from_value(serde_json::from_slice(&json).unwrap(), None).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn batch_serialise_then_parse_is_identity(
        messages in prop::collection::vec(message(), 0..5),
        sent_at in prop::option::of(timestamp()),
        write_key in opt_string().prop_map(|k| k.map(WriteKey::new)),
        context in map(),
    ) {
        let batch = Batch { batch: messages, sent_at, write_key, context };
        let body = serde_json::to_vec(&batch).unwrap();
        let parsed = parse_batch(&body, &unlimited()).unwrap();
        let messages: Vec<Message> = parsed.items.into_iter().map(|i| i.message.unwrap()).collect();
        prop_assert_eq!(messages, batch.batch);
        prop_assert_eq!(parsed.sent_at, batch.sent_at);
        prop_assert_eq!(parsed.write_key, batch.write_key);
        prop_assert_eq!(parsed.context, batch.context);
    }

    #[test]
    fn message_written_by_hand_is_what_serde_json_writes(
        m in message(),
        awkward in prop::collection::vec(
            "[\\x00-\\x1f\"\\\\a-z\u{e9}\u{7f}\u{2028}\u{1f600}]{0,12}",
            3,
        ),
    ) {
        // Strings full of what needs escaping, as values and as keys.
        let mut m = m;
        m.event = Some(awkward[0].clone());
        m.properties.insert(awkward[1].clone(), Value::String(awkward[2].clone()));
        let mut out = Vec::new();
        m.write_json(&mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&m).unwrap());
    }

    #[test]
    fn timestamp_display_then_parse_is_identity(t in timestamp()) {
        prop_assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn timestamp_with_any_offset_means_the_same_instant(t in timestamp(), offset_min in -1439i64..=1439) {
        // Render the instant in local time at `offset_min` and read it back.
        let local = t.checked_add_nanos(i128::from(offset_min) * 60 * 1_000_000_000);
        prop_assume!(local.is_some());
        let utc = local.unwrap().to_string();
        let sign = if offset_min < 0 { '-' } else { '+' };
        let text = format!("{}{sign}{:02}:{:02}", utc.trim_end_matches('Z'), offset_min.abs() / 60, offset_min.abs() % 60);
        prop_assert_eq!(Timestamp::parse(&text).unwrap(), t, "{}", text);
    }

    #[test]
    fn one_pass_parse_agrees_with_the_value_parse(v in json_value(), m in message(), implied in prop::option::of(prop::sample::select(MessageType::ALL.to_vec()))) {
        let text = serde_json::to_string(&v).unwrap();
        prop_assert_eq!(Message::from_json(&text, implied), Message::from_value(v, implied));
        let mut obj = serde_json::to_value(&m).unwrap();
        obj["writeKey"] = serde_json::json!("secret");
        let text = serde_json::to_string(&obj).unwrap();
        prop_assert_eq!(Message::from_json(&text, implied), Message::from_value(obj, implied));
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_batch(&body, &Limits::default());
    }

    #[test]
    fn arbitrary_json_never_panics(items in prop::collection::vec(json_value(), 0..6)) {
        let body = serde_json::to_vec(&serde_json::json!({"batch": items})).unwrap();
        let parsed = parse_batch(&body, &Limits::default()).unwrap();
        prop_assert_eq!(parsed.items.len(), items.len());
    }

    #[test]
    fn arbitrary_timestamp_text_never_panics(s in "[0-9T:.+Zz -]{0,40}") {
        let _ = Timestamp::parse(&s);
    }
}
