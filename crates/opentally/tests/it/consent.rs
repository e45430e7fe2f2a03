//! Every consent source, alone, turns telemetry off: not one byte reaches the collector and no
//! state file is written. And any refusal beats any consent.

use std::sync::atomic::Ordering;
use std::time::Duration;

use opentally::{Client, Mode, Source};

use crate::sink::{Behaviour, Sink};
use crate::{Home, write};

/// How one case sets its refusal up: extra environment, files to write, and config changes.
struct Case {
    name: &'static str,
    env: Vec<(&'static str, &'static str)>,
    files: Vec<(&'static str, &'static str)>,
    config: fn(opentally::Config) -> opentally::Config,
    after_init: fn(&Client),
    decided_by: Source,
}

fn same(c: opentally::Config) -> opentally::Config {
    c
}
fn nothing(_: &Client) {}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "system policy, global",
            env: vec![],
            files: vec![("policy", "telemetry = \"off\"\n")],
            config: same,
            after_init: nothing,
            decided_by: Source::SystemPolicy,
        },
        Case {
            name: "system policy, this app",
            env: vec![],
            files: vec![("policy", "[apps.demo]\ntelemetry = \"off\"\n")],
            config: same,
            after_init: nothing,
            decided_by: Source::SystemPolicy,
        },
        Case {
            name: "code, builder",
            env: vec![],
            files: vec![],
            config: |c| c.enabled(false),
            after_init: nothing,
            decided_by: Source::Code,
        },
        Case {
            name: "code, disable() after init",
            env: vec![],
            files: vec![],
            config: same,
            after_init: |c| c.set_enabled(false),
            decided_by: Source::Code,
        },
        Case {
            name: "DO_NOT_TRACK=1",
            env: vec![("DO_NOT_TRACK", "1")],
            files: vec![],
            config: same,
            after_init: nothing,
            decided_by: Source::DoNotTrack,
        },
        Case {
            name: "OPENTALLY_TELEMETRY=off",
            env: vec![("OPENTALLY_TELEMETRY", "off")],
            files: vec![],
            config: same,
            after_init: nothing,
            decided_by: Source::OpentallyTelemetry,
        },
        Case {
            name: "app variable, presence (NannyML style)",
            env: vec![("DEMO_DISABLE_USAGE_LOGGING", "")],
            files: vec![],
            config: |c| c.disable_env("DEMO_DISABLE_USAGE_LOGGING"),
            after_init: nothing,
            decided_by: Source::AppVariable,
        },
        Case {
            name: "app variable, value (Flower style)",
            env: vec![("DEMO_TELEMETRY_ENABLED", "0")],
            files: vec![],
            config: |c| c.enable_env("DEMO_TELEMETRY_ENABLED"),
            after_init: nothing,
            decided_by: Source::AppVariable,
        },
        Case {
            name: ".env with DO_NOT_TRACK",
            env: vec![],
            files: vec![("dotenv", "# local settings\nDO_NOT_TRACK=1\n")],
            config: same,
            after_init: nothing,
            decided_by: Source::DotEnv,
        },
        Case {
            name: ".env in a parent folder with the app's variable",
            env: vec![],
            files: vec![(
                "parent-dotenv",
                "export DEMO_DISABLE_USAGE_LOGGING=\"yes\"\n",
            )],
            config: |c| c.disable_env("DEMO_DISABLE_USAGE_LOGGING"),
            after_init: nothing,
            decided_by: Source::DotEnv,
        },
        Case {
            name: "user config, global",
            env: vec![],
            files: vec![("config", "telemetry = \"off\"\n")],
            config: same,
            after_init: nothing,
            decided_by: Source::UserConfig,
        },
        Case {
            name: "user config, this app (opentally opt-out --app demo)",
            env: vec![],
            files: vec![("config", "[apps.demo]\ntelemetry = \"off\"\n")],
            config: same,
            after_init: nothing,
            decided_by: Source::UserConfig,
        },
        Case {
            name: "opt_out() after init",
            env: vec![],
            files: vec![],
            config: same,
            after_init: |c| c.set_user_choice(false).unwrap(),
            decided_by: Source::UserConfig,
        },
        Case {
            name: "author's default: opt-in",
            env: vec![],
            files: vec![],
            config: |c| c.opt_in_default(),
            after_init: nothing,
            decided_by: Source::Default,
        },
        Case {
            name: "author's default: off in CI",
            env: vec![("CI", "true")],
            files: vec![],
            config: |c| c.off_in_ci(),
            after_init: nothing,
            decided_by: Source::Default,
        },
    ]
}

fn set_up(home: &Home, case: &Case, sink: &Sink) -> Client {
    for (what, text) in &case.files {
        let path = match *what {
            "policy" => home.policy_file(),
            "config" => home.config_file(),
            "dotenv" => home.work().join(".env"),
            "parent-dotenv" => {
                std::fs::create_dir_all(home.work().join("sub/dir")).unwrap();
                home.work().join(".env")
            }
            other => panic!("unknown file {other}"),
        };
        write(&path, text);
    }
    let mut env = case.env.clone();
    env.push(("OPENTALLY_ENDPOINT", sink.url.as_str()));
    let mut config = (case.config)(home.config("demo", "http://127.0.0.1:9", &env));
    if case.files.iter().any(|(w, _)| *w == "parent-dotenv") {
        let env: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        config = config.environment(env, Some(home.work().join("sub/dir")));
    }
    let client = Client::new(config);
    (case.after_init)(&client);
    client
}

#[test]
fn each_refusal_alone_sends_zero_bytes_and_writes_no_state() {
    let mut failures = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        let home = Home::new(&format!("consent-{i}"));
        let sink = Sink::start(Behaviour::Accept);
        let client = set_up(&home, case, &sink);
        for _ in 0..5 {
            client.track("fit", [("method", "cbpe".into())]);
        }
        client.flush(Duration::from_millis(500));
        let status = client.status();
        let bytes = sink.bytes.load(Ordering::SeqCst);
        let conns = sink.connections.load(Ordering::SeqCst);
        let files = home.state_files();
        if status.decision.mode != Mode::Off
            || status.decision.decided_by != case.decided_by
            || bytes != 0
            || conns != 0
            || !files.is_empty()
        {
            failures.push(format!(
                "{}: mode {} by {} (expected off by {}), {bytes} bytes, {conns} connections, state files {files:?}",
                case.name, status.decision.mode, status.decision.decided_by, case.decided_by
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The control: with no refusal, the same set-up does deliver, so the test above can fail.
#[test]
fn without_a_refusal_events_arrive() {
    let home = Home::new("consent-control");
    let sink = Sink::start(Behaviour::Accept);
    let client = Client::new(home.config(
        "demo",
        "http://127.0.0.1:9",
        &[("OPENTALLY_ENDPOINT", sink.url.as_str())],
    ));
    client.track("fit", [("method", "cbpe".into())]);
    assert!(client.flush(Duration::from_secs(5)));
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["event"], "fit");
    assert_eq!(got[0]["properties"]["method"], "cbpe");
    assert_eq!(client.status().decision.decided_by, Source::Default);
}

/// (environment, files, builder: consent or refusal) → (mode, deciding source).
#[test]
fn any_refusal_beats_any_consent() {
    type Row = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        &'static str,
        &'static str,
        Option<bool>,
        bool,
        Mode,
        Source,
    );
    // name, env, policy text, user config text, code, opt-in default, expected mode, decided by
    let rows: Vec<Row> = vec![
        (
            "code consents, DO_NOT_TRACK refuses",
            vec![("DO_NOT_TRACK", "1")],
            "",
            "",
            Some(true),
            false,
            Mode::Off,
            Source::DoNotTrack,
        ),
        (
            "policy on, user opts out",
            vec![],
            "telemetry = \"on\"",
            "[apps.demo]\ntelemetry = \"off\"",
            None,
            false,
            Mode::Off,
            Source::UserConfig,
        ),
        (
            "user opts in, policy off",
            vec![],
            "telemetry = \"off\"",
            "telemetry = \"on\"",
            None,
            true,
            Mode::Off,
            Source::SystemPolicy,
        ),
        (
            "OPENTALLY_TELEMETRY=on, app variable refuses",
            vec![
                ("OPENTALLY_TELEMETRY", "on"),
                ("DEMO_TELEMETRY_ENABLED", "false"),
            ],
            "",
            "",
            None,
            false,
            Mode::Off,
            Source::AppVariable,
        ),
        (
            "local beats consent",
            vec![("OPENTALLY_TELEMETRY", "local")],
            "",
            "telemetry = \"on\"",
            Some(true),
            false,
            Mode::Local,
            Source::OpentallyTelemetry,
        ),
        (
            "refusal beats local",
            vec![("OPENTALLY_TELEMETRY", "local"), ("DO_NOT_TRACK", "true")],
            "",
            "",
            None,
            false,
            Mode::Off,
            Source::DoNotTrack,
        ),
        (
            "opt-in default, user consents",
            vec![],
            "",
            "telemetry = \"on\"",
            None,
            true,
            Mode::On,
            Source::UserConfig,
        ),
        (
            "opt-in default, app variable consents",
            vec![("DEMO_TELEMETRY_ENABLED", "1")],
            "",
            "",
            None,
            true,
            Mode::On,
            Source::AppVariable,
        ),
        (
            "opt-in default, code consents",
            vec![],
            "",
            "",
            Some(true),
            true,
            Mode::On,
            Source::Code,
        ),
        (
            "opt-out default, nothing said",
            vec![],
            "",
            "",
            None,
            false,
            Mode::On,
            Source::Default,
        ),
        (
            "DO_NOT_TRACK=0 is not a refusal",
            vec![("DO_NOT_TRACK", "0")],
            "",
            "",
            None,
            false,
            Mode::On,
            Source::Default,
        ),
        (
            "an unreadable user config is read as off",
            vec![],
            "",
            "telemetry = [",
            None,
            false,
            Mode::Off,
            Source::UserConfig,
        ),
    ];
    let mut failures = Vec::new();
    for (i, (name, env, policy, user, code, opt_in, mode, by)) in rows.into_iter().enumerate() {
        let home = Home::new(&format!("conflict-{i}"));
        if !policy.is_empty() {
            write(&home.policy_file(), policy);
        }
        if !user.is_empty() {
            write(&home.config_file(), user);
        }
        let mut config = home
            .config("demo", "http://127.0.0.1:9", &env)
            .enable_env("DEMO_TELEMETRY_ENABLED");
        if let Some(on) = code {
            config = config.enabled(on);
        }
        if opt_in {
            config = config.opt_in_default();
        }
        let d = Client::new(config).status().decision;
        if (d.mode, d.decided_by) != (mode, by) {
            failures.push(format!(
                "{name}: got {} by {}, expected {mode} by {by}",
                d.mode, d.decided_by
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn local_mode_writes_a_local_file_and_opens_no_socket() {
    let home = Home::new("local");
    let sink = Sink::start(Behaviour::Accept);
    let client = Client::new(home.config("demo", &sink.url, &[("OPENTALLY_TELEMETRY", "local")]));
    client.track("fit", [("method", "dle".into())]);
    assert!(client.flush(Duration::from_secs(5)));
    assert_eq!(sink.connections.load(Ordering::SeqCst), 0);
    let log = std::fs::read_to_string(home.state().join("demo").join("events.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["properties"]["method"], "dle");
}

#[test]
fn opt_out_writes_the_user_config_that_the_cli_reads() {
    let home = Home::new("optout");
    let client = Client::new(home.config("demo", "http://127.0.0.1:9", &[]));
    assert_eq!(client.mode(), Mode::On);
    client.set_user_choice(false).unwrap();
    assert_eq!(client.mode(), Mode::Off);
    let text = std::fs::read_to_string(home.config_file()).unwrap();
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(table["apps"]["demo"]["telemetry"].as_str(), Some("off"));
    client.set_user_choice(true).unwrap();
    assert_eq!(client.mode(), Mode::On);
}

/// The consent table every OpenTally SDK runs (`tests/consent-cases.json`, shared with the
/// Python and Node suites): each row's mode and deciding source; when off, not one byte sent and
/// no state file; when local, no connection; when on, the events delivered.
#[test]
fn the_shared_consent_table() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/consent-cases.json");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let app = table["app"].as_str().unwrap();
    let cases = table["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        let home = Home::new(&format!("table-{i}"));
        let sink = Sink::start(Behaviour::Accept);
        let cwd = home.work().join("sub/dir");
        std::fs::create_dir_all(&cwd).unwrap();
        for (kind, text) in case["files"].as_object().unwrap() {
            let path = match kind.as_str() {
                "policy" => home.policy_file(),
                "user_config" => home.config_file(),
                "dotenv" => cwd.join(".env"),
                "parent_dotenv" => home.work().join(".env"),
                other => panic!("{name}: unknown file kind {other}"),
            };
            write(&path, text.as_str().unwrap());
        }
        let mut env: std::collections::HashMap<String, String> = case["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        env.insert("OPENTALLY_ENDPOINT".into(), sink.url.clone());
        let mut config = opentally::Config::new(app, "otw_test", "http://127.0.0.1:9")
            .state_dir(home.state())
            .config_file(home.config_file())
            .policy_file(home.policy_file())
            .environment(env, Some(cwd));
        let c = &case["config"];
        if let Some(on) = c["enabled"].as_bool() {
            config = config.enabled(on);
        }
        match c["default"].as_str() {
            None | Some("opt-out") => {}
            Some("opt-in") => config = config.opt_in_default(),
            Some(other) => panic!("{name}: unknown default {other}"),
        }
        if c["off_in_ci"].as_bool() == Some(true) {
            config = config.off_in_ci();
        }
        for v in c["disable_env"].as_array().into_iter().flatten() {
            config = config.disable_env(v.as_str().unwrap());
        }
        for v in c["enable_env"].as_array().into_iter().flatten() {
            config = config.enable_env(v.as_str().unwrap());
        }
        let client = Client::new(config);
        match case["after_init"].as_str() {
            None => {}
            Some("disable") => client.set_enabled(false),
            Some("enable") => client.set_enabled(true),
            Some("opt_out") => client.set_user_choice(false).unwrap(),
            Some("opt_in") => client.set_user_choice(true).unwrap(),
            Some(other) => panic!("{name}: unknown after_init {other}"),
        }
        for _ in 0..5 {
            client.track("fit", [("method", "cbpe".into())]);
        }
        client.flush(Duration::from_secs(5));
        let decision = client.status().decision;
        let mode = serde_json::to_value(decision.mode).unwrap();
        let by = serde_json::to_value(decision.decided_by).unwrap();
        let expect = &case["expect"];
        if mode != expect["mode"] || by != expect["decided_by"] {
            failures.push(format!(
                "{name}: {mode} by {by}, expected {} by {}",
                expect["mode"], expect["decided_by"]
            ));
            continue;
        }
        let bytes = sink.bytes.load(Ordering::SeqCst);
        let conns = sink.connections.load(Ordering::SeqCst);
        match decision.mode {
            Mode::Off => {
                let files = home.state_files();
                if bytes != 0 || conns != 0 || !files.is_empty() {
                    failures.push(format!(
                        "{name}: off, yet {bytes} bytes, {conns} connections, state files {files:?}"
                    ));
                }
            }
            Mode::Local => {
                if conns != 0 {
                    failures.push(format!("{name}: local, yet {conns} connections"));
                }
            }
            Mode::On => {
                let got = sink.wait_for(5, Duration::from_secs(5)).len();
                if got != 5 {
                    failures.push(format!("{name}: on, yet {got} of 5 events arrived"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
