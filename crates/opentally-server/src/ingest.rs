//! The ingest path: read the body (capped), decompress (capped), parse, authenticate, check
//! each message, normalise it, and hand the accepted ones to the writer. The 200 goes out only
//! once the writer says they are durable.

use std::io::Read;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use opentally_protocol::{
    BatchResponse, Control, ItemRejection, Message, MessageType, ParsedRequest, Reason, Rejection,
    Timestamp, check_message, effective_timestamp, parse_batch, parse_single,
};
use tokio::sync::oneshot;

use crate::AppState;
use crate::encoded::EncodedEvents;
use crate::error::IngestError;
use crate::meta::Project;
use crate::metrics::ReasonLabels;
use crate::writer::{Committed, Submission, SubmitError, WriteError};
use opentally_log::StoredEvent;

/// Reads the body, refusing it as soon as it passes `limit` bytes.
pub(crate) async fn read_capped(body: Body, limit: usize) -> Result<Bytes, IngestError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            // `to_bytes` reports the limit through the error's source chain.
            let text = format!("{e}");
            let over = std::error::Error::source(&e)
                .is_some_and(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>)
                || text.contains("length limit");
            if over {
                Err(IngestError::BodyTooLarge { limit })
            } else {
                Err(IngestError::BodyRead(text))
            }
        }
    }
}

/// Decompresses a gzip body into at most `limit` bytes; a bomb stops at the cap.
fn gunzip_capped(body: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(body)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(IngestError::BodyTooLarge { limit });
    }
    Ok(out)
}

fn decode_body(headers: &HeaderMap, raw: Bytes, limit: usize) -> Result<Bytes, IngestError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(raw),
        Some("gzip" | "x-gzip") => gunzip_capped(&raw, limit).map(Bytes::from),
        Some(other) => Err(IngestError::UnsupportedEncoding(other.to_owned())),
    }
}

/// The HMAC-SHA256 key made from the server's secret, keyed once: each install hash starts from
/// its state instead of hashing the key again. `ring`'s, for its assembly SHA-256 on CPUs
/// without SHA instructions, where the portable one took 7 % of the collector's time at full
/// ingest rate (one hash an event).
pub fn install_mac(secret: &[u8; 32]) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)
}

/// Keyed hash of an install id: stable per project and server, meaningless without the server's
/// secret, so a leaked store cannot be joined with machines or other projects.
pub fn install_hash(keyed: &ring::hmac::Key, project_id: i64, install_id: &str) -> String {
    let mut mac = ring::hmac::Context::with_key(keyed);
    mac.update(&project_id.to_le_bytes());
    mac.update(install_id.as_bytes());
    crate::secret::hex(&mac.sign().as_ref()[..16])
}

/// The work a request's messages take between a parsed body and the writer, without I/O: check
/// each message, normalise it and serialise what is kept. Public for the request benchmark
/// (`benches/request.rs`), which measures the handler's CPU per event without a socket.
#[derive(Debug)]
pub struct Normaliser<'a> {
    pub limits: &'a opentally_protocol::Limits,
    pub project: &'a Project,
    pub install_mac: &'a ring::hmac::Key,
    pub install_limiter: &'a governor::DefaultKeyedRateLimiter<u128>,
    pub received_at: Timestamp,
}

/// A request's messages once checked: the accepted ones serialised for the log, in order, and
/// the rejected ones with their reasons.
#[derive(Debug, Default)]
pub struct Prepared {
    pub events: EncodedEvents,
    pub rejected: Vec<ItemRejection>,
    /// The remote control for the request's app version, if one is set.
    pub control: Option<Control>,
}

/// Per-request facts that every message of the request shares.
struct RequestCtx<'a> {
    n: &'a Normaliser<'a>,
    envelope_sent_at: Option<Timestamp>,
    batch_context: &'a opentally_protocol::Map,
    /// The last install id hashed and its hash: an SDK's batch comes from one install.
    last_install: Option<(String, String)>,
    /// The last app version looked up in the project's remote controls and its control.
    last_control: Option<(Option<String>, Option<Control>)>,
    /// The strictest control of the request's messages: the one its answer carries.
    batch_control: Option<Control>,
}

impl Normaliser<'_> {
    /// Checks and normalises every message of a request.
    pub fn prepare(&self, request: ParsedRequest) -> Prepared {
        let ParsedRequest {
            items,
            sent_at,
            context,
            ..
        } = request;
        let mut ctx = RequestCtx {
            n: self,
            envelope_sent_at: sent_at,
            batch_context: &context,
            last_install: None,
            last_control: None,
            batch_control: None,
        };
        let mut out = Prepared {
            events: EncodedEvents::with_capacity(items.len()),
            rejected: Vec::new(),
            control: None,
        };
        for (index, item) in items.into_iter().enumerate() {
            match item.message.and_then(|m| ctx.normalise(m)) {
                Ok(e) => out.events.push(self.project.id, &e),
                Err(r) => out.rejected.push(ItemRejection {
                    index,
                    message_id: item.message_id,
                    reason: r.reason,
                    detail: r.detail,
                }),
            }
        }
        out.control = ctx.batch_control;
        out
    }
}

impl RequestCtx<'_> {
    fn install_hash(&mut self, install_id: &str) -> String {
        if let Some((id, hash)) = &self.last_install
            && id == install_id
        {
            return hash.clone();
        }
        let hash = install_hash(self.n.install_mac, self.n.project.id, install_id);
        self.last_install = Some((install_id.to_owned(), hash.clone()));
        hash
    }

    /// The project's remote control for this message's app version.
    fn control(&mut self, m: &Message) -> Option<Control> {
        let version = crate::control::message_app_version(m, self.batch_context);
        let control = match &self.last_control {
            Some((v, c)) if *v == version => *c,
            _ => {
                let c = crate::control::control_for(&self.n.project.collection, version.as_deref());
                self.last_control = Some((version, c));
                c
            }
        };
        if let Some(c) = control {
            self.batch_control = Some(match self.batch_control {
                Some(b) => crate::control::strictest(b, c),
                None => c,
            });
        }
        control
    }

    /// Checks one message and turns it into what is stored.
    fn normalise(&mut self, mut m: Message) -> Result<StoredEvent, Rejection> {
        m.merge_context(self.batch_context);
        if m.message_id.as_deref().is_none_or(str::is_empty) {
            m.message_id = Some(uuid::Uuid::now_v7().to_string());
        }
        let limits = self.n.limits;
        check_message(&m, limits)?;
        let timestamp = effective_timestamp(&m, self.envelope_sent_at, self.n.received_at, limits)?;
        // The operator's remote control, for the version the message came with: read before the
        // allow-list, which may drop or reshape `context` (a version shaped like an address, a
        // catalog that does not keep `app`).
        if !self.n.project.collection.is_empty()
            && let Some(install_id) = m.install_id()
            && let Some(control) = self.control(&m)
            && !control.admits(install_id)
        {
            return Err(Rejection::new(
                Reason::NotCollected,
                if control.collect {
                    "this install is outside the sample the project keeps"
                } else {
                    "the project does not collect from this app version"
                },
            ));
        }
        // The catalog's checks, then the allow-list of what is ever stored, in every mode.
        opentally_protocol::privacy::apply(&mut m, self.n.project.catalog.as_deref())?;
        let Some(install_id) = m.install_id() else {
            return Err(Rejection::new(
                Reason::MissingField,
                "one of `userId` or `anonymousId` is required",
            ));
        };
        let install = self.install_hash(install_id);
        let limiter_key = xxhash_rust::xxh3::xxh3_128(install.as_bytes());
        if self.n.install_limiter.check_key(&limiter_key).is_err() {
            return Err(Rejection::new(
                Reason::RateLimited,
                "this install sends more events than its rate allows",
            ));
        }
        // The raw ids never reach the log: the keyed hash stands in for them.
        m.anonymous_id = None;
        m.user_id = None;
        m.timestamp = Some(timestamp);
        m.sent_at = None;
        Ok(StoredEvent {
            message_id: m.message_id.clone().expect("filled above"),
            install,
            timestamp,
            message: m,
        })
    }
}

/// `POST /v1/batch` and the single-message endpoints (`kind` is the endpoint's type).
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    kind: Option<MessageType>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = kind.map_or("batch", MessageType::as_str);
    let response = match ingest_inner(&state, kind, &headers, body).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(error = %e, route, "ingest refused");
            }
            e.into_response()
        }
    };
    state.metrics.count_request(route, response.status());
    response
}

async fn ingest_inner(
    state: &AppState,
    kind: Option<MessageType>,
    headers: &HeaderMap,
    body: Body,
) -> Result<BatchResponse, IngestError> {
    let received_at = Timestamp::now();
    if state.disk_low.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(IngestError::DiskLow);
    }
    if state.store_lag() > state.config.store_max_unsealed as u64 {
        return Err(IngestError::StoreBehind);
    }
    let limits = &state.config.limits;
    // A request whose key is in a header is authenticated and rate-limited before a byte of
    // its body is read; a key that can only be in the body waits for the (capped) read and
    // the parse.
    let mut project = match crate::auth::header_write_key(headers) {
        Some(k) => Some(state.authorise(&k)?),
        None => None,
    };
    let raw = read_capped(body, limits.max_body_bytes).await?;
    let decoded = decode_body(headers, raw, limits.max_body_bytes)?;
    let parsed = match kind {
        None => parse_batch(&decoded, limits)?,
        Some(k) => parse_single(&decoded, k, limits)?,
    };
    if project.is_none() {
        let key = parsed.write_key.as_ref().ok_or(IngestError::MissingKey)?;
        project = Some(state.authorise(key.expose())?);
    }
    let project = project.expect("set above");
    let Prepared {
        events,
        rejected,
        control,
    } = Normaliser {
        limits,
        project: &project,
        install_mac: &state.install_mac,
        install_limiter: &state.install_limiter,
        received_at,
    }
    .prepare(parsed);
    for r in &rejected {
        state
            .metrics
            .events_rejected
            .get_or_create(&ReasonLabels {
                reason: r.reason.as_str(),
            })
            .inc();
    }
    let mut response = BatchResponse {
        ok: true,
        accepted: 0,
        duplicates: 0,
        rejected,
        control,
    };
    if events.is_empty() {
        return Ok(response);
    }
    let accepted = events.len();
    // A copy for the live view, only while a maintainer watches this project.
    let live = state
        .dashboard
        .live
        .watching(project.id)
        .then(|| events.clone());
    let committed = make_durable(state, &project, received_at, events, None).await?;
    if let Some(copy) = live {
        state.dashboard.live.push(project.id, &copy, &committed.new);
    }
    let new = committed.new.iter().filter(|n| **n).count();
    response.accepted = accepted;
    response.duplicates = accepted - new;
    state.metrics.events_accepted.inc_by(new as u64);
    state
        .metrics
        .events_duplicate
        .inc_by(response.duplicates as u64);
    Ok(response)
}

/// Hands a request's events (or, with `erase`, an install's erasure) to the log writer and waits
/// until they are durable.
pub(crate) async fn make_durable(
    state: &AppState,
    project: &Project,
    received_at: Timestamp,
    events: EncodedEvents,
    erase: Option<String>,
) -> Result<Committed, IngestError> {
    let (reply, wait) = oneshot::channel();
    let submission = Submission {
        project: Arc::from(project.name.as_str()),
        project_id: project.id,
        received_at,
        events,
        erase,
        reply,
    };
    state.writer.submit(submission).map_err(|e| match e {
        SubmitError::Busy => IngestError::Busy,
        SubmitError::Closed => IngestError::Unavailable("the log writer has stopped".into()),
    })?;
    wait.await
        .map_err(|_| IngestError::Unavailable("the log writer stopped before answering".into()))?
        .map_err(|e| match e {
            WriteError::DiskFull => IngestError::DiskFull,
            WriteError::Io(msg) => IngestError::Unavailable(msg),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store keys installs by these hashes: a server computes the ones earlier versions
    /// stored (HMAC-SHA256 of project id and install id, first 128 bits), or an install's events
    /// would split in two across an upgrade.
    #[test]
    fn install_hashes_stay_what_earlier_versions_stored() {
        let mac = install_mac(&[7; 32]);
        let hashes = [
            install_hash(&mac, 42, "0f6c2a1e-8c3b-4f5d-9a7e-2b1c3d4e5f60"),
            install_hash(&mac, 43, "0f6c2a1e-8c3b-4f5d-9a7e-2b1c3d4e5f60"),
            install_hash(&mac, 42, ""),
            install_hash(
                &install_mac(&[8; 32]),
                42,
                "0f6c2a1e-8c3b-4f5d-9a7e-2b1c3d4e5f60",
            ),
        ];
        assert_eq!(
            hashes,
            [
                "463375f77d13f7ffb3aee64f96dbe0b4",
                "f8d57d7259a7f5c685579930bf743f95",
                "06e754ab7d14f25b2decc9e0c13553eb",
                "4682cb797413c573df919e7b22fa49bc",
            ]
        );
    }
}
