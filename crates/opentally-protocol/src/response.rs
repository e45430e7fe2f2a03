//! Response bodies of the ingest API.

use serde::{Deserialize, Serialize};

use crate::reject::Reason;

/// The body of a 200: how many messages were accepted and why each other one was not.
///
/// `ok` is true whenever the request was processed; per-message rejections do not make it
/// false, as clients must not retry them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse {
    pub ok: bool,
    /// Messages stored by this request or already stored (duplicates count as accepted).
    pub accepted: usize,
    /// Of `accepted`, how many were already stored and so not stored again.
    #[serde(default)]
    pub duplicates: usize,
    pub rejected: Vec<ItemRejection>,
    /// The operator's remote control for the batch's app version, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<crate::control::Control>,
}

/// One message that was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemRejection {
    /// Its position in the batch, from 0.
    pub index: usize,
    pub message_id: Option<String>,
    pub reason: Reason,
    /// A sentence naming the field at fault.
    pub detail: String,
}

/// The body of any other status: what went wrong with the request as a whole. The field names
/// `code` and `message` are the ones Segment's clients read into their errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub ok: bool,
    /// A stable snake_case code.
    pub code: String,
    /// A sentence saying what was wrong.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ErrorResponse {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            ok: false,
            code: code.into(),
            message: message.into(),
            hint: None,
        }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> ErrorResponse {
        self.hint = Some(hint.into());
        self
    }
}
