//! Catalog files: every mistake is reported with its line and column.

use opentally_protocol::Catalog;
use opentally_protocol::catalog::{Mode, PropertyType};

use crate::example_catalog;

#[test]
fn the_example_catalog_reads_as_written() {
    let c = example_catalog();
    assert_eq!(c.project.as_deref(), Some("demo-ml"));
    assert_eq!(c.mode, Mode::Strict);
    assert_eq!(c.events.len(), 5);
    assert_eq!(c.property_count(), 10);
    let chunk = &c.events["fit"].properties["chunk_size"];
    assert_eq!(
        chunk.kind,
        PropertyType::Integer {
            min: Some(1),
            max: Some(10_000_000)
        }
    );
    assert!(c.events["fit"].properties["method"].required);
    let opt_out = c.opt_out.as_ref().unwrap();
    assert_eq!(
        (opt_out.app.as_str(), opt_out.env.as_slice()),
        ("demo-ml", &["DEMO_ML_NO_TELEMETRY".to_owned()][..])
    );
    assert_eq!(
        c.events["cli_run"].properties["config_score"].kind,
        PropertyType::Number {
            min: Some(0.0),
            max: Some(1.0)
        }
    );
}

#[test]
fn an_empty_catalog_accepts_track_and_keeps_the_sdk_context() {
    let c = Catalog::from_toml_str("").unwrap();
    assert_eq!(c.mode, Mode::Strict);
    assert_eq!(c.accept, [opentally_protocol::MessageType::Track]);
    assert!(c.context_keep.iter().any(|k| k == "environment"));
    assert!(c.events.is_empty());
}

/// Each bad catalog with the exact report it must get, one `line:col: message` per error.
#[test]
fn bad_catalogs_are_reported_with_line_numbers() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "syntax error",
            "version = 1\n[events.fit\n",
            &["2:12: unclosed table, expected `]`"],
        ),
        (
            "unknown top-level key",
            "version = 1\nmodel = \"strict\"\n",
            &[
                "2:1: unknown field `model`, expected one of `version`, `project`, `description`, `mode`, `accept`, `context`, `opt_out`, `events`",
            ],
        ),
        (
            "opt-out names that an SDK or a shell could not use",
            "[opt_out]\napp = \"../x\"\nenv = [\"OK_1\", \"1BAD\", \"A-B\"]\n",
            &[
                "2:7: app name \"../x\" is not usable",
                "3:16: \"1BAD\" is not an environment variable name",
                "3:24: \"A-B\" is not an environment variable name",
            ],
        ),
        (
            "unknown key in a property",
            "[events.fit.properties.m]\ntype = \"string\"\nmax_len = 3\n",
            &[
                "3:1: unknown field `max_len`, expected one of `type`, `description`, `required`, `values`, `min`, `max`, `max_length`",
            ],
        ),
        (
            "property without a type",
            "[events.fit.properties.m]\ndescription = \"x\"\n",
            &["1:1: missing field `type`"],
        ),
        (
            "wrong value type",
            "[events.fit.properties.m]\ntype = \"boolean\"\nrequired = \"yes\"\n",
            &["3:12: invalid type: string \"yes\", expected a boolean"],
        ),
        (
            "several semantic errors at once",
            concat!(
                "version = 2\n",
                "mode = \"loose\"\n",
                "accept = [\"track\", \"trace\"]\n",
                "[context]\n",
                "keep = [\"os\", \"ip\", \"app..name\"]\n",
                "[events.fit.properties.method]\n",
                "type = \"strng\"\n",
                "[events.fit.properties.outcome]\n",
                "type = \"string\"\n",
                "[events.fit.properties.size]\n",
                "type = \"integer\"\n",
                "min = 10\n",
                "max = 1.5\n",
                "[events.fit.properties.kind]\n",
                "type = \"enum\"\n",
                "values = [\"a\", \"b\", \"a\"]\n",
                "max_length = 3\n",
                "[events.fit.properties.ratio]\n",
                "type = \"number\"\n",
                "min = 1.0\n",
                "max = 0.5\n",
                "[events.fit.properties.note]\n",
                "type = \"string\"\n",
                "max_length = 0\n",
                "[events.fit.properties.color]\n",
                "type = \"enum\"\n",
                "[events.fit.properties.flag]\n",
                "type = \"boolean\"\n",
                "min = 1\n",
                "[events.\"\"]\n",
            ),
            &[
                "1:11: unsupported catalog version 2",
                "2:8: unknown mode \"loose\"",
                "3:20: unknown message type \"trace\" in `accept`",
                "5:15: context.ip can never be kept",
                "5:21: context path \"app..name\" is not a dotted path",
                "7:8: unknown property type \"strng\"",
                "8:24: property `outcome` is reserved",
                "13:7: an integer bound must be an integer, not float",
                "16:21: enum value \"a\" is listed twice",
                "17:14: `max_length` does not apply to type enum",
                "21:7: max 0.5 is below min 1",
                "24:14: max_length 0 must be positive",
                "26:8: an enum needs `values`",
                "29:7: `min` does not apply to type boolean",
                "30:9: event name \"\" is not usable",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, src, expected) in cases {
        let got: Vec<String> = match Catalog::from_toml_str(src) {
            Ok(_) => vec!["(accepted)".to_owned()],
            Err(errors) => errors
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                .collect(),
        };
        if got != *expected {
            failures.push(format!(
                "{name}:\n  expected {expected:#?}\n  got      {got:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hints_say_how_to_fix() {
    let errors =
        Catalog::from_toml_str("[events.fit.properties.m]\ntype = \"strng\"\n").unwrap_err();
    assert_eq!(
        errors[0].hint.as_deref(),
        Some("one of string, integer, number, boolean, enum")
    );
    assert_eq!(
        errors[0].to_string(),
        "2:8: unknown property type \"strng\"\n  hint: one of string, integer, number, boolean, enum"
    );
}

#[test]
fn a_catalog_serialises_for_the_transparency_page() {
    let json = serde_json::to_value(example_catalog()).unwrap();
    assert_eq!(
        json["events"]["fit"]["properties"]["method"]["type"],
        "enum"
    );
    assert_eq!(
        json["events"]["fit"]["properties"]["chunk_size"]["max"],
        10_000_000
    );
    assert_eq!(json["mode"], "strict");
}
