//! A data dir whose log holds a small, hand-built history of four installs over three weeks.

use std::path::{Path, PathBuf};

use opentally_log::segment::{self as wal, LogWriter};
use opentally_log::{LogRecord, StoredEvent};
use opentally_protocol::{Message, MessageType, Timestamp};
use opentally_store::{Options, Store};
use serde_json::json;

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opentally-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `(time, install, session, event, app version, outcome, error type, duration ms, method)`
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    f64,
    Option<&'static str>,
);

/// The history. Weeks start on Monday 2026-11-02, 11-09 and 11-16.
pub const ROWS: [Row; 12] = [
    (
        "2026-11-02T10:00:00Z",
        "A",
        "s1",
        "fit",
        "1.0",
        "ok",
        None,
        100.0,
        Some("cbpe"),
    ),
    (
        "2026-11-02T10:01:00Z",
        "A",
        "s1",
        "estimate",
        "1.0",
        "ok",
        None,
        200.0,
        None,
    ),
    (
        "2026-11-02T10:02:00Z",
        "A",
        "s1",
        "plot",
        "1.0",
        "ok",
        None,
        300.0,
        None,
    ),
    (
        "2026-11-02T11:00:00Z",
        "B",
        "s2",
        "fit",
        "1.0",
        "error",
        Some("ValueError"),
        50.0,
        Some("cbpe"),
    ),
    (
        "2026-11-02T11:01:00Z",
        "B",
        "s2",
        "fit",
        "1.0",
        "error",
        Some("ValueError"),
        60.0,
        Some("dle"),
    ),
    (
        "2026-11-03T09:00:00Z",
        "C",
        "s3",
        "fit",
        "1.1",
        "ok",
        None,
        400.0,
        Some("cbpe"),
    ),
    (
        "2026-11-03T09:30:00Z",
        "C",
        "s3",
        "estimate",
        "1.1",
        "error",
        Some("KeyError"),
        10.0,
        None,
    ),
    (
        "2026-11-09T08:00:00Z",
        "A",
        "s4",
        "fit",
        "1.1",
        "ok",
        None,
        500.0,
        Some("dle"),
    ),
    (
        "2026-11-10T08:00:00Z",
        "D",
        "s5",
        "fit",
        "1.1",
        "ok",
        None,
        600.0,
        Some("dle"),
    ),
    (
        "2026-11-10T08:05:00Z",
        "D",
        "s5",
        "plot",
        "1.1",
        "ok",
        None,
        700.0,
        None,
    ),
    (
        "2026-11-16T12:00:00Z",
        "A",
        "s6",
        "estimate",
        "1.1",
        "ok",
        None,
        800.0,
        None,
    ),
    (
        "2026-11-16T12:00:00Z",
        "B",
        "s7",
        "estimate",
        "1.1",
        "error",
        Some("TypeError"),
        70.0,
        None,
    ),
];

pub fn event(i: usize, row: &Row) -> StoredEvent {
    let (time, install, session, name, version, outcome, error, duration, method) = *row;
    let mut m = Message::new(MessageType::Track);
    m.event = Some(name.into());
    let mut props = json!({"duration_ms": duration, "outcome": outcome});
    if let Some(e) = error {
        props["error_type"] = e.into();
    }
    if let Some(me) = method {
        props["method"] = me.into();
    }
    let serde_json::Value::Object(props) = props else {
        unreachable!()
    };
    m.properties = props;
    let serde_json::Value::Object(context) = json!({
        "app": {"name": "demo-ml", "version": version},
        "os": {"name": "linux"},
        "runtime": {"name": "python", "version": "3.11"},
        "environment": {"ci": false, "docker": install == "D", "notebook": null},
        "hardware": {"arch": if install == "C" { "arm64" } else { "x86_64" }},
        "session": session,
    }) else {
        unreachable!()
    };
    m.context = context;
    StoredEvent {
        message_id: format!("m{i:02}"),
        install: install.into(),
        timestamp: Timestamp::parse(time).unwrap(),
        message: m,
    }
}

/// Appends `rows` of `project` to the log of `data`, `per_record` events per log record.
pub fn write_log(data: &Path, project: &str, rows: &[(usize, StoredEvent)], per_record: usize) {
    write_log_in_segments(data, project, rows, per_record, 1 << 20);
}

/// [`write_log`] with log segments closed at `segment_bytes`; returns the log's end.
pub fn write_log_in_segments(
    data: &Path,
    project: &str,
    rows: &[(usize, StoredEvent)],
    per_record: usize,
    segment_bytes: u64,
) -> wal::LogPos {
    let (mut log, _) = LogWriter::open(&data.join("log"), segment_bytes, false).unwrap();
    for chunk in rows.chunks(per_record) {
        let rec = LogRecord {
            project: project.into(),
            project_id: 1,
            received_at: Timestamp::parse("2026-11-20T00:00:00Z").unwrap(),
            events: chunk.iter().map(|(_, e)| e.clone()).collect(),
        };
        let mut framed = Vec::new();
        wal::frame_with(&mut framed, |out| rec.write(out));
        log.append_durable(&framed).unwrap();
    }
    log.position()
}

/// Appends the erasure of `install` to the log, as the collector writes it.
pub fn write_erasure(data: &Path, project: &str, install: &str) -> wal::LogPos {
    let (mut log, _) = LogWriter::open(&data.join("log"), 1 << 20, false).unwrap();
    let mut framed = Vec::new();
    wal::frame_with(&mut framed, |out| {
        opentally_log::RecordWriter::begin(
            out,
            project,
            1,
            Timestamp::parse("2026-11-20T00:00:00Z").unwrap(),
        )
        .end_with_erasure(install);
    });
    log.append_durable(&framed).unwrap();
    log.position()
}

/// Every row of the hand-built history as a stored event, with its index.
pub fn events() -> Vec<(usize, StoredEvent)> {
    ROWS.iter()
        .enumerate()
        .map(|(i, r)| (i, event(i, r)))
        .collect()
}

/// A data dir holding the history of project `demo`.
pub fn history(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let rows = events();
    write_log(&dir, "demo", &rows, 5);
    dir
}

/// A store on [`history`], opened with `opts` and every event sealed into parts.
pub fn sealed_history(name: &str, opts: Options) -> (PathBuf, Store) {
    let dir = history(name);
    let store = Store::open(&dir, opts).unwrap();
    store.prepare_loading().unwrap();
    store.seal().unwrap();
    (dir, store)
}

/// Insight parameters as a query string gives them (`steps=fit,plot&window=1d`).
pub fn params(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// A runtime for the store's async queries.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
