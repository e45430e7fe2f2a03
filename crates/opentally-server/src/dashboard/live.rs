//! The live event view: a project's latest acknowledged events, as they arrive.
//!
//! Events are kept only for projects someone is watching: a poll marks the project watched for
//! [`WATCH_FOR`], and ingest copies a request's events here, after they are durable, only while
//! it is. Each project keeps at most [`MAX_EVENTS`] events and [`MAX_BYTES`] of them; what is
//! kept is what the log holds (install ids already hashed, the catalog already applied), and
//! nothing of it is written anywhere.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::encoded::EncodedEvents;

/// Events kept per watched project.
pub const MAX_EVENTS: usize = 500;
/// Bytes of event JSON kept per watched project.
pub const MAX_BYTES: usize = 4 << 20;
/// How long after its last poll a project stays watched.
pub const WATCH_FOR: Duration = Duration::from_secs(30);
/// Events one poll answers with at most.
pub const MAX_PER_POLL: usize = 200;

#[derive(Debug)]
pub struct LiveFeed {
    /// Until when (milliseconds since `epoch`) any project is watched: ingest's check when no
    /// one watches is this one load.
    any_until_ms: AtomicU64,
    /// When the feed was made: `any_until_ms` counts from it.
    epoch: Instant,
    projects: Mutex<HashMap<i64, Ring>>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed {
            any_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            projects: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Debug)]
struct Ring {
    watched_until: Instant,
    /// The number the next event gets; numbers only grow.
    next_seq: u64,
    events: VecDeque<(u64, Box<[u8]>)>,
    bytes: usize,
}

/// One poll's answer.
#[derive(Debug, serde::Serialize)]
pub struct Poll {
    /// Pass as `after` in the next poll.
    pub last: u64,
    /// Newest last.
    pub events: Vec<Value>,
}

impl LiveFeed {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Ring>> {
        self.projects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether ingest should keep a copy of `project`'s events.
    pub fn watching(&self, project: i64) -> bool {
        if self.now_ms() >= self.any_until_ms.load(Ordering::Relaxed) {
            return false;
        }
        self.lock()
            .get(&project)
            .is_some_and(|r| r.watched_until > Instant::now())
    }

    /// Keeps the events of a request that were new (not duplicates), once durable.
    pub fn push(&self, project: i64, events: &EncodedEvents, new: &[bool]) {
        let mut map = self.lock();
        let Some(ring) = map.get_mut(&project) else {
            return;
        };
        for ((_, json), is_new) in events.iter().zip(new) {
            if !is_new || json.len() > MAX_BYTES {
                continue;
            }
            ring.events.push_back((ring.next_seq, json.into()));
            ring.next_seq += 1;
            ring.bytes += json.len();
            while ring.events.len() > MAX_EVENTS || ring.bytes > MAX_BYTES {
                let Some((_, old)) = ring.events.pop_front() else {
                    break;
                };
                ring.bytes -= old.len();
            }
        }
    }

    /// The events of `project` numbered after `after` that pass `keep`, and marks the project
    /// watched. Drops the rings of projects no one watches any more.
    pub fn poll(&self, project: i64, after: u64, keep: impl Fn(&Value) -> bool) -> Poll {
        let now = Instant::now();
        let until = now + WATCH_FOR;
        let until_ms = self.now_ms() + u64::try_from(WATCH_FOR.as_millis()).unwrap_or(0);
        self.any_until_ms.fetch_max(until_ms, Ordering::Relaxed);
        let mut map = self.lock();
        map.retain(|id, r| *id == project || r.watched_until > now);
        let ring = map.entry(project).or_insert_with(|| Ring {
            watched_until: until,
            next_seq: 1,
            events: VecDeque::new(),
            bytes: 0,
        });
        ring.watched_until = until;
        let last = ring.next_seq - 1;
        let mut events: Vec<Value> = ring
            .events
            .iter()
            .rev()
            .take_while(|(seq, _)| *seq > after)
            .filter_map(|(_, json)| serde_json::from_slice::<Value>(json).ok())
            .filter(|v| keep(v))
            .take(MAX_PER_POLL)
            .collect();
        events.reverse();
        Poll { last, events }
    }

    /// Projects with a ring now.
    pub fn rings(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentally_log::StoredEvent;
    use opentally_protocol::{Message, MessageType, Timestamp};

    fn events(names: &[&str]) -> EncodedEvents {
        let mut e = EncodedEvents::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            let msg: Message = serde_json::from_value(serde_json::json!({
                "type": "track", "event": n, "anonymousId": "x", "messageId": format!("m{i}")
            }))
            .unwrap();
            assert_eq!(msg.kind, MessageType::Track);
            e.push(
                1,
                &StoredEvent {
                    message_id: format!("m{i}"),
                    install: format!("h{i}"),
                    timestamp: Timestamp::now(),
                    message: msg,
                },
            );
        }
        e
    }

    #[test]
    fn keeps_only_watched_projects_new_events_within_bounds() {
        let feed = LiveFeed::default();
        assert!(!feed.watching(7), "no one watches at first");
        feed.push(7, &events(&["a"]), &[true]);
        assert_eq!(feed.rings(), 0, "an unwatched project keeps nothing");

        let first = feed.poll(7, 0, |_| true);
        assert_eq!((first.last, first.events.len()), (0, 0));
        assert!(feed.watching(7));
        assert!(!feed.watching(8));
        feed.push(7, &events(&["a", "b", "c"]), &[true, false, true]);
        let p = feed.poll(7, first.last, |_| true);
        let names: Vec<_> = p
            .events
            .iter()
            .map(|e| e["message"]["event"].clone())
            .collect();
        assert_eq!(names, ["a", "c"], "duplicates are not shown, order kept");
        assert_eq!(p.last, 2);
        assert!(feed.poll(7, p.last, |_| true).events.is_empty());
        let only_c = feed.poll(7, 0, |e| e["message"]["event"] == "c");
        assert_eq!(only_c.events.len(), 1);

        let many: Vec<String> = (0..MAX_EVENTS + 50).map(|i| format!("e{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        feed.push(7, &events(&refs), &vec![true; refs.len()]);
        let all = feed.poll(7, 0, |_| true);
        assert_eq!(all.events.len(), MAX_PER_POLL, "one poll is bounded");
        let ring_len = feed.lock()[&7].events.len();
        assert_eq!(ring_len, MAX_EVENTS, "the ring is bounded");
    }
}
