//! A realistic demo project: installs that arrive, return and churn; app versions adopted over
//! time; functions with log-normal durations; errors that cluster in one version; a funnel
//! (fit → estimate → plot → export). Deterministic for a seed.

use opentally_protocol::{Message, MessageType, Timestamp};
use serde_json::{Map, Value, json};

use opentally_log::segment::{self as wal, LogWriter};
use opentally_log::{LogRecord, StoredEvent};

/// SplitMix64: small, fast and good enough to draw demo data from.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let v = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        v
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn below(&mut self, n: usize) -> usize {
        #[allow(clippy::cast_possible_truncation)]
        let i = (self.next_u64() % n as u64) as usize;
        i
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Log-normal with the given median and shape (Box–Muller).
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit().max(f64::MIN_POSITIVE), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        median * (sigma * z).exp()
    }

    fn hex(&mut self, bytes: usize) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(bytes * 2);
        for _ in 0..bytes.div_ceil(8) {
            let _ = write!(s, "{:016x}", self.next_u64());
        }
        s.truncate(bytes * 2);
        s
    }
}

/// Releases: `(version, day released)`, day 0 being the first day of the history.
const RELEASES: [(&str, u32); 4] = [("1.0.0", 0), ("1.1.0", 25), ("1.2.0", 50), ("2.0.0", 72)];
/// The version whose `estimate` fails far more often.
pub const BAD_VERSION: &str = "1.2.0";
const METHODS: [&str; 4] = ["cbpe", "dle", "univariate_drift", "multivariate_drift"];
const OSES: [(&str, &str); 5] = [
    ("linux", "6.1"),
    ("linux", "5.15"),
    ("darwin", "24.1"),
    ("windows", "10.0"),
    ("linux", "6.8"),
];
const PYTHONS: [&str; 4] = ["3.9.19", "3.10.14", "3.11.9", "3.12.4"];

#[derive(Debug)]
struct Install {
    id: String,
    first_day: u32,
    /// Last day it is used (churn).
    last_day: u32,
    /// Days until it adopts a new release.
    upgrade_lag: u32,
    os: (&'static str, &'static str),
    python: &'static str,
    ci: bool,
    docker: bool,
    notebook: Option<&'static str>,
    /// Chance of being used on a day it is alive.
    activity: f64,
}

/// Generates the history of `days` days ending at `end` (exclusive), calling `emit` with each
/// day's events in time order: about `events` events in all (a pilot run sizes the number of
/// installs; the whole period is always covered). Returns how many were made.
pub fn generate(
    events: u64,
    days: u32,
    end: Timestamp,
    seed: u64,
    emit: &mut dyn FnMut(Vec<StoredEvent>),
) -> u64 {
    // A small pilot run measures events per install, which sizes the real run.
    const PILOT: u64 = 2_000;
    let pilot = history(PILOT, days, end, seed, &mut |_| {});
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let installs = (events as f64 * PILOT as f64 / pilot.max(1) as f64).round() as u64;
    history(installs.max(1), days, end, seed, emit)
}

fn history(
    installs_total: u64,
    days: u32,
    end: Timestamp,
    seed: u64,
    emit: &mut dyn FnMut(Vec<StoredEvent>),
) -> u64 {
    let mut rng = Rng::new(seed);
    let start_secs = end.unix_secs() - i64::from(days) * 86_400;
    let start_day = start_secs.div_euclid(86_400);
    let mut installs: Vec<Install> = Vec::new();
    let mut made = 0u64;
    // New installs arrive a little faster every day.
    let weight = |d: u32| 1.0 + f64::from(d) / f64::from(days.max(1));
    let weights: f64 = (0..days).map(weight).sum();
    for day in 0..days {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let arrivals = (installs_total as f64 * weight(day) / weights).round() as u64;
        for _ in 0..arrivals {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let life = (rng.log_normal(20.0, 1.2) as u32).max(1);
            installs.push(Install {
                id: rng.hex(16),
                first_day: day,
                last_day: day.saturating_add(life),
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                upgrade_lag: rng.log_normal(6.0, 1.0) as u32,
                os: *rng.pick(&OSES),
                python: PYTHONS[rng.below(PYTHONS.len())],
                ci: rng.chance(0.12),
                docker: rng.chance(0.2),
                notebook: rng.chance(0.3).then_some("jupyter"),
                activity: 0.15 + 0.5 * rng.unit(),
            });
        }
        installs.retain(|i| i.last_day >= day);
        let day_start = (start_day + i64::from(day)) * 86_400;
        let mut today: Vec<StoredEvent> = Vec::new();
        for inst in &installs {
            if inst.first_day != day && !rng.chance(inst.activity) {
                continue;
            }
            let version = RELEASES
                .iter()
                .rev()
                .find(|(_, released)| {
                    *released <= day
                        && (*released <= inst.first_day || day >= released + inst.upgrade_lag)
                })
                .map_or(RELEASES[0].0, |(v, _)| v);
            let session = rng.hex(8);
            #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
            let mut t = day_start * 1000 + rng.below(86_000_000) as i64;
            let mut push = |rng: &mut Rng, name: &str, props: Map<String, Value>, ms: f64| {
                let mut m = Message::new(MessageType::Track);
                m.event = Some(name.to_owned());
                m.properties = props;
                m.context = context(inst, version, &session);
                #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
                let step = ms as i64 + 500 + rng.below(30_000) as i64;
                t += step;
                today.push(StoredEvent {
                    message_id: rng.hex(16),
                    install: inst.id.clone(),
                    timestamp: Timestamp::from_unix_millis(t).expect("in range"),
                    message: m,
                });
            };
            let method = *rng.pick(&METHODS);
            // The funnel: fit, then usually estimate, then often plot, sometimes export.
            let calls: &[(&str, f64, f64)] = &[
                ("fit", 1.0, 800.0),
                ("estimate", 0.75, 300.0),
                ("plot", 0.55, 120.0),
                ("export", 0.2, 45.0),
            ];
            for (name, p, median) in calls {
                if !rng.chance(*p) {
                    break;
                }
                let err_p = match (*name, version) {
                    ("estimate", BAD_VERSION) => 0.3,
                    ("fit", _) if inst.os.0 == "windows" => 0.06,
                    _ => 0.015,
                };
                let failed = rng.chance(err_p);
                let ms = rng.log_normal(*median, 0.9);
                let mut props = json!({
                    "duration_ms": (ms * 100.0).round() / 100.0,
                    "outcome": if failed { "error" } else { "ok" },
                });
                if failed {
                    props["error_type"] = if *name == "estimate" && version == BAD_VERSION {
                        "ValueError"
                    } else {
                        *rng.pick(&["KeyError", "MemoryError", "TypeError"])
                    }
                    .into();
                }
                match *name {
                    "fit" | "estimate" => props["method"] = method.into(),
                    "plot" => props["kind"] = (*rng.pick(&["performance", "drift"])).into(),
                    _ => props["format"] = (*rng.pick(&["csv", "parquet", "html"])).into(),
                }
                let Value::Object(props) = props else {
                    unreachable!("json! of an object")
                };
                let retry = (failed && rng.chance(0.5)).then(|| props.clone());
                push(&mut rng, name, props, ms);
                if failed {
                    // A failed call is often retried at once, and fails the same way.
                    if let Some(again) = retry {
                        push(&mut rng, name, again, ms);
                    }
                    break;
                }
            }
        }
        today.sort_by_key(|e| e.timestamp);
        made += today.len() as u64;
        if !today.is_empty() {
            emit(today);
        }
    }
    made
}

fn context(inst: &Install, version: &str, session: &str) -> Map<String, Value> {
    let Value::Object(m) = json!({
        "library": {"name": "opentally-python", "version": "0.1.0"},
        "app": {"name": "demo-ml", "version": version},
        "os": {"name": inst.os.0, "version": inst.os.1},
        "runtime": {"name": "python", "version": inst.python, "implementation": "cpython"},
        "environment": {"ci": inst.ci, "docker": inst.docker, "kubernetes": false, "notebook": inst.notebook},
        "hardware": {"arch": "x86_64", "cpus": 8, "memory_gb": 16, "gpu": false},
        "session": session,
    }) else {
        unreachable!("json! of an object")
    };
    m
}

/// Appends `events` to `log` as the collector writes them, durably: records of up to
/// `per_record` events of `project` (id 1), each received at its first event's time. For the
/// benchmarks that load or erase a generated history.
pub fn append_to_log(
    log: &mut LogWriter,
    project: &str,
    events: &[StoredEvent],
    per_record: usize,
) -> std::io::Result<()> {
    for chunk in events.chunks(per_record.max(1)) {
        let rec = LogRecord {
            project: project.into(),
            project_id: 1,
            received_at: chunk[0].timestamp,
            events: chunk.to_vec(),
        };
        let mut framed = Vec::new();
        wal::frame_with(&mut framed, |out| rec.write(out));
        log.append_durable(&framed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_exactly_the_events_asked_for_in_time_order_and_deterministically() {
        let end = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
        let run = || {
            let mut all = Vec::new();
            let n = generate(20_000, 90, end, 42, &mut |day| all.extend(day));
            (n, all)
        };
        let (n, all) = run();
        assert_eq!(n, all.len() as u64);
        assert!((18_000..=22_000).contains(&n), "{n} is about 20,000");
        let last_day = all.last().unwrap().timestamp.unix_secs().div_euclid(86_400);
        assert_eq!(
            last_day,
            end.unix_secs().div_euclid(86_400) - 1,
            "the period is covered"
        );
        assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(all.iter().all(|e| e.timestamp < end));
        assert_eq!(run().1, all, "same seed, same history");
        let versions: std::collections::BTreeSet<&str> = all
            .iter()
            .filter_map(|e| e.message.context["app"]["version"].as_str())
            .collect();
        assert_eq!(versions.len(), RELEASES.len(), "every release is adopted");
    }
}
