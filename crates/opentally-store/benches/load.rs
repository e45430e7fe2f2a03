//! Sealed-load rate: events per second from the durable log into Parquet parts with rollups
//! (`Store::open` reads the log into the tail, `seal` writes the parts), against a baseline
//! measured in the same run: only reading the same log records and parsing them in place, as
//! loading does ([`opentally_log::RecordView`]).
//!
//! `cargo bench -p opentally-store --bench load` (EVENTS=500000 by default). Run without
//! `--bench` (as `cargo test --all-targets` does), it loads 2,000 events as a smoke test.

use std::time::Instant;

use opentally_log::segment::{self as wal, LogPos, LogWriter};
use opentally_protocol::Timestamp;
use opentally_store::{Options, Store};

#[allow(clippy::print_stdout, clippy::cast_precision_loss)]
fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let events: u64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|_| benching)
        .unwrap_or(if benching { 500_000 } else { 2_000 });
    let dir = std::env::temp_dir().join(format!("opentally-load-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut log, _) = LogWriter::open(&dir.join("log"), 64 << 20, false).unwrap();
    let end = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let mut written = 0u64;
    opentally_store::demo::generate(events, 30, end, 7, &mut |day| {
        opentally_store::demo::append_to_log(&mut log, "bench", &day, 100).unwrap();
        written += day.len() as u64;
    });
    drop(log);
    let log_bytes: u64 = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

    let t = Instant::now();
    let mut parsed = 0u64;
    wal::read_from(&dir.join("log"), LogPos::default(), |_, p| {
        parsed += serde_json::from_slice::<opentally_log::RecordView<'_>>(p)
            .unwrap()
            .events
            .len() as u64;
    })
    .unwrap();
    let parse_s = t.elapsed().as_secs_f64();
    assert_eq!(parsed, written);

    let t = Instant::now();
    let store = Store::open(&dir, Options::default()).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    store.prepare_loading().unwrap();
    let t = Instant::now();
    let sealed = store.seal().unwrap() as u64;
    let seal_s = t.elapsed().as_secs_f64();
    assert_eq!(sealed, written);
    let stats = store.stats();
    #[allow(clippy::cast_precision_loss)]
    let rate = |s: f64| (written as f64 / s).round();
    println!(
        "{{\"events\": {written}, \"log_bytes\": {log_bytes}, \"parse_only_events_per_s\": {}, \
         \"load_to_tail_events_per_s\": {}, \"seal_events_per_s\": {}, \
         \"log_to_parts_events_per_s\": {}, \"ratio_to_parse_only\": {:.2}, \"parts\": {}, \
         \"part_bytes\": {}, \"bytes_per_event\": {:.1}}}",
        rate(parse_s),
        rate(load_s),
        rate(seal_s),
        rate(load_s + seal_s),
        (load_s + seal_s) / parse_s,
        stats.parts,
        stats.part_bytes,
        stats.part_bytes as f64 / written as f64,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
