//! A fixed number of `track` calls, for instruction counts under callgrind (stable on a noisy
//! machine, unlike wall time). `benches/track_instructions.sh` runs it twice with different
//! counts and divides the difference, so start-up cost cancels out.
//!
//! Usage: track_loop VARIANT N, VARIANT one of `on-props`, `on-bare`, `off-props`, `off-bare`.

use std::sync::Arc;
use std::time::Duration;

use opentally::{Client, Config, Prop};

#[derive(Debug)]
struct NullTransport;

impl opentally::transport::Transport for NullTransport {
    fn send(&self, _body: &[u8], _timeout: Duration) -> opentally::transport::Outcome {
        opentally::transport::Outcome::DELIVERED
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map_or("on-props", String::as_str);
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("opentally-loop-{}", std::process::id()));
    let client = Client::new(
        Config::new("bench", "k", "http://127.0.0.1:9")
            .enabled(variant.starts_with("on"))
            .state_dir(dir.join("state"))
            .config_file(dir.join("config.toml"))
            .policy_file(dir.join("policy.toml"))
            .environment(std::collections::HashMap::new(), Some(dir))
            .queue_capacity(usize::try_from(n).unwrap_or(usize::MAX) + 1)
            .batching(usize::MAX, Duration::from_secs(3600))
            .transport(Arc::new(NullTransport)),
    );
    for i in 0..n {
        if variant.ends_with("props") {
            let props: [(&'static str, Prop); 2] = [
                ("method", "cbpe".into()),
                ("chunk_size", Prop::Int(i64::try_from(i).unwrap_or(0))),
            ];
            client.track("fit", props);
        } else {
            client.track("fit", []);
        }
    }
    std::hint::black_box(&client);
}
