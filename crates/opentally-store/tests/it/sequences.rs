//! Funnels and paths walked over the parts' per-install sequences give the same answer as the
//! SQL over the events, on random histories loaded in random rounds.

use std::sync::atomic::{AtomicUsize, Ordering};

use opentally_log::StoredEvent;
use opentally_protocol::{Message, MessageType, Timestamp};
use opentally_store::{InsightQuery, Limits, Options, Store};
use proptest::prelude::*;

use crate::data;

const NAMES: [&str; 5] = ["fit", "estimate", "plot", "export", "(end)"];

/// `(install, session, name, minute, round)`: minutes from 2026-11-01, over four days.
type Ev = (u8, Option<u8>, usize, u32, usize);

fn stored(i: usize, (install, session, name, minute, _): Ev, ordered: bool) -> StoredEvent {
    let mut m = Message::new(MessageType::Track);
    m.event = Some(NAMES[name].into());
    let mut context = serde_json::Map::new();
    if let Some(s) = session {
        context.insert("session".into(), format!("s{s}").into());
    }
    m.context = context;
    // In time-ordered histories every event has a time of its own; otherwise times repeat.
    let secs = i64::from(minute) * 60
        + if ordered {
            i64::try_from(i).unwrap()
        } else {
            0
        };
    StoredEvent {
        message_id: format!("m{i:03}"),
        install: format!("i{install}"),
        timestamp: Timestamp::from_unix(1_793_491_200 + secs, 0).unwrap(),
        message: m,
    }
}

fn history() -> impl Strategy<Value = (Vec<Ev>, bool, bool)> {
    (
        prop::collection::vec(
            (
                0u8..4,
                prop::option::weighted(0.9, 0u8..3),
                0usize..NAMES.len(),
                0u32..4 * 24 * 60,
                0usize..4,
            ),
            1..60,
        ),
        any::<bool>(),
        any::<bool>(),
    )
}

static CASE: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Rounds 0–2 are sealed one after the other, round 3 stays in the tail or is sealed too.
    /// A time-ordered history is loaded in time order (each round a later stretch of time), so
    /// its parts never disagree on an install's order and the walk answers; otherwise rounds
    /// are random and the walk may hand over to the scan. With every round sealed, paths walk
    /// the four days (one block of past days) as one span where the query covers them all.
    /// Either way the answers are the scan's.
    #[test]
    fn funnels_and_paths_from_sequences_match_the_scan(
        (mut events, ordered, seal_all) in history()
    ) {
        let rt = data::runtime();
        if ordered {
            events.sort_by_key(|e| e.3);
            let n = events.len();
            for (i, e) in events.iter_mut().enumerate() {
                e.4 = i * 4 / n;
            }
        }
        let dir = data::temp_dir(&format!("sequences-{}", CASE.fetch_add(1, Ordering::Relaxed)));
        let store = Store::open(&dir, Options::default()).unwrap();
        store.prepare_loading().unwrap();
        for round in 0..4 {
            let some: Vec<(usize, StoredEvent)> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.4 == round)
                .map(|(i, e)| (i, stored(i, *e, ordered)))
                .collect();
            data::write_log(&dir, "demo", &some, 3);
            store.catch_up(None).unwrap();
            if round < 3 || seal_all {
                store.seal().unwrap();
            }
        }
        let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
        let queries = [
            ("funnel", "steps=fit,estimate,plot&window=1h"),
            ("funnel", "steps=plot,fit&window=1d"),
            ("funnel", "steps=fit,fit&window=30d&since=2026-11-02"),
            ("paths", "event=fit"),
            ("paths", "event=estimate&since=2026-11-02&until=2026-11-04"),
        ];
        for (kind, q) in queries {
            let query = InsightQuery::from_params(kind, &data::params(q), now).unwrap();
            let snapshot = store.snapshot("demo");
            let walked = rt.block_on(query.run(&snapshot, &Limits::default())).unwrap();
            let scanned = rt.block_on(query.scan(&snapshot, &Limits::default())).unwrap();
            if ordered {
                prop_assert_eq!(walked.source, "sequences", "{}?{}", kind, q);
            }
            prop_assert_eq!(
                serde_json::to_value(&walked.tables).unwrap(),
                serde_json::to_value(&scanned.tables).unwrap(),
                "{}?{} from {}", kind, q, walked.source
            );
        }
        let parts = store.stats().parts;
        if ordered && seal_all && parts > 1 {
            prop_assert_eq!(store.stats().sequence_spans, 1, "{} parts", parts);
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A damaged sequence file costs speed, not answers: the query scans the events instead.
#[test]
fn a_damaged_sequence_file_hands_the_query_to_the_scan() {
    let rt = data::runtime();
    let (dir, store) = data::sealed_history("damaged-seq", Options::default());
    let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let params = vec![("event".to_owned(), "fit".to_owned())];
    let query = InsightQuery::from_params("paths", &params, now).unwrap();
    let before = rt
        .block_on(query.run(&store.snapshot("demo"), &Limits::default()))
        .unwrap();
    assert_eq!(before.source, "sequences");
    let seq = std::fs::read_dir(dir.join("store/parts/demo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seq"))
        .unwrap();
    let mut bytes = std::fs::read(&seq).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&seq, bytes).unwrap();
    // A restart: the sequences kept in memory are gone, the damaged file is read.
    drop(store);
    let store = Store::open(&dir, Options::default()).unwrap();
    let after = rt
        .block_on(query.run(&store.snapshot("demo"), &Limits::default()))
        .unwrap();
    assert_eq!(after.source, "events");
    assert_eq!(
        serde_json::to_value(&after.tables).unwrap(),
        serde_json::to_value(&before.tables).unwrap()
    );
}

/// Sequences stay in memory after a query while the cache has room, never beyond it, and leave
/// with their part.
#[test]
fn the_sequence_cache_keeps_what_fits_and_lets_go_of_replaced_parts() {
    let rt = data::runtime();
    let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let params = vec![("steps".to_owned(), "fit,estimate".to_owned())];
    let query = InsightQuery::from_params("funnel", &params, now).unwrap();
    for (limit, kept) in [(0, false), (1 << 20, true)] {
        let opts = Options {
            sequence_cache_bytes: limit,
            compact_parts: 2,
            sequence_span_days: 0,
            ..Options::default()
        };
        let (dir, store) = data::sealed_history(&format!("seq-cache-{limit}"), opts);
        assert_eq!(store.stats().sequence_cache_bytes, 0, "nothing read yet");
        let r = rt
            .block_on(query.run(&store.snapshot("demo"), &Limits::default()))
            .unwrap();
        assert_eq!(r.source, "sequences");
        let files: u64 = std::fs::read_dir(dir.join("store/parts/demo"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seq"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        let used = store.stats().sequence_cache_bytes as u64;
        assert_eq!(used, if kept { files } else { 0 }, "limit {limit}");
        // Seal the same days again and compact: the replaced parts release what they kept.
        data::write_log(
            &dir,
            "demo",
            &data::ROWS
                .iter()
                .enumerate()
                .map(|(i, r)| (100 + i, data::event(100 + i, r)))
                .collect::<Vec<_>>(),
            5,
        );
        store.catch_up(None).unwrap();
        store.seal().unwrap();
        assert!(store.compact().unwrap() > 0);
        store.delete_retired().unwrap();
        assert_eq!(store.stats().sequence_cache_bytes, 0, "limit {limit}");
    }
}

/// Erasing an install takes it out of the sequences too, from the tail (even when a query had
/// already made them) and from sealed parts (rewritten with their sequence files).
#[test]
fn an_erased_install_leaves_the_sequences() {
    for sealed in [false, true] {
        erase_and_walk(sealed);
    }
}

fn erase_and_walk(sealed: bool) {
    let rt = data::runtime();
    let dir = data::history(&format!("erase-seq-{sealed}"));
    let store = Store::open(&dir, Options::default()).unwrap();
    store.prepare_loading().unwrap();
    if sealed {
        store.seal().unwrap();
    }
    let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let params = vec![("event".to_owned(), "fit".to_owned())];
    let query = InsightQuery::from_params("paths", &params, now).unwrap();
    let paths = |store: &Store| {
        let r = rt
            .block_on(query.run(&store.snapshot("demo"), &Limits::default()))
            .unwrap();
        assert_eq!(r.source, "sequences");
        serde_json::to_value(&r.tables["paths"].rows).unwrap()
    };
    // By hand (data::ROWS): after a fit, A's first session goes on to estimate and its second
    // ends; B fits twice and ends; C estimates; D plots.
    assert_eq!(
        paths(&store),
        serde_json::json!([
            ["(end)", 2, 2],
            ["estimate", 2, 2],
            ["fit", 1, 1],
            ["plot", 1, 1]
        ])
    );
    assert_eq!(store.erase("demo", "B").unwrap(), 3);
    store.delete_retired().unwrap();
    assert_eq!(
        paths(&store),
        serde_json::json!([["estimate", 2, 2], ["(end)", 1, 1], ["plot", 1, 1]])
    );
    // A restart reads the sequence files the erasure wrote.
    drop(store);
    let store = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(
        paths(&store),
        serde_json::json!([["estimate", 2, 2], ["(end)", 1, 1], ["plot", 1, 1]])
    );
}

/// Paths walk the parts of a block of past days as one span once nothing in the tail shares its
/// days: the same answers as part by part, a range that cuts the block reads the parts alone,
/// and an erasure takes the span out of memory at once.
#[test]
fn a_block_of_past_days_is_walked_as_one_span() {
    let rt = data::runtime();
    let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let query =
        |kind: &str, q: &str| InsightQuery::from_params(kind, &data::params(q), now).unwrap();
    let answer = |store: &Store, query: &InsightQuery| {
        let r = rt
            .block_on(query.run(&store.snapshot("demo"), &Limits::default()))
            .unwrap();
        assert_eq!(r.source, "sequences");
        serde_json::to_value(&r.tables).unwrap()
    };
    let queries = [
        query("paths", "event=fit"),
        query("funnel", "steps=fit,estimate&window=1d"),
        query("paths", "event=fit&since=2026-11-03"),
    ];
    // Late events, loaded after the rest was sealed: E on 2026-11-09, in the 32-day block of
    // 2026-10-10 to 11-10; F on 11-15, beside 11-16 in the 8-day block of 11-11 to 11-18 (the
    // 32-day block from 11-11 is not past, nor its 16-day half; on later dates a larger block
    // that holds them is, and the count of spans below stays the same).
    let late: Vec<(usize, StoredEvent)> =
        [("2026-11-09T08:00:30Z", "E"), ("2026-11-15T08:00:00Z", "F")]
            .into_iter()
            .enumerate()
            .map(|(i, (time, install))| {
                let row = (time, install, "s9", "fit", "1.0", "ok", None, 10.0, None);
                (50 + i, data::event(50 + i, &row))
            })
            .collect();
    let open = |name: &str, span_days: u32| {
        let opts = Options {
            sequence_span_days: span_days,
            ..Options::default()
        };
        let (dir, store) = data::sealed_history(name, opts);
        data::write_log(&dir, "demo", &late, 1);
        store.catch_up(None).unwrap();
        store
    };
    let parts = open("span-off", 0);
    let spans = open("span-on", 32);
    assert_eq!(spans.stats().parts, 5);
    assert_eq!(spans.stats().tail_rows, 2);
    let hand = serde_json::json!([
        ["(end)", 4, 4],
        ["estimate", 2, 2],
        ["fit", 1, 1],
        ["plot", 1, 1]
    ]);
    for q in &queries {
        assert_eq!(answer(&spans, q), answer(&parts, q));
    }
    assert_eq!(
        spans.stats().sequence_spans,
        0,
        "the tail holds events of both blocks"
    );
    // By hand (data::ROWS, E and F): after a fit, A's first session goes on to estimate and its
    // second ends; B fits twice and ends; C estimates; D plots; E and F end.
    assert_eq!(answer(&spans, &queries[0])["paths"]["rows"], hand);

    spans.seal().unwrap();
    parts.seal().unwrap();
    assert_eq!(spans.stats().parts, 7);
    for q in &queries {
        assert_eq!(answer(&spans, q), answer(&parts, q));
    }
    assert_eq!(spans.stats().sequence_spans, 2);
    assert_eq!(parts.stats().sequence_spans, 0);
    assert_eq!(answer(&spans, &queries[0])["paths"]["rows"], hand);

    // Erasing an install drops the span that held it before any query asks.
    assert_eq!(spans.erase("demo", "E").unwrap(), 1);
    assert_eq!(parts.erase("demo", "E").unwrap(), 1);
    assert_eq!(spans.stats().sequence_spans, 1);
    for q in &queries {
        assert_eq!(answer(&spans, q), answer(&parts, q));
    }
    assert_eq!(spans.stats().sequence_spans, 2);
}

/// A span is joined only where the sequence cache has room to keep it (else every query would
/// join it again): without room, paths walk the parts, read from disk, with the same answer.
#[test]
fn a_span_without_room_in_the_cache_is_not_joined() {
    let rt = data::runtime();
    let now = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
    let query = InsightQuery::from_params("paths", &data::params("event=fit"), now).unwrap();
    let mut answers = Vec::new();
    for (limit, spans) in [(0, 0), (1 << 20, 1)] {
        let opts = Options {
            sequence_cache_bytes: limit,
            ..Options::default()
        };
        let (_, store) = data::sealed_history(&format!("span-room-{limit}"), opts);
        let r = rt
            .block_on(query.run(&store.snapshot("demo"), &Limits::default()))
            .unwrap();
        assert_eq!(r.source, "sequences");
        assert_eq!(store.stats().sequence_spans, spans, "limit {limit}");
        answers.push(serde_json::to_value(&r.tables).unwrap());
    }
    assert_eq!(answers[0], answers[1]);
}
