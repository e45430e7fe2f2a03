//! The `opentally` binary as a user runs it: exit codes, stdout and stderr.

use std::process::{Command, Output};

/// Runs `opentally` with `args` from this crate's folder; returns (exit code, stdout, stderr).
fn opentally(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_opentally"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs");
    (
        status.code().expect("exited, not killed"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn version_names_the_package_version() {
    let (code, out, _) = opentally(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("opentally {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_the_commands() {
    let (code, out, _) = opentally(&["--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
}

#[test]
fn catalog_check_accepts_the_example_catalog() {
    let (code, out, err) = opentally(&["catalog", "check", "../../examples/catalog.toml"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "../../examples/catalog.toml: ok (5 events, 10 properties, strict mode)\n"
    );
}

#[test]
fn catalog_check_reports_every_error_with_its_line() {
    let (code, out, err) = opentally(&["catalog", "check", "tests/data/bad-catalog.toml"]);
    assert_eq!(code, 1);
    assert_eq!(out, "", "errors go to stderr, never stdout");
    insta::assert_snapshot!(err);
}

#[test]
fn catalog_check_reports_a_syntax_error_with_its_line() {
    let (code, _, err) = opentally(&["catalog", "check", "tests/data/broken-syntax.toml"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "tests/data/broken-syntax.toml:2:12: error: unclosed table, expected `]`\n1 error in tests/data/broken-syntax.toml\n"
    );
}

#[test]
fn catalog_check_of_a_missing_file_is_an_error_not_a_verdict() {
    let (code, out, err) = opentally(&["catalog", "check", "tests/data/no-such-file.toml"]);
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert!(
        err.starts_with("error: cannot read catalog tests/data/no-such-file.toml: "),
        "{err}"
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let (code, _, err) = opentally(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
}

/// A data dir for one test, removed at the end.
struct Data(std::path::PathBuf);

impl Data {
    fn new(name: &str) -> Data {
        let d = std::env::temp_dir().join(format!("opentally-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Data(d)
    }
    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn project_commands_create_list_rotate_and_set_catalogs() {
    let d = Data::new("projects");
    let (code, out, err) =
        opentally(&["project", "create", "nannyml", "--json", "--data", d.arg()]);
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["project"], "nannyml");
    let key = created["write_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("otw_") && key.len() == 44, "{key}");
    assert!(created["admin_token"].as_str().unwrap().starts_with("ota_"));

    let (code, out, _) = opentally(&[
        "project",
        "rotate-key",
        "nannyml",
        "--json",
        "--data",
        d.arg(),
    ]);
    assert_eq!(code, 0);
    let rotated: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(rotated["write_key"].as_str().unwrap(), key);

    let (code, out, err) = opentally(&[
        "project",
        "set-catalog",
        "nannyml",
        "../../examples/catalog.toml",
        "--data",
        d.arg(),
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "catalog of nannyml set from ../../examples/catalog.toml\n"
    );

    let (code, out, _) = opentally(&["project", "list", "--json", "--data", d.arg()]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["name"], "nannyml");
    assert_eq!(list[0]["events_in_catalog"], 5);
    assert!(!out.contains(&key), "keys are never listed");

    let (code, _, err) = opentally(&[
        "project",
        "set-catalog",
        "nannyml",
        "tests/data/bad-catalog.toml",
        "--data",
        d.arg(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("8:8: unknown property type \"integr\""),
        "{err}"
    );

    let (code, _, err) = opentally(&["project", "create", "nannyml", "--data", d.arg()]);
    assert_eq!(
        (code, err.as_str()),
        (2, "error: project \"nannyml\" already exists\n")
    );
    let (code, _, err) = opentally(&["project", "create", "Bad Name", "--data", d.arg()]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: project name \"Bad Name\" is not usable"),
        "{err}"
    );
    let (code, _, err) = opentally(&["project", "rotate-key", "nobody", "--data", d.arg()]);
    assert_eq!(
        (code, err.as_str()),
        (2, "error: no project named \"nobody\"\n")
    );
}

#[test]
fn dump_of_an_empty_data_dir_prints_nothing() {
    let d = Data::new("dump");
    let (code, out, err) = opentally(&["dump", "--data", d.arg()]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
}

/// Runs `opentally` with a private HOME and XDG folders and the given environment.
fn opentally_as_user(home: &Data, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_opentally"))
        .args(args)
        .env_clear()
        .env("HOME", &home.0)
        .env("XDG_CONFIG_HOME", home.0.join("config"))
        .env("XDG_STATE_HOME", home.0.join("state"))
        .envs(env.iter().copied())
        .current_dir(&home.0)
        .output()
        .unwrap();
    (
        status.code().unwrap(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn opt_out_then_status_shows_the_refusal_and_who_made_it() {
    let home = Data::new("user");
    std::fs::create_dir_all(&home.0).unwrap();
    let (code, out, err) = opentally_as_user(&home, &["status", "--app", "nannyml", "--json"], &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            s["decision"]["mode"].as_str(),
            s["decision"]["decided_by"].as_str()
        ),
        (Some("on"), Some("default"))
    );

    let (code, out, _) = opentally_as_user(&home, &["opt-out", "--app", "nannyml"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("telemetry refused for nannyml (saved in "),
        "{out}"
    );
    let (_, out, _) = opentally_as_user(&home, &["status", "--app", "nannyml"], &[]);
    assert!(
        out.starts_with("telemetry for nannyml: off (decided by user config)\n"),
        "{out}"
    );
    assert!(out.contains(" * user config"), "{out}");
    // Other apps are untouched; a global opt-out reaches them.
    let (_, out, _) = opentally_as_user(&home, &["status", "--app", "zenml"], &[]);
    assert!(out.starts_with("telemetry for zenml: on"), "{out}");
    opentally_as_user(&home, &["opt-out"], &[]);
    let (_, out, _) = opentally_as_user(&home, &["status", "--app", "zenml"], &[]);
    assert!(
        out.starts_with("telemetry for zenml: off (decided by user config)"),
        "{out}"
    );
    // Opting in does not override DO_NOT_TRACK, and says so.
    let (_, out, _) = opentally_as_user(
        &home,
        &["opt-in", "--app", "zenml"],
        &[("DO_NOT_TRACK", "1")],
    );
    assert!(
        out.contains("telemetry stays off: DO_NOT_TRACK refuses it"),
        "{out}"
    );
}

#[test]
fn status_shows_the_id_events_carry_and_writes_nothing_when_off() {
    let home = Data::new("user-id");
    std::fs::create_dir_all(&home.0).unwrap();
    let id = |env: &[(&str, &str)]| {
        let (_, out, _) = opentally_as_user(&home, &["status", "--app", "nannyml", "--json"], env);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["install_id"].clone()
    };
    let off = id(&[("DO_NOT_TRACK", "1")]);
    assert!(
        !home.0.join("state").exists(),
        "looking while off writes nothing"
    );
    assert!(off.is_null() || off.as_str().unwrap().len() == 36, "{off}");
    let first = id(&[]);
    assert_eq!(first.as_str().unwrap().len(), 36);
    assert_eq!(
        first,
        id(&[]),
        "the same id every time: the one events will carry"
    );
    assert_eq!(
        first,
        id(&[("DO_NOT_TRACK", "1")]),
        "once kept, it is shown while off too"
    );
}
