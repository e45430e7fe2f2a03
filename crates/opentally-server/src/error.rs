//! Every way a request can fail as a whole, mapped to its HTTP status once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentally_protocol::{BatchError, ErrorResponse};

/// Seconds a client should wait before retrying after back-pressure.
const RETRY_BUSY_SECS: u32 = 1;
const RETRY_DISK_SECS: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("free disk space is below the low-water mark")]
    DiskLow,
    #[error("the disk is full")]
    DiskFull,
    #[error("the body is over {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    #[error("content encoding {0:?} is not supported")]
    UnsupportedEncoding(String),
    #[error("the gzip body is corrupt: {0}")]
    BadGzip(String),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(
        "no write key: send it as Basic auth (key:), a Bearer token, an X-Write-Key header or a body writeKey"
    )]
    MissingKey,
    #[error("the write key is not valid")]
    BadKey,
    #[error("this write key sends more requests than its rate allows")]
    RateLimited,
    #[error("the log writer is behind; retry shortly")]
    Busy,
    #[error("the store is behind sealing acknowledged events; retry shortly")]
    StoreBehind,
    #[error("the collector cannot store events right now: {0}")]
    Unavailable(String),
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::DiskLow | IngestError::DiskFull | IngestError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            IngestError::BodyTooLarge { .. }
            | IngestError::Batch(
                BatchError::BodyTooLarge { .. } | BatchError::ContextTooLarge { .. },
            ) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::BodyRead(_) | IngestError::BadGzip(_) | IngestError::Batch(_) => {
                StatusCode::BAD_REQUEST
            }
            IngestError::MissingKey | IngestError::BadKey => StatusCode::UNAUTHORIZED,
            IngestError::RateLimited | IngestError::Busy | IngestError::StoreBehind => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            IngestError::DiskLow => "disk_low",
            IngestError::DiskFull => "disk_full",
            IngestError::BodyTooLarge { .. } => "body_too_large",
            IngestError::BodyRead(_) => "body_unreadable",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::BadGzip(_) => "invalid_gzip",
            IngestError::Batch(e) => e.code(),
            IngestError::MissingKey => "missing_write_key",
            IngestError::BadKey => "invalid_write_key",
            IngestError::RateLimited => "rate_limited",
            IngestError::Busy => "busy",
            IngestError::StoreBehind => "store_behind",
            IngestError::Unavailable(_) => "unavailable",
        }
    }

    fn retry_after(&self) -> Option<u32> {
        match self {
            IngestError::DiskLow | IngestError::DiskFull => Some(RETRY_DISK_SECS),
            IngestError::RateLimited
            | IngestError::Busy
            | IngestError::StoreBehind
            | IngestError::Unavailable(_) => Some(RETRY_BUSY_SECS),
            _ => None,
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let body = ErrorResponse::new(self.code(), self.to_string());
        let body = match &self {
            IngestError::BadKey => body.with_hint(
                "create a project with `opentally project create NAME` and use its write key",
            ),
            _ => body,
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
