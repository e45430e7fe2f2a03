//! Tests of the answers from rollups and of their sketch counts.

use std::sync::Arc;

use super::*;
use crate::insight::sketches::union_count;
use crate::insight::types::date_text;
use crate::insight::types::period;
use crate::rollup;
use crate::rollup::Blocks;
use crate::rollup::RollupRow;
use crate::rollup::RollupSet;
use datasketches::theta::{CompactThetaSketch, ThetaSketchBuilder};
use serde_json::{Value, json};

/// A rollup row of `fit` on `day` whose installs are `ids`.
fn row(day: i32, ids: std::ops::Range<u32>) -> RollupRow {
    let mut s = ThetaSketchBuilder::default()
        .lg_k(rollup::THETA_LG_K)
        .build()
        .unwrap();
    for id in ids.clone() {
        s.update(format!("install-{id}"));
    }
    RollupRow {
        day,
        dims: std::array::from_fn(|i| (i == 0).then(|| Arc::from("fit"))),
        events: u64::from(ids.end - ids.start),
        installs: s.compact(true),
        durations: rollup::durations(),
        error_sessions: Vec::new(),
    }
}

#[test]
fn set_operations_past_the_sketches_exact_size_are_scaled_estimates() {
    // 2026-11-02 and 2026-11-09 are Mondays: 60,000 installs in the first week, then
    // 60,000 of which 20,000 came back — more than a row sketch holds exactly.
    let (d1, d2) = (20_759, 20_766);
    assert_eq!(date_text(d1.into()), "2026-11-02");
    let parts = vec![Arc::new(RollupSet::new(
        vec![row(d1, 0..60_000), row(d2, 40_000..100_000)],
        true,
    ))];
    let now = opentally_protocol::Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let ask = |kind: &str, q: &[(&str, &str)]| {
        let params: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let a = InsightQuery::from_params(kind, &params, now)
            .unwrap()
            .from_rollups(&parts, &Blocks::default())
            .unwrap();
        assert!(
            a.estimated,
            "{kind}: past its exact size a sketch estimates"
        );
        a.tables
    };
    let near = |got: &Value, want: f64| {
        let got = got.as_f64().unwrap();
        assert!(
            (got - want).abs() <= 0.05 * want,
            "{got} is not within 5 % of {want}"
        );
    };
    let t = ask("new-returning", &[("interval", "week")]);
    let rows = &t["new_returning"].rows;
    assert_eq!(rows.len(), 2);
    near(&rows[0][1], 60_000.0);
    assert_eq!(rows[0][2], json!(0));
    near(&rows[1][1], 40_000.0);
    near(&rows[1][2], 20_000.0);
    let t = ask("retention", &[]);
    let rows = &t["retention"].rows;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        (&rows[0][0], &rows[0][1]),
        (&json!("2026-11-02"), &json!(0))
    );
    near(&rows[0][2], 60_000.0);
    near(&rows[1][2], 20_000.0);
    near(&rows[1][3], 33.3);
    near(&rows[2][2], 40_000.0);
}

/// Counting from the smallest hashes gives what a union gives: exact below a count's size,
/// the same estimate past it, on days with gaps.
#[test]
fn union_counts_are_those_of_the_union() {
    let days = [0, 1, 2, 5, 6, 7, 8, 9, 20, 21, 22, 40, 41, 70];
    let daily: Vec<(i32, CompactThetaSketch)> = days
        .iter()
        .map(|&d| {
            let u32_day = u32::try_from(d).unwrap();
            let from = u32_day * 700;
            let r = row(d, from..from + 1_500 + 100 * u32_day);
            (d, rollup::union([&r.installs]))
        })
        .collect();
    let (mut exact, mut estimates) = (0, 0);
    for n in [1, 7, 30] {
        for (day, _) in &daily {
            let window: Vec<&CompactThetaSketch> = daily
                .iter()
                .filter(|(d, _)| *d > day - n && d <= day)
                .map(|(_, s)| s)
                .collect();
            let union = rollup::union(window.iter().copied());
            let want = (rollup::count(&union), union.is_estimation_mode());
            assert_eq!(union_count(&window), Some(want), "{n} days up to day {day}");
            if want.1 { estimates += 1 } else { exact += 1 }
        }
    }
    assert!(
        exact > 0 && estimates > 0,
        "{exact} exact, {estimates} estimated"
    );
    assert_eq!(union_count(&[]), Some((0, false)));
}

#[test]
fn periods_start_on_the_right_day() {
    // 2026-11-25 is a Wednesday, day 20_782 since the epoch.
    assert_eq!(date_text(20_782), "2026-11-25");
    assert_eq!(period(20_782, Interval::Week), "2026-11-23");
    assert_eq!(period(20_782, Interval::Month), "2026-11-01");
    assert_eq!(date_text(0), "1970-01-01");
    assert_eq!(period(0, Interval::Week), "1969-12-29");
    assert_eq!(date_text(11_016), "2000-02-29");
    assert_eq!(date_text(-1), "1969-12-31");
}
