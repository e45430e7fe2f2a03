//! The operator's remote controls on the collector: a stopped version's events are refused and
//! the answer says so; a sample keeps the installs `sampled_in` names, and no others.

use axum::http::StatusCode;
use opentally_protocol::Control;
use opentally_server::config::RawConfig;
use opentally_server::meta::MetaStore;
use serde_json::{Value, json};

use crate::{Harness, wait_until};

const OFF: Control = Control {
    collect: false,
    sample: None,
};

fn track(id: &str, install: &str, version: &str) -> Value {
    json!({"type": "track", "event": "fit", "messageId": id, "anonymousId": install,
           "context": {"app": {"name": "demo", "version": version}}})
}

/// Sets a rule as `opentally project set-collection` does, through its own connection, and has
/// the collector notice it as its upkeep does every second.
fn set(h: &Harness, versions: Option<&str>, control: Option<Control>) {
    MetaStore::open(&h.dir.0)
        .unwrap()
        .set_collection("p", versions, control)
        .unwrap();
    h.state.refresh_projects().unwrap();
}

#[tokio::test]
async fn a_stopped_version_is_refused_and_told_and_others_are_kept() {
    let h = Harness::new("control-stop", None, RawConfig::default());
    set(&h, Some("<1.3"), Some(OFF));
    let install = "00000000-0000-4000-8000-000000000001";
    let old =
        json!({"batch": [track("old-1", install, "1.2.9"), track("old-2", install, "1.2.9")]});
    let (_, _, resp) = h.send(h.batch(&old)).await;
    assert_eq!(resp["control"], json!({"collect": false}));
    assert_eq!(resp["accepted"], 0);
    let reasons: Vec<&Value> = resp["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["reason"])
        .collect();
    assert_eq!(reasons, [&json!("not_collected"), &json!("not_collected")]);

    // Pre-releases count as their release; 1.3.0 and later are collected, with no control.
    let new =
        json!({"batch": [track("new-1", install, "1.3.0rc1"), track("new-2", install, "v2.0")]});
    let (_, _, resp) = h.send(h.batch(&new)).await;
    assert_eq!(resp["accepted"], 2, "{resp}");
    assert!(resp.get("control").is_none(), "{resp}");
    let (_, _, resp) = h
        .send(h.batch(&json!({"batch": [track("new-3", install, "2.1")]})))
        .await;
    assert_eq!(resp["accepted"], 1);
    assert!(resp.get("control").is_none(), "{resp}");

    wait_until(|| h.dump().len() >= 3).await;
    let mut stored: Vec<String> = h
        .dump()
        .iter()
        .map(|e| e["messageId"].as_str().unwrap().to_owned())
        .collect();
    stored.sort();
    assert_eq!(stored, ["new-1", "new-2", "new-3"]);

    // Lifted: the old version is collected again.
    set(&h, Some("<1.3"), None);
    let (_, _, resp) = h
        .send(h.batch(&json!({"batch": [track("old-3", install, "1.2.9")]})))
        .await;
    assert_eq!(resp["accepted"], 1, "{resp}");
    assert!(resp.get("control").is_none(), "{resp}");
}

#[tokio::test]
async fn a_sample_keeps_exactly_the_installs_it_names() {
    let h = Harness::new("control-sample", None, RawConfig::default());
    set(
        &h,
        None,
        Some(Control {
            collect: true,
            sample: Some(0.25),
        }),
    );
    let installs: Vec<String> = (0..2000)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    let probe = json!({"batch": [track("probe", &installs[0], "1.0")]});
    let (_, _, resp) = h.send(h.batch(&probe)).await;
    assert_eq!(resp["control"], json!({"collect": true, "sample": 0.25}));
    let mut accepted = 0;
    for (n, chunk) in installs.chunks(500).enumerate() {
        let batch: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| track(&format!("m-{n}-{i}"), id, "1.0"))
            .collect();
        let (status, _, resp) = h.send(h.batch(&json!({ "batch": batch }))).await;
        assert_eq!(status, StatusCode::OK);
        accepted += resp["accepted"].as_u64().unwrap();
    }
    let named = installs
        .iter()
        .filter(|id| opentally_protocol::control::sampled_in(id, 0.25))
        .count() as u64;
    assert_eq!(accepted, named);
    // Binomial(2000, 0.25): the standard deviation is 19.4; the tolerance stated is 5 of them.
    assert!(
        (403..=597).contains(&accepted),
        "{accepted} of 2000 kept at 25 %"
    );
}

/// The control reads the version the message came with, before the allow-list reshapes
/// `context`: versions shaped like addresses, long ones, numbers, a catalog that keeps no `app`,
/// and a message whose own `app` block has no version all stay under the rule.
#[tokio::test]
async fn versions_the_allow_list_would_drop_are_still_controlled() {
    let catalog = "[context]\nkeep = [\"os\"]\n[events.fit]\n";
    let h = Harness::new("control-raw", Some(catalog), RawConfig::default());
    set(&h, Some("<1.3"), Some(OFF));
    let install = "00000000-0000-4000-8000-000000000003";
    let long = format!("1.2.0-{}", "x".repeat(80));
    let versions: Vec<Value> = vec![
        json!("1.2.0.post1"),
        json!("1.2.1.dev3+g1234abc"),
        json!("1.2.0.1"),
        json!("1.2/beta@x"),
        json!("=1.2.0"),
        json!("release-1.2.0"),
        json!(long),
        json!(1.2),
    ];
    for (i, version) in versions.iter().enumerate() {
        let m = json!({"type": "track", "event": "fit", "messageId": format!("v-{i}"),
                       "anonymousId": install, "context": {"app": {"name": "a", "version": version}}});
        let (_, _, resp) = h.send(h.batch(&json!({ "batch": [m] }))).await;
        assert_eq!(
            resp["rejected"][0]["reason"], "not_collected",
            "{version}: {resp}"
        );
        assert_eq!(resp["control"], json!({"collect": false}), "{version}");
    }
    // The batch's version, under a message `app` block that has none or an empty one.
    for (i, app) in [json!({"name": "a"}), json!({"name": "a", "version": ""})]
        .iter()
        .enumerate()
    {
        let m = json!({"type": "track", "event": "fit", "messageId": format!("batch-level-{i}"),
                       "anonymousId": install, "context": {"app": app}});
        let body = json!({"batch": [m], "context": {"app": {"version": "1.2.0"}}});
        let (_, _, resp) = h.send(h.batch(&body)).await;
        assert_eq!(resp["rejected"][0]["reason"], "not_collected", "{resp}");
    }
    // A batch of two versions is answered with the stricter control, whatever the order.
    let mixed = json!({"batch": [
        {"type": "track", "event": "fit", "messageId": "mixed-old", "anonymousId": install,
         "context": {"app": {"version": "1.2.0"}}},
        {"type": "track", "event": "fit", "messageId": "mixed-new", "anonymousId": install,
         "context": {"app": {"version": "9.0.0"}}}]});
    let (_, _, resp) = h.send(h.batch(&mixed)).await;
    assert_eq!(
        (resp["accepted"].as_u64(), &resp["control"]),
        (Some(1), &json!({"collect": false})),
        "{resp}"
    );
    // And a version outside the range is stored, without its `app` (the catalog keeps `os`).
    let m = json!({"type": "track", "event": "fit", "messageId": "kept",
                   "anonymousId": install, "context": {"app": {"name": "a", "version": "1.3.0"}}});
    let (_, _, resp) = h.send(h.batch(&json!({ "batch": [m] }))).await;
    assert_eq!(resp["accepted"], 1, "{resp}");
}
