//! The collector driven through its router (no socket) and through a real socket on loopback.

// Test helpers take settings by value so that each case reads as one expression.
#![allow(clippy::needless_pass_by_value)]

mod control;
mod dashboard;
mod ingest;
mod lifecycle;
mod pages;
mod privacy;
mod rights;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentally_server::config::{RawConfig, resolve};
use opentally_server::{AppState, Collector, app};
use serde_json::Value;
use tower::ServiceExt;

/// A data dir removed when the test ends.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("opentally-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Settings for tests: the given overrides over the defaults, data in `dir`.
pub fn config(dir: &TempDir, overrides: &RawConfig) -> opentally_server::Config {
    let flags = RawConfig {
        data: Some(dir.0.clone()),
        listen: Some("127.0.0.1:0".into()),
        ..overrides.clone()
    };
    resolve(RawConfig::default(), RawConfig::default(), flags).unwrap()
}

/// A collector with one project; `catalog` is its TOML, or `None` for open mode.
#[derive(Debug)]
pub struct Harness {
    pub state: Arc<AppState>,
    pub collector: Option<Collector>,
    pub write_key: String,
    pub admin_token: String,
    pub dir: TempDir,
}

impl Harness {
    pub fn new(name: &str, catalog: Option<&str>, overrides: RawConfig) -> Harness {
        Harness::with_config(name, catalog, overrides, |_| {})
    }

    /// Like [`Harness::new`], with settings no flag reaches changed by `tweak`.
    pub fn with_config(
        name: &str,
        catalog: Option<&str>,
        overrides: RawConfig,
        tweak: impl FnOnce(&mut opentally_server::Config),
    ) -> Harness {
        let dir = TempDir::new(name);
        let mut config = config(&dir, &overrides);
        tweak(&mut config);
        let collector = Collector::open(config).unwrap();
        let created = collector.state.meta().create_project("p", catalog).unwrap();
        Harness {
            state: collector.state.clone(),
            collector: Some(collector),
            write_key: created.write_key.expose().to_owned(),
            admin_token: created.admin_token.expose().to_owned(),
            dir,
        }
    }

    /// Sends a request through the router; returns status, `Retry-After`, and the JSON body.
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Option<String>, Value) {
        let resp = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, retry, body)
    }

    /// A batch request authenticated with Basic `key:`.
    pub fn batch(&self, body: &Value) -> Request<Body> {
        post("/v1/batch")
            .header("x-write-key", &self.write_key)
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    /// Every stored event, as `opentally dump` prints it.
    pub fn dump(&self) -> Vec<Value> {
        let mut out = Vec::new();
        opentally_server::dump::dump(&self.dir.0, None, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

pub fn post(path: &str) -> axum::http::request::Builder {
    Request::post(path).header("content-type", "application/json")
}

/// A GET request with no body.
pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// Waits (at most 5 s) until `done` holds, as a background thread gets there; the caller
/// asserts afterwards.
pub async fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A valid track message for the example catalog.
pub fn event(id: &str) -> Value {
    serde_json::json!({
        "type": "track", "event": "fit", "messageId": id, "anonymousId": "install-1",
        "timestamp": opentally_protocol::Timestamp::now().to_string(),
        "properties": {"method": "cbpe", "duration_ms": 12.5},
        "context": {"ip": "203.0.113.7", "os": {"name": "linux"}, "app": {"name": "demo", "version": "1.0"}}
    })
}

pub const CATALOG: &str = include_str!("../../../../examples/catalog.toml");
