//! What is tracked: property values, events as queued, and the counters of what became of them.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A property value. Numbers that could identify (row counts, sizes) should be bucketed into
/// strings before they get here.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    Str(String),
    /// A string known for the life of the program (reserved values such as `ok`): no copy.
    Static(&'static str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for Prop {
    fn from(v: &str) -> Prop {
        Prop::Str(v.to_owned())
    }
}
impl From<String> for Prop {
    fn from(v: String) -> Prop {
        Prop::Str(v)
    }
}
impl From<i64> for Prop {
    fn from(v: i64) -> Prop {
        Prop::Int(v)
    }
}
impl From<i32> for Prop {
    fn from(v: i32) -> Prop {
        Prop::Int(i64::from(v))
    }
}
impl From<u32> for Prop {
    fn from(v: u32) -> Prop {
        Prop::Int(i64::from(v))
    }
}
impl From<f64> for Prop {
    fn from(v: f64) -> Prop {
        Prop::Float(v)
    }
}
impl From<bool> for Prop {
    fn from(v: bool) -> Prop {
        Prop::Bool(v)
    }
}

impl serde::Serialize for Prop {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Prop::Str(v) => s.serialize_str(v),
            Prop::Static(v) => s.serialize_str(v),
            Prop::Int(v) => s.serialize_i64(*v),
            // JSON has no NaN or infinity; such a value is sent as null (absent).
            Prop::Float(v) if !v.is_finite() => s.serialize_none(),
            Prop::Float(v) => s.serialize_f64(*v),
            Prop::Bool(v) => s.serialize_bool(*v),
        }
    }
}

/// An event a binding collected itself: name, properties, and when it happened.
pub type TimedEvent = (
    Cow<'static, str>,
    Vec<(Cow<'static, str>, Prop)>,
    SystemTime,
);

/// One tracked event, as small as it can be on the caller's thread.
#[derive(Debug)]
pub(crate) struct Event {
    pub name: Cow<'static, str>,
    pub props: Vec<(Cow<'static, str>, Prop)>,
    pub at: SystemTime,
}

/// What the client has done, for `status()` and inspect mode.
#[derive(Debug, Default)]
pub struct Counters {
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub retried: AtomicU64,
    pub spooled: AtomicU64,
    pub rejected: AtomicU64,
    /// Not sent because the collector's remote control stopped or sampled out this install.
    pub withheld: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    pub queued: u64,
    pub sent: u64,
    pub dropped: u64,
    pub retried: u64,
    pub spooled: u64,
    pub rejected: u64,
    pub withheld: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            queued: l(&self.queued),
            sent: l(&self.sent),
            dropped: l(&self.dropped),
            retried: l(&self.retried),
            spooled: l(&self.spooled),
            rejected: l(&self.rejected),
            withheld: l(&self.withheld),
        }
    }
}
