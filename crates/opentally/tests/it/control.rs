//! The collector's remote controls as an SDK obeys them: a stop in a batch's answer withholds
//! everything after it and clears the spool, a sample keeps the installs it names, and both are
//! remembered by the next process until they are due to be asked again.

use std::sync::Arc;
use std::time::Duration;

use opentally::Client;
use opentally::control::RemoteControl;
use opentally::transport::{Outcome, RecordingTransport, Reply};
use opentally_protocol::Control;

use crate::Home;

const OFF: Control = Control {
    collect: false,
    sample: None,
};

fn client(home: &Home, version: &str, script: Vec<Outcome>) -> (Client, Arc<RecordingTransport>) {
    let t = Arc::new(RecordingTransport {
        script: std::sync::Mutex::new(script),
        ..RecordingTransport::default()
    });
    let client = Client::new(
        home.config("demo", "http://127.0.0.1:9", &[])
            .version(version)
            .transport(t.clone())
            .batching(1, Duration::from_millis(20)),
    );
    (client, t)
}

fn wait(done: &dyn Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_stop_withholds_what_follows_clears_the_spool_and_binds_the_next_process() {
    let home = Home::new("control-stop");
    // A former process left a batch in the spool while offline.
    let (offline, _) = client(&home, "1.2.3", vec![Outcome::Retry { after: None }; 8]);
    offline.track("spooled", []);
    wait(&|| offline.status().counters.spooled == 1);
    assert_eq!(offline.status().spool_files, 1);
    drop(offline);

    let (c, t) = client(
        &home,
        "1.2.3",
        vec![Outcome::Delivered {
            reply: Reply::Answered(Some(OFF)),
        }],
    );
    c.track("first", []);
    wait(&|| !c.recording());
    assert!(!c.recording(), "the stop in the answer ends recording");
    c.track("after", []);
    assert!(c.flush(Duration::from_secs(5)));
    let names: Vec<_> = t.messages().iter().map(|m| m["event"].clone()).collect();
    assert_eq!(names, ["first"], "nothing is sent after the stop");
    let status = c.status();
    assert_eq!(status.spool_files, 0, "the spool is cleared");
    assert_eq!(status.counters.withheld, 1, "the spooled event is counted");
    let remembered = status.control.clone().expect("the stop is remembered");
    assert_eq!(
        (remembered.collect, remembered.app_version.as_deref()),
        (false, Some("1.2.3"))
    );
    assert!(
        status
            .to_string()
            .contains("control:     collection stopped for version 1.2.3")
    );
    drop(c);

    // The next process of the same version sends nothing at all.
    let (next, t) = client(&home, "1.2.3", vec![]);
    next.track("next", []);
    assert!(next.flush(Duration::from_secs(5)));
    assert!(t.messages().is_empty());
    assert_eq!(next.status().counters.withheld, 1);
    assert!(!next.recording());
    drop(next);

    // A new version is not bound by the old version's stop; its answer has no control, which
    // lifts the remembered one.
    let (upgraded, t) = client(&home, "1.3.0", vec![]);
    upgraded.track("upgraded", []);
    assert!(upgraded.flush(Duration::from_secs(5)));
    assert_eq!(t.messages().len(), 1);
    assert!(
        upgraded.status().control.is_none(),
        "an answer without control clears it"
    );
}

#[test]
fn a_stop_is_asked_again_once_a_day_has_passed() {
    let home = Home::new("control-recheck");
    let app_state = home.state().join("demo");
    std::fs::create_dir_all(&app_state).unwrap();
    let old = RemoteControl {
        app_version: Some("1.2.3".into()),
        collect: false,
        sample: None,
        received_at: 1_000,
    };
    std::fs::write(
        app_state.join("control.json"),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    let (c, t) = client(
        &home,
        "1.2.3",
        vec![Outcome::Delivered {
            reply: Reply::Answered(Some(OFF)),
        }],
    );
    c.track("asks", []);
    wait(&|| !t.messages().is_empty());
    assert_eq!(t.messages().len(), 1, "the expired stop lets one batch ask");
    wait(&|| !c.recording());
    let renewed = c.status().control.unwrap();
    assert!(renewed.received_at > 1_000, "the answer renews the stop");
    assert!(!c.recording());
}

#[test]
fn a_sample_keeps_the_installs_it_names() {
    // Installs of two apps on one machine have unrelated ids; try until both outcomes are seen.
    let mut seen = [false, false];
    for i in 0..40 {
        let home = Home::new(&format!("control-sample-{i}"));
        let (c, t) = client(
            &home,
            "2.0.0",
            // The collector says it in every answer.
            vec![
                Outcome::Delivered {
                    reply: Reply::Answered(Some(Control {
                        collect: true,
                        sample: Some(0.5),
                    })),
                };
                2
            ],
        );
        c.track("first", []);
        assert!(c.flush(Duration::from_secs(5)));
        let id = c.status().install_id.unwrap();
        let kept = opentally_protocol::control::sampled_in(&id, 0.5);
        c.track("second", []);
        assert!(c.flush(Duration::from_secs(5)));
        assert_eq!(c.recording(), kept, "{id}");
        assert_eq!(t.messages().len(), if kept { 2 } else { 1 }, "{id}");
        let text = c.status().to_string();
        assert!(
            text.contains(if kept {
                "this install is in the sample"
            } else {
                "outside the sample"
            }),
            "{text}"
        );
        seen[usize::from(kept)] = true;
        if seen == [true, true] {
            return;
        }
    }
    panic!("40 installs were all on one side of a 50 % sample: {seen:?}");
}

/// Over real HTTP: the control in a collector's answer stops the client; an answer too long to
/// be a collector's (or not its JSON) teaches nothing, so a remembered stop stays.
#[test]
fn the_control_is_read_from_a_real_answer_and_a_strange_answer_lifts_nothing() {
    use crate::sink::{Behaviour, Sink};
    let home = Home::new("control-http");
    let stop = Sink::start(Behaviour::Answer(
        r#"{"ok":true,"accepted":1,"duplicates":0,"rejected":[],"control":{"collect":false}}"#,
    ));
    let c = Client::new(
        home.config("demo", &stop.url, &[])
            .version("1.0.0")
            .batching(1, Duration::from_millis(20)),
    );
    c.track("first", []);
    wait(&|| !c.recording());
    assert!(!c.recording());
    assert_eq!(stop.messages().len(), 1);
    drop(c);

    // A year later (the stop is due to be asked again), a collector answers with something
    // that is not its answer: the stop is not lifted by it.
    let app_state = home.state().join("demo");
    let mut remembered = RemoteControl::load(&app_state).unwrap();
    remembered.received_at = 1_000;
    std::fs::write(
        app_state.join("control.json"),
        serde_json::to_vec(&remembered).unwrap(),
    )
    .unwrap();
    let huge: &'static str =
        Box::leak(format!(r#"{{"ok":true,"pad":"{}"}}"#, "x".repeat(100_000)).into_boxed_str());
    for answer in [
        huge,
        r#"{"control":{"collect":true}}"#,
        r#"{"ok":true,"control":{"collect":"no"}}"#,
        r#"{"ok":true,"control":{"sample":-1e308}}"#,
    ] {
        let strange = Sink::start(Behaviour::Answer(answer));
        let c = Client::new(
            home.config("demo", &strange.url, &[])
                .version("1.0.0")
                .batching(1, Duration::from_millis(20)),
        );
        c.track("asks", []);
        assert!(c.flush(Duration::from_secs(5)));
        assert_eq!(strange.messages().len(), 1, "delivered all the same");
        assert_eq!(
            RemoteControl::load(&app_state).map(|r| r.received_at),
            Some(1_000),
            "{}",
            &answer[..answer.len().min(60)]
        );
    }
}
