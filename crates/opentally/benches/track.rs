//! The cost of `track` on the caller's thread: the enqueue when on, the early return when off.
//! "Two properties" includes building the property values at the call site, as a host does.
//!
//! The queue is sized far beyond one sample and batches are never due during a sample, so every
//! call measures the enqueue itself (not the drop path, not a wake-up of the worker).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use opentally::{Client, Config};

/// The default queue capacity of a host.
const QUEUE: u64 = 1000;

fn client(enabled: bool) -> Client {
    Client::new(
        config(enabled)
            .queue_capacity(10_000_000)
            // Batches so large and rare that the worker never competes with the measurement.
            .batching(100_000_000, Duration::from_secs(3600)),
    )
}

fn config(enabled: bool) -> Config {
    let dir = std::env::temp_dir().join(format!("opentally-bench-{}", std::process::id()));
    let env = std::collections::HashMap::new();
    Config::new("bench", "k", "http://127.0.0.1:9")
        .enabled(enabled)
        .state_dir(dir.join("state"))
        .config_file(dir.join("config.toml"))
        .policy_file(dir.join("policy.toml"))
        .environment(env, Some(dir))
        .transport(Arc::new(NullTransport))
}

/// Accepts every batch and keeps nothing, so a long run does not grow memory.
#[derive(Debug)]
struct NullTransport;

impl opentally::transport::Transport for NullTransport {
    fn send(&self, _body: &[u8], _timeout: Duration) -> opentally::transport::Outcome {
        opentally::transport::Outcome::DELIVERED
    }
}

fn bench(c: &mut Criterion) {
    let on = client(true);
    let off = client(false);
    let mut g = c.benchmark_group("track");
    let props = || [("method", "cbpe".into()), ("chunk_size", 5000i64.into())];
    // Calls are timed in runs of at most QUEUE events, each run's events flushed outside the
    // timing, so the queue never holds more than a host's queue would (1,000 by default) and
    // the allocator keeps reusing the same memory. Timing one long run instead measures the
    // heap growing by hundreds of megabytes, and varies with the sample size.
    let timed = |track: &dyn Fn(), iters: u64| {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(QUEUE);
            let start = Instant::now();
            for _ in 0..n {
                track();
            }
            total += start.elapsed();
            on.flush(Duration::from_secs(60));
            left -= n;
        }
        total
    };
    g.bench_function("enabled, two properties", |b| {
        b.iter_custom(|iters| timed(&|| on.track("fit", props()), iters));
    });
    g.bench_function("enabled, no properties", |b| {
        b.iter_custom(|iters| timed(&|| on.track("fit", []), iters));
    });
    g.bench_function("disabled, two properties", |b| {
        b.iter(|| {
            off.track("fit", props());
        });
    });
    g.bench_function("disabled, no properties", |b| {
        b.iter(|| {
            off.track("fit", []);
        });
    });
    // A full queue: the event is dropped and counted (a host tracking faster than the network
    // can carry, or offline with a full queue).
    let full = Client::new(
        config(true)
            .queue_capacity(1)
            .batching(100_000_000, Duration::from_secs(3600)),
    );
    full.track("fill", []);
    g.bench_function("queue full, two properties (drop and count)", |b| {
        b.iter(|| {
            full.track("fit", props());
        });
    });
    g.bench_function("baseline: String + Vec allocation alone", |b| {
        b.iter_batched(
            || (),
            |()| {
                let v: Vec<(String, opentally::Prop)> = vec![("method".to_owned(), "cbpe".into())];
                (String::from("fit"), v)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
