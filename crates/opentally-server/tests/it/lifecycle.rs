//! The collector on a real socket: restarts, dedup across restarts, disk low-water, shutdown.

use std::time::Duration;

use opentally_server::Collector;
use opentally_server::config::RawConfig;
use serde_json::json;

use crate::{CATALOG, Harness, TempDir, config, event, wait_until};

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
        .meta()
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

/// Copies the files of `from` into `to`, as a crash would leave them.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_restart_seals_the_unsealed_log_a_piece_at_a_time_before_it_serves() {
    let overrides = RawConfig {
        store_seal_events: Some(5),
        ..RawConfig::default()
    };
    // The first run acknowledges 14 events and dies with all of them unsealed: its loader reads
    // the log once, at start, and then not for an hour; its data dir is copied as it stands.
    let h = Harness::with_config("backlog", Some(CATALOG), overrides.clone(), |c| {
        c.store.poll = Duration::from_secs(3_600);
    });
    // One round before serving, one by the loader thread; then it sleeps.
    wait_until(|| h.state.store().stats().load_rounds >= 2).await;
    for i in 0..7 {
        let body = json!({"batch": [event(&format!("b{i}-1")), event(&format!("b{i}-2"))]});
        let (got, _, resp) = h.send(h.batch(&body)).await;
        assert_eq!(got, axum::http::StatusCode::OK, "{resp}");
    }
    assert_eq!(h.state.unloaded_events(), 14);
    let crashed = TempDir::new("backlog-crashed");
    copy_dir(&h.dir.0, &crashed.0);

    // The restart has loaded and sealed them all before it answers anything. It read the log a
    // piece at a time: records of 2 events, a piece ending at the record that reaches 5, each
    // sealed as a part of its own (of each day), 6 + 6 + 2. Reading the whole backlog into
    // memory first would seal it as one part (per day).
    let collector = Collector::open(config(&crashed, &overrides)).unwrap();
    let stats = collector.state.store().stats();
    assert_eq!((stats.part_rows, stats.tail_rows), (14, 0), "{stats:?}");
    assert!(stats.parts >= 3, "{stats:?}");
    assert_eq!(collector.state.store_lag(), 0);
    drop(collector);
    let mut out = Vec::new();
    assert_eq!(
        opentally_server::dump::dump(&crashed.0, Some("p"), &mut out).unwrap(),
        14
    );

    // Where sealing fails at start (a file stands where the project's part directory goes), the
    // server starts all the same, and its loader seals once it can.
    let stuck = TempDir::new("backlog-stuck");
    copy_dir(&h.dir.0, &stuck.0);
    let blocker = stuck.0.join("store/parts/p");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"").unwrap();
    let collector = Collector::open(config(&stuck, &overrides)).unwrap();
    assert_eq!(collector.state.store().stats().part_rows, 0);
    assert!(collector.state.store_lag() > 0);
    std::fs::remove_file(&blocker).unwrap();
    // Two pieces of 6 are sealed; the last 2 events wait in the tail for the seal timer.
    wait_until(|| collector.state.store().stats().part_rows == 12).await;
    let stats = collector.state.store().stats();
    assert_eq!((stats.part_rows, stats.tail_rows), (12, 2), "{stats:?}");
    assert_eq!(collector.state.store_lag(), 2);
}
