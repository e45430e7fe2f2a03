//! The user's rights on the collector: erase and export by install id.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use opentally_server::config::RawConfig;
use serde_json::{Value, json};

use crate::{Harness, post, wait_until};

fn track(id: &str, install: &str) -> Value {
    json!({"type": "track", "event": "fit", "messageId": id, "anonymousId": install,
           "properties": {"n": 1}})
}

fn erase(h: &Harness, body: &Value) -> Request<Body> {
    post("/v1/privacy/erase")
        .header("x-write-key", &h.write_key)
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn export(h: &Harness, install: &str) -> Request<Body> {
    Request::get("/v1/privacy/export")
        .header("x-write-key", &h.write_key)
        .header("opentally-install-id", install)
        .body(Body::empty())
        .unwrap()
}

/// The message ids of an install's exported events, sorted.
async fn exported(h: &Harness, install: &str) -> Vec<String> {
    let (status, _, body) = h.send(export(h, install)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<String> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["messageId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Whether any file of the log holds `text`.
fn log_holds(h: &Harness, text: &str) -> bool {
    std::fs::read_dir(h.dir.0.join("log"))
        .unwrap()
        .flatten()
        .any(|f| {
            std::fs::read(f.path())
                .unwrap_or_default()
                .windows(text.len())
                .any(|w| w == text.as_bytes())
        })
}

#[tokio::test]
async fn an_erasure_removes_the_install_from_store_and_log_and_says_nothing_about_it() {
    let h = Harness::new("rights-erase", None, RawConfig::default());
    let mut batch: Vec<Value> = (0..5)
        .map(|i| track(&format!("gone-{i}"), "00000000-0000-4000-8000-000000000001"))
        .collect();
    batch.extend(
        (0..3).map(|i| track(&format!("kept-{i}"), "00000000-0000-4000-8000-000000000002")),
    );
    let (status, _, resp) = h.send(h.batch(&json!({ "batch": batch }))).await;
    assert_eq!((status, &resp["accepted"]), (StatusCode::OK, &json!(8)));
    wait_until(|| {
        h.state.store().stats().tail_rows as u64 + h.state.store().stats().part_rows >= 8
    })
    .await;
    assert_eq!(
        exported(&h, "00000000-0000-4000-8000-000000000001").await,
        ["gone-0", "gone-1", "gone-2", "gone-3", "gone-4"]
    );
    assert!(
        exported(&h, "00000000-0000-4000-8000-0000000000ff")
            .await
            .is_empty()
    );
    assert!(log_holds(&h, "gone-0"));

    // Known or not, an erasure gets the same answer.
    let known = h
        .send(erase(
            &h,
            &json!({"installId": "00000000-0000-4000-8000-000000000001"}),
        ))
        .await;
    let unknown = h
        .send(erase(
            &h,
            &json!({"installId": "00000000-0000-4000-8000-0000000000ff"}),
        ))
        .await;
    assert_eq!(known.0, StatusCode::OK, "{}", known.2);
    assert_eq!(known, unknown);

    // Applied by the loader, and the log segments that held the events are deleted.
    wait_until(|| !log_holds(&h, "gone-0")).await;
    assert!(
        exported(&h, "00000000-0000-4000-8000-000000000001")
            .await
            .is_empty()
    );
    assert!(!log_holds(&h, "gone-0"), "the erased events left the log");
    let dump = h.dump();
    assert_eq!(dump.len(), 3, "{dump:?}");
    assert!(
        dump.iter()
            .all(|e| e["messageId"].as_str().unwrap().starts_with("kept-"))
    );
    assert_eq!(
        exported(&h, "00000000-0000-4000-8000-000000000002").await,
        ["kept-0", "kept-1", "kept-2"]
    );
    // The raw id never reached the disk, in the request or the erasure.
    assert!(!log_holds(&h, "00000000-0000-4000-8000-000000000001"));
}

#[tokio::test]
async fn bad_erase_and_export_requests_are_refused_with_a_reason() {
    let h = Harness::new("rights-bad", None, RawConfig::default());
    let cases = [
        (json!({}), StatusCode::BAD_REQUEST, "installId"),
        (json!({"installId": ""}), StatusCode::BAD_REQUEST, "UUID"),
        (
            json!({"installId": "x".repeat(1000)}),
            StatusCode::BAD_REQUEST,
            "UUID",
        ),
        // A `userId` such as an e-mail may be known to others: it is no credential.
        (
            json!({"installId": "carol@example.com"}),
            StatusCode::BAD_REQUEST,
            "UUID",
        ),
        (
            json!({"installId": "a", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "extra",
        ),
    ];
    for (body, status, says) in cases {
        let (got, _, resp) = h.send(erase(&h, &body)).await;
        assert_eq!(got, status, "{body}: {resp}");
        assert!(resp["message"].as_str().unwrap().contains(says), "{resp}");
    }
    let (got, _, resp) = h
        .send(
            post("/v1/privacy/erase")
                .body(Body::from(
                    r#"{"installId":"00000000-0000-4000-8000-00000000000a"}"#,
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (got, resp["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_write_key"))
    );
    let (got, _, _) = h
        .send(
            post("/v1/privacy/erase")
                .header("x-write-key", "wrong")
                .body(Body::from(
                    r#"{"installId":"00000000-0000-4000-8000-00000000000a"}"#,
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(got, StatusCode::UNAUTHORIZED);
    // The key may ride in the body, as in a batch.
    let body =
        json!({"installId": "00000000-0000-4000-8000-00000000000a", "writeKey": h.write_key});
    let (got, _, resp) = h
        .send(
            post("/v1/privacy/erase")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(got, StatusCode::OK, "{resp}");
    // An export names the id in its header, never in the URL.
    let (got, _, resp) = h
        .send(
            Request::get("/v1/privacy/export?installId=a")
                .header("x-write-key", &h.write_key)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert!(
        resp["message"]
            .as_str()
            .unwrap()
            .contains("opentally-install-id"),
        "{resp}"
    );
}

#[tokio::test]
async fn privacy_requests_are_rate_limited_per_project() {
    let h = Harness::new(
        "rights-rate",
        None,
        RawConfig {
            privacy_requests_per_minute: Some(2),
            ..RawConfig::default()
        },
    );
    // Driven without a socket there is no client to tell apart: the project's allowance, ten
    // times a client's, is what holds (tests/e2e/test_rights.py checks the per-client one).
    for _ in 0..20 {
        let (got, _, _) = h
            .send(erase(
                &h,
                &json!({"installId": "00000000-0000-4000-8000-00000000000a"}),
            ))
            .await;
        assert_eq!(got, StatusCode::OK);
    }
    let (got, retry, resp) = h
        .send(export(&h, "00000000-0000-4000-8000-00000000000a"))
        .await;
    assert_eq!(got, StatusCode::TOO_MANY_REQUESTS, "{resp}");
    // Twenty a minute: the next is allowed within 3 s, and the answer says when.
    let secs: u32 = retry.unwrap().parse().unwrap();
    assert!((1..=3).contains(&secs), "{secs}");
    // Ingest is not held back by it.
    let (got, _, _) = h.send(h.batch(&json!({"batch": [track("m", "a")]}))).await;
    assert_eq!(got, StatusCode::OK);
}

#[tokio::test]
async fn each_project_keeps_its_retention_as_the_clock_moves() {
    let h = Harness::new(
        "rights-retention",
        None,
        RawConfig {
            store_seal_secs: Some(1),
            ..RawConfig::default()
        },
    );
    let now = opentally_protocol::Timestamp::now();
    let day = opentally_log::day_of(now);
    let batch: Vec<Value> = (0..3)
        .map(|i| {
            let mut m = track(&format!("old-{i}"), "00000000-0000-4000-8000-000000000001");
            m["timestamp"] = json!(now.to_string());
            m
        })
        .collect();
    let (status, _, _) = h.send(h.batch(&json!({ "batch": batch }))).await;
    assert_eq!(status, StatusCode::OK);
    wait_until(|| h.state.store().stats().part_rows == 3).await;
    assert_eq!(h.state.store().stats().part_rows, 3);

    let meta = h.state.meta();
    let enforce = |today| opentally_server::retention::enforce(meta, h.state.store(), today);
    // A new project keeps 365 days.
    assert_eq!(enforce(day + 364).unwrap(), 0);
    meta.set_retention_days("p", 3).unwrap();
    assert_eq!(enforce(day + 2).unwrap(), 0, "the third day is still kept");
    assert_eq!(h.state.store().stats().part_rows, 3);
    assert_eq!(
        enforce(day + 3).unwrap(),
        3,
        "the fourth day drops the first"
    );
    assert_eq!(h.state.store().stats().part_rows, 0);
    assert!(h.dump().is_empty());

    assert!(matches!(
        meta.set_retention_days("p", 0),
        Err(opentally_server::meta::MetaError::BadRetention(0))
    ));
    assert!(matches!(
        meta.set_retention_days("nope", 5),
        Err(opentally_server::meta::MetaError::NotFound(_))
    ));
}
