//! The ingest API through the router: auth forms, rejection reasons, statuses, dedup, privacy.

use axum::body::Body;
use axum::http::StatusCode;
use base64::Engine as _;
use opentally_protocol::Reason;
use opentally_server::config::RawConfig;
use serde_json::{Value, json};

use crate::{CATALOG, Harness, event, get, gzip, post, wait_until};

// (name, header, body key, expected status, expected error code)
type Case<'a> = (
    &'a str,
    Option<(&'a str, String)>,
    Option<&'a str>,
    u16,
    &'a str,
);

#[tokio::test]
async fn every_auth_form_is_accepted_and_bad_keys_get_401() {
    let h = Harness::new("auth", Some(CATALOG), RawConfig::default());
    let key = h.write_key.clone();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let body = |i: usize, with_key: Option<&str>| {
        let mut v = json!({"batch": [event(&format!("auth-{i}"))]});
        if let Some(k) = with_key {
            v["writeKey"] = json!(k);
        }
        v.to_string()
    };
    // (name, header, body key, expected status, expected error code)
    let cases: Vec<Case> = vec![
        (
            "basic key:",
            Some((
                "authorization",
                format!("Basic {}", b64(&format!("{key}:"))),
            )),
            None,
            200,
            "",
        ),
        (
            "basic key without colon",
            Some(("authorization", format!("Basic {}", b64(&key)))),
            None,
            200,
            "",
        ),
        (
            "bearer",
            Some(("authorization", format!("Bearer {key}"))),
            None,
            200,
            "",
        ),
        (
            "x-write-key",
            Some(("x-write-key", key.clone())),
            None,
            200,
            "",
        ),
        ("body writeKey", None, Some(&key), 200, ""),
        ("no key anywhere", None, None, 401, "missing_write_key"),
        (
            "unknown key",
            Some(("x-write-key", "otw_nope".into())),
            None,
            401,
            "invalid_write_key",
        ),
        (
            "bad header beats good body key",
            Some(("authorization", "Bearer otw_nope".into())),
            Some(&key),
            401,
            "invalid_write_key",
        ),
        (
            "basic, not base64",
            Some(("authorization", "Basic %%%".into())),
            None,
            401,
            "missing_write_key",
        ),
    ];
    for (i, (name, header, body_key, status, code)) in cases.into_iter().enumerate() {
        let mut req = post("/v1/batch");
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        let (got, _, resp) = h
            .send(req.body(Body::from(body(i, body_key))).unwrap())
            .await;
        assert_eq!(got.as_u16(), status, "{name}: {resp}");
        if status == 200 {
            assert_eq!(resp["accepted"], 1, "{name}: {resp}");
        } else {
            assert_eq!(resp["code"], code, "{name}: {resp}");
            assert_eq!(resp["ok"], false);
        }
    }
    assert_eq!(h.dump().len(), 5, "one event per accepted auth form");
}

/// One message per rejection reason, each with the reason it must get. The table must cover
/// every reason the protocol defines.
#[tokio::test]
async fn every_rejection_reason_is_reported_per_item() {
    let overrides = RawConfig {
        install_events_burst: Some(3),
        install_events_per_sec: Some(1),
        ..RawConfig::default()
    };
    let h = Harness::new("reasons", Some(CATALOG), overrides);
    let ok = event("fine");
    let with = |patch: Value| {
        let mut m = event("x");
        for (k, v) in patch.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let cases: Vec<(Reason, Value)> = vec![
        (Reason::NotAnObject, json!("track")),
        (
            Reason::MessageTooLarge,
            with(json!({"properties": {"method": "cbpe", "pad": "x".repeat(40_000)}})),
        ),
        (Reason::MissingType, {
            let mut m = event("x");
            m.as_object_mut().unwrap().remove("type");
            m
        }),
        (Reason::UnknownType, with(json!({"type": "trace"}))),
        (Reason::InvalidType, with(json!({"properties": [1]}))),
        (Reason::MissingField, with(json!({"anonymousId": null}))),
        (Reason::TooLong, with(json!({"messageId": "m".repeat(101)}))),
        (Reason::InvalidTimestamp, with(json!({"timestamp": "noon"}))),
        (
            Reason::TimestampOutOfRange,
            with(json!({"timestamp": "2001-01-01T00:00:00Z"})),
        ),
        (
            Reason::TypeNotAllowed,
            json!({"type": "identify", "messageId": "i", "userId": "u"}),
        ),
        (Reason::UnknownEvent, with(json!({"event": "train"}))),
        (
            Reason::UnknownProperty,
            with(json!({"properties": {"method": "cbpe", "path": "/home/x"}})),
        ),
        (
            Reason::InvalidProperty,
            with(json!({"properties": {"method": "magic"}})),
        ),
        (Reason::MissingProperty, with(json!({"properties": {}}))),
    ];
    let mut batch: Vec<Value> = cases.iter().map(|(_, m)| m.clone()).collect();
    batch.push(ok);
    let (status, _, resp) = h.send(h.batch(&json!({ "batch": batch }))).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], 1, "{resp}");
    let rejected = resp["rejected"].as_array().unwrap();
    let mut covered: Vec<Reason> = Vec::new();
    for (i, (reason, _)) in cases.iter().enumerate() {
        let r = rejected
            .iter()
            .find(|r| r["index"] == i)
            .unwrap_or_else(|| panic!("item {i} ({reason}) was not rejected"));
        assert_eq!(r["reason"], reason.as_str(), "item {i}: {r}");
        assert!(!r["detail"].as_str().unwrap().is_empty());
        covered.push(*reason);
    }
    // TypeMismatch only arises on single-message endpoints.
    let (status, _, resp) = h
        .send(
            post("/v1/track")
                .header("x-write-key", &h.write_key)
                .body(Body::from(with(json!({"type": "page"})).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["rejected"][0]["reason"], "type_mismatch", "{resp}");
    covered.push(Reason::TypeMismatch);
    // RateLimited: one install over its burst of 3 (one event already spent above).
    let burst: Vec<Value> = (0..4).map(|i| event(&format!("burst-{i}"))).collect();
    let (_, _, resp) = h.send(h.batch(&json!({ "batch": burst }))).await;
    assert_eq!(resp["accepted"], 2, "{resp}");
    assert!(
        resp["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reason"] == "rate_limited"),
        "{resp}"
    );
    covered.push(Reason::RateLimited);
    // NotCollected: a version the operator stopped (tests/it/control.rs has the rest).
    opentally_server::meta::MetaStore::open(&h.dir.0)
        .unwrap()
        .set_collection(
            "p",
            Some("<0.2"),
            Some(opentally_protocol::Control {
                collect: false,
                sample: None,
            }),
        )
        .unwrap();
    h.state.refresh_projects().unwrap();
    let stopped = with(json!({"messageId": "stopped", "anonymousId": "other",
                              "context": {"app": {"name": "a", "version": "0.1.0"}}}));
    let (_, _, resp) = h.send(h.batch(&json!({ "batch": [stopped] }))).await;
    assert_eq!(resp["rejected"][0]["reason"], "not_collected", "{resp}");
    covered.push(Reason::NotCollected);
    for reason in Reason::ALL {
        assert!(covered.contains(&reason), "no test case for {reason}");
    }
    let metrics = h.state.metrics().encode();
    assert!(
        metrics.contains("opentally_events_rejected_total{reason=\"unknown_event\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn whole_request_failures_get_their_status() {
    let overrides = RawConfig {
        max_body_bytes: Some(100_000),
        ..RawConfig::default()
    };
    let h = Harness::new("statuses", Some(CATALOG), overrides);
    let with_key = |b: axum::http::request::Builder| b.header("x-write-key", h.write_key.clone());
    let bomb = gzip(&vec![b' '; 50_000_000]);
    assert!(
        bomb.len() < 100_000,
        "the bomb fits under the compressed limit: {}",
        bomb.len()
    );
    let cases: Vec<(&str, axum::http::Request<Body>, u16, &str)> = vec![
        (
            "not JSON",
            with_key(post("/v1/batch"))
                .body(Body::from("{\"batch\":["))
                .unwrap(),
            400,
            "invalid_json",
        ),
        (
            "no batch",
            with_key(post("/v1/batch")).body(Body::from("{}")).unwrap(),
            400,
            "missing_batch",
        ),
        (
            "compressed body over the limit",
            with_key(post("/v1/batch"))
                .body(Body::from(vec![b'x'; 100_001]))
                .unwrap(),
            413,
            "body_too_large",
        ),
        (
            "gzip bomb",
            with_key(post("/v1/batch"))
                .header("content-encoding", "gzip")
                .body(Body::from(bomb))
                .unwrap(),
            413,
            "body_too_large",
        ),
        (
            "batch context copied into every message over the limit",
            with_key(post("/v1/batch"))
                .body(Body::from(
                    serde_json::to_vec(&serde_json::json!({
                        "batch": vec![serde_json::json!({"type": "track"}); 60],
                        "context": {"pad": "x".repeat(2_000)},
                    }))
                    .unwrap(),
                ))
                .unwrap(),
            413,
            "context_too_large",
        ),
        (
            "corrupt gzip",
            with_key(post("/v1/batch"))
                .header("content-encoding", "gzip")
                .body(Body::from("not gzip"))
                .unwrap(),
            400,
            "invalid_gzip",
        ),
        (
            "unknown encoding",
            with_key(post("/v1/batch"))
                .header("content-encoding", "br")
                .body(Body::from("{}"))
                .unwrap(),
            415,
            "unsupported_encoding",
        ),
    ];
    for (name, req, status, code) in cases {
        let (got, _, resp) = h.send(req).await;
        assert_eq!(
            (got.as_u16(), resp["code"].as_str()),
            (status, Some(code)),
            "{name}: {resp}"
        );
    }
}

#[tokio::test]
async fn a_write_key_over_its_rate_gets_429_with_retry_after() {
    let overrides = RawConfig {
        key_requests_per_sec: Some(1),
        ..RawConfig::default()
    };
    let h = Harness::new("keyrate", Some(CATALOG), overrides);
    // A bucket of 1/s with a burst of 2: two requests pass, the third waits.
    for i in 0..2 {
        let (got, _, resp) = h
            .send(h.batch(&json!({"batch": [event(&format!("k{i}"))]})))
            .await;
        assert_eq!(got, StatusCode::OK, "{resp}");
    }
    let (got, retry, resp) = h.send(h.batch(&json!({"batch": [event("late")]}))).await;
    assert_eq!(
        (got.as_u16(), resp["code"].as_str()),
        (429, Some("rate_limited")),
        "{resp}"
    );
    assert_eq!(retry.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_store_behind_on_sealing_gets_429_with_retry_after() {
    let overrides = RawConfig {
        store_max_unsealed_events: Some(2),
        store_seal_events: Some(1_000_000),
        store_seal_secs: Some(3_600),
        ..RawConfig::default()
    };
    let h = Harness::new("lag", Some(CATALOG), overrides);
    let (got, _, resp) = h
        .send(h.batch(&json!({"batch": [event("l1"), event("l2"), event("l3")]})))
        .await;
    assert_eq!(got, StatusCode::OK, "{resp}");
    // Once the loader holds the three unsealed events, ingest pushes back.
    wait_until(|| h.state.store().tail_rows() == 3).await;
    let (got, retry, resp) = h.send(h.batch(&json!({"batch": [event("l4")]}))).await;
    assert_eq!(
        (got.as_u16(), resp["code"].as_str()),
        (429, Some("store_behind")),
        "{resp}"
    );
    assert_eq!(retry.as_deref(), Some("1"));
    // Sealing catches up; ingest resumes.
    h.state.store().seal().unwrap();
    let (got, _, resp) = h.send(h.batch(&json!({"batch": [event("l4")]}))).await;
    assert_eq!(got, StatusCode::OK, "{resp}");
}

#[tokio::test]
async fn a_log_the_loader_has_not_read_counts_as_lag() {
    let overrides = RawConfig {
        store_max_unsealed_events: Some(2),
        ..RawConfig::default()
    };
    // A loader that looks at the log once, at start, and then not for an hour: what is
    // acknowledged after that stays unread (as under a burst that keeps the loader off the cores).
    let h = Harness::with_config("unread", Some(CATALOG), overrides, |c| {
        c.store.poll = std::time::Duration::from_secs(3_600);
    });
    // One round before serving (the log is empty), one by the loader thread.
    wait_until(|| h.state.store().stats().load_rounds >= 2).await;
    assert_eq!(h.state.store().stats().load_rounds, 2);
    let (got, _, resp) = h
        .send(h.batch(&json!({"batch": [event("u1"), event("u2"), event("u3")]})))
        .await;
    assert_eq!(got, StatusCode::OK, "{resp}");
    assert_eq!(h.state.store().tail_rows(), 0, "the loader is asleep");
    assert_eq!(h.state.unloaded_events(), 3);
    let (got, retry, resp) = h.send(h.batch(&json!({"batch": [event("u4")]}))).await;
    assert_eq!(
        (got.as_u16(), resp["code"].as_str()),
        (429, Some("store_behind")),
        "{resp}"
    );
    assert_eq!(retry.as_deref(), Some("1"));
    let (_, _, text) = h.send(get("/metrics")).await;
    let text = text.as_str().unwrap();
    assert!(text.contains("opentally_store_unloaded_events 3"), "{text}");
    // Reading and sealing the log clears the lag; ingest resumes.
    h.state.store().catch_up(None).unwrap();
    assert_eq!(h.state.unloaded_events(), 0);
    h.state.store().seal().unwrap();
    let (got, _, resp) = h.send(h.batch(&json!({"batch": [event("u4")]}))).await;
    assert_eq!(got, StatusCode::OK, "{resp}");
}

/// The nice values of this process's threads named `name`, from `/proc`.
#[cfg(target_os = "linux")]
fn thread_nices(name: &str) -> Vec<i64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            // Fields after the command's closing parenthesis; nice is the line's 19th field.
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split(' ').nth(16)?.parse().ok()
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_loader_runs_at_its_configured_nice_value() {
    // Values no other test uses, and not the 0 a new thread inherits: other tests' loaders
    // (nice 10) may be running in this process too.
    for (nice, name) in [(7, "nice7"), (13, "nice13")] {
        let overrides = RawConfig {
            store_loader_nice: Some(nice),
            ..RawConfig::default()
        };
        let h = Harness::new(name, Some(CATALOG), overrides);
        // The thread sets its own priority as it starts, before its first round (the second:
        // the first is the one before serving).
        wait_until(|| h.state.store().stats().load_rounds >= 2).await;
        let nices = thread_nices("opentally-loade");
        assert!(nices.contains(&i64::from(nice)), "{nices:?}");
        drop(h);
    }
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let h = Harness::new("gzip", Some(CATALOG), RawConfig::default());
    let body = gzip(
        json!({"batch": [event("g1"), event("g2")]})
            .to_string()
            .as_bytes(),
    );
    let req = post("/v1/batch")
        .header("x-write-key", &h.write_key)
        .header("content-encoding", "gzip")
        .body(Body::from(body))
        .unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["accepted"], 2);
}

#[tokio::test]
async fn a_repeated_message_id_is_acknowledged_but_stored_once() {
    let h = Harness::new("dedup", Some(CATALOG), RawConfig::default());
    let body = json!({"batch": [event("d1"), event("d2"), event("d1")]});
    let (_, _, first) = h.send(h.batch(&body)).await;
    assert_eq!(
        (first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (Some(3), Some(1)),
        "{first}"
    );
    let (_, _, again) = h.send(h.batch(&body)).await;
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(3), Some(3)),
        "{again}"
    );
    let ids: Vec<String> = h
        .dump()
        .iter()
        .map(|e| e["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["d1", "d2"]);
}

#[tokio::test]
async fn ip_and_raw_install_ids_never_reach_the_log() {
    let h = Harness::new("privacy", Some(CATALOG), RawConfig::default());
    let mut m = event("p1");
    m["userId"] = json!("ana@example.com");
    m["context"]["userAgent"] = json!("Mozilla/5.0");
    let (status, _, _) = h
        .send(h.batch(&json!({"batch": [m], "context": {"ip": "198.51.100.1"}})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let log_bytes: Vec<u8> = std::fs::read_dir(h.dir.0.join("log"))
        .unwrap()
        .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let log = String::from_utf8_lossy(&log_bytes);
    for secret in [
        "203.0.113.7",
        "198.51.100.1",
        "install-1",
        "ana@example.com",
        "Mozilla",
    ] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
    let stored = &h.dump()[0];
    assert_eq!(
        stored["install"].as_str().unwrap().len(),
        32,
        "a keyed hash stands for the install"
    );
    assert_eq!(
        stored["context"]["os"]["name"], "linux",
        "kept context stays"
    );
}

#[tokio::test]
async fn open_mode_accepts_any_event_but_stores_only_allowed_fields() {
    let h = Harness::new("open", None, RawConfig::default());
    let m = json!({"type": "track", "event": "anything", "messageId": "o1", "anonymousId": "a",
        "properties": {"free": "form"},
        "context": {"ip": "203.0.113.7", "locale": "de-DE", "os": {"name": "linux", "ip": "x"}}});
    let (status, _, resp) = h.send(h.batch(&json!({"batch": [m]}))).await;
    assert_eq!(
        (status, resp["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{resp}"
    );
    let stored = &h.dump()[0];
    assert_eq!(stored["properties"]["free"], "form");
    // Only the standard context leaves are stored without a catalog.
    assert_eq!(stored["context"], json!({"os": {"name": "linux"}}));
}

#[tokio::test]
async fn single_message_endpoints_take_the_key_from_the_body() {
    let h = Harness::new("single", Some(CATALOG), RawConfig::default());
    let mut m = event("s1");
    m.as_object_mut().unwrap().remove("type");
    m["writeKey"] = json!(h.write_key);
    for path in ["/v1/track", "/v1/t"] {
        let (status, _, resp) = h
            .send(post(path).body(Body::from(m.to_string())).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {resp}");
        assert_eq!(resp["accepted"], 1);
    }
    assert_eq!(h.dump().len(), 1, "the second is a duplicate of the first");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = Harness::new("ops", Some(CATALOG), RawConfig::default());
    assert_eq!(h.send(get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(h.send(get("/readyz")).await.0, StatusCode::OK);
    h.send(h.batch(&json!({"batch": [event("m1")]}))).await;
    // The loader picks the event up from the log within its poll interval.
    wait_until(|| h.state.store().stats().tail_rows == 1).await;
    let (status, _, text) = h.send(get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_owned();
    for needle in [
        "opentally_http_requests_total{route=\"batch\",status=\"200\"} 1",
        "opentally_events_accepted_total 1",
        "opentally_log_fsync_seconds_count 1",
        "opentally_log_group_requests_count 1",
        "opentally_writer_queue_depth 0",
        "opentally_store_tail_events 1",
        "opentally_store_unloaded_events 0",
        "opentally_store_parts 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!text.contains(&h.write_key) && !text.contains("install-1"));
}
