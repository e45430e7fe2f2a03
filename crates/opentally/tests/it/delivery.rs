//! What reaches the collector, and what never does: batches, retries, drops, suppression,
//! inspect mode, fork.

use std::sync::Arc;
use std::time::Duration;

use opentally::transport::{Outcome, RecordingTransport};
use opentally::{Client, Suppressed};

use crate::sink::{Behaviour, Sink};
use crate::{Home, hello};

fn recording(home: &Home, script: Vec<Outcome>) -> (Client, Arc<RecordingTransport>) {
    let t = Arc::new(RecordingTransport {
        script: std::sync::Mutex::new(script),
        ..RecordingTransport::default()
    });
    let client = Client::new(
        home.config("demo", "http://127.0.0.1:9", &[])
            .version("1.2.3")
            .transport(t.clone()),
    );
    (client, t)
}

#[test]
fn events_carry_the_wire_format() {
    let home = Home::new("wire");
    let (client, t) = recording(&home, vec![]);
    client.track(
        "fit",
        [
            ("method", "cbpe".into()),
            ("n", 3i64.into()),
            ("ratio", 0.5.into()),
            ("ok", true.into()),
        ],
    );
    assert!(client.flush(Duration::from_secs(5)));
    let m = &t.messages()[0];
    assert_eq!(m["type"], "track");
    assert_eq!(m["event"], "fit");
    assert_eq!(
        m["properties"],
        serde_json::json!({"method": "cbpe", "n": 3, "ratio": 0.5, "ok": true})
    );
    assert_eq!(
        m["anonymousId"].as_str(),
        client.status().install_id.as_deref()
    );
    assert_eq!(
        m["context"]["app"],
        serde_json::json!({"name": "demo", "version": "1.2.3"})
    );
    assert_eq!(m["context"]["library"]["name"], "opentally-rust");
    assert!(m["context"]["session"].as_str().unwrap().len() == 36);
    assert!(m["messageId"].as_str().unwrap().len() == 36);
    // It is a message the collector accepts.
    let parsed = opentally_protocol::Message::from_value(m.clone(), None).unwrap();
    opentally_protocol::check_message(&parsed, &opentally_protocol::Limits::default()).unwrap();
    let ctx: opentally_protocol::event::Context =
        serde_json::from_value(m["context"].clone()).unwrap();
    assert!(ctx.hardware.cpus >= 1);
}

/// The only test that uses the global client (`init`, `span`, `timed`, `track`).
#[test]
fn spans_record_duration_outcome_and_error_type() {
    let home = Home::new("span");
    let t = Arc::new(RecordingTransport::default());
    let _guard = opentally::init(
        home.config("demo", "http://127.0.0.1:9", &[])
            .transport(t.clone()),
    );
    let span = opentally::span("export").prop("format", "html");
    std::thread::sleep(Duration::from_millis(5));
    span.error("io::ErrorKind::NotFound");
    opentally::span("plot").ok();
    let r: Result<(), std::fmt::Error> = opentally::timed("fit", || Err(std::fmt::Error));
    assert!(r.is_err(), "the result is passed through");
    let caught = std::panic::catch_unwind(|| {
        let _s = opentally::span("crashes");
        panic!("boom");
    });
    assert!(caught.is_err());
    assert!(opentally::flush(Duration::from_secs(5)));
    let by_name = |n: &str| t.messages().into_iter().find(|m| m["event"] == n).unwrap();
    let export = by_name("export");
    assert_eq!(export["properties"]["outcome"], "error");
    assert_eq!(
        export["properties"]["error_type"],
        "io::ErrorKind::NotFound"
    );
    assert_eq!(export["properties"]["format"], "html");
    assert!(export["properties"]["duration_ms"].as_f64().unwrap() >= 5.0);
    assert_eq!(by_name("plot")["properties"]["outcome"], "ok");
    assert!(by_name("plot")["properties"].get("error_type").is_none());
    assert_eq!(by_name("fit")["properties"]["error_type"], "Error");
    assert_eq!(by_name("crashes")["properties"]["error_type"], "panic");
    // Every one is a valid event under the reserved-property rules.
    let catalog = opentally_protocol::Catalog::from_toml_str("mode = \"lenient\"").unwrap();
    for m in t.messages() {
        let mut msg = opentally_protocol::Message::from_value(m, None).unwrap();
        assert!(
            opentally_protocol::privacy::apply(&mut msg, Some(&catalog))
                .unwrap()
                .iter()
                .all(|d| !d.contains("duration_ms")
                    && !d.contains("outcome")
                    && !d.contains("error_type"))
        );
    }
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let home = Home::new("full");
    let t = Arc::new(RecordingTransport::default());
    let client = Client::new(
        home.config("demo", "http://127.0.0.1:9", &[])
            .transport(t.clone())
            .queue_capacity(10)
            .batching(1000, Duration::from_secs(3600)),
    );
    for i in 0..25 {
        client.track("e", [("i", i64::from(i).into())]);
    }
    let c = client.status().counters;
    assert_eq!((c.queued, c.dropped), (10, 15));
    assert!(client.flush(Duration::from_secs(5)));
    assert_eq!(t.messages().len(), 10);
}

#[test]
fn suppressed_scopes_record_nothing() {
    let home = Home::new("suppressed");
    let (client, t) = recording(&home, vec![]);
    {
        let _quiet = Suppressed::new();
        client.track("secret_cell", []);
    }
    client.track("visible", []);
    assert!(client.flush(Duration::from_secs(5)));
    let names: Vec<String> = t
        .messages()
        .iter()
        .map(|m| m["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["visible"]);
}

#[test]
fn retryable_failures_are_retried_and_refusals_are_not() {
    let home = Home::new("retry");
    let (client, t) = recording(
        &home,
        vec![
            Outcome::Retry {
                after: Some(Duration::from_millis(10)),
            },
            Outcome::Retry { after: None },
        ],
    );
    client.track("e", []);
    assert!(client.flush(Duration::from_secs(10)));
    assert_eq!(t.messages().len(), 1);
    assert_eq!(client.status().counters.retried, 2);

    let home = Home::new("refused");
    let (client, t) = recording(&home, vec![Outcome::Rejected { status: 400 }]);
    client.track("e", []);
    assert!(client.flush(Duration::from_secs(5)));
    let c = client.status().counters;
    assert_eq!((c.rejected, c.retried, c.sent), (1, 0, 0));
    assert!(t.messages().is_empty());
    assert_eq!(
        client.status().spool_files,
        0,
        "a refused batch is not spooled either"
    );
}

#[test]
fn a_batch_spooled_while_offline_is_resent_by_the_same_process_once_back() {
    let home = Home::new("respool");
    let t = Arc::new(RecordingTransport::default());
    let client = Client::new(
        home.config("demo", "http://127.0.0.1:9", &[])
            .transport(t.clone())
            .batching(1, Duration::from_millis(20)),
    );
    let wait = |done: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !done() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Online first, long enough for the worker to find the spool empty while idle.
    client.track("before", []);
    wait(&|| t.messages().len() == 1);
    std::thread::sleep(Duration::from_millis(200));
    // Then the collector goes away for every attempt of one batch.
    let down = Outcome::Retry {
        after: Some(Duration::from_millis(1)),
    };
    t.script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n(down, 4));
    client.track("while_offline", []);
    wait(&|| client.status().counters.spooled == 1);
    assert_eq!(client.status().counters.spooled, 1);
    // Back online: the next idle moment sends the spooled batch too.
    client.track("back_online", []);
    wait(&|| t.messages().len() == 3);
    let mut names: Vec<String> = t
        .messages()
        .iter()
        .map(|m| m["event"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["back_online", "before", "while_offline"]);
    assert_eq!(client.status().spool_files, 0);
}

#[test]
fn inspect_mode_prints_exactly_what_is_sent() {
    let home = Home::new("inspect");
    let sink = Sink::start(Behaviour::Accept);
    let out = hello(&home, &sink.url)
        .env("OPENTALLY_LOG", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let printed: serde_json::Value =
        serde_json::from_str(stderr.trim().strip_prefix("opentally: ").unwrap()).unwrap();
    let received = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(received, [printed]);
}

#[test]
#[allow(unsafe_code)]
fn a_forked_child_delivers_its_events_and_not_its_parents() {
    let home = Home::new("fork");
    let sink = Sink::start(Behaviour::Accept);
    let client = Client::new(
        home.config(
            "demo",
            "http://127.0.0.1:9",
            &[("OPENTALLY_ENDPOINT", sink.url.as_str())],
        )
        .batching(1000, Duration::from_secs(3600)),
    );
    client.track("parent_before_fork", []);
    // SAFETY: the child only uses the client (which handles the fork), then leaves with _exit
    // without running the test harness's atexit handlers.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        client.track("child", []);
        let ok = client.flush(Duration::from_secs(5));
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child this test created.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert_eq!(libc::WEXITSTATUS(status), 0, "the child flushed");
    // A second child that only flushes, as a pool worker that did no work does at exit: it must
    // neither wait on nor spool its copy of the parent's queue.
    // SAFETY: as above.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let started = std::time::Instant::now();
        client.flush(Duration::from_secs(2));
        let quick = started.elapsed() < Duration::from_millis(500);
        let spooled = client.status().counters.spooled;
        unsafe { libc::_exit(if quick && spooled == 0 { 0 } else { 4 }) };
    }
    // SAFETY: waiting for the child this test created.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "a flush-only child leaves its parent's queue alone"
    );
    client.track("parent_after_fork", []);
    assert!(client.flush(Duration::from_secs(5)));
    let got = sink.wait_for(3, Duration::from_secs(5));
    let mut names: Vec<&str> = got.iter().map(|m| m["event"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["child", "parent_after_fork", "parent_before_fork"],
        "each event once"
    );
    let sessions: std::collections::HashSet<&str> = got
        .iter()
        .map(|m| m["context"]["session"].as_str().unwrap())
        .collect();
    assert_eq!(sessions.len(), 2, "the child has a session of its own");
}

#[test]
fn status_names_every_source_and_the_decider() {
    let home = Home::new("status");
    let client = Client::new(
        home.config("demo", "http://127.0.0.1:9", &[("DO_NOT_TRACK", "1")])
            .disable_env("DEMO_OFF"),
    );
    let text = client.status().to_string();
    assert!(
        text.starts_with("telemetry for demo: off (decided by DO_NOT_TRACK)\n"),
        "{text}"
    );
    for source in [
        "system policy",
        "code",
        "DO_NOT_TRACK",
        "OPENTALLY_TELEMETRY",
        "app variable",
        ".env file",
        "user config",
        "default",
    ] {
        assert!(text.contains(source), "{source} missing:\n{text}");
    }
    assert!(text.contains(" * DO_NOT_TRACK"), "{text}");
}
