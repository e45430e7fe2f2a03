//! Checks every message must pass whatever its project's catalog says: ids present and short,
//! the fields its type needs, and a timestamp that could be real.

use crate::batch::Limits;
use crate::message::{Message, MessageType};
use crate::reject::{Reason, Rejection};
use crate::timestamp::Timestamp;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Checks the fields a message of its type must have, and their lengths.
pub fn check_message(m: &Message, limits: &Limits) -> Result<(), Rejection> {
    let message_id = required("messageId", m.message_id.as_deref())?;
    check_len("messageId", message_id, limits.max_message_id_chars)?;
    let user_id = non_empty(m.user_id.as_deref());
    let anonymous_id = non_empty(m.anonymous_id.as_deref());
    if m.install_id().is_none() {
        return Err(Rejection::new(
            Reason::MissingField,
            "one of `userId` or `anonymousId` is required",
        ));
    }
    for (field, value) in [
        ("userId", user_id),
        ("anonymousId", anonymous_id),
        ("groupId", m.group_id.as_deref()),
        ("previousId", m.previous_id.as_deref()),
    ] {
        if let Some(v) = value {
            check_len(field, v, limits.max_id_chars)?;
        }
    }
    match m.kind {
        MessageType::Track => {
            let event = required("event", m.event.as_deref())?;
            check_len("event", event, limits.max_name_chars)?;
        }
        MessageType::Group => {
            required("groupId", m.group_id.as_deref())?;
        }
        MessageType::Alias => {
            required("previousId", m.previous_id.as_deref())?;
            required("userId", m.user_id.as_deref())?;
        }
        MessageType::Page | MessageType::Screen => {
            if let Some(name) = m.name.as_deref() {
                check_len("name", name, limits.max_name_chars)?;
            }
        }
        MessageType::Identify => {}
    }
    Ok(())
}

/// When the event happened, on the server's clock.
///
/// The client's `timestamp` (or `originalTimestamp`) is moved by the gap between the server's
/// receipt and the client's `sentAt`, which cancels a wrong client clock. A result slightly in
/// the future (within `max_future_secs`) is clamped to the receipt time; one further out, or
/// older than `max_past_secs`, or before the year 2000, is rejected. A message without any
/// timestamp happened when it was received.
pub fn effective_timestamp(
    m: &Message,
    envelope_sent_at: Option<Timestamp>,
    received_at: Timestamp,
    limits: &Limits,
) -> Result<Timestamp, Rejection> {
    let Some(base) = m.timestamp.or(m.original_timestamp) else {
        return Ok(received_at);
    };
    let corrected = match m.sent_at.or(envelope_sent_at) {
        Some(sent) => base.checked_add_nanos(received_at.unix_nanos() - sent.unix_nanos()),
        None => Some(base),
    }
    .ok_or_else(|| out_of_range("the corrected timestamp is outside the years 0000-9999"))?;
    let ahead = corrected.unix_nanos() - received_at.unix_nanos();
    if ahead > i128::from(limits.max_future_secs) * NANOS_PER_SEC {
        return Err(out_of_range(format!(
            "the timestamp is {}s after receipt; the limit is {}s",
            ahead / NANOS_PER_SEC,
            limits.max_future_secs
        )));
    }
    let corrected = corrected.min(received_at);
    let behind = received_at.unix_nanos() - corrected.unix_nanos();
    if behind > i128::from(limits.max_past_secs) * NANOS_PER_SEC {
        return Err(out_of_range(format!(
            "the timestamp is {}s before receipt; the limit is {}s",
            behind / NANOS_PER_SEC,
            limits.max_past_secs
        )));
    }
    if corrected.year() < 2000 {
        return Err(out_of_range("the timestamp is before the year 2000"));
    }
    Ok(corrected)
}

fn out_of_range(detail: impl Into<String>) -> Rejection {
    Rejection::new(Reason::TimestampOutOfRange, detail)
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

fn required<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, Rejection> {
    non_empty(value)
        .ok_or_else(|| Rejection::new(Reason::MissingField, format!("`{field}` is required")))
}

fn check_len(field: &str, value: &str, max_chars: usize) -> Result<(), Rejection> {
    // Count characters only when the byte length could be over; most ids are short ASCII.
    if value.len() > max_chars && value.chars().count() > max_chars {
        return Err(Rejection::new(
            Reason::TooLong,
            format!(
                "`{field}` is {} characters; the limit is {max_chars}",
                value.chars().count()
            ),
        ));
    }
    Ok(())
}
