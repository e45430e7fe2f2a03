//! A real CLI (`examples/hello.rs`) against a collector that fails in every way we know: the
//! process leaves within 1.1 s of `main` returning, prints nothing to stderr, and never panics.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sink::{Behaviour, Sink, refused_url};
use crate::{Home, example, hello};

/// Runs `hello` against `endpoint`; returns (time from its last output line to exit, stderr,
/// exit code).
fn run_hello(home: &Home, endpoint: &str) -> (Duration, String, Option<i32>) {
    let mut child = hello(home, endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hello example is built by cargo test");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "hello\n");
    let main_returned = Instant::now();
    let status = child.wait().unwrap();
    let waited = main_returned.elapsed();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (waited, err, status.code())
}

#[test]
#[allow(clippy::print_stdout)] // the timings, shown with --nocapture
fn the_host_exits_within_the_bound_whatever_the_collector_does() {
    let faults: Vec<(&str, String, Option<Sink>)> = {
        let mut v = vec![("connection refused", refused_url(), None)];
        for (name, b) in [
            ("black hole (accepts, never answers)", Behaviour::BlackHole),
            (
                "slow response (3 s)",
                Behaviour::Slow(Duration::from_secs(3)),
            ),
            ("400", Behaviour::Status(400)),
            ("401", Behaviour::Status(401)),
            ("413", Behaviour::Status(413)),
            ("429 with Retry-After", Behaviour::Status(429)),
            ("500", Behaviour::Status(500)),
            ("503 with Retry-After", Behaviour::Status(503)),
            ("truncated response", Behaviour::Truncated),
            ("closes mid-body", Behaviour::CloseMidBody),
            ("healthy", Behaviour::Accept),
        ] {
            let s = Sink::start(b);
            v.push((name, s.url.clone(), Some(s)));
        }
        v
    };
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (i, (name, url, _sink)) in faults.iter().enumerate() {
        let home = Home::new(&format!("fault-{i}"));
        let (waited, stderr, code) = run_hello(&home, url);
        report.push(format!("{name}: {:.0} ms", waited.as_secs_f64() * 1000.0));
        if waited > Duration::from_millis(1100) || !stderr.is_empty() || code != Some(0) {
            failures.push(format!(
                "{name}: exit after {waited:?}, code {code:?}, stderr {stderr:?}"
            ));
        }
    }
    println!("exit after main returned: {}", report.join("; "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn offline_events_are_delivered_by_the_next_process_once() {
    let home = Home::new("offline");
    let (_, err, code) = run_hello(&home, &refused_url());
    assert_eq!((err.as_str(), code), ("", Some(0)));
    let spool = home.0.join("xdg-state/opentally/hello/spool");
    let spooled = std::fs::read_dir(&spool).map_or(0, Iterator::count);
    assert_eq!(spooled, 1, "the undelivered batch waits in the spool");
    let sink = Sink::start(Behaviour::Accept);
    let (_, err, code) = run_hello(&home, &sink.url);
    assert_eq!((err.as_str(), code), ("", Some(0)));
    let got = sink.wait_for(2, Duration::from_secs(5));
    let mut ids: Vec<&str> = got
        .iter()
        .map(|m| m["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "this run's event and the offline run's: {got:?}"
    );
    ids.dedup();
    assert_eq!(ids.len(), 2, "no event twice");
    assert_eq!(
        std::fs::read_dir(&spool).map_or(0, Iterator::count),
        0,
        "the spool is empty once delivered"
    );
    // A third run sends only its own event.
    let (_, _, _) = run_hello(&home, &sink.url);
    assert_eq!(sink.wait_for(3, Duration::from_secs(5)).len(), 3);
}

#[test]
fn do_not_track_in_a_real_process_sends_nothing_and_writes_nothing() {
    let home = Home::new("dnt-process");
    let sink = Sink::start(Behaviour::Accept);
    let status = hello(&home, &sink.url)
        .env("DO_NOT_TRACK", "1")
        .output()
        .unwrap();
    assert!(status.status.success());
    assert_eq!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(
        !home.0.join("xdg-state").exists(),
        "no state written when off"
    );
}

/// Runs `hello` with a terminal as stdout and stderr (through `script`), returns what it showed.
fn hello_on_a_terminal(home: &Home, extra_env: &[(&str, &str)]) -> String {
    let out = Command::new("script")
        .args(["-qec", example("hello").to_str().unwrap(), "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home.0)
        .env("XDG_STATE_HOME", home.0.join("xdg-state"))
        .env("XDG_CONFIG_HOME", home.0.join("xdg-config"))
        .env("OPENTALLY_ENDPOINT", refused_url())
        .envs(extra_env.iter().copied())
        .current_dir(home.work())
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux runs the example on a pseudo-terminal");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_first_run_notice_is_shown_once_on_a_terminal_and_never_when_off() {
    let home = Home::new("notice");
    let first = hello_on_a_terminal(&home, &[]);
    assert!(
        first.contains("hello collects anonymous usage statistics"),
        "{first:?}"
    );
    assert!(first.contains("opentally opt-out --app hello"), "{first:?}");
    assert!(first.contains("HELLO_NO_TELEMETRY=1"), "{first:?}");
    let second = hello_on_a_terminal(&home, &[]);
    assert!(
        !second.contains("usage statistics"),
        "shown once per app per machine: {second:?}"
    );
    let off = Home::new("notice-off");
    let refused = hello_on_a_terminal(&off, &[("DO_NOT_TRACK", "1")]);
    assert!(!refused.contains("usage statistics"), "{refused:?}");
    assert!(refused.contains("hello"));
}
