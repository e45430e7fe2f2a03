//! Tables of malformed and borderline input, each with the exact outcome it must get.

use serde_json::{Value, json};

use crate::{example_catalog, outcomes};

/// A valid track message at 10:00:00, five seconds before receipt; each case patches it.
fn base() -> Value {
    json!({
        "type": "track",
        "event": "fit",
        "messageId": "m-1",
        "anonymousId": "a-1",
        "timestamp": "2026-11-22T10:00:00Z",
        "properties": {"method": "cbpe"}
    })
}

/// Applies a patch: keys set to the string "<remove>" are removed, others replaced.
fn patched(patch: &Value) -> Value {
    let mut m = base();
    for (k, v) in patch.as_object().unwrap() {
        if v == "<remove>" {
            m.as_object_mut().unwrap().remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    m
}

fn check_items(cases: &[(&str, Value, &str)], catalog: Option<&opentally_protocol::Catalog>) {
    let mut failures = Vec::new();
    for (name, item, expected) in cases {
        let body = serde_json::to_vec(&json!({ "batch": [item] })).unwrap();
        let got = outcomes(&body, catalog).unwrap();
        if got != [*expected] {
            failures.push(format!(
                "{name}:\n  expected {expected}\n  got      {}",
                got.join(" | ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn messages_without_catalog() {
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("valid", base(), "ok"),
        (
            "item is null",
            Value::Null,
            "not_an_object: a message must be a JSON object, not null",
        ),
        (
            "item is an array",
            json!([1]),
            "not_an_object: a message must be a JSON object, not an array",
        ),
        (
            "item is a string",
            json!("track"),
            "not_an_object: a message must be a JSON object, not a string",
        ),
        (
            "no type",
            patched(&json!({"type": "<remove>"})),
            "missing_type: `type` is required",
        ),
        (
            "null type is absent",
            patched(&json!({"type": null})),
            "missing_type: `type` is required",
        ),
        (
            "capitalised type",
            patched(&json!({"type": "Track"})),
            "unknown_type: `type` is \"Track\"; expected one of track, identify, page, screen, group, alias",
        ),
        (
            "numeric type",
            patched(&json!({"type": 1})),
            "invalid_type: `type` must be a string, not a number",
        ),
        (
            "no messageId",
            patched(&json!({"messageId": "<remove>"})),
            "missing_field: `messageId` is required",
        ),
        (
            "empty messageId",
            patched(&json!({"messageId": ""})),
            "missing_field: `messageId` is required",
        ),
        (
            "messageId of 100 chars",
            patched(&json!({"messageId": long(100)})),
            "ok",
        ),
        (
            "messageId of 101 chars",
            patched(&json!({"messageId": long(101)})),
            "too_long: `messageId` is 101 characters; the limit is 100",
        ),
        (
            "numeric messageId",
            patched(&json!({"messageId": 12345})),
            "ok",
        ),
        (
            "object messageId",
            patched(&json!({"messageId": {"id": 1}})),
            "invalid_type: `messageId` must be a string or a number, not an object",
        ),
        (
            "no ids",
            patched(&json!({"anonymousId": "<remove>"})),
            "missing_field: one of `userId` or `anonymousId` is required",
        ),
        (
            "null anonymousId with userId",
            patched(&json!({"anonymousId": null, "userId": "user-1"})),
            "ok",
        ),
        (
            "empty anonymousId, null userId",
            patched(&json!({"anonymousId": "", "userId": null})),
            "missing_field: one of `userId` or `anonymousId` is required",
        ),
        (
            "numeric userId",
            patched(&json!({"anonymousId": "<remove>", "userId": 42})),
            "ok",
        ),
        (
            "boolean userId",
            patched(&json!({"userId": true})),
            "invalid_type: `userId` must be a string or a number, not a boolean",
        ),
        (
            "anonymousId of 201 chars",
            patched(&json!({"anonymousId": long(201)})),
            "too_long: `anonymousId` is 201 characters; the limit is 200",
        ),
        (
            "track without event",
            patched(&json!({"event": "<remove>"})),
            "missing_field: `event` is required",
        ),
        (
            "empty event",
            patched(&json!({"event": ""})),
            "missing_field: `event` is required",
        ),
        (
            "event of 201 chars",
            patched(&json!({"event": long(201)})),
            "too_long: `event` is 201 characters; the limit is 200",
        ),
        (
            "event of 200 two-byte chars",
            patched(&json!({"event": "é".repeat(200)})),
            "ok",
        ),
        (
            "numeric event",
            patched(&json!({"event": 7})),
            "invalid_type: `event` must be a string, not a number",
        ),
        (
            "properties as array",
            patched(&json!({"properties": [1, 2]})),
            "invalid_type: `properties` must be an object, not an array",
        ),
        (
            "null properties are absent",
            patched(&json!({"properties": null})),
            "ok",
        ),
        (
            "context as string",
            patched(&json!({"context": "linux"})),
            "invalid_type: `context` must be an object, not a string",
        ),
        (
            "timestamp in words",
            patched(&json!({"timestamp": "yesterday"})),
            "invalid_timestamp: `timestamp` \"yesterday\": expected a four-digit year",
        ),
        (
            "timestamp as epoch number",
            patched(&json!({"timestamp": 1_795_371_957})),
            "invalid_type: `timestamp` must be a string, not a number",
        ),
        (
            "timestamp with 10 fraction digits",
            patched(&json!({"timestamp": "2026-11-22T10:00:00.1234567890Z"})),
            "invalid_timestamp: `timestamp` \"2026-11-22T10:00:00.1234567890Z\": more than 9 fraction digits",
        ),
        (
            "timestamp with month 13",
            patched(&json!({"timestamp": "2026-13-22T10:00:00Z"})),
            "invalid_timestamp: `timestamp` \"2026-13-22T10:00:00Z\": month out of range",
        ),
        (
            "timestamp on 30 February",
            patched(&json!({"timestamp": "2026-02-30T10:00:00Z"})),
            "invalid_timestamp: `timestamp` \"2026-02-30T10:00:00Z\": day out of range for the month",
        ),
        (
            "one-digit month and day",
            patched(&json!({"timestamp": "2026-1-5T10:00:00Z"})),
            "ok",
        ),
        (
            "nine fraction digits and offset",
            patched(&json!({"timestamp": "2026-11-22T11:00:00.123456789+01:00"})),
            "ok",
        ),
        (
            "no offset is read as UTC",
            patched(&json!({"timestamp": "2026-11-22T10:00:00"})),
            "ok",
        ),
        (
            "an hour ahead is clamped",
            patched(&json!({"timestamp": "2026-11-22T11:00:00Z"})),
            "ok",
        ),
        (
            "two days ahead",
            patched(&json!({"timestamp": "2026-11-24T10:00:00Z"})),
            "timestamp_out_of_range: the timestamp is 172795s after receipt; the limit is 86400s",
        ),
        (
            "two days ahead, explained by sentAt",
            patched(&json!({
            "timestamp": "2026-11-24T10:00:00Z", "sentAt": "2026-11-24T10:00:01Z"})),
            "ok",
        ),
        (
            "two years old",
            patched(&json!({"timestamp": "2024-11-22T10:00:05Z"})),
            "timestamp_out_of_range: the timestamp is 63072000s before receipt; the limit is 31622400s",
        ),
        (
            "originalTimestamp only",
            patched(&json!({"timestamp": null, "originalTimestamp": "2026-11-22T09:00:00Z"})),
            "ok",
        ),
        (
            "no timestamp at all",
            patched(&json!({"timestamp": "<remove>"})),
            "ok",
        ),
        (
            "unreadable sentAt",
            patched(&json!({"sentAt": "now"})),
            "invalid_timestamp: `sentAt` \"now\": expected a four-digit year",
        ),
        (
            "unknown fields are accepted, and dropped (integrations silently)",
            patched(&json!({"integrations": {"All": true}, "vendor_field": [1]})),
            "ok dropped=[vendor_field]",
        ),
        (
            "writeKey inside a message",
            patched(&json!({"writeKey": "k"})),
            "ok",
        ),
        (
            "identify without traits",
            json!({"type": "identify", "messageId": "m", "userId": "u"}),
            "ok",
        ),
        (
            "group without groupId",
            json!({"type": "group", "messageId": "m", "userId": "u"}),
            "missing_field: `groupId` is required",
        ),
        (
            "group with numeric groupId: accepted, the group id never stored",
            json!({"type": "group", "messageId": "m", "userId": "u", "groupId": 9}),
            "ok dropped=[groupId]",
        ),
        (
            "alias without previousId",
            json!({"type": "alias", "messageId": "m", "userId": "u"}),
            "missing_field: `previousId` is required",
        ),
        (
            "alias without userId",
            json!({"type": "alias", "messageId": "m", "anonymousId": "a", "previousId": "p"}),
            "missing_field: `userId` is required",
        ),
        (
            "page name of 201 chars",
            json!({"type": "page", "messageId": "m", "userId": "u", "name": long(201)}),
            "too_long: `name` is 201 characters; the limit is 200",
        ),
        (
            "screen without name",
            json!({"type": "screen", "messageId": "m", "userId": "u"}),
            "ok",
        ),
        (
            "message over 32 KiB",
            patched(&json!({"properties": {"blob": long(33_000)}})),
            "message_too_large: the message is 33128 bytes; the limit is 32768",
        ),
    ];
    check_items(&cases, None);
}

#[test]
fn messages_against_the_example_catalog() {
    let catalog = example_catalog();
    let props = |p: Value| patched(&json!({ "properties": p }));
    let cases: Vec<(&str, Value, &str)> = vec![
        ("valid", base(), "ok"),
        (
            "unknown event",
            patched(&json!({"event": "train"})),
            "unknown_event: event `train` is not in the project's catalog",
        ),
        (
            "unknown property",
            props(json!({"method": "cbpe", "dataset_path": "/home/ana/x.csv"})),
            "unknown_property: property `dataset_path` is not in the catalog for event `fit`",
        ),
        (
            "enum value not listed",
            props(json!({"method": "magic"})),
            "invalid_property: property `method` is \"magic\"; expected one of cbpe, dle, univariate_drift, multivariate_drift",
        ),
        (
            "integer below min",
            props(json!({"method": "cbpe", "chunk_size": 0})),
            "invalid_property: property `chunk_size` is 0; expected 1 to 10000000",
        ),
        (
            "integer at max",
            props(json!({"method": "cbpe", "chunk_size": 10_000_000})),
            "ok",
        ),
        (
            "integer as string",
            props(json!({"method": "cbpe", "chunk_size": "5"})),
            "invalid_property: property `chunk_size` must be an integer, not a string",
        ),
        (
            "fraction for integer",
            props(json!({"method": "cbpe", "chunk_size": 5.5})),
            "invalid_property: property `chunk_size` must be an integer, not a number",
        ),
        (
            "required property missing",
            props(json!({"n_features": "1-10"})),
            "missing_property: property `method` is required for event `fit`",
        ),
        (
            "required property null",
            props(json!({"method": null})),
            "missing_property: property `method` is required for event `fit`",
        ),
        (
            "optional property null",
            props(json!({"method": "dle", "chunk_size": null})),
            "ok",
        ),
        (
            "string at max_length",
            patched(&json!({"event": "cli_run", "properties": {"command": "x".repeat(40)}})),
            "ok",
        ),
        (
            "string over max_length",
            patched(&json!({"event": "cli_run", "properties": {"command": "x".repeat(41)}})),
            "invalid_property: property `command` is 41 characters; the limit is 40",
        ),
        (
            "boolean as string",
            patched(&json!({"event": "cli_run", "properties": {"interactive": "true"}})),
            "invalid_property: property `interactive` must be a boolean, not a string",
        ),
        (
            "number at min given as integer",
            patched(&json!({"event": "cli_run", "properties": {"config_score": 0}})),
            "ok",
        ),
        (
            "number over max",
            patched(&json!({"event": "cli_run", "properties": {"config_score": 1.5}})),
            "invalid_property: property `config_score` is 1.5; expected 0 to 1",
        ),
        (
            "reserved properties",
            props(
                json!({"method": "cbpe", "duration_ms": 812.4, "outcome": "error",
            "error_type": "sklearn.exceptions.NotFittedError"}),
            ),
            "ok",
        ),
        (
            "negative duration",
            props(json!({"method": "cbpe", "duration_ms": -1})),
            "invalid_property: property `duration_ms` must not be negative",
        ),
        (
            "duration as string",
            props(json!({"method": "cbpe", "duration_ms": "812ms"})),
            "invalid_property: property `duration_ms` must be a number, not a string",
        ),
        (
            "unknown outcome",
            props(json!({"method": "cbpe", "outcome": "failed"})),
            "invalid_property: property `outcome` must be \"ok\" or \"error\"",
        ),
        (
            "error message smuggled into error_type",
            props(json!({"method": "cbpe", "error_type": "ValueError: /home/ana/x.csv"})),
            "invalid_property: property `error_type` must be an exception class or error kind (letters, digits, `_`, `.`, `:`), never a message",
        ),
        (
            "identify is not accepted",
            json!({"type": "identify", "messageId": "m", "userId": "u", "traits": {"email": "a@b.c"}}),
            "type_not_allowed: the project's catalog does not accept `identify` messages",
        ),
        (
            "ip and unknown context are dropped",
            patched(&json!({"context": {
            "ip": "203.0.113.9", "os": {"name": "linux"}, "locale": "de-DE"}})),
            "ok dropped=[context.ip, context.locale]",
        ),
        (
            "unknown top-level fields are dropped",
            patched(&json!({"integrations": {}, "channel": "server"})),
            "ok dropped=[channel]",
        ),
    ];
    check_items(&cases, Some(&catalog));
}

#[test]
fn lenient_catalog_drops_and_reports_instead_of_rejecting() {
    let src = r#"
mode = "lenient"
[context]
keep = ["os.name", "app"]
[events.fit.properties.method]
type = "enum"
values = ["cbpe"]
required = true
"#;
    let catalog = opentally_protocol::Catalog::from_toml_str(src).unwrap();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown property dropped",
            patched(&json!({"properties": {"method": "cbpe", "path": "/x"}})),
            "ok dropped=[properties.path]",
        ),
        (
            "bad value dropped",
            patched(&json!({"properties": {"method": "dle", "outcome": "maybe"}})),
            "ok dropped=[properties.method, properties.outcome]",
        ),
        (
            "unknown event kept without its properties",
            patched(&json!({"event": "train", "properties": {"k": 1}})),
            "ok dropped=[properties.k]",
        ),
        (
            "nested context path keeps only that leaf",
            patched(&json!({"context": {
            "os": {"name": "linux", "version": "6.1"}, "app": {"name": "x", "version": "1"}}})),
            "ok dropped=[context.os.version]",
        ),
    ];
    check_items(&cases, Some(&catalog));
}

#[test]
fn whole_request_failures() {
    let limits = opentally_protocol::Limits::default();
    let many =
        serde_json::to_vec(&json!({"batch": vec![base(); limits.max_batch_messages + 1]})).unwrap();
    let big = format!(
        r#"{{"batch":[],"pad":"{}"}}"#,
        "x".repeat(limits.max_body_bytes)
    );
    // 5,000 bytes of batch context, 200 messages: ~1 MB once the context is in each of them.
    let copied = serde_json::to_vec(&json!({
        "batch": vec![base(); 200],
        "context": {"pad": "x".repeat(4_990)},
    }))
    .unwrap();
    let copied_expected = format!(
        "context_too_large: the batch's context is 5000 bytes: copied into each of its 200 \
         messages, the batch would be {} bytes; the limit is 512000",
        copied.len() + 200 * 5000
    );
    let cases: Vec<(&str, &[u8], &str)> = vec![
        (
            "batch context copied into every message over the limit",
            &copied,
            &copied_expected,
        ),
        (
            "not JSON",
            b"{\"batch\": [",
            "invalid_json: the body is not valid JSON: EOF while parsing a list at line 1 column 11",
        ),
        (
            "not UTF-8",
            b"{\"batch\": [\"\xff\"]}",
            "invalid_json: the body is not valid JSON: invalid unicode code point at line 1 column 13",
        ),
        (
            "empty body",
            b"",
            "invalid_json: the body is not valid JSON: EOF while parsing a value at line 1 column 0",
        ),
        (
            "top-level array",
            b"[{\"type\":\"track\"}]",
            "not_an_object: the body must be a JSON object, not an array",
        ),
        (
            "no batch",
            b"{\"sentAt\":\"2026-11-22T10:00:00Z\"}",
            "missing_batch: the body has no `batch` array",
        ),
        (
            "null batch",
            b"{\"batch\":null}",
            "missing_batch: the body has no `batch` array",
        ),
        (
            "batch is an object",
            b"{\"batch\":{\"type\":\"track\"}}",
            "batch_not_array: `batch` must be an array, not an object",
        ),
        (
            "too many messages",
            &many,
            "too_many_messages: the batch has 2501 messages; the limit is 2500",
        ),
        (
            "body over the limit",
            big.as_bytes(),
            "body_too_large: the body is 512021 bytes; the limit is 512000",
        ),
    ];
    let mut failures = Vec::new();
    for (name, body, expected) in &cases {
        match outcomes(body, None) {
            Err(got) if got == *expected => {}
            other => failures.push(format!("{name}: expected {expected}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn one_bad_item_costs_only_itself() {
    let body = serde_json::to_vec(&json!({"batch": [
        base(),
        patched(&json!({"messageId": "<remove>"})),
        42,
        patched(&json!({"messageId": "m-3"})),
    ]}))
    .unwrap();
    assert_eq!(
        outcomes(&body, None).unwrap(),
        [
            "ok",
            "missing_field: `messageId` is required",
            "not_an_object: a message must be a JSON object, not a number",
            "ok"
        ]
    );
}

#[test]
fn empty_batch_and_envelope_fields() {
    let body = br#"{"batch":[],"sentAt":"soon","writeKey":"wk","context":{"app":{"name":"x"}},"integrations":{}}"#;
    let parsed =
        opentally_protocol::parse_batch(body, &opentally_protocol::Limits::default()).unwrap();
    assert!(parsed.items.is_empty());
    assert_eq!(
        parsed.sent_at, None,
        "an unreadable envelope sentAt only disables skew correction"
    );
    assert_eq!(
        parsed
            .write_key
            .as_ref()
            .map(opentally_protocol::WriteKey::expose),
        Some("wk")
    );
    assert_eq!(parsed.context["app"]["name"], "x");
    assert!(parsed.extra.contains_key("integrations"));
}

#[test]
fn batch_context_fills_only_what_the_message_lacks() {
    let body = serde_json::to_vec(&json!({
        "batch": [patched(&json!({"context": {"os": {"name": "mine"}}}))],
        "context": {"os": {"name": "batch"}, "app": {"name": "demo"}}
    }))
    .unwrap();
    let parsed =
        opentally_protocol::parse_batch(&body, &opentally_protocol::Limits::default()).unwrap();
    let mut m = parsed.items.into_iter().next().unwrap().message.unwrap();
    m.merge_context(&parsed.context);
    assert_eq!(m.context["os"]["name"], "mine");
    assert_eq!(m.context["app"]["name"], "demo");
}

#[test]
fn single_message_endpoints_imply_the_type() {
    use opentally_protocol::{Limits, MessageType, Reason, parse_single};
    let limits = Limits::default();
    let body = br#"{"event":"fit","messageId":"m","userId":"u","writeKey":"wk","sentAt":"2026-11-22T10:00:00Z"}"#;
    let parsed = parse_single(body, MessageType::Track, &limits).unwrap();
    assert_eq!(
        parsed
            .write_key
            .as_ref()
            .map(opentally_protocol::WriteKey::expose),
        Some("wk")
    );
    assert!(
        parsed.sent_at.is_some(),
        "the message's sentAt serves for skew correction"
    );
    let m = parsed.items[0].message.as_ref().unwrap();
    assert_eq!(m.kind, MessageType::Track);
    assert!(
        !m.extra.contains_key("writeKey"),
        "a credential is never kept as data"
    );

    let page = br#"{"type":"page","messageId":"m","userId":"u"}"#;
    let parsed = parse_single(page, MessageType::Track, &limits).unwrap();
    let rejection = parsed.items[0].message.as_ref().unwrap_err();
    assert_eq!(rejection.reason, Reason::TypeMismatch);
    assert_eq!(
        rejection.detail,
        "`type` is page but the message was sent to the track endpoint"
    );
}
