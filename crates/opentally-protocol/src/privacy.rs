//! What the collector ever stores of a message: an allow-list per message type, applied in every
//! mode (strict, lenient, or no catalog at all), after the catalog's own checks.
//!
//! A field is stored only when this module names it. Everything else (`traits`, `previousId`,
//! `groupId`, `userId`, `name` (but a page's or a screen's), `category`, top-level `ip` or `host`, unknown
//! fields, context fields outside the standard blocks) is dropped, whatever its spelling: names
//! are matched exactly against the allow-list, so `IP`, `Ip` and `ip` all miss it alike.
//!
//! | type | kept besides type, message id, install hash and time |
//! |---|---|
//! | `track` | `event`, `properties` (the catalog's, or short scalars without one), `context` |
//! | `page` | `name`, `context` |
//! | `screen` | `name`, `context` |
//! | `identify`, `group`, `alias` | `context` |
//!
//! `context` keeps only scalar leaves: the standard fields the SDKs send ([`STANDARD_CONTEXT`])
//! that the catalog keeps (all of them without a catalog), and the leaves a catalog names
//! explicitly; a string there is at most 64 printable ASCII characters, with no `@`, `/` or
//! `\`, not shaped like an IP address or a host name. A `messageId` not shaped like an id is
//! stored as its hash. `error_type` must look like a class name in every mode; without a catalog, one
//! that does not is replaced by `invalid` (a catalog rejects or drops it).

use serde_json::Value;

use crate::catalog::{self, Catalog};
use crate::context::ContextAllow;
pub use crate::context::{
    MAX_CONTEXT_CHARS, STANDARD_CONTEXT, STANDARD_CONTEXT_TOP, looks_like_address,
};
use crate::message::{Map, Message, MessageType};
pub use crate::names::{
    IDENTIFYING_NAMES, IDENTIFYING_WORDS, is_identifying, is_open_property_name,
};
use crate::reject::Rejection;

/// Checks a message against the project's catalog (when it has one) and strips every field
/// that may not be stored. Returns the dotted paths of what was dropped or replaced, or the
/// catalog's rejection.
///
/// `userId` and `anonymousId` stay for the caller, which replaces them with the keyed install
/// hash; nothing else that identifies survives this function.
pub fn apply(m: &mut Message, catalog: Option<&Catalog>) -> Result<Vec<String>, Rejection> {
    let mut dropped = Vec::new();
    if let Some(c) = catalog {
        c.check(m, &mut dropped)?;
    } else if m.kind == MessageType::Track {
        retain_open_properties(&mut m.properties, &mut dropped);
    }
    retain_fields(m, &mut dropped);
    hash_odd_message_id(m, &mut dropped);
    let allow: &ContextAllow = match catalog {
        Some(c) => &c.context_allow,
        None => ContextAllow::standard(),
    };
    allow.retain_context(&mut m.context, &mut dropped);
    Ok(dropped)
}

/// A message id shaped like one (letters, digits, `_ . : + -`, as UUIDs and every client's
/// ids are) is stored as sent. Any other (an e-mail address, a path, a sentence) is stored as a
/// hash of itself, `h-` and 32 hex digits: the same id always gives the same hash, so repeats
/// are still found, and the text never reaches disk.
fn hash_odd_message_id(m: &mut Message, dropped: &mut Vec<String>) {
    let Some(id) = &m.message_id else { return };
    let shaped = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:+-".contains(&b));
    if !shaped {
        let hash = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
        m.message_id = Some(format!("h-{hash:032x}"));
        dropped.push("messageId".to_owned());
    }
}

/// The top-level fields of each message type that are stored; the rest are dropped.
fn retain_fields(m: &mut Message, dropped: &mut Vec<String>) {
    let kind = m.kind;
    let mut drop_str = |field: &str, v: &mut Option<String>, keep: bool| {
        if !keep && v.take().is_some() {
            dropped.push(field.to_owned());
        }
    };
    drop_str("event", &mut m.event, kind == MessageType::Track);
    drop_str(
        "name",
        &mut m.name,
        matches!(kind, MessageType::Page | MessageType::Screen),
    );
    // A page's category is free text nobody declared; its name is the page's event name.
    drop_str("category", &mut m.category, false);
    drop_str("groupId", &mut m.group_id, false);
    drop_str("previousId", &mut m.previous_id, false);
    // The effective time is stored in `timestamp`; the client's own clock readings are not.
    m.original_timestamp = None;
    m.sent_at = None;
    let mut drop_map = |field: &str, map: &mut Map| {
        dropped.extend(
            std::mem::take(map)
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| format!("{field}.{k}")),
        );
    };
    if kind != MessageType::Track {
        drop_map("properties", &mut m.properties);
    }
    drop_map("traits", &mut m.traits);
    // `integrations` is a Segment routing hint with no meaning here: dropped silently.
    m.extra.remove("integrations");
    dropped.extend(std::mem::take(&mut m.extra).into_iter().map(|(k, _)| k));
}

/// The longest string property value stored without a catalog.
pub const MAX_OPEN_STRING_CHARS: usize = 64;

/// True for a value shaped like an enum value or a bucket (`cbpe`, `1.2.0`, `1000-10000`,
/// `<1`, `io::ErrorKind`): at most [`MAX_OPEN_STRING_CHARS`] ASCII letters, digits and
/// `_ . - : + < > =`. A path, an e-mail address, a URL or a sentence is not.
pub fn is_enum_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_OPEN_STRING_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-:+<>=".contains(&b))
}

/// Without a catalog, a `track`'s properties are kept when they are booleans, numbers or
/// enum-like strings ([`is_enum_like`]) that do not look like an address, under a name that
/// is an identifier with no identifying word ([`is_open_property_name`]); the reserved ones
/// must have their shape, and an `error_type` that does not look like a class name becomes
/// `invalid`.
fn retain_open_properties(props: &mut Map, dropped: &mut Vec<String>) {
    props.retain(|name, value| {
        if value.is_null() {
            return false;
        }
        if name == "error_type" && catalog::check_reserved(name, value).is_err() {
            *value = Value::String(INVALID_ERROR_TYPE.to_owned());
            dropped.push(format!("properties.{name}"));
            return true;
        }
        let kept = if catalog::RESERVED_PROPERTIES.contains(&name.as_str()) {
            catalog::check_reserved(name, value).is_ok()
        } else {
            is_open_property_name(name)
                && match value {
                    Value::Bool(_) | Value::Number(_) => true,
                    Value::String(s) => is_enum_like(s) && !looks_like_address(s),
                    Value::Null | Value::Array(_) | Value::Object(_) => false,
                }
        };
        if !kept {
            dropped.push(format!("properties.{name}"));
        }
        kept
    });
}

/// What an `error_type` that is not a class name is stored as, without a catalog.
pub const INVALID_ERROR_TYPE: &str = "invalid";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_like_values_are_kept_and_free_text_is_not() {
        for ok in [
            "cbpe",
            "1.2.0",
            "1000-10000",
            "<1",
            ">=1e18",
            "io::ErrorKind",
            "a+b",
            "x_y",
        ] {
            assert!(is_enum_like(ok), "{ok}");
        }
        for bad in [
            "",
            "/home/alice/secret.csv",
            "alice@example.com",
            "https://intranet.example/a",
            "Alice Liddell",
            "C:\\Users\\alice",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!is_enum_like(bad), "{bad}");
        }
    }

    #[test]
    fn identifying_names_match_in_any_case_and_spelling() {
        for name in [
            "IP",
            "Ip",
            "ip",
            "Host-Name",
            "E_Mail",
            "USER_AGENT",
            "mac-address",
        ] {
            assert!(is_identifying(name), "{name}");
        }
        assert!(!is_identifying("method"));
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;

    #[test]
    fn property_names_with_an_identifying_word_or_odd_characters_are_refused() {
        for bad in [
            "emailAddress",
            "user.email",
            "client_ip",
            "remote_addr",
            "ipv4",
            "anonymousId",
            "login",
            "uid",
            "account",
            "machine",
            "phone",
            "ssn",
            "host name",
            "ip ",
            "_ip",
            "ip\u{200b}",
            "\u{399}p",
            "CNRY_alice@example.com",
            "/home/x/secret.csv",
            "Alice Liddell",
            "",
            "9lives",
        ] {
            assert!(!is_open_property_name(bad), "{bad:?}");
        }
        for ok in [
            "method",
            "chunk_size",
            "n_rows",
            "format",
            "model.kind",
            "dry-run",
            "_private",
        ] {
            assert!(is_open_property_name(ok), "{ok:?}");
        }
    }

    #[test]
    fn addresses_are_recognised_and_versions_are_not() {
        for addr in [
            "10.77.1.9",
            "10.77.1.x",
            "fe80::1",
            "::1",
            "alice-laptop.corp.example.com",
        ] {
            assert!(looks_like_address(addr), "{addr}");
        }
        for not in [
            "1.2.0",
            "io::ErrorKind",
            "cbpe",
            "sklearn.linear_model.Ridge",
            "3.11.7",
        ] {
            assert!(!looks_like_address(not), "{not}");
        }
    }
}
