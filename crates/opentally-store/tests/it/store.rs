//! Loading, sealing, the manifest, compaction and the dump.

use std::collections::HashMap;
use std::time::Duration;

use opentally_log::segment::{self as wal, LogPos};
use opentally_store::query::run_sql;
use opentally_store::{Limits, Options, QueryError, Store};
use serde_json::{Value, json};

use crate::data;

/// Appends `rows` to the log, `per_record` events a record, loads them and seals them.
fn load_and_seal(
    s: &Store,
    dir: &std::path::Path,
    rows: &[(usize, opentally_log::StoredEvent)],
    per_record: usize,
) {
    data::write_log(dir, "demo", rows, per_record);
    s.catch_up(None).unwrap();
    s.seal().unwrap();
}

fn count(store: &Store) -> (i64, i64) {
    let t = data::runtime()
        .block_on(run_sql(
            &store.snapshot("demo"),
            "SELECT count(*), count(DISTINCT message_id) FROM events",
            &Limits::default(),
        ))
        .unwrap();
    (
        t.rows[0][0].as_i64().unwrap(),
        t.rows[0][1].as_i64().unwrap(),
    )
}

#[test]
fn sealed_events_are_loaded_once_across_reopens() {
    let dir = data::history("reopen");
    let s = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(s.stats().tail_rows, 12);
    s.prepare_loading().unwrap();
    s.seal().unwrap();
    assert_eq!(s.stats().tail_rows, 0);
    assert_eq!(s.stats().part_rows, 12);
    assert_eq!(s.stats().parts, 5, "one part per day");
    // Loading again finds nothing new; a reopened store starts after the sealed position.
    assert_eq!(s.catch_up(None).unwrap(), 0);
    assert_eq!(count(&s), (12, 12));
    drop(s);
    let s = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(s.stats().tail_rows, 0);
    assert_eq!(count(&s), (12, 12));
}

#[test]
fn a_seal_that_crashed_before_its_manifest_leaves_nothing_behind() {
    let dir = data::history("orphan");
    let s = Store::open(&dir, Options::default()).unwrap();
    s.prepare_loading().unwrap();
    s.seal().unwrap();
    // A part written by a seal whose manifest swap never happened, and a half-written manifest.
    let orphan = dir.join("store/parts/demo/20394-00000099.parquet");
    std::fs::copy(s.snapshot("demo").parts[0].path.clone(), &orphan).unwrap();
    std::fs::write(dir.join("store/MANIFEST.json.tmp"), b"{\"trunc").unwrap();
    drop(s);
    let s = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(s.prepare_loading().unwrap(), 1);
    assert!(!orphan.exists());
    assert_eq!(count(&s), (12, 12));
}

/// Where each record of the data dir's log starts.
fn record_positions(dir: &std::path::Path) -> Vec<LogPos> {
    let mut positions = Vec::new();
    wal::read_from(&dir.join("log"), LogPos::default(), |pos, _| {
        positions.push(pos);
    })
    .unwrap();
    positions
}

#[test]
fn the_loader_reads_only_what_the_writer_made_durable() {
    let dir = data::history("durable");
    let positions = record_positions(&dir);
    assert_eq!(positions.len(), 3, "12 events in records of 5, 5 and 2");
    let s = Store::open_until(&dir, Options::default(), Some(positions[1])).unwrap();
    assert_eq!(s.stats().tail_rows, 5);
    assert_eq!(s.stats().loaded_to, positions[1]);
    assert_eq!(s.catch_up(Some(positions[2])).unwrap(), 5);
    assert_eq!(s.catch_up(Some(positions[2])).unwrap(), 0);
    assert_eq!(s.catch_up(None).unwrap(), 2);
    assert_eq!(count(&s), (12, 12));
}

#[test]
fn a_loader_far_behind_reads_and_seals_the_log_a_piece_at_a_time() {
    let dir = data::temp_dir("pieces");
    let rows = data::events();
    let end = data::write_log_in_segments(&dir, "demo", &rows, 2, 1 << 20);
    // Opened without reading the log: the loader finds all 12 events behind it.
    let options = Options {
        seal_rows: 5,
        ..Options::default()
    };
    let s = Store::open_behind(&dir, options).unwrap();
    s.prepare_loading().unwrap();
    // Records of 2 events: a round stops at the record that reaches 5 events read (6), seals
    // them, and says the log may hold more; the round that stops on the log's last record does
    // not know it was the last, and the next one finds nothing.
    let mut rounds = Vec::new();
    loop {
        let more = s.load_step(end, false).unwrap();
        let st = s.stats();
        rounds.push((more, st.part_rows, st.tail_rows));
        if !more {
            break;
        }
    }
    assert_eq!(rounds, [(true, 6, 0), (true, 12, 0), (false, 12, 0)]);
    assert_eq!(s.loaded_events(), 12);
    assert_eq!(s.stats().loaded_to, end);
    assert_eq!(count(&s), (12, 12));
    drop(s);
    let s = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(s.stats().tail_rows, 0, "every piece was sealed");
    assert_eq!(count(&s), (12, 12));
}

#[test]
fn a_round_reads_only_what_fits_in_the_tail() {
    let dir = data::temp_dir("room");
    let rows = data::events();
    let end = data::write_log_in_segments(&dir, "demo", &rows, 2, 1 << 20);
    let positions = record_positions(&dir);
    let options = Options {
        seal_rows: 5,
        ..Options::default()
    };
    let s = Store::open_behind(&dir, options).unwrap();
    s.prepare_loading().unwrap();
    // A first round finds one record durable: 2 events wait in the tail, short of a seal.
    assert!(!s.load_step(positions[1], false).unwrap());
    assert_eq!((s.stats().tail_rows, s.stats().part_rows), (2, 0));
    // The next reads records of 2 events until the tail holds 5 or more: two records, not the
    // five-events' worth (three records) a round reads into an empty tail.
    assert!(s.load_step(end, false).unwrap());
    assert_eq!((s.stats().tail_rows, s.stats().part_rows), (0, 6));
}

/// The loader compacts once it has caught up with the log, whether or not that round sealed;
/// while it is behind, only a day with `compact_behind_parts` small parts is compacted. No merge
/// takes more than `compact_max_parts`.
#[test]
fn the_loader_compacts_behind_the_log_only_when_parts_pile_up_and_once_caught_up() {
    let dir = data::temp_dir("compact-loader");
    let rows = data::events();
    // Rows 0–4 are all on one day: records of one event, sealed one at a time.
    let end = data::write_log_in_segments(&dir, "demo", &rows[..5], 1, 1 << 20);
    let s = Store::open_behind(&dir, options_with_seal(1)).unwrap();
    s.prepare_loading().unwrap();
    let part_rows = || {
        let manifest = opentally_store::manifest::Manifest::load(&dir.join("store")).unwrap();
        let mut v: Vec<u64> = manifest.parts.iter().map(|p| p.rows).collect();
        v.sort_unstable();
        v
    };
    let mut rounds = Vec::new();
    loop {
        let more = s.load_step(end, false).unwrap();
        rounds.push((more, part_rows()));
        if !more {
            break;
        }
    }
    assert_eq!(
        rounds,
        [
            (true, vec![1]),
            (true, vec![1, 1]),
            // Each round that seals a third part merges the smallest two, though behind.
            (true, vec![1, 2]),
            (true, vec![2, 2]),
            (true, vec![2, 3]),
            // Caught up: nothing read, nothing sealed, but two parts are enough to merge.
            (false, vec![5]),
        ]
    );
    drop(s);
    // A store that stopped behind with two parts compacts them at its first caught-up round.
    let dir = data::temp_dir("compact-caught-up");
    let end = data::write_log_in_segments(&dir, "demo", &rows[..2], 1, 1 << 20);
    let s = Store::open_behind(&dir, options_with_seal(1)).unwrap();
    s.prepare_loading().unwrap();
    assert!(s.load_step(end, false).unwrap());
    assert!(s.load_step(end, false).unwrap());
    assert_eq!(s.stats().parts, 2, "behind: two parts wait");
    assert!(!s.load_step(end, false).unwrap());
    assert_eq!(s.stats().parts, 1, "caught up without a seal: compacted");
    assert_eq!(count(&s), (2, 2));
}

/// Seals every `rows` events; compacts two parts once caught up, three while behind, and merges
/// two at most.
fn options_with_seal(rows: usize) -> Options {
    Options {
        seal_rows: rows,
        compact_parts: 2,
        compact_max_parts: 2,
        compact_behind_parts: 3,
        ..Options::default()
    }
}

#[test]
fn the_dump_prints_every_event_once_from_parts_and_tail() {
    let dir = data::temp_dir("dump");
    let rows = data::events();
    data::write_log(&dir, "demo", &rows[..7], 3);
    let s = Store::open(&dir, Options::default()).unwrap();
    s.prepare_loading().unwrap();
    s.seal().unwrap();
    data::write_log(&dir, "demo", &rows[7..], 3);
    s.catch_up(None).unwrap();
    let snap = s.snapshot("demo");
    assert!(!snap.parts.is_empty() && !snap.tail.is_empty());
    let mut out = Vec::new();
    assert_eq!(opentally_store::dump::dump(&snap, &mut out).unwrap(), 12);
    let mut seen: HashMap<String, Value> = HashMap::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let id = v["messageId"].as_str().unwrap().to_owned();
        assert!(seen.insert(id, v).is_none(), "printed twice");
    }
    for (i, e) in &rows {
        let v = &seen[&e.message_id];
        assert_eq!(v["project"], "demo");
        assert_eq!(v["install"], json!(e.install), "row {i}");
        assert_eq!(v["type"], "track");
        assert_eq!(v["event"], json!(e.message.event));
        assert_eq!(v["timestamp"], json!(e.timestamp.to_string()));
        assert_eq!(v["properties"], Value::Object(e.message.properties.clone()));
        assert_eq!(v["context"], Value::Object(e.message.context.clone()));
    }
}

/// A loading store with five parts of one row each, all of one day.
fn five_one_row_parts(dir: &std::path::Path, opts: Options) -> Store {
    let rows = data::events();
    let s = Store::open(dir, opts).unwrap();
    s.prepare_loading().unwrap();
    // Rows 0–4 are all on 2026-11-02: five seals of one row make five parts of that day.
    for r in &rows[..5] {
        load_and_seal(&s, dir, std::slice::from_ref(r), 1);
    }
    s
}

#[test]
fn compaction_merges_the_smallest_parts_up_to_its_row_bound() {
    let dir = data::temp_dir("compact-bound");
    let opts = Options {
        compact_parts: 2,
        compact_rows: 3,
        ..Options::default()
    };
    let s = five_one_row_parts(&dir, opts);
    let sizes = |_: &Store| {
        let manifest = opentally_store::manifest::Manifest::load(&dir.join("store")).unwrap();
        let mut v: Vec<u64> = manifest.parts.iter().map(|p| p.rows).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(s.compact().unwrap(), 3, "three parts fit in three rows");
    assert_eq!(sizes(&s), [1, 1, 3]);
    assert_eq!(s.compact().unwrap(), 2);
    assert_eq!(sizes(&s), [2, 3]);
    assert_eq!(
        s.compact().unwrap(),
        0,
        "two and three rows are over the bound together"
    );
    assert_eq!(s.stats().part_rows, 5);
}

#[test]
fn compaction_keeps_every_event_and_spares_parts_a_query_holds() {
    let dir = data::temp_dir("compact");
    let opts = Options {
        compact_parts: 2,
        ..Options::default()
    };
    let s = five_one_row_parts(&dir, opts);
    assert_eq!(s.stats().parts, 5);
    let held = s.snapshot("demo");
    assert_eq!(s.compact().unwrap(), 5);
    assert_eq!(s.stats().parts, 1);
    assert_eq!(
        s.delete_retired().unwrap(),
        0,
        "a query still holds the old parts"
    );
    assert!(held.parts.iter().all(|p| p.path.exists()));
    let t = data::runtime()
        .block_on(run_sql(
            &held,
            "SELECT count(*) FROM events",
            &Limits::default(),
        ))
        .unwrap();
    assert_eq!(t.rows, vec![vec![json!(5)]]);
    let old: Vec<_> = held.parts.iter().map(|p| p.path.clone()).collect();
    drop(held);
    assert_eq!(s.delete_retired().unwrap(), 5);
    assert!(old.iter().all(|p| !p.exists()));
    let t = data::runtime()
        .block_on(run_sql(
            &s.snapshot("demo"),
            "SELECT message_id FROM events",
            &Limits::default(),
        ))
        .unwrap();
    // One part, sorted by event, then time: estimate, fit, fit, fit, plot.
    assert_eq!(
        t.rows,
        ["m01", "m00", "m03", "m04", "m02"].map(|m| vec![json!(m)])
    );
}

#[test]
fn sql_is_read_only_bounded_and_says_what_is_wrong() {
    let dir = data::history("sql");
    let s = Store::open(&dir, Options::default()).unwrap();
    let snap = s.snapshot("demo");
    let run = |sql: &str, limits: Limits| data::runtime().block_on(run_sql(&snap, sql, &limits));
    for (sql, expected) in [
        ("DROP TABLE events", "DDL not supported"),
        ("CREATE TABLE x AS SELECT 1", "DDL not supported"),
        ("INSERT INTO tail SELECT * FROM tail", "DML not supported"),
        ("COPY events TO '/tmp/x.csv'", "not supported"),
        (
            "SET datafusion.execution.batch_size = 1",
            "Statement not supported",
        ),
        ("SELEC 1", "Expected: an SQL statement"),
        ("SELECT nope FROM events", "nope"),
        ("SELECT * FROM '/etc/passwd'", "not found"),
    ] {
        let err = run(sql, Limits::default()).unwrap_err();
        assert_eq!(err.reason(), "bad_query", "{sql}: {err}");
        assert!(err.to_string().contains(expected), "{sql}: {err}");
    }
    let tiny = Limits {
        memory_bytes: 1024,
        ..Limits::default()
    };
    let err = run(
        "SELECT install, event, array_agg(properties) FROM events GROUP BY 1, 2 ORDER BY 3",
        tiny,
    )
    .unwrap_err();
    assert!(matches!(err, QueryError::Memory(_)), "{err}");
    let quick = Limits {
        time: Duration::from_millis(200),
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let err = run(
        "SELECT sum(value) FROM generate_series(1, 100000000000)",
        quick,
    )
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped at its limit"
    );
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    let few = Limits {
        max_rows: 3,
        ..Limits::default()
    };
    let t = run("SELECT message_id FROM events ORDER BY 1", few).unwrap();
    assert_eq!(t.rows.len(), 3);
    assert!(t.truncated);
    // The byte cap cuts the rows before the row cap does.
    let small = Limits {
        max_result_bytes: 1_000,
        ..Limits::default()
    };
    let t = run(
        "SELECT repeat('x', 90) AS s FROM generate_series(1, 100)",
        small,
    )
    .unwrap();
    let bytes: usize = t.rows.iter().flatten().map(|v| v.to_string().len()).sum();
    assert!(
        t.truncated && !t.rows.is_empty() && bytes <= 1_000,
        "{} rows, {bytes} bytes, truncated {}",
        t.rows.len(),
        t.truncated
    );
    // Regression: a deep expression overflowed the stack; now it is refused before planning.
    let err = run(
        &format!("SELECT {}", ["1"; 1_000].join("+")),
        Limits::default(),
    )
    .unwrap_err();
    assert_eq!(err.reason(), "bad_query", "{err}");
    // Regression: `repeat` allocated whatever it was asked for, past the memory limit; a
    // constant counts once for every row of a batch.
    let mb64 = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    for sql in [
        "SELECT length(repeat('x', 300000000))",
        "SELECT repeat('y', 10000) FROM generate_series(1, 5)",
        "SELECT repeat(message_id, 100000000) FROM events",
        "SELECT count(*) FROM (SELECT unnest(range(1, 100000000)))",
    ] {
        let err = run(sql, mb64).unwrap_err();
        assert!(matches!(err, QueryError::Memory(_)), "{sql}: {err}");
    }
    let t = run("SELECT repeat('y', 100) AS s", mb64).unwrap();
    assert_eq!(t.rows[0][0].as_str().map(str::len), Some(100));
    let t = run(
        "SELECT message_id FROM events WHERE false",
        Limits::default(),
    )
    .unwrap();
    assert_eq!(t.columns, ["message_id"], "columns even without rows");
    assert!(t.rows.is_empty());
}

#[test]
fn sealed_log_segments_are_removed_only_when_the_writer_no_longer_needs_them() {
    let dir = data::temp_dir("segments");
    let rows = data::events();
    // Segments of 1 KiB: about one record each.
    let end = data::write_log_in_segments(&dir, "demo", &rows, 2, 1024);
    let segments = wal::list_segments(&dir.join("log")).unwrap().len();
    assert!(segments >= 4, "{segments} segments");
    let s = Store::open(&dir, Options::default()).unwrap();
    s.prepare_loading().unwrap();
    // Nothing sealed yet: nothing goes, whatever the writer allows.
    assert_eq!(s.remove_loaded_segments(end).unwrap(), 0);
    s.seal().unwrap();
    // Sealed, but the writer's checkpoint is still at the start: nothing goes.
    assert_eq!(s.remove_loaded_segments(LogPos::default()).unwrap(), 0);
    // Both past: every segment before the last goes.
    assert_eq!(s.remove_loaded_segments(end).unwrap(), segments - 1);
    assert_eq!(wal::list_segments(&dir.join("log")).unwrap().len(), 1);
    drop(s);
    let s = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(count(&s), (12, 12));
}

#[test]
fn erasing_an_install_removes_it_from_parts_tail_and_every_reload() {
    let dir = data::temp_dir("erase");
    let rows = data::events();
    // B's first two events get sealed into a part; its last one stays in the tail.
    data::write_log(&dir, "demo", &rows[..8], 4);
    let s = Store::open(&dir, Options::default()).unwrap();
    s.prepare_loading().unwrap();
    s.seal().unwrap();
    data::write_log(&dir, "demo", &rows[8..], 4);
    s.catch_up(None).unwrap();
    let installs = |s: &Store| {
        let t = data::runtime()
            .block_on(run_sql(
                &s.snapshot("demo"),
                "SELECT install, count(*) FROM events GROUP BY install ORDER BY install",
                &Limits::default(),
            ))
            .unwrap();
        t.rows
    };
    assert_eq!(
        installs(&s),
        vec![
            vec![json!("A"), json!(5)],
            vec![json!("B"), json!(3)],
            vec![json!("C"), json!(2)],
            vec![json!("D"), json!(2)],
        ]
    );
    let held = s.snapshot("demo");
    assert_eq!(s.erase("demo", "B").unwrap(), 3);
    let without_b = vec![
        vec![json!("A"), json!(5)],
        vec![json!("C"), json!(2)],
        vec![json!("D"), json!(2)],
    ];
    assert_eq!(installs(&s), without_b);
    // The rollups forget B too: two installs were active on 2026-11-16, now one.
    let trend = data::runtime()
        .block_on(
            opentally_store::InsightQuery::from_params(
                "trend",
                &[("since".into(), "2026-11-16".into())],
                opentally_protocol::Timestamp::now(),
            )
            .unwrap()
            .run(&s.snapshot("demo"), &Limits::default()),
        )
        .unwrap();
    assert_eq!(trend.source, "rollups");
    assert_eq!(
        trend.tables["trend"].rows,
        vec![vec![json!("2026-11-16"), json!(1), json!(1)]]
    );
    // The rewritten part's old file stays while a query holds it, then goes.
    drop(held);
    assert!(s.delete_retired().unwrap() >= 1);
    // A crash now: the tail is read from the log again, and B stays erased.
    drop(s);
    let s = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(installs(&s), without_b);
    s.prepare_loading().unwrap();
    s.seal().unwrap();
    assert!(
        opentally_store::manifest::Manifest::load(&dir.join("store"))
            .unwrap()
            .erased
            .is_empty(),
        "once sealed past it, the erasure need not be kept"
    );
    drop(s);
    let s = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(installs(&s), without_b);
    let mut dump = Vec::new();
    opentally_store::dump::dump(&s.snapshot("demo"), &mut dump).unwrap();
    assert!(
        !String::from_utf8(dump)
            .unwrap()
            .contains("\"install\":\"B\"")
    );
}

/// An erasure written in the log by the collector: loading removes the install's events in the
/// records before it (from parts and tail), keeps those after it, and a reload after a crash
/// or a read-only view agrees.
#[test]
fn an_erasure_in_the_log_removes_what_came_before_it_and_keeps_what_follows() {
    let dir = data::temp_dir("erasure-record");
    let rows = data::events();
    let installs = |s: &Store| {
        data::runtime()
            .block_on(run_sql(
                &s.snapshot("demo"),
                "SELECT install, count(*) FROM events GROUP BY install ORDER BY install",
                &Limits::default(),
            ))
            .unwrap()
            .rows
    };
    let load = |s: &Store, until: LogPos| while s.load_step(until, false).unwrap() {};
    // B's first events are sealed into parts; its last is in the log after them.
    data::write_log(&dir, "demo", &rows[..8], 4);
    let s = Store::open_behind(&dir, Options::default()).unwrap();
    s.prepare_loading().unwrap();
    s.catch_up(None).unwrap();
    s.seal().unwrap();
    data::write_log(&dir, "demo", &rows[8..], 4);
    data::write_erasure(&dir, "demo", "B");
    // B again after its erasure (an install that kept its id): this one stays.
    let mut later = rows.iter().find(|(_, e)| e.install == "B").unwrap().clone();
    later.1.message_id = "after-the-erasure".into();
    data::write_log(&dir, "demo", &[later], 1);
    let end = data::write_erasure(&dir, "other", "B");
    load(&s, end);
    let expected = vec![
        vec![json!("A"), json!(5)],
        vec![json!("B"), json!(1)],
        vec![json!("C"), json!(2)],
        vec![json!("D"), json!(2)],
    ];
    assert_eq!(installs(&s), expected);
    let dumped = |s: &Store| {
        let mut out = Vec::new();
        opentally_store::dump::dump(&s.snapshot("demo"), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let b_lines: Vec<String> = dumped(&s)
        .lines()
        .filter(|l| l.contains("\"install\":\"B\""))
        .map(str::to_owned)
        .collect();
    assert_eq!(b_lines.len(), 1);
    assert!(b_lines[0].contains("after-the-erasure"));
    // The loader seals at once past an erasure, so the log holding the events can go.
    assert_eq!(s.stats().sealed_to, end);
    // A crash before any seal: a new loader reads the log again and gets the same.
    drop(s);
    let s = Store::open_behind(&dir, Options::default()).unwrap();
    s.prepare_loading().unwrap();
    load(&s, end);
    assert_eq!(installs(&s), expected);
    drop(s);
    // A read-only view of the same log (parts already rewritten) agrees.
    let s = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(installs(&s), expected);
    // With nothing sealed, a read-only view leaves the erased events out of its tail.
    let fresh = data::temp_dir("erasure-record-read-only");
    data::write_log(&fresh, "demo", &rows, 4);
    data::write_erasure(&fresh, "demo", "A");
    let s = Store::open(&fresh, Options::default()).unwrap();
    assert_eq!(
        installs(&s),
        vec![
            vec![json!("B"), json!(3)],
            vec![json!("C"), json!(2)],
            vec![json!("D"), json!(2)],
        ]
    );
}

#[test]
fn the_retention_job_drops_whole_days_past_retention() {
    let dir = data::history("retention");
    let s = Store::open(&dir, Options::default()).unwrap();
    s.prepare_loading().unwrap();
    s.seal().unwrap();
    // 2026-11-09 is day 20_766.
    assert_eq!(s.drop_days_before("other", 20_766).unwrap(), (0, 0));
    assert_eq!(s.drop_days_before("demo", 20_766).unwrap(), (2, 7));
    assert_eq!(count(&s), (5, 5));
    s.delete_retired().unwrap();
    drop(s);
    let s = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(count(&s), (5, 5));
    assert_eq!(s.stats().parts, 3);
}

/// A day's events sealed in three interleaved rounds (so that every install's events in one part
/// lie between its events in the others), with errors, sessions and durations.
fn interleaved_parts(dir: &std::path::Path, opts: Options) -> Store {
    let template = data::event(0, &data::ROWS[0]);
    let names = ["fit", "plot", "estimate"];
    let rows: Vec<(usize, opentally_log::StoredEvent)> = (0..900_usize)
        .map(|i| {
            let mut e = template.clone();
            e.message_id = format!("m{i:04}");
            e.install = format!("i{}", i % 31);
            // Distinct times, spread over the day in an order unlike the index's.
            let secs = (i * 7_919) % 86_000;
            e.timestamp = opentally_protocol::Timestamp::parse(&format!(
                "2026-11-02T{:02}:{:02}:{:02}.{i:06}Z",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            ))
            .unwrap();
            let m = &mut e.message;
            m.event = Some(names[i % 3].into());
            m.context
                .insert("session".into(), json!(format!("s{}", i % 2)));
            let error = i % 7 == 0;
            m.properties
                .insert("outcome".into(), json!(if error { "error" } else { "ok" }));
            if error {
                m.properties.insert(
                    "error_type".into(),
                    json!(["ValueError", "TypeError"][i % 2]),
                );
            } else {
                m.properties.remove("error_type");
            }
            #[allow(clippy::cast_precision_loss)]
            m.properties
                .insert("duration_ms".into(), json!((i * 37 % 1000) as f64 / 4.0));
            (i, e)
        })
        .collect();
    let s = Store::open(dir, opts).unwrap();
    s.prepare_loading().unwrap();
    for round in 0..3 {
        let some: Vec<_> = rows
            .iter()
            .filter(|(i, _)| i % 3 == round)
            .cloned()
            .collect();
        load_and_seal(&s, dir, &some, 50);
    }
    s
}

/// Seals and compactions copy rows a chunk at a time: the rollup they write for a part (merged
/// chunk by chunk, or from the merged parts' rollups) and its sequences (from a copy of their
/// columns, or joined from the merged parts') are those of the part's rows.
#[test]
fn parts_keep_the_rollup_and_sequences_of_their_rows() {
    let dir = data::temp_dir("compact-derived");
    let opts = Options {
        compact_parts: 3,
        // Chunks that split the tail's and the parts' batches and the rollup's groups.
        chunk_rows: 64,
        ..Options::default()
    };
    let s = interleaved_parts(&dir, opts.clone());
    let sealed = s.snapshot("demo");
    assert_eq!(sealed.parts.len(), 3);
    for part in &sealed.parts {
        assert_derived_from_rows(part, 300, 31);
    }
    drop(sealed);
    assert_eq!(s.compact().unwrap(), 3);
    s.delete_retired().unwrap();
    drop(s);
    // Reopened: the rollup and sequences are read from the files compaction wrote.
    let s = Store::open(&dir, opts).unwrap();
    let snap = s.snapshot("demo");
    assert_eq!(snap.parts.len(), 1);
    assert_derived_from_rows(&snap.parts[0], 900, 31);
}

/// Checks a part's rollup and sequences against those made from its rows.
fn assert_derived_from_rows(part: &opentally_store::store::LivePart, rows: usize, installs: usize) {
    use opentally_store::rollup;
    use opentally_store::sequence::{self, Sequences};
    let batches = opentally_store::store::read_part(&part.path).unwrap();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(all.num_rows(), rows);

    // Every group alike: counts, installs (exact at this size), error sessions, and durations
    // (every one kept: fewer than 240 a group).
    let group = |r: &rollup::RollupRow| {
        let q = [0.0, 0.5, 0.9, 1.0].map(|q| rollup::quantile(&r.durations, q));
        (
            r.day,
            r.dims.clone(),
            r.events,
            rollup::count(&r.installs),
            r.error_sessions.clone(),
            format!("{q:?}"),
        )
    };
    let written: Vec<_> = part.rollup().unwrap().rows.iter().map(group).collect();
    let expected: Vec<_> = rollup::of_batch(&all).iter().map(group).collect();
    assert!(expected.iter().any(|g| !g.4.is_empty()), "error rows");
    assert_eq!(written, expected);

    // Every install's events, by name, session and time, in order.
    let written = part.sequences().unwrap().expect("the part has sequences");
    let expected = Sequences::parse(sequence::encode(&all).unwrap()).unwrap();
    assert_eq!(runs(&written).len(), installs);
    assert_eq!(runs(&written), runs(&expected));
}

/// Every install's events in a sequence file, by name, session and time, in order.
type InstallEvents = (u64, Vec<(Option<String>, u64, i64)>);

fn runs(seq: &opentally_store::sequence::Sequences) -> Vec<InstallEvents> {
    let codes: Vec<u32> = (0..=u32::try_from(seq.names().len()).unwrap()).collect();
    let mut run = opentally_store::sequence::Run::default();
    (0..seq.len())
        .map(|i| {
            seq.run(i, &codes, true, &mut run).unwrap();
            let events: Vec<_> = (0..run.codes.len())
                .map(|e| {
                    let c = run.codes[e] as usize;
                    let name = (c > 0).then(|| seq.names()[c - 1].clone());
                    (name, run.sessions[run.session(e) as usize], run.times[e])
                })
                .collect();
            (seq.key(i), events)
        })
        .collect()
}

/// A part whose sequence file is gone, damaged or cut short does not stop compaction at every
/// round: the merged part has no sequences (funnels and paths then scan its events) and keeps
/// every event.
#[test]
fn compaction_goes_on_without_a_parts_sequence_file() {
    for (case, damage) in [
        (
            "gone",
            (|p| std::fs::remove_file(p).unwrap()) as fn(&std::path::Path),
        ),
        ("damaged", |p| {
            let mut b = std::fs::read(p).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            std::fs::write(p, b).unwrap();
        }),
        ("cut", |p| {
            let b = std::fs::read(p).unwrap();
            std::fs::write(p, &b[..b.len() - 9]).unwrap();
        }),
    ] {
        let dir = data::temp_dir(&format!("compact-seq-{case}"));
        let opts = Options {
            compact_parts: 3,
            ..Options::default()
        };
        let s = interleaved_parts(&dir, opts);
        let seq = s.snapshot("demo").parts[1].meta.sequences.clone().unwrap();
        damage(&dir.join("store").join(seq));
        assert_eq!(s.compact().unwrap(), 3, "{case}");
        let snap = s.snapshot("demo");
        assert_eq!(snap.parts.len(), 1);
        assert!(snap.parts[0].meta.sequences.is_none(), "{case}");
        assert!(snap.parts[0].sequences().unwrap().is_none());
        drop(snap);
        assert_eq!(count(&s), (900, 900), "{case}");
    }
}

/// A merged part's rollup is merged from its parts' rollup files; one whose file is gone or
/// damaged has its rollup made again from its rows, so the merged part's still counts every event.
#[test]
fn compaction_makes_a_parts_missing_or_damaged_rollup_from_its_rows() {
    let dir = data::temp_dir("compact-no-rollup");
    let opts = Options {
        compact_parts: 3,
        ..Options::default()
    };
    let s = interleaved_parts(&dir, opts.clone());
    let parts = s.snapshot("demo").parts.clone();
    let rollup = |i: usize| {
        dir.join("store")
            .join(parts[i].meta.rollup.clone().unwrap())
    };
    std::fs::remove_file(rollup(0)).unwrap();
    std::fs::write(rollup(2), b"not a rollup").unwrap();
    drop(parts);
    assert_eq!(s.compact().unwrap(), 3);
    s.delete_retired().unwrap();
    drop(s);
    let s = Store::open(&dir, opts).unwrap();
    let snap = s.snapshot("demo");
    assert_eq!(snap.parts.len(), 1);
    assert_derived_from_rows(&snap.parts[0], 900, 31);
}

/// Two events of one install at the same time, in different parts: only their message ids order
/// them, which the parts' sequence files do not keep, so the merged part's sequences are made
/// from the parts' rows, in the order a part made from those rows at once would have.
#[test]
fn compaction_orders_an_installs_events_at_one_time_by_message_id() {
    let dir = data::temp_dir("compact-tie");
    let opts = Options {
        compact_parts: 2,
        ..Options::default()
    };
    let s = Store::open(&dir, opts).unwrap();
    s.prepare_loading().unwrap();
    let at = |i: usize, id: &str, name: &str| {
        let mut e = data::event(i, &data::ROWS[0]);
        e.message_id = id.into();
        e.message.event = Some(name.into());
        (i, e)
    };
    // Sealed first, but its message id sorts last.
    load_and_seal(&s, &dir, &[at(0, "m2", "plot")], 1);
    load_and_seal(&s, &dir, &[at(1, "m1", "fit")], 1);
    assert_eq!(s.compact().unwrap(), 2);
    let snap = s.snapshot("demo");
    assert_eq!(snap.parts.len(), 1);
    let seq = snap.parts[0].sequences().unwrap().expect("sequences");
    let runs = runs(&seq);
    assert_eq!(runs.len(), 1);
    let names: Vec<Option<&str>> = runs[0].1.iter().map(|e| e.0.as_deref()).collect();
    assert_eq!(names, [Some("fit"), Some("plot")], "m1 before m2");
}
