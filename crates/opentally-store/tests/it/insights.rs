//! Each insight on the hand-built history, with answers worked out by hand from `data::ROWS`.

use opentally_protocol::Timestamp;
use opentally_store::{InsightQuery, Limits, Options, Store};
use serde_json::{Value, json};

use crate::data::{self, ROWS, params};

/// The same history in every state the store can hold it in.
fn states() -> Vec<(&'static str, Store)> {
    let mut out = Vec::new();

    let dir = data::history("tail");
    out.push(("tail", Store::open(&dir, Options::default()).unwrap()));

    out.push((
        "sealed",
        data::sealed_history("sealed", Options::default()).1,
    ));

    // Half sealed, half in the tail.
    let dir = data::temp_dir("mixed");
    let rows = data::events();
    data::write_log(&dir, "demo", &rows[..6], 4);
    let s = Store::open(&dir, Options::default()).unwrap();
    s.prepare_loading().unwrap();
    s.seal().unwrap();
    data::write_log(&dir, "demo", &rows[6..], 4);
    s.catch_up(None).unwrap();
    out.push(("mixed", s));

    // Sealed in three rounds, so days (and sessions) span several parts: every third event in
    // each round (so C's events arrive out of order), left so and compacted; and a third of the
    // history in time order in each round, left so.
    let sealed_in_rounds = |name: &str, in_order: bool| {
        let dir = data::temp_dir(name);
        let opts = Options {
            compact_parts: 2,
            ..Options::default()
        };
        let s = Store::open(&dir, opts).unwrap();
        s.prepare_loading().unwrap();
        for round in 0..3 {
            let some: Vec<_> = rows
                .iter()
                .filter(|(i, _)| {
                    if in_order {
                        i * 3 / rows.len() == round
                    } else {
                        i % 3 == round
                    }
                })
                .cloned()
                .collect();
            data::write_log(&dir, "demo", &some, 2);
            s.catch_up(None).unwrap();
            s.seal().unwrap();
        }
        s
    };
    out.push(("rounds", sealed_in_rounds("rounds", false)));
    out.push(("rounds in order", sealed_in_rounds("rounds-in-order", true)));
    let s = sealed_in_rounds("compacted", false);
    let before = s.stats().parts;
    let merged = s.compact().unwrap();
    assert!(
        merged >= 2,
        "days of several parts were merged ({merged} of {before})"
    );
    assert!(s.stats().parts < before);
    s.delete_retired().unwrap();
    out.push(("compacted", s));
    out
}

/// `(kind, parameters, table, columns, rows)`, every row worked out by hand.
fn cases() -> Vec<(&'static str, &'static str, &'static str, Value, Value)> {
    vec![
        (
            "trend",
            "",
            "trend",
            json!(["period", "events", "installs"]),
            json!([
                ["2026-11-02", 5, 2],
                ["2026-11-03", 2, 1],
                ["2026-11-09", 1, 1],
                ["2026-11-10", 2, 1],
                ["2026-11-16", 2, 2]
            ]),
        ),
        (
            "trend",
            "interval=week&by=app.version",
            "trend",
            json!(["period", "app_version", "events", "installs"]),
            json!([
                ["2026-11-02", "1.0", 5, 2],
                ["2026-11-02", "1.1", 2, 1],
                ["2026-11-09", "1.1", 3, 2],
                ["2026-11-16", "1.1", 2, 2]
            ]),
        ),
        (
            "trend",
            "event=fit",
            "trend",
            json!(["period", "events", "installs"]),
            json!([
                ["2026-11-02", 3, 2],
                ["2026-11-03", 1, 1],
                ["2026-11-09", 1, 1],
                ["2026-11-10", 1, 1]
            ]),
        ),
        (
            "trend",
            "event=fit&interval=month&by=method",
            "trend",
            json!(["period", "method", "events", "installs"]),
            json!([["2026-11-01", "cbpe", 3, 3], ["2026-11-01", "dle", 3, 3]]),
        ),
        (
            "trend",
            "where=app.version=1.0",
            "trend",
            json!(["period", "events", "installs"]),
            json!([["2026-11-02", 5, 2]]),
        ),
        (
            "trend",
            "where=context.hardware.arch=arm64&interval=month",
            "trend",
            json!(["period", "events", "installs"]),
            json!([["2026-11-01", 2, 1]]),
        ),
        (
            "trend",
            "since=2026-11-09&until=2026-11-16",
            "trend",
            json!(["period", "events", "installs"]),
            json!([["2026-11-09", 1, 1], ["2026-11-10", 2, 1]]),
        ),
        (
            "active",
            "",
            "active",
            json!(["day", "dau", "wau", "mau"]),
            json!([
                ["2026-11-02", 2, 2, 2],
                ["2026-11-03", 1, 3, 3],
                ["2026-11-09", 1, 2, 3],
                ["2026-11-10", 1, 2, 4],
                ["2026-11-16", 2, 3, 4]
            ]),
        ),
        // Days before `since` still count towards WAU and MAU.
        (
            "active",
            "since=2026-11-10",
            "active",
            json!(["day", "dau", "wau", "mau"]),
            json!([["2026-11-10", 1, 2, 4], ["2026-11-16", 2, 3, 4]]),
        ),
        (
            "new-returning",
            "interval=week",
            "new_returning",
            json!(["period", "new", "returning"]),
            json!([
                ["2026-11-02", 3, 0],
                ["2026-11-09", 1, 1],
                ["2026-11-16", 0, 2]
            ]),
        ),
        (
            "new-returning",
            "interval=day",
            "new_returning",
            json!(["period", "new", "returning"]),
            json!([
                ["2026-11-02", 2, 0],
                ["2026-11-03", 1, 0],
                ["2026-11-09", 0, 1],
                ["2026-11-10", 1, 0],
                ["2026-11-16", 0, 2]
            ]),
        ),
        // Only activity from `since` on counts, but an install's first week is its first ever:
        // C, first seen on 11-03, is new in the week of 11-02.
        (
            "new-returning",
            "interval=week&since=2026-11-03",
            "new_returning",
            json!(["period", "new", "returning"]),
            json!([
                ["2026-11-02", 1, 0],
                ["2026-11-09", 1, 1],
                ["2026-11-16", 0, 2]
            ]),
        ),
        // First seen among the events kept: A first used `estimate` on 11-02, B on 11-16.
        (
            "new-returning",
            "interval=day&event=estimate",
            "new_returning",
            json!(["period", "new", "returning"]),
            json!([
                ["2026-11-02", 1, 0],
                ["2026-11-03", 1, 0],
                ["2026-11-16", 1, 1]
            ]),
        ),
        (
            "new-returning",
            "interval=week&where=app.version=1.1",
            "new_returning",
            json!(["period", "new", "returning"]),
            json!([
                ["2026-11-02", 1, 0],
                ["2026-11-09", 2, 0],
                ["2026-11-16", 1, 1]
            ]),
        ),
        (
            "versions",
            "interval=week",
            "versions",
            json!(["period", "app_version", "installs", "share_pct"]),
            json!([
                ["2026-11-02", "1.0", 2, 66.7],
                ["2026-11-02", "1.1", 1, 33.3],
                ["2026-11-09", "1.1", 2, 100.0],
                ["2026-11-16", "1.1", 2, 100.0]
            ]),
        ),
        // Nearest rank: the smallest duration with at least p of the calls at or below it.
        (
            "durations",
            "",
            "durations",
            json!(["event", "calls", "p50_ms", "p95_ms", "p99_ms", "max_ms"]),
            json!([
                ["fit", 6, 100.0, 600.0, 600.0, 600.0],
                ["estimate", 4, 70.0, 800.0, 800.0, 800.0],
                ["plot", 2, 300.0, 700.0, 700.0, 700.0]
            ]),
        ),
        // From 11-09: fit 500 (A) and 600 (D), estimate 800 (A) and 70 (B), plot 700 (D).
        (
            "durations",
            "since=2026-11-09",
            "durations",
            json!(["event", "calls", "p50_ms", "p95_ms", "p99_ms", "max_ms"]),
            json!([
                ["estimate", 2, 70.0, 800.0, 800.0, 800.0],
                ["fit", 2, 500.0, 600.0, 600.0, 600.0],
                ["plot", 1, 700.0, 700.0, 700.0, 700.0]
            ]),
        ),
        (
            "durations",
            "event=fit&by=method",
            "durations",
            json!([
                "event", "method", "calls", "p50_ms", "p95_ms", "p99_ms", "max_ms"
            ]),
            json!([
                ["fit", "cbpe", 3, 100.0, 400.0, 400.0, 400.0],
                ["fit", "dle", 3, 500.0, 600.0, 600.0, 600.0]
            ]),
        ),
        (
            "errors",
            "",
            "error_rate",
            json!(["event", "calls", "errors", "error_rate"]),
            json!([
                ["estimate", 4, 2, 0.5],
                ["fit", 6, 2, 0.3333],
                ["plot", 2, 0, 0.0]
            ]),
        ),
        (
            "errors",
            "",
            "top_errors",
            json!(["event", "error_type", "errors", "installs"]),
            json!([
                ["fit", "ValueError", 2, 1],
                ["estimate", "KeyError", 1, 1],
                ["estimate", "TypeError", 1, 1]
            ]),
        ),
        (
            "errors",
            "by=app.version&event=estimate",
            "error_rate",
            json!(["event", "app_version", "calls", "errors", "error_rate"]),
            json!([
                ["estimate", "1.1", 3, 2, 0.6667],
                ["estimate", "1.0", 1, 0, 0.0]
            ]),
        ),
        (
            "retention",
            "",
            "retention",
            json!(["cohort", "week", "installs", "retained_pct"]),
            json!([
                ["2026-11-02", 0, 3, 100.0],
                ["2026-11-02", 1, 1, 33.3],
                ["2026-11-02", 2, 2, 66.7],
                ["2026-11-09", 0, 1, 100.0]
            ]),
        ),
        // A's cohort is the week of 11-02, so from 11-09 on only D's cohort is left.
        (
            "retention",
            "since=2026-11-09",
            "retention",
            json!(["cohort", "week", "installs", "retained_pct"]),
            json!([["2026-11-09", 0, 1, 100.0]]),
        ),
        // On 1.1 only: C starts in the week of 11-02, A and D in the next, B in the last.
        (
            "retention",
            "where=app.version=1.1",
            "retention",
            json!(["cohort", "week", "installs", "retained_pct"]),
            json!([
                ["2026-11-02", 0, 1, 100.0],
                ["2026-11-09", 0, 2, 100.0],
                ["2026-11-09", 1, 1, 50.0],
                ["2026-11-16", 0, 1, 100.0]
            ]),
        ),
        (
            "funnel",
            "steps=fit,estimate,plot&window=1d",
            "funnel",
            json!(["step", "event", "installs", "pct_of_first"]),
            json!([
                [1, "fit", 4, 100.0],
                [2, "estimate", 2, 50.0],
                [3, "plot", 1, 25.0]
            ]),
        ),
        // With a window of 30 days, B's estimate a fortnight after its fit counts too.
        (
            "funnel",
            "steps=fit,estimate&window=30d",
            "funnel",
            json!(["step", "event", "installs", "pct_of_first"]),
            json!([[1, "fit", 4, 100.0], [2, "estimate", 3, 75.0]]),
        ),
        (
            "paths",
            "event=fit",
            "paths",
            json!(["next_event", "times", "installs"]),
            json!([
                ["(end)", 2, 2],
                ["estimate", 2, 2],
                ["fit", 1, 1],
                ["plot", 1, 1]
            ]),
        ),
        // Installs' first plot, then a fit: A's of 11-09; D never fits after its plot.
        (
            "funnel",
            "steps=plot,fit&window=30d",
            "funnel",
            json!(["step", "event", "installs", "pct_of_first"]),
            json!([[1, "plot", 2, 100.0], [2, "fit", 1, 50.0]]),
        ),
        // From 11-03: A starts at its fit of 11-09 (estimate 11-16), C at 11-03; B's fits are
        // before, D never estimates.
        (
            "funnel",
            "steps=fit,estimate&window=30d&since=2026-11-03",
            "funnel",
            json!(["step", "event", "installs", "pct_of_first"]),
            json!([[1, "fit", 3, 100.0], [2, "estimate", 2, 66.7]]),
        ),
        // On 1.1: C's, A's and D's first fits; only D plots after (a filter the events answer).
        (
            "funnel",
            "steps=fit,plot&window=1d&where=app.version=1.1",
            "funnel",
            json!(["step", "event", "installs", "pct_of_first"]),
            json!([[1, "fit", 3, 100.0], [2, "plot", 1, 33.3]]),
        ),
        // After an estimate: A's first session goes on to plot; A's, B's and C's last ones end.
        (
            "paths",
            "event=estimate",
            "paths",
            json!(["next_event", "times", "installs"]),
            json!([["(end)", 3, 3], ["plot", 1, 1]]),
        ),
        // From 11-03 until 11-10: C's fit then estimate, A's fit of 11-09 alone.
        (
            "paths",
            "event=fit&since=2026-11-03&until=2026-11-10",
            "paths",
            json!(["next_event", "times", "installs"]),
            json!([["(end)", 1, 1], ["estimate", 1, 1]]),
        ),
        // Sessions of 1.0 only: A's first and B's first.
        (
            "paths",
            "event=fit&where=app.version=1.0",
            "paths",
            json!(["next_event", "times", "installs"]),
            json!([["(end)", 1, 1], ["estimate", 1, 1], ["fit", 1, 1]]),
        ),
        (
            "friction",
            "",
            "repeated_errors",
            json!(["event", "error_type", "sessions", "errors"]),
            json!([["fit", "ValueError", 1, 2]]),
        ),
        (
            "friction",
            "",
            "never_succeeded",
            json!(["event", "installs"]),
            json!([["estimate", 2], ["fit", 1]]),
        ),
        (
            "friction",
            "",
            "error_rate_by_version",
            json!(["app_version", "calls", "errors", "error_rate"]),
            json!([["1.0", 5, 2, 0.4], ["1.1", 7, 2, 0.2857]]),
        ),
        // From 11-03 on, no session repeats an error; C and B never got `estimate` to work.
        (
            "friction",
            "since=2026-11-03",
            "repeated_errors",
            json!(["event", "error_type", "sessions", "errors"]),
            json!([]),
        ),
        (
            "friction",
            "since=2026-11-03",
            "never_succeeded",
            json!(["event", "installs"]),
            json!([["estimate", 2]]),
        ),
        (
            "friction",
            "since=2026-11-03",
            "error_rate_by_version",
            json!(["app_version", "calls", "errors", "error_rate"]),
            json!([["1.1", 7, 2, 0.2857]]),
        ),
        (
            "friction",
            "where=app.version=1.0",
            "never_succeeded",
            json!(["event", "installs"]),
            json!([["fit", 1]]),
        ),
    ]
}

#[test]
fn every_insight_matches_the_hand_worked_answer_in_every_store_state() {
    let rt = data::runtime();
    let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let states = states();
    let mut checked = 0;
    for (kind, q, table, columns, rows) in cases() {
        let query = InsightQuery::from_params(kind, &params(q), now)
            .unwrap_or_else(|e| panic!("{kind}?{q}: {e}"));
        for (state, store) in &states {
            // As asked (from rollups where they answer), and from the events.
            for scan in [false, true] {
                let snapshot = store.snapshot("demo");
                let limits = Limits::default();
                let result = rt
                    .block_on(async {
                        if scan {
                            query.scan(&snapshot, &limits).await
                        } else {
                            query.run(&snapshot, &limits).await
                        }
                    })
                    .unwrap_or_else(|e| {
                        panic!("{kind}?{q} on {state}: {e}\n{:#?}", query.to_sql())
                    });
                let how = format!("{kind}?{q} on {state} from {}", result.source);
                // Funnels and paths walk the parts' sequences unless a filter needs the events,
                // or a day's parts hold an install's events out of order (C's, in "rounds").
                if !scan && (kind == "funnel" || kind == "paths") {
                    let walks = !q.contains("where=") && *state != "rounds";
                    let expected = if walks { "sequences" } else { "events" };
                    assert_eq!(result.source, expected, "{how}");
                }
                let t = &result.tables[table];
                assert_eq!(json!(t.columns), columns, "{how}: columns");
                assert_eq!(json!(t.rows), rows, "{how}: {table}");
                assert!(!t.truncated);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, cases().len() * 6 * 2);
}

#[test]
fn insights_read_rollups_or_sequences_where_they_answer_and_events_otherwise() {
    let rt = data::runtime();
    let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let dir = data::history("sources");
    let store = Store::open(&dir, Options::default()).unwrap();
    for (kind, q, source) in [
        ("trend", "by=app.version&where=os.name=linux", "rollups"),
        ("trend", "by=method", "events"),
        ("trend", "where=context.hardware.arch=arm64", "events"),
        ("active", "", "rollups"),
        ("versions", "", "rollups"),
        ("durations", "by=outcome", "rollups"),
        ("durations", "by=method", "events"),
        ("errors", "by=runtime.name", "rollups"),
        ("new-returning", "where=app.version=1.1", "rollups"),
        ("new-returning", "where=method=cbpe", "events"),
        ("retention", "", "rollups"),
        ("retention", "where=context.hardware.arch=arm64", "events"),
        ("funnel", "steps=fit,plot", "sequences"),
        ("funnel", "steps=fit,plot&since=2026-11-03", "sequences"),
        ("funnel", "steps=fit,plot&where=os.name=linux", "events"),
        ("paths", "event=fit", "sequences"),
        ("paths", "event=fit&where=method=dle", "events"),
        ("friction", "event=fit", "rollups"),
        ("friction", "where=method=dle", "events"),
    ] {
        let query = InsightQuery::from_params(kind, &params(q), now).unwrap();
        let r = rt
            .block_on(query.run(&store.snapshot("demo"), &Limits::default()))
            .unwrap();
        assert_eq!(r.source, source, "{kind}?{q}");
        assert_eq!(
            r.distinct, "exact",
            "{kind}?{q}: four installs are counted exactly"
        );
    }
}

/// Friction merges the "ok" installs of a block of past days once and keeps them: the same
/// answers as row by row, kept while the block's parts stay the same, made again when a seal or
/// an erasure changes them, and not made without room in the cache.
#[test]
fn friction_merges_a_block_of_past_days_once() {
    let rt = data::runtime();
    let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let query = InsightQuery::from_params("friction", &[], now).unwrap();
    let never = |store: &Store| {
        let r = rt
            .block_on(query.run(&store.snapshot("demo"), &Limits::default()))
            .unwrap();
        assert_eq!(r.source, "rollups");
        json!(r.tables["never_succeeded"].rows)
    };
    let open = |name: &str, span_days: u32, cache: usize| {
        let opts = Options {
            sequence_span_days: span_days,
            sequence_cache_bytes: cache,
            ..Options::default()
        };
        data::sealed_history(name, opts)
    };
    let (on_dir, on) = open("friction-blocks", 32, 1 << 20);
    let (off_dir, off) = open("friction-rows", 0, 1 << 20);
    let (full_dir, full) = open("friction-no-room", 32, 0);
    let all = [(&on_dir, &on), (&off_dir, &off), (&full_dir, &full)];
    // 2026-11-02 to 11-10 (four parts) are in the 32-day block of 10-10 to 11-10; 11-16 is
    // alone in its block. B's fits all failed; B's and C's estimates too.
    for (_, store) in all {
        assert_eq!(never(store), json!([["estimate", 2], ["fit", 1]]));
    }
    let blocks = || all.map(|(_, s)| s.stats().succeeded_blocks);
    assert_eq!(blocks(), [1, 0, 0]);

    // B's fit works on 11-04, a late event: read from the tail, then from a new part of the
    // block, which makes the block again.
    let row = (
        "2026-11-04T08:00:00Z",
        "B",
        "s9",
        "fit",
        "1.0",
        "ok",
        None,
        10.0,
        None,
    );
    let late = vec![(50, data::event(50, &row))];
    for (dir, store) in all {
        data::write_log(dir, "demo", &late, 1);
        store.catch_up(None).unwrap();
        assert_eq!(never(store), json!([["estimate", 2]]));
        store.seal().unwrap();
        assert_eq!(store.stats().parts, 6);
        assert_eq!(never(store), json!([["estimate", 2]]));
    }
    assert_eq!(blocks(), [1, 0, 0]);

    // Erasing B takes the block out of memory at once; C's estimate alone is left.
    for (_, store) in all {
        assert_eq!(store.erase("demo", "B").unwrap(), 4);
    }
    assert_eq!(blocks(), [0, 0, 0]);
    for (_, store) in all {
        assert_eq!(never(store), json!([["estimate", 1]]));
    }
    assert_eq!(blocks(), [1, 0, 0]);
}

#[test]
fn other_projects_are_invisible() {
    let rt = data::runtime();
    let dir = data::history("isolation");
    let rows: Vec<_> = ROWS
        .iter()
        .enumerate()
        .map(|(i, r)| (100 + i, data::event(i, r)))
        .collect();
    data::write_log(&dir, "other", &rows[..3], 3);
    let store = Store::open(&dir, Options::default()).unwrap();
    let count = |p: &str| {
        let t = rt
            .block_on(opentally_store::query::run_sql(
                &store.snapshot(p),
                "SELECT count(*) AS n, count(DISTINCT project) AS projects FROM events",
                &Limits::default(),
            ))
            .unwrap();
        t.rows[0].clone()
    };
    assert_eq!(count("demo"), vec![json!(12), json!(1)]);
    assert_eq!(count("other"), vec![json!(3), json!(1)]);
    assert_eq!(count("nobody"), vec![json!(0), json!(0)]);
    assert_eq!(
        store.projects(),
        vec!["demo".to_owned(), "other".to_owned()]
    );
}

#[test]
fn bad_parameters_say_what_is_wrong() {
    let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    for (kind, q, expected) in [
        ("nope", "", "unknown insight `nope`"),
        ("trend", "interval=year", "interval `year`"),
        ("trend", "by=a'b", "`a'b` is neither a field"),
        ("trend", "colour=red", "unknown parameter `colour`"),
        ("trend", "since=yesterday", "time `yesterday`"),
        ("trend", "where=app.version", "where `app.version`"),
        ("funnel", "steps=fit", "at least two non-empty steps"),
        ("funnel", "", "a funnel needs `steps`"),
        ("funnel", "steps=a,b&window=3x", "window `3x`"),
        ("paths", "", "paths need an `event`"),
        ("active", "by=os.name", "`by` does not apply to active"),
        ("errors", "top=0", "top `0`"),
    ] {
        let err = InsightQuery::from_params(kind, &params(q), now).unwrap_err();
        assert_eq!(err.reason(), "bad_query");
        assert!(err.to_string().contains(expected), "{kind}?{q}: {err}");
    }
}
