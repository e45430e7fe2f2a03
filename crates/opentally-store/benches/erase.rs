//! Erasing one install: the time `Store::erase` takes to remove an install with 100,000 events
//! (spread over 30 days among other installs' events) from every part and the tail, against a
//! baseline measured in the same run: reading and decoding every Parquet part of the store once,
//! the I/O an erasure cannot avoid when the install is in every part.
//!
//! `cargo bench -p opentally-store --bench erase` (HEAVY=100000 events of the erased install,
//! OTHERS=400000 of other installs). Run without `--bench` (as `cargo test --all-targets` does), it
//! erases 1,000 of 5,000 events as a smoke test.

use std::path::{Path, PathBuf};
use std::time::Instant;

use opentally_log::segment::LogWriter;
use opentally_protocol::Timestamp;
use opentally_store::{Options, Store};

/// The collector's allocator (`opentally-cli`'s): an erasure runs in its process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            parquet_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

fn read_every_part(dir: &Path) -> usize {
    let mut files = Vec::new();
    parquet_files(dir, &mut files);
    let mut rows = 0;
    for f in files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            rows += batch.unwrap().num_rows();
        }
    }
    rows
}

fn env_or(name: &str, benching: bool, bench: u64, smoke: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|_| benching)
        .unwrap_or(if benching { bench } else { smoke })
}

#[allow(clippy::print_stdout, clippy::cast_precision_loss)]
fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let heavy = env_or("HEAVY", benching, 100_000, 1_000);
    let others = env_or("OTHERS", benching, 400_000, 4_000);
    let dir = std::env::temp_dir().join(format!("opentally-erase-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut log, _) = LogWriter::open(&dir.join("log"), 64 << 20, false).unwrap();
    let end = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let install = "e".repeat(32);
    let mut n = 0u64;
    opentally_store::demo::generate(heavy + others, 30, end, 7, &mut |mut day| {
        // Every fifth event belongs to the install erased, until it has its share.
        for e in &mut day {
            if n % 5 == 0 && n / 5 < heavy {
                e.install.clone_from(&install);
            }
            n += 1;
        }
        opentally_store::demo::append_to_log(&mut log, "bench", &day, 100).unwrap();
    });
    drop(log);
    let store = Store::open(&dir, Options::default()).unwrap();
    store.prepare_loading().unwrap();
    store.seal().unwrap();
    let stats = store.stats();

    let t = Instant::now();
    let rows = read_every_part(&dir);
    let read_s = t.elapsed().as_secs_f64();
    assert_eq!(rows as u64, stats.part_rows);

    let t = Instant::now();
    let removed = store.erase("bench", &install).unwrap();
    let erase_s = t.elapsed().as_secs_f64();
    let expected = heavy.min(n.div_ceil(5));
    assert_eq!(removed, expected);
    println!(
        "{{\"events\": {}, \"erased\": {removed}, \"parts\": {}, \"part_bytes\": {}, \
         \"read_every_part_s\": {read_s:.3}, \"erase_s\": {erase_s:.3}, \
         \"ratio_to_reading_every_part\": {:.2}}}",
        stats.part_rows,
        stats.parts,
        stats.part_bytes,
        erase_s / read_s,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
