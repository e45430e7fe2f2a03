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
