//! Tests of the sequence files and their walkers.

use super::*;
use crate::rollup::session_key;
use crate::schema;
use crate::sequence::join::Runs;
use arrow::array::RecordBatch;
use opentally_log::StoredEvent;
use opentally_protocol::{Message, MessageType, Timestamp};

fn batch(rows: &[(&str, Option<&str>, Option<&str>, &str)]) -> RecordBatch {
    let events: Vec<StoredEvent> = rows
        .iter()
        .enumerate()
        .map(|(i, (install, session, name, time))| {
            let mut m = Message::new(MessageType::Track);
            m.event = name.map(Into::into);
            if let Some(s) = session {
                m.context.insert("session".into(), (*s).into());
            }
            StoredEvent {
                message_id: format!("m{i}"),
                install: (*install).into(),
                timestamp: Timestamp::parse(time).unwrap(),
                message: m,
            }
        })
        .collect();
    let mut b = schema::BatchBuilder::new();
    let received = Timestamp::parse("2026-11-20T00:00:00Z").unwrap();
    for e in &events {
        b.push("p", received, e);
    }
    b.finish()
}

/// A run's events as `(name code, session index, time)`.
fn triples(run: &Run) -> Vec<(u32, u32, i64)> {
    (0..run.codes.len())
        .map(|e| (run.codes[e], run.session(e), run.times[e]))
        .collect()
}

#[test]
fn a_part_reads_back_as_each_installs_events_in_time_order() {
    let part = batch(&[
        ("b", Some("x"), Some("plot"), "2026-11-02T10:00:02Z"),
        ("a", Some("s"), Some("fit"), "2026-11-02T10:00:00Z"),
        ("b", Some("y"), None, "2026-11-02T09:00:00Z"),
        ("a", Some("s"), Some("plot"), "2026-11-02T10:00:00.5Z"),
        ("b", Some("x"), Some("fit"), "2026-11-02T10:00:01Z"),
    ]);
    let seq = Sequences::parse(encode(&part).unwrap()).unwrap();
    assert_eq!(seq.len(), 2);
    let mut names = seq.names().to_vec();
    names.sort();
    assert_eq!(names, ["fit", "plot"]);
    let code =
        |n: &str| 1 + u32::try_from(seq.names().iter().position(|x| x == n).unwrap()).unwrap();
    let (fit, plot) = (code("fit"), code("plot"));
    let (key_a, key_b) = (install_key("a"), install_key("b"));
    let base = Timestamp::parse("2026-11-02T09:00:00Z")
        .unwrap()
        .unix_millis()
        * 1000;
    let codes = [0, 1, 2];
    let mut run = Run::default();
    for i in 0..2 {
        seq.run(i, &codes, true, &mut run).unwrap();
        if seq.key(i) == key_a {
            assert_eq!(run.sessions, [session_key("a", Some("s"))]);
            let t = base + 3_600_000_000;
            assert_eq!(triples(&run), [(fit, 0, t), (plot, 0, t + 500_000)]);
        } else {
            assert_eq!(seq.key(i), key_b);
            let (x, y) = (session_key("b", Some("x")), session_key("b", Some("y")));
            assert_eq!(run.sessions, [y, x]);
            let t = base + 3_600_000_000;
            assert_eq!(
                triples(&run),
                [
                    (0, 0, base),
                    (fit, 1, t + 1_000_000),
                    (plot, 1, t + 2_000_000)
                ]
            );
        }
    }
    assert!(seq.key(0) < seq.key(1), "keys ascend");
    assert_eq!(seq.seek(seq.key(1)), 1);
    assert_eq!(
        seq.seek(u64::MAX),
        if seq.key(1) == u64::MAX { 1 } else { 2 }
    );
}

#[test]
fn a_damaged_file_is_refused() {
    let b = batch(&[("a", None, Some("fit"), "2026-11-02T10:00:00Z")]);
    let bytes = encode(&b).unwrap();
    for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        assert!(Sequences::parse(bad).is_err(), "a flipped bit at {at}");
    }
    assert_eq!(
        Sequences::parse(bytes[..bytes.len() - 3].to_vec()).unwrap_err(),
        "checksum mismatch"
    );
    assert!(Sequences::parse(Vec::new()).is_err());
}

/// A stream reads a part's file as the file's bytes read at once do; it refuses a damaged or
/// cut file, and a span's summary, when it is opened; files compact through streams into the
/// file their rows make at once.
#[test]
fn a_stream_reads_what_the_file_holds_and_refuses_a_damaged_one() {
    let dir = std::env::temp_dir().join(format!("opentally-seqstream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rows: Vec<(String, String, &str, String)> = (0..3_000)
        .map(|i| {
            (
                format!("i{}", i % 700),
                format!("s{}", i % 3),
                ["fit", "plot", "estimate"][i % 3],
                format!(
                    "2026-11-02T{:02}:{:02}:{:02}Z",
                    i / 3600,
                    i / 60 % 60,
                    i % 60
                ),
            )
        })
        .collect();
    let as_rows = |r: &[(String, String, &str, String)]| -> RecordBatch {
        let v: Vec<_> = r
            .iter()
            .map(|(i, s, e, t)| (i.as_str(), Some(s.as_str()), Some(*e), t.as_str()))
            .collect();
        batch(&v)
    };
    // Two parts of one day whose installs' runs interleave in time.
    let (even, odd): (Vec<_>, Vec<_>) = rows
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let mut paths = Vec::new();
    for (n, part) in [even, odd].into_iter().enumerate() {
        let part: Vec<_> = part.into_iter().map(|(_, r)| r).collect();
        let path = dir.join(format!("{n}.seq"));
        encode_file(&as_rows(&part)).unwrap().write(&path).unwrap();
        paths.push(path);
    }

    let whole = Sequences::read(&paths[0]).unwrap();
    let mut stream = SeqStream::open(&paths[0]).unwrap();
    assert_eq!(stream.names(), whole.names());
    let codes: Vec<u32> = (0..=3).collect();
    let (mut a, mut b) = (Run::default(), Run::default());
    let mut s = &mut stream;
    assert_eq!(s.installs(), whole.len());
    for i in 0..whole.len() {
        assert_eq!(s.key_of(i), Some(whole.key(i)));
        s.run_of(i, &codes, &mut a).unwrap();
        whole.run(i, &codes, true, &mut b).unwrap();
        assert_eq!((&a.sessions, triples(&a)), (&b.sessions, triples(&b)));
    }
    assert!(stream.error.is_none());

    let joined = compact(paths.iter().map(|p| SeqStream::open(p).unwrap()).collect())
        .unwrap()
        .unwrap();
    let expected = Sequences::parse(encode(&as_rows(&rows)).unwrap()).unwrap();
    let joined = Sequences::parse(joined.into_bytes()).unwrap();
    assert_eq!(joined.len(), 700);
    let names = |q: &Sequences, r: &Run| -> Vec<(String, u32, i64)> {
        (0..r.codes.len())
            .map(|e| {
                (
                    q.names()[r.codes[e] as usize - 1].clone(),
                    r.session(e),
                    r.times[e],
                )
            })
            .collect()
    };
    for i in 0..700 {
        assert_eq!(joined.key(i), expected.key(i));
        joined.run(i, &codes, true, &mut a).unwrap();
        expected.run(i, &codes, true, &mut b).unwrap();
        assert_eq!(a.sessions, b.sessions);
        assert_eq!(names(&joined, &a), names(&expected, &b));
    }

    let bytes = std::fs::read(&paths[0]).unwrap();
    let bad = dir.join("bad.seq");
    for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[at] ^= 0x40;
        std::fs::write(&bad, &b).unwrap();
        let e = SeqStream::open(&bad).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::InvalidData,
            "a flipped bit at {at}"
        );
    }
    for len in [0, 7, 20, bytes.len() - 3] {
        std::fs::write(&bad, &bytes[..len]).unwrap();
        let e = SeqStream::open(&bad).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "cut at {len}");
    }
    let (names, c) = shared_codes(&[&whole]);
    let summary = merge(&[(&whole, c[0].clone())], &names, true).unwrap();
    std::fs::write(&bad, summary).unwrap();
    assert_eq!(
        SeqStream::open(&bad).unwrap_err().kind(),
        std::io::ErrorKind::InvalidData
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sessions left open on the target at the end of one run go on in the install's next
/// run, read from parts or from summaries; an install with more open sessions than it
/// lists keeps the rest in the slice's table.
#[test]
fn paths_follow_many_open_sessions_of_one_install_into_its_next_run() {
    // Day 1: 40 sessions of x each fit once. Day 2: s0–s19 go on to plot; s20–s29 fit
    // again and end there; s30–s39 do not come back.
    let sessions: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    let times: Vec<String> = (0..40)
        .map(|i| format!("2026-11-01T10:{i:02}:00Z"))
        .collect();
    let day1: Vec<_> = (0..40)
        .map(|i| {
            (
                "x",
                Some(sessions[i].as_str()),
                Some("fit"),
                times[i].as_str(),
            )
        })
        .collect();
    let later: Vec<String> = (0..30)
        .map(|i| format!("2026-11-02T10:{i:02}:00Z"))
        .collect();
    let day2: Vec<_> = (0..30)
        .map(|i| {
            let next = if i < 20 { "plot" } else { "fit" };
            (
                "x",
                Some(sessions[i].as_str()),
                Some(next),
                later[i].as_str(),
            )
        })
        .collect();
    let days = [
        Sequences::parse(encode(&batch(&day1)).unwrap()).unwrap(),
        Sequences::parse(encode(&batch(&day2)).unwrap()).unwrap(),
    ];
    let refs: Vec<&Sequences> = days.iter().collect();
    let (shared, codes) = shared_codes(&refs);
    let (fit, plot) = (shared.get("fit").unwrap(), shared.get("plot").unwrap());
    let n = shared.names.len() + 1;
    let answer = |p: &Paths| [0, fit, plot].map(|c| (p.times[c as usize], p.installs[c as usize]));
    let want = [(20, 1), (10, 1), (20, 1)];
    let parts: Vec<(&Sequences, Vec<u32>)> = refs.iter().copied().zip(codes).collect();
    let p = walk(&parts, None, None, || Paths::new(fit, None, n)).unwrap();
    assert_eq!(answer(&p), want, "from the parts");
    // Each day as a summary of its own, as a span would give it.
    let summaries: Vec<Sequences> = parts
        .iter()
        .map(|(s, c)| {
            let one = [(*s, c.clone())];
            Sequences::parse(merge(&one, &shared, true).unwrap()).unwrap()
        })
        .collect();
    let refs: Vec<&Sequences> = summaries.iter().collect();
    assert!(refs.iter().all(|s| s.is_summary()));
    let (shared, codes) = shared_codes(&refs);
    assert_eq!(
        (shared.get("fit"), shared.get("plot")),
        (Some(fit), Some(plot))
    );
    let parts: Vec<(&Sequences, Vec<u32>)> = refs.into_iter().zip(codes).collect();
    let p = walk(&parts, None, None, || Paths::new(fit, None, n)).unwrap();
    assert_eq!(answer(&p), want, "from summaries");
}

/// Installs are counted once per next event whether its code fits the per-install bits or
/// goes to the slice's pairs (codes of 64 and above).
#[test]
fn paths_count_installs_once_per_next_event_past_64_names() {
    let names: Vec<String> = (0..69).map(|i| format!("e{i}")).collect();
    let filler: Vec<(&str, Option<&str>, Option<&str>, &str)> = names
        .iter()
        .map(|n| ("z", Some("s"), Some(n.as_str()), "2026-11-01T10:00:00Z"))
        .collect();
    let day2 = [
        ("x", Some("a"), Some("fit"), "2026-11-02T10:00:00Z"),
        ("x", Some("a"), Some("e69"), "2026-11-02T10:00:01Z"),
        ("x", Some("a"), Some("fit"), "2026-11-02T10:00:02Z"),
        ("x", Some("a"), Some("e69"), "2026-11-02T10:00:03Z"),
        ("x", Some("b"), Some("fit"), "2026-11-02T11:00:00Z"),
        ("x", Some("b"), Some("e1"), "2026-11-02T11:00:01Z"),
        ("y", Some("c"), Some("fit"), "2026-11-02T12:00:00Z"),
        ("y", Some("c"), Some("e69"), "2026-11-02T12:00:01Z"),
        ("y", Some("c"), Some("fit"), "2026-11-02T12:00:02Z"),
    ];
    let parts = [
        Sequences::parse(encode(&batch(&filler)).unwrap()).unwrap(),
        Sequences::parse(encode(&batch(&day2)).unwrap()).unwrap(),
    ];
    let refs: Vec<&Sequences> = parts.iter().collect();
    let (shared, codes) = shared_codes(&refs);
    let parts: Vec<(&Sequences, Vec<u32>)> = refs.into_iter().zip(codes).collect();
    let (fit, e69, e1) = (
        shared.get("fit").unwrap(),
        shared.get("e69").unwrap(),
        shared.get("e1").unwrap(),
    );
    assert!(e69 >= 64 && e1 < 64, "both ways of counting are used");
    let n = shared.names.len() + 1;
    let p = walk(&parts, None, None, || Paths::new(fit, None, n)).unwrap();
    assert_eq!((p.times[e69 as usize], p.installs[e69 as usize]), (3, 2));
    assert_eq!((p.times[e1 as usize], p.installs[e1 as usize]), (1, 1));
    assert_eq!(
        (p.times[0], p.installs[0]),
        (1, 1),
        "y's session ends on fit"
    );
    assert_eq!(p.times.iter().sum::<u64>(), 5);
}

/// Joined parts walk to the same funnels and paths as the parts one by one, sessions that
/// cross parts included; parts that disagree on an install's order are not joined.
#[test]
fn merged_parts_walk_like_the_parts() {
    let days = [
        batch(&[
            ("x", Some("a"), Some("fit"), "2026-11-01T23:59:00Z"),
            ("y", Some("c"), Some("fit"), "2026-11-01T10:00:00Z"),
            ("y", Some("c"), Some("plot"), "2026-11-01T10:00:01Z"),
        ]),
        batch(&[
            ("x", Some("a"), Some("estimate"), "2026-11-02T00:00:01Z"),
            ("x", Some("b"), Some("fit"), "2026-11-02T08:00:00Z"),
            ("x", Some("a"), Some("fit"), "2026-11-02T09:00:00Z"),
        ]),
        batch(&[
            ("x", Some("a"), Some("plot"), "2026-11-03T00:00:01Z"),
            ("z", None, Some("fit"), "2026-11-03T10:00:00Z"),
            ("z", None, None, "2026-11-03T10:00:01Z"),
        ]),
    ];
    let seqs: Vec<Sequences> = days
        .iter()
        .map(|b| Sequences::parse(encode(b).unwrap()).unwrap())
        .collect();
    let refs: Vec<&Sequences> = seqs.iter().collect();
    let (names, codes) = shared_codes(&refs);
    let parts: Vec<(&Sequences, Vec<u32>)> = refs.into_iter().zip(codes).collect();
    for summary in [false, true] {
        let merged = Sequences::parse(merge(&parts, &names, summary).unwrap()).unwrap();
        assert_eq!(merged.len(), 3, "one run per install");
        walk_joined(&parts, &names, &merged, summary);
    }

    // Day 2 again, loaded later: x's events there come before day 3's.
    let again = [&seqs[0], &seqs[2], &seqs[1]];
    let (names, codes) = shared_codes(&again);
    let parts: Vec<(&Sequences, Vec<u32>)> = again.into_iter().zip(codes).collect();
    assert!(merge(&parts, &names, false).is_none());
    assert!(merge(&parts, &names, true).is_none());
}

/// Walks `merged` (the join of `parts`) and the parts one by one, and compares.
fn walk_joined(parts: &[(&Sequences, Vec<u32>)], names: &Names, merged: &Sequences, summary: bool) {
    let (m_names, m_codes) = shared_codes(&[merged]);
    let one = [(merged, m_codes.into_iter().next().unwrap())];
    let code = |n: &Names, s: &str| n.get(s).unwrap();
    let width = names.names.len() + 1;
    for (since, until) in [(None, None), (Some(1_793_577_600_000_000), None)] {
        let one_by_one = walk(parts, since, until, || {
            Paths::new(code(names, "fit"), None, width)
        })
        .unwrap();
        let joined = walk(&one, since, until, || {
            Paths::new(code(&m_names, "fit"), None, width)
        });
        let Some(joined) = joined else {
            // A summary cannot cut a run that crosses the range's bound: the caller scans.
            assert!(summary && since.is_some());
            continue;
        };
        let by_name = |p: &Paths, ns: &Names| -> Vec<(String, u64, u64)> {
            let mut v: Vec<_> = (0..p.times.len())
                .filter(|c| p.times[*c] > 0)
                .map(|c| {
                    let c32 = u32::try_from(c).unwrap();
                    (
                        ns.name(c32).unwrap_or("(end)").to_owned(),
                        p.times[c],
                        p.installs[c],
                    )
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            by_name(&one_by_one, names),
            by_name(&joined, &m_names),
            "since {since:?}"
        );
        if since.is_none() {
            // By hand: x's session a goes fit → estimate across midnight and fit → plot
            // across the next; b ends on fit; y plots; z's fit is followed by an unnamed
            // event, counted as the end.
            assert_eq!(
                by_name(&joined, &m_names),
                [
                    ("(end)".to_owned(), 2, 2),
                    ("estimate".to_owned(), 1, 1),
                    ("plot".to_owned(), 2, 2)
                ]
            );
        }
        let steps = |ns: &Names| vec![ns.get("fit"), ns.get("estimate"), ns.get("plot")];
        let funnel = walk(parts, since, until, || {
            Funnel::new(steps(names), 86_400_000_000)
        });
        let funnel_joined = walk(&one, since, until, || {
            Funnel::new(steps(&m_names), 86_400_000_000)
        });
        if summary {
            assert!(funnel_joined.is_none(), "a summary has no times");
        } else {
            assert_eq!(funnel.unwrap().reached, funnel_joined.unwrap().reached);
        }
    }
}
