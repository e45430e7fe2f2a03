//! The end user's rights on the collector: `POST /v1/privacy/erase` and
//! `GET /v1/privacy/export`.
//!
//! Possession of the install id is the credential: the id is secret to the machine (the SDK
//! derives it there and sends it only to the app's collector), and the project's write key, which
//! is public, says whose events it names. Only UUID-shaped ids are taken, the shape SDKs make:
//! a `userId` a Segment client sent (an e-mail, say) may be known to others. Both answers are the same whether or not anything was
//! stored under the id, so neither tells a caller that an id was ever seen. The id is never
//! logged; only its keyed hash, the form the events are stored under, reaches the durable log.
//!
//! An erasure is a record in the durable log, appended and synced like an ingest before the
//! 200: whatever loads the log removes the install's events in the records before it, from the
//! parts, the tail and the log itself (the store seals past the erasure, and the loader has the
//! writer start a new segment, so the segments holding the events are deleted).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentally_protocol::{ErrorResponse, Timestamp};
use opentally_store::QueryError;
use serde::Deserialize;

use crate::AppState;
use crate::conn::ClientKey;
use crate::error::IngestError;
use crate::meta::Project;

/// The header an export names the install id in: never the URL, which proxies and access logs
/// keep.
pub const INSTALL_ID_HEADER: &str = "opentally-install-id";

/// The largest erase request body.
const MAX_BODY_BYTES: usize = 4 << 10;

/// The longest an export waits for the store to load what the log held when it came.
const EXPORT_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(5);

/// What an erasure answers, stored data or not.
pub const ERASED: &str = "every event stored under this install id is being removed from this \
    collector's log and store; the request is durable and needs no retry";

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "too many erase and export requests, from this client or for this project: try again in {0} s"
    )]
    /// Over the rate; the next request is allowed after this many seconds.
    RateLimited(u32),
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl IntoResponse for PrivacyError {
    fn into_response(self) -> Response {
        if let PrivacyError::Ingest(e) = self {
            return e.into_response();
        }
        let (status, code, retry) = match &self {
            PrivacyError::Ingest(_) => unreachable!("answered above"),
            PrivacyError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            PrivacyError::RateLimited(secs) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", Some(*secs))
            }
            PrivacyError::Query(e @ QueryError::Memory(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, e.reason(), None)
            }
            PrivacyError::Query(e @ QueryError::Busy(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, e.reason(), Some(2))
            }
            PrivacyError::Query(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.reason(), None),
        };
        let mut response =
            (status, Json(ErrorResponse::new(code, self.to_string()))).into_response();
        if let Some(secs) = retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An erase request's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EraseBody {
    /// The id the install sends as `anonymousId` (or, without one, as `userId`).
    install_id: String,
    /// The project's write key, when no header carries it.
    #[serde(default)]
    write_key: Option<String>,
}

/// `POST /v1/privacy/erase` with `{"installId": "…"}` and the project's write key.
pub async fn erase(
    State(state): State<Arc<AppState>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let client = extensions.get::<ClientKey>().copied();
    let response = match erase_inner(&state, client, &headers, body).await {
        Ok(()) => Json(serde_json::json!({"ok": true, "message": ERASED})).into_response(),
        Err(e) => e.into_response(),
    };
    state
        .metrics
        .count_request("privacy/erase", response.status());
    response
}

async fn erase_inner(
    state: &AppState,
    client: Option<ClientKey>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), PrivacyError> {
    let received_at = Timestamp::now();
    if state.disk_low.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(IngestError::DiskLow.into());
    }
    let header_key = crate::auth::header_write_key(headers);
    let project = match &header_key {
        Some(k) => Some(state.authorise(k)?),
        None => None,
    };
    let raw = crate::ingest::read_capped(body, MAX_BODY_BYTES).await?;
    let req: EraseBody = serde_json::from_slice(&raw).map_err(|e| {
        PrivacyError::BadRequest(format!(
            "the body must be a JSON object {{\"installId\": \"…\"}}: {e}"
        ))
    })?;
    let project = match project {
        Some(p) => p,
        None => state.authorise(req.write_key.as_deref().ok_or(IngestError::MissingKey)?)?,
    };
    let install = checked_install(state, client, &project, &req.install_id)?;
    crate::ingest::make_durable(
        state,
        &project,
        received_at,
        crate::encoded::EncodedEvents::default(),
        Some(install),
    )
    .await?;
    state.metrics.erasures.inc();
    tracing::info!(project = %project.name, "install erasure logged");
    Ok(())
}

/// `GET /v1/privacy/export` with the install id in the `OpenTally-Install-Id` header and the
/// project's write key in a header: every stored event of the install, as
/// `{"ok": true, "events": […]}`.
pub async fn export(
    State(state): State<Arc<AppState>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    let client = extensions.get::<ClientKey>().copied();
    let response = match export_inner(&state, client, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state
        .metrics
        .count_request("privacy/export", response.status());
    response
}

async fn export_inner(
    state: &AppState,
    client: Option<ClientKey>,
    headers: &HeaderMap,
) -> Result<Response, PrivacyError> {
    let key = crate::auth::header_write_key(headers).ok_or(IngestError::MissingKey)?;
    let project = state.authorise(&key)?;
    let id = headers
        .get(INSTALL_ID_HEADER)
        .ok_or_else(|| {
            PrivacyError::BadRequest(format!(
                "name the install id in the `{INSTALL_ID_HEADER}` header (never in the URL)"
            ))
        })?
        .to_str()
        .map_err(|_| PrivacyError::BadRequest("the install id is not ASCII text".into()))?;
    let install = checked_install(state, client, &project, id)?;
    // Read your writes: what the log held when the export came (events, and an erasure just
    // answered) is loaded first, for a few seconds at most.
    let durable = state.writer.durable_pos();
    let deadline = tokio::time::Instant::now() + EXPORT_CATCH_UP;
    while state.store.stats().loaded_to < durable {
        if tokio::time::Instant::now() >= deadline {
            // A partial answer would be wrong, not late: say so, and when to ask again.
            return Err(IngestError::StoreBehind.into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let answer = state
        .backend
        .export(&project.name, &install, state.config.query_limits);
    let lines = state.queries.run(answer).await?;
    // JSON lines into one JSON array, without parsing them again.
    let mut body = Vec::with_capacity(lines.len() + 32);
    body.extend_from_slice(b"{\"ok\":true,\"events\":[");
    for (i, line) in lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(line);
    }
    body.extend_from_slice(b"]}");
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The keyed hash of an install id, once the id is one an SDK could have sent and the project's
/// privacy requests are within their rate.
fn checked_install(
    state: &AppState,
    client: Option<ClientKey>,
    project: &Project,
    id: &str,
) -> Result<String, PrivacyError> {
    // Only ids shaped as SDKs make them (a UUID, 122 random bits) are a credential: a Segment
    // client's `userId` (an e-mail, a database key) can be known to others, so its events
    // cannot be fetched or erased by naming it.
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(PrivacyError::BadRequest(
            "the install id must be the UUID the SDK made (`opentally status` shows it)".into(),
        ));
    }
    // Each client has its own allowance, so that one cannot use up everyone's; the project's,
    // ten times larger, bounds the work (each erasure rewrites the parts that hold the install).
    // A request without a peer (the router driven directly, in tests) counts against the
    // project's alone.
    let per_client = match client {
        Some(c) => state.privacy_limiter.check_key(&(project.id, c.0)),
        None => Ok(()),
    };
    if let Err(not_until) =
        per_client.and_then(|()| state.privacy_project_limiter.check_key(&project.id))
    {
        // When the next request will be allowed, rounded up: an SDK waits that long and asks
        // again (`opentally forget` does, up to 10 s).
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let secs = u32::try_from(wait.as_secs())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        return Err(PrivacyError::RateLimited(secs));
    }
    Ok(crate::ingest::install_hash(
        &state.install_mac,
        project.id,
        id,
    ))
}
