//! The collector's CPU per request between a decoded body and the writer: parsing the batch,
//! checking and normalising each message, hashing its install and serialising what is kept.
//! The bodies are the load generator's (`opentally bench ingest`): 100 track events, either all
//! from one install, as an SDK's batch is (the generator's default), or each from a different
//! one (`--install-per-event`, the worst case for the work done per install). Every request sees
//! the same installs, so their limiter state stays in cache: the whole-system benchmark is the
//! one that pays for cache misses over many installs.
//!
//! `cargo bench -p opentally-server --bench request`. With `REQUEST_LOOP=N` set, it instead
//! prepares N requests of the worst case and exits, for instruction counts under callgrind
//! (`benches/request_instructions.sh`).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use governor::{Quota, RateLimiter};
use opentally_loadgen::{Spread, sample_batch};
use opentally_protocol::{Limits, Timestamp, parse_batch};
use opentally_server::ingest::{Normaliser, install_mac};
use opentally_server::meta::Project;

const EVENTS: u64 = 100;

/// The collector's allocator (`opentally-cli`'s), whose costs these are.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Fixture {
    limits: Limits,
    project: Project,
    mac: ring::hmac::Key,
    limiter: governor::DefaultKeyedRateLimiter<u128>,
    now: Timestamp,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            limits: Limits::default(),
            project: Project {
                id: 1,
                name: "bench".into(),
                catalog: None,
                retention_days: 365,
                collection: std::sync::Arc::from([]),
            },
            mac: install_mac(&[7; 32]),
            limiter: RateLimiter::keyed(Quota::per_second(
                std::num::NonZeroU32::new(u32::MAX).expect("not zero"),
            )),
            now: Timestamp::parse("2026-11-27T10:00:00Z").expect("a timestamp"),
        }
    }

    fn body(&self, spread: Spread) -> Vec<u8> {
        sample_batch("bench", "fit", (100_000, spread), 0..EVENTS, self.now).0
    }

    /// Parses, checks and serialises one request; the number of events accepted.
    fn prepare(&self, body: &[u8]) -> usize {
        let parsed = parse_batch(body, &self.limits).expect("a valid batch");
        let prepared = Normaliser {
            limits: &self.limits,
            project: &self.project,
            install_mac: &self.mac,
            install_limiter: &self.limiter,
            received_at: self.now,
        }
        .prepare(parsed);
        assert!(prepared.rejected.is_empty(), "{:?}", prepared.rejected);
        prepared.events.len()
    }
}

fn bench(c: &mut Criterion) {
    let f = Fixture::new();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Elements(EVENTS));
    for (name, spread) in [
        ("install_per_event", Spread::InstallPerEvent),
        ("install_per_batch", Spread::InstallPerBatch),
    ] {
        let body = f.body(spread);
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| parse_batch(black_box(&body), &f.limits).expect("valid"));
        });
        g.bench_function(format!("prepare/{name}"), |b| {
            b.iter(|| f.prepare(black_box(&body)));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Some(n) = std::env::var("REQUEST_LOOP")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let f = Fixture::new();
        let body = f.body(Spread::InstallPerEvent);
        let mut accepted = 0;
        for _ in 0..n {
            accepted += f.prepare(black_box(&body));
        }
        assert_eq!(accepted as u64, n * EVENTS);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
