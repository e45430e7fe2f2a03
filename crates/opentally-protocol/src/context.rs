//! The context a message may keep: the standard leaves the SDKs send, and a catalog's own
//! `keep` paths, as a tree that keeps only short scalars that name no person or machine.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::Value;

use crate::message::Map;

/// The context leaves an OpenTally SDK sends (DESIGN §2), by dotted path.
pub const STANDARD_CONTEXT: [&str; 20] = [
    "library.name",
    "library.version",
    "app.name",
    "app.version",
    "os.name",
    "os.version",
    "runtime.name",
    "runtime.version",
    "runtime.implementation",
    "runtime.virtualenv",
    "runtime.conda",
    "environment.ci",
    "environment.docker",
    "environment.kubernetes",
    "environment.notebook",
    "environment.cloud",
    "hardware.arch",
    "hardware.cpus",
    "hardware.memory_gb",
    "hardware.gpu",
];

/// Standard context leaves at the top level of `context`.
pub const STANDARD_CONTEXT_TOP: [&str; 2] = ["session", "ephemeral"];

/// The context paths kept, as a tree of path segments; a node marked `leaf` keeps a scalar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextAllow {
    leaf: bool,
    children: BTreeMap<String, ContextAllow>,
}

impl ContextAllow {
    /// The tree for a catalog's `keep` list: a standard block (`app`) keeps its standard
    /// leaves, a standard leaf itself, and any other path exactly that leaf.
    pub fn from_keep(keep: &[String]) -> ContextAllow {
        let mut tree = ContextAllow::default();
        for path in keep {
            let block = format!("{path}.");
            let standard: Vec<&str> = STANDARD_CONTEXT
                .iter()
                .chain(&STANDARD_CONTEXT_TOP)
                .copied()
                .filter(|leaf| *leaf == path || leaf.starts_with(&block))
                .collect();
            if standard.is_empty() {
                tree.insert(path);
            } else {
                for leaf in standard {
                    tree.insert(leaf);
                }
            }
        }
        tree
    }

    /// Every standard leaf: what is kept without a catalog.
    pub fn standard() -> &'static ContextAllow {
        static TREE: LazyLock<ContextAllow> = LazyLock::new(|| {
            let keep: Vec<String> = STANDARD_CONTEXT
                .iter()
                .chain(&STANDARD_CONTEXT_TOP)
                .map(|s| (*s).to_owned())
                .collect();
            ContextAllow::from_keep(&keep)
        });
        &TREE
    }

    fn insert(&mut self, path: &str) {
        let mut node = self;
        for segment in path.split('.') {
            node = node.children.entry(segment.to_owned()).or_default();
        }
        node.leaf = true;
    }

    /// Keeps the allowed scalar leaves of `map`, reporting each other leaf it drops.
    /// Keeps the allowed scalar leaves of a message's `context`, reporting each other leaf it
    /// drops by its dotted path.
    pub(crate) fn retain_context(&self, context: &mut Map, dropped: &mut Vec<String>) {
        self.retain(context, &Chain::Root("context"), dropped);
    }

    fn retain(&self, map: &mut Map, parent: &Chain<'_>, dropped: &mut Vec<String>) {
        map.retain(|key, value| {
            if value.is_null() {
                return false;
            }
            let here = Chain::Key(parent, key);
            let kept = match self.children.get(key) {
                Some(node) if node.leaf => is_short_scalar(value),
                Some(node) => match value {
                    Value::Object(inner) => {
                        node.retain(inner, &here, dropped);
                        return !inner.is_empty();
                    }
                    _ => false,
                },
                None => false,
            };
            if !kept {
                dropped.push(here.path());
            }
            kept
        });
    }
}

/// A dotted path built only when a field is reported as dropped.
enum Chain<'a> {
    Root(&'static str),
    Key(&'a Chain<'a>, &'a str),
}

impl Chain<'_> {
    fn path(&self) -> String {
        match self {
            Chain::Root(r) => (*r).to_owned(),
            Chain::Key(parent, key) => format!("{}.{key}", parent.path()),
        }
    }
}

/// A context value that may be stored: a boolean, a number, or a short string of printable
/// ASCII with no `@`, `/` or `\\` (so no e-mail address or path) that does not look like an
/// address (`"Ubuntu 22.04"`, `"CPython"`, `"github-actions"`).
fn is_short_scalar(v: &Value) -> bool {
    match v {
        Value::Bool(_) | Value::Number(_) => true,
        Value::String(s) => {
            s.len() <= MAX_CONTEXT_CHARS
                && s.bytes()
                    .all(|b| (b' '..=b'~').contains(&b) && !b"@/\\".contains(&b))
                && !looks_like_address(s)
        }
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// The longest string a context leaf may hold.
pub const MAX_CONTEXT_CHARS: usize = 64;

/// True for a value shaped like an IP address (`10.77.1.9`, `10.77.1.x`, `fe80::1`) or a host
/// name (`alice-laptop.corp.example.com`: three or more lowercase labels of letters, digits and
/// `-`, the last alphabetic).
pub fn looks_like_address(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    let ipv4 = labels.len() == 4
        && labels[..3]
            .iter()
            .all(|l| !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()));
    let ipv6 = s.matches(':').count() >= 2
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    let host = labels.len() >= 3
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|l| l.len() >= 2 && l.bytes().all(|b| b.is_ascii_lowercase()));
    ipv4 || ipv6 || host
}
