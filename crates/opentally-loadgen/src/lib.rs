//! `opentally bench ingest`: a load generator for the ingest API, on loopback.
//!
//! Each of `concurrency` workers sends batches of `batch` track events, each batch waiting for
//! its answer before the next, until `events` have been sent. Latency is the time from sending a
//! request to its whole answer: with durable acks, the time to get events onto disk.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub url: String,
    pub write_key: String,
    pub events: u64,
    pub batch: usize,
    pub concurrency: usize,
    pub gzip: bool,
    /// Distinct install ids the events are spread over.
    pub installs: u64,
    /// How a batch's events are spread over the installs.
    pub spread: Spread,
    /// Appends the messageId of every acknowledged event here, one per line.
    pub acked_log: Option<PathBuf>,
    pub event_name: String,
    /// Events per second to offer in all (open loop); `None`: as fast as answers come back.
    pub rate: Option<f64>,
}

/// How the events of a batch are spread over the installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spread {
    /// All from one install, as an SDK's batch is (it batches one process's events). Batch `b`
    /// comes from install `b % installs`.
    #[default]
    InstallPerBatch,
    /// Each from a different install: event `i` from install `i % installs`. The worst case for
    /// the collector's work per install (keyed hash, rate limiter), done once per event.
    InstallPerEvent,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub requests: u64,
    pub events_acked: u64,
    pub events_rejected: u64,
    /// Failed requests by status (0: no answer).
    pub failures: std::collections::BTreeMap<u16, u64>,
    pub elapsed: Duration,
    /// Latencies of acknowledged requests, sorted.
    pub latencies: Vec<Duration>,
}

impl LoadReport {
    /// The `q` quantile (0–1) of acknowledged requests' latency.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        Some(self.latencies[i])
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn events_per_sec(&self) -> f64 {
        self.events_acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Shared {
    cfg: LoadConfig,
    next_event: AtomicU64,
    done: AtomicU64,
    report: Mutex<LoadReport>,
    acked: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    seq: AtomicU64,
    /// Random per run, so that messageIds never repeat across runs.
    run_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bad URL {0:?}: {1}")]
    Url(String, String),
    #[error("cannot open {0}: {1}")]
    AckedLog(PathBuf, std::io::Error),
}

/// Runs the load; `progress` is called with the number of events answered so far.
pub async fn run(
    cfg: LoadConfig,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<LoadReport, LoadError> {
    let _: hyper::Uri = cfg.url.parse().map_err(|e: hyper::http::uri::InvalidUri| {
        LoadError::Url(cfg.url.clone(), e.to_string())
    })?;
    let acked = match &cfg.acked_log {
        Some(p) => Some(Mutex::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| LoadError::AckedLog(p.clone(), e))?,
        ))),
        None => None,
    };
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        next_event: AtomicU64::new(0),
        done: AtomicU64::new(0),
        report: Mutex::new(LoadReport::default()),
        acked,
        seq: AtomicU64::new(0),
        run_id: uuid::Uuid::new_v4().simple().to_string(),
    });
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let progress = Arc::new(progress);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..cfg.concurrency.max(1) {
        let shared = shared.clone();
        let client = client.clone();
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let first = shared
                    .next_event
                    .fetch_add(shared.cfg.batch as u64, Ordering::Relaxed);
                if first >= shared.cfg.events {
                    break;
                }
                let n = (shared.cfg.events - first).min(shared.cfg.batch as u64);
                if let Some(rate) = shared.cfg.rate {
                    // Batch `first / batch` is due at `first / rate` seconds after the start.
                    #[allow(clippy::cast_precision_loss)]
                    let due = started + Duration::from_secs_f64(first as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                send_one(&shared, &client, n).await;
                progress(shared.done.fetch_add(n, Ordering::Relaxed) + n);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let mut report = std::mem::take(&mut *shared.report.lock().expect("not poisoned"));
    report.elapsed = started.elapsed();
    report.latencies.sort_unstable();
    if let Some(a) = &shared.acked {
        let _ = a.lock().expect("not poisoned").flush();
    }
    Ok(report)
}

/// A batch of `n` events, taking the next `n` event numbers of the run.
fn batch_body(shared: &Shared, n: u64) -> (Vec<u8>, Vec<String>) {
    let first = shared.seq.fetch_add(n, Ordering::Relaxed);
    sample_batch(
        &shared.run_id,
        &shared.cfg.event_name,
        (shared.cfg.installs, shared.cfg.spread),
        first..first + n,
        opentally_protocol::Timestamp::now(),
    )
}

/// The body of a batch of the events numbered `seq` of run `run_id`, sent at `now`, and their
/// messageIds; `installs` is how many installs there are and how the batch spreads over them.
/// Public for the request benchmark, which measures the handler on the bodies this generator
/// sends.
///
/// Written by hand rather than through `serde_json::Value`: the generator shares the machine
/// with the server it measures, so it must cost little per event.
pub fn sample_batch(
    run_id: &str,
    event_name: &str,
    (installs, spread): (u64, Spread),
    seq: std::ops::Range<u64>,
    now: opentally_protocol::Timestamp,
) -> (Vec<u8>, Vec<String>) {
    use std::fmt::Write as _;
    let batch_number = seq.start / (seq.end - seq.start).max(1);
    let now = now.to_string();
    let event = serde_json::to_string(event_name).expect("a string serialises");
    let mut ids = Vec::with_capacity(usize::try_from(seq.end - seq.start).unwrap_or(0));
    let mut body = String::with_capacity(400 * ids.capacity() + 64);
    body.push_str("{\"batch\":[");
    for seq in seq {
        let id = format!("{run_id}-{seq:012x}");
        if !ids.is_empty() {
            body.push(',');
        }
        let outcome = if seq % 17 == 0 { "error" } else { "ok" };
        let _ = write!(
            body,
            "{{\"type\":\"track\",\"event\":{event},\"messageId\":\"{id}\",\"anonymousId\":\"install-{}\",\
             \"timestamp\":\"{now}\",\"properties\":{{\"duration_ms\":{}.{},\"outcome\":\"{outcome}\"}},\
             \"context\":{{\"library\":{{\"name\":\"opentally-bench\",\"version\":\"{}\"}},\
             \"os\":{{\"name\":\"linux\",\"version\":\"6.1\"}},\"runtime\":{{\"name\":\"python\",\"version\":\"3.11.7\"}}}}}}",
            match spread {
                Spread::InstallPerBatch => batch_number,
                Spread::InstallPerEvent => seq,
            } % installs.max(1),
            seq % 1000,
            seq % 10,
            env!("CARGO_PKG_VERSION"),
        );
        ids.push(id);
    }
    let _ = write!(body, "],\"sentAt\":\"{now}\"}}");
    (body.into_bytes(), ids)
}

async fn send_one(
    shared: &Shared,
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    n: u64,
) {
    let (mut body, ids) = batch_body(shared, n);
    let mut req = hyper::Request::post(shared.cfg.url.as_str())
        .header("content-type", "application/json")
        .header("x-write-key", shared.cfg.write_key.as_str());
    if shared.cfg.gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&body).expect("writing to memory");
        body = enc.finish().expect("writing to memory");
        req = req.header("content-encoding", "gzip");
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let started = Instant::now();
    let result = match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .ok();
            Some((status, body))
        }
        Err(_) => None,
    };
    let latency = started.elapsed();
    let mut report = shared.report.lock().expect("not poisoned");
    report.requests += 1;
    match result {
        Some((200, Some(body))) => {
            let parsed: opentally_protocol::BatchResponse =
                serde_json::from_slice(&body).unwrap_or_default();
            let rejected: std::collections::HashSet<usize> =
                parsed.rejected.iter().map(|r| r.index).collect();
            report.events_acked += n - rejected.len() as u64;
            report.events_rejected += rejected.len() as u64;
            report.latencies.push(latency);
            drop(report);
            if let Some(a) = &shared.acked {
                let mut a = a.lock().expect("not poisoned");
                for (i, id) in ids.iter().enumerate() {
                    if !rejected.contains(&i) {
                        let _ = writeln!(a, "{id}");
                    }
                }
                // The acknowledgement must reach the file before the process may be killed.
                let _ = a.flush();
            }
        }
        Some((status, _)) => *report.failures.entry(status).or_default() += 1,
        None => *report.failures.entry(0).or_default() += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_batches_are_valid_and_ids_unique() {
        let shared = Shared {
            cfg: LoadConfig {
                url: String::new(),
                write_key: String::new(),
                events: 0,
                batch: 0,
                concurrency: 1,
                gzip: false,
                installs: 3,
                spread: Spread::InstallPerEvent,
                acked_log: None,
                event_name: "bench \"event\"".into(),
                rate: None,
            },
            next_event: AtomicU64::new(0),
            done: AtomicU64::new(0),
            report: Mutex::new(LoadReport::default()),
            acked: None,
            seq: AtomicU64::new(0),
            run_id: "run".into(),
        };
        let (body, ids) = batch_body(&shared, 20);
        let parsed =
            opentally_protocol::parse_batch(&body, &opentally_protocol::Limits::default()).unwrap();
        assert_eq!(parsed.items.len(), 20);
        for (item, id) in parsed.items.iter().zip(&ids) {
            let m = item.message.as_ref().unwrap();
            opentally_protocol::check_message(m, &opentally_protocol::Limits::default()).unwrap();
            assert_eq!(m.message_id.as_ref(), Some(id));
            assert_eq!(m.event.as_deref(), Some("bench \"event\""));
        }
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), 20);
        let installs = |body: &[u8]| -> Vec<String> {
            let parsed =
                opentally_protocol::parse_batch(body, &opentally_protocol::Limits::default())
                    .unwrap();
            parsed
                .items
                .into_iter()
                .map(|i| i.message.unwrap().anonymous_id.unwrap())
                .collect()
        };
        assert_eq!(
            installs(&body)[..4],
            ["install-0", "install-1", "install-2", "install-0"]
        );
        // An SDK's batches: the second batch of 20 from the second install.
        let now = opentally_protocol::Timestamp::now();
        let (body, _) = sample_batch("r", "e", (3, Spread::InstallPerBatch), 20..40, now);
        assert_eq!(installs(&body), vec!["install-1"; 20]);
    }
}
