//! Why a single message was not accepted: a stable code for metrics and clients, and a sentence
//! for the person reading the response.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable reason codes that appear in responses (`rejected[].reason`) and metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The item is not a JSON object.
    NotAnObject,
    /// The item's serialised size is over the per-message limit.
    MessageTooLarge,
    /// `type` is absent and the endpoint does not imply one.
    MissingType,
    /// `type` is not one of the six Segment message types.
    UnknownType,
    /// `type` disagrees with the endpoint the message was sent to (`/v1/track` with `"type":"page"`).
    TypeMismatch,
    /// A field has the wrong JSON type (an object where a string belongs, say).
    InvalidType,
    /// A required field is absent or empty.
    MissingField,
    /// A field is longer than its limit.
    TooLong,
    /// A timestamp field is not a readable ISO-8601 timestamp.
    InvalidTimestamp,
    /// The timestamp is too far in the past or the future to be real.
    TimestampOutOfRange,
    /// The project's catalog does not accept this message type.
    TypeNotAllowed,
    /// The event is not in the project's catalog (strict mode).
    UnknownEvent,
    /// A property is not in the catalog for this event (strict mode).
    UnknownProperty,
    /// A property's value breaks the catalog's type, enum or bounds.
    InvalidProperty,
    /// A property the catalog marks as required is absent.
    MissingProperty,
    /// The install sent more than its rate allows.
    RateLimited,
    /// The project does not collect from this app version, or this install is outside the
    /// sample it keeps (the operator's remote control; the response's `control` says which).
    NotCollected,
}

impl Reason {
    /// Every reason, in declaration order (for metrics that must list each label once).
    pub const ALL: [Reason; 17] = [
        Reason::NotAnObject,
        Reason::MessageTooLarge,
        Reason::MissingType,
        Reason::UnknownType,
        Reason::TypeMismatch,
        Reason::InvalidType,
        Reason::MissingField,
        Reason::TooLong,
        Reason::InvalidTimestamp,
        Reason::TimestampOutOfRange,
        Reason::TypeNotAllowed,
        Reason::UnknownEvent,
        Reason::UnknownProperty,
        Reason::InvalidProperty,
        Reason::MissingProperty,
        Reason::RateLimited,
        Reason::NotCollected,
    ];

    /// The snake_case code, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotAnObject => "not_an_object",
            Reason::MessageTooLarge => "message_too_large",
            Reason::MissingType => "missing_type",
            Reason::UnknownType => "unknown_type",
            Reason::TypeMismatch => "type_mismatch",
            Reason::InvalidType => "invalid_type",
            Reason::MissingField => "missing_field",
            Reason::TooLong => "too_long",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::TimestampOutOfRange => "timestamp_out_of_range",
            Reason::TypeNotAllowed => "type_not_allowed",
            Reason::UnknownEvent => "unknown_event",
            Reason::UnknownProperty => "unknown_property",
            Reason::InvalidProperty => "invalid_property",
            Reason::MissingProperty => "missing_property",
            Reason::RateLimited => "rate_limited",
            Reason::NotCollected => "not_collected",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message was not accepted: the code and a lowercase sentence naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}
