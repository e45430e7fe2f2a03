//! The collector on a real socket: restarts, dedup across restarts, disk low-water, shutdown.

use std::time::Duration;

use opentally_server::Collector;
use opentally_server::config::RawConfig;
use serde_json::json;

use crate::{CATALOG, Harness, TempDir, config, event};

/// Starts `serve` on a loopback port; returns the port and a sender that stops it.
async fn start(
    collector: Collector,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(opentally_server::serve::serve(collector, listener, async {
        let _ = stopped.await;
    }));
    (port, stop, task)
}

async fn post_batch(
    port: u16,
    key: &str,
    body: &serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = hyper::Request::post(format!("http://127.0.0.1:{port}/v1/batch"))
        .header("x-write-key", key)
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, retry, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn dedup_and_data_survive_a_restart() {
    let dir = TempDir::new("restart");
    let collector = Collector::open(config(&dir, &RawConfig::default())).unwrap();
    let key = collector
        .state
        .meta
        .create_project("p", Some(CATALOG))
        .unwrap()
        .write_key
        .expose()
        .to_owned();
    let (port, stop, task) = start(collector).await;
    let body = json!({"batch": [event("r1"), event("r2")]});
    assert_eq!(post_batch(port, &key, &body).await.0, 200);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    let collector = Collector::open(config(&dir, &RawConfig::default())).unwrap();
    assert_eq!(
        collector.report.ids_in_memory, 2,
        "the dedup index came back"
    );
    let (port, stop, task) = start(collector).await;
    let (status, _, resp) = post_batch(port, &key, &body).await;
    assert_eq!(
        (status, resp["duplicates"].as_u64()),
        (200, Some(2)),
        "{resp}"
    );
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let mut out = Vec::new();
    assert_eq!(
        opentally_server::dump::dump(&dir.0, Some("p"), &mut out).unwrap(),
        2
    );
}

#[tokio::test]
async fn below_the_disk_low_water_mark_ingest_answers_503_and_reads_go_on() {
    // A low-water mark no disk can meet: the upkeep task notices within a second.
    let overrides = RawConfig {
        disk_low_water_mb: Some(u64::MAX / (1024 * 1024 * 2)),
        ..RawConfig::default()
    };
    let h = Harness::new("disklow", Some(CATALOG), overrides);
    let key = h.write_key.clone();
    let mut h = h;
    let (port, stop, task) = start(h.collector.take().unwrap()).await;
    let mut last = (0, None, json!(null));
    for _ in 0..50 {
        last = post_batch(port, &key, &json!({"batch": [event("x")]})).await;
        if last.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 503, "{:?}", last.2);
    assert_eq!(last.2["code"], "disk_low");
    assert_eq!(last.1.as_deref(), Some("30"));
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(stream.is_ok(), "the server still serves");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
