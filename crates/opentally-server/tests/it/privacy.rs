//! What reaches disk: identifying values sent in every field a client might use never appear in
//! the log or in what the store serves, in open mode and under a strict catalog.

use axum::http::StatusCode;
use opentally_server::config::RawConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{CATALOG, Harness};

/// Values that identify someone; none may be stored anywhere.
const CANARIES: [&str; 11] = [
    "alice@example.com",
    "alice-laptop",
    "203.0.113.",
    "secret.csv",
    "canary-previous-install",
    "canary-group",
    "Alice Liddell",
    "intranet.example",
    "canary-user",
    "canary-anon",
    "/home/alice",
];

/// A message of `kind` carrying identifying values in every place the review found one kept.
fn hostile(kind: &str, id: &str) -> Value {
    json!({
        "type": kind, "messageId": id, "anonymousId": "canary-anon", "userId": "canary-user",
        "event": "fit", "name": "Alice Liddell", "category": "alice@example.com",
        "previousId": "canary-previous-install", "groupId": "canary-group",
        "ip": "203.0.113.9", "host": "alice-laptop", "IP": "203.0.113.10", "Hostname": "alice-laptop",
        "traits": {"email": "alice@example.com", "hostname": "alice-laptop", "name": "Alice Liddell"},
        "properties": {
            "method": "cbpe",
            "error_type": "FileNotFoundError: /home/alice/secret.csv",
            "url": "https://intranet.example/alice",
            "email": "alice@example.com",
            "nested": {"path": "/home/alice/secret.csv"}
        },
        "context": {
            "IP": "203.0.113.11",
            "ip": "203.0.113.12",
            "app": {"name": "demo", "version": "1.0", "ip": "203.0.113.13", "host": "alice-laptop"},
            "os": {"name": "linux", "Hostname": "alice-laptop"},
            "device": {"id": "canary-anon"},
            "page": {"url": "https://intranet.example/alice"},
            "session": "s-1"
        }
    })
}

/// Every byte the collector wrote under its data dir, as text (the log is JSON in frames).
fn log_text(h: &Harness) -> String {
    let mut out = String::new();
    let log = h.dir.0.join("log");
    for entry in std::fs::read_dir(&log).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        out.push_str(&String::from_utf8_lossy(&bytes));
    }
    out
}

fn assert_no_canary(what: &str, text: &str) {
    for c in CANARIES {
        assert!(!text.contains(c), "{what} holds {c:?}:\n{text}");
    }
}

#[tokio::test]
async fn open_mode_stores_no_identifier_of_any_message_type() {
    let h = Harness::new("privacy-open", None, RawConfig::default());
    let batch: Vec<Value> = ["track", "identify", "page", "screen", "group", "alias"]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut m = hostile(k, &format!("m{i}"));
            // A page's or a screen's name is its event name, stored as sent.
            if matches!(*k, "page" | "screen") {
                m["name"] = json!("Docs");
            }
            m
        })
        .collect();
    let (status, _, resp) = h.send(h.batch(&json!({ "batch": batch }))).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], 6, "{resp}");
    let stored = h.dump();
    assert_eq!(stored.len(), 6);
    assert_no_canary("the dump", &serde_json::to_string(&stored).unwrap());
    assert_no_canary("the log", &log_text(&h));
    let track = stored.iter().find(|e| e["type"] == "track").unwrap();
    assert_eq!(
        track["properties"],
        json!({"method": "cbpe", "error_type": "invalid"}),
        "short scalars under names that do not identify; a free-text error type replaced"
    );
    assert_eq!(
        track["context"],
        json!({"app": {"name": "demo", "version": "1.0"}, "os": {"name": "linux"}, "session": "s-1"})
    );
    let page = stored.iter().find(|e| e["type"] == "page").unwrap();
    assert!(page["properties"].is_null(), "{page}");
    assert_eq!(page["name"], "Docs");
    assert!(page["category"].is_null(), "{page}");
    let identify = stored.iter().find(|e| e["type"] == "identify").unwrap();
    assert!(
        identify["name"].is_null() && identify["traits"].is_null(),
        "{identify}"
    );
}

#[tokio::test]
async fn a_strict_catalog_stores_no_identifier_sent_beside_its_fields() {
    let h = Harness::new("privacy-strict", Some(CATALOG), RawConfig::default());
    let mut m = hostile("track", "s1");
    // What the catalog names passes; the free-text error type is rejected under it.
    m["properties"] = json!({"method": "cbpe"});
    let mut bad_error = hostile("track", "s2");
    bad_error["properties"] =
        json!({"method": "cbpe", "error_type": "FileNotFoundError: /home/alice/secret.csv"});
    let (status, _, resp) = h
        .send(h.batch(&json!({"batch": [m, bad_error, hostile("identify", "s3")]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], 1, "{resp}");
    let reasons: Vec<&str> = resp["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["invalid_property", "type_not_allowed"]);
    let stored = h.dump();
    assert_eq!(stored.len(), 1);
    assert_no_canary("the dump", &serde_json::to_string(&stored).unwrap());
    assert_no_canary("the log", &log_text(&h));
    assert!(stored[0]["traits"].is_null() && stored[0]["previousId"].is_null());
}

/// Regression: `install_id()` took an empty `anonymousId` as the install, so every message
/// with `"anonymousId": ""` beside its own `userId` was stored as one install.
#[tokio::test]
async fn an_empty_anonymous_id_beside_a_user_id_is_absent() {
    let h = Harness::new("empty-anon", None, RawConfig::default());
    let m = |id: &str, user: Option<&str>| json!({"type": "track", "event": "e", "messageId": id, "anonymousId": "", "userId": user});
    let (status, _, resp) = h
        .send(
            h.batch(&json!({"batch": [m("u1", Some("one")), m("u2", Some("two")), m("u3", None)]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["accepted"], 2, "{resp}");
    assert_eq!(resp["rejected"][0]["reason"], "missing_field", "{resp}");
    let stored = h.dump();
    assert_ne!(
        stored[0]["install"], stored[1]["install"],
        "two users, two installs"
    );
}

/// `{"a": {"a": … 1 …}}`, `depth` objects deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!({ "a": inner }))
}

/// Regression: a message 126 levels deep was accepted, its log record passed JSON's 128-level
/// limit when read back, the dedup replay after a crash skipped it, and its retry was stored
/// twice. What is stored is shallow whatever was sent, so the record reads back.
#[tokio::test]
async fn a_deeply_nested_message_reads_back_after_a_crash_and_its_retry_is_a_duplicate() {
    let h = Harness::new("deep", None, RawConfig::default());
    // The batch wraps the message in two levels: 126 more reach serde_json's limit of 128.
    let mut m =
        json!({"type": "track", "event": "deep", "messageId": "deep-1", "anonymousId": "a"});
    m["properties"] = json!({"ok": true, "deep": nested(124)});
    m["context"] = json!({"app": {"name": "x"}, "deep": nested(124)});
    m["traits"] = nested(125);
    m["custom"] = nested(125);
    let body = json!({ "batch": [m] });
    let (status, _, resp) = h.send(h.batch(&body)).await;
    assert_eq!(
        (status, resp["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{resp}"
    );

    // A crash: the data dir as it stands, with no checkpoint of the dedup index.
    let crashed = crate::TempDir::new("deep-crashed");
    crate::lifecycle::copy_dir(&h.dir.0, &crashed.0);
    let collector =
        opentally_server::Collector::open(crate::config(&crashed, &RawConfig::default())).unwrap();
    assert_eq!(
        collector.report.ids_in_memory, 1,
        "the log record read back"
    );
    let resp = opentally_server::app(collector.state.clone())
        .oneshot(
            crate::post("/v1/batch")
                .header("x-write-key", &h.write_key)
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let resp: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(resp["duplicates"], 1, "{resp}");
    drop(collector);
    let mut out = Vec::new();
    assert_eq!(
        opentally_server::dump::dump(&crashed.0, None, &mut out).unwrap(),
        1,
        "stored once"
    );
    let stored: Value = serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(stored["properties"], json!({"ok": true}));
    assert_eq!(stored["context"], json!({"app": {"name": "x"}}));
}

/// Regression: property names were stored as sent (`"alice@example.com": true`), names with an
/// identifying word in another spelling passed (`emailAddress`, `client_ip`, `anonymousId`),
/// addresses passed as enum-like values, the standard context fields took any text, and the
/// messageId was stored as sent.
#[tokio::test]
async fn open_mode_stores_no_identifier_in_names_context_text_or_message_ids() {
    let h = Harness::new("privacy-shapes", None, RawConfig::default());
    let m = json!({
        "type": "track", "event": "fit", "anonymousId": "a",
        "messageId": "alice@example.com /home/alice 1",
        "properties": {
            "alice@example.com": true, "/home/alice/secret.csv": 1, "Alice Liddell": true,
            "emailAddress": "x", "user.email": "x", "client_ip": "x", "remote_addr": "x",
            "anonymousId": "canary-anon", "machine": "alice-laptop.corp.example.com",
            "server": "10.77.1.9", "peer": "fe80::1", "method": "cbpe", "n_rows": "1000-10000"
        },
        "context": {
            "app": {"name": "demo alice@example.com", "version": "1.0"},
            "os": {"name": "linux", "version": "/home/alice"},
            "runtime": {"virtualenv": "/home/alice/.venv", "name": "python"},
            "environment": {"cloud": "alice-laptop.corp.example.com", "ci": true},
            "hardware": {"gpu": "NVIDIA GeForce RTX 3090"}
        }
    });
    let (status, _, resp) = h.send(h.batch(&json!({ "batch": [m.clone()] }))).await;
    assert_eq!(
        (status, resp["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{resp}"
    );
    let stored = h.dump();
    assert_no_canary("the dump", &serde_json::to_string(&stored).unwrap());
    assert_no_canary("the log", &log_text(&h));
    for canary in ["10.77.1.9", "fe80::1", "corp.example.com"] {
        assert!(!log_text(&h).contains(canary), "the log holds {canary}");
    }
    let e = &stored[0];
    assert_eq!(
        e["properties"],
        json!({"method": "cbpe", "n_rows": "1000-10000"})
    );
    assert_eq!(
        e["context"],
        json!({"app": {"version": "1.0"}, "os": {"name": "linux"}, "runtime": {"name": "python"},
               "environment": {"ci": true}, "hardware": {"gpu": "NVIDIA GeForce RTX 3090"}})
    );
    let id = e["messageId"].as_str().unwrap();
    assert!(id.starts_with("h-") && id.len() == 34, "{id}");
    // The same odd id again is still a duplicate.
    let (_, _, resp) = h.send(h.batch(&json!({ "batch": [m] }))).await;
    assert_eq!(resp["duplicates"], 1, "{resp}");
}
