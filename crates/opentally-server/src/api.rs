//! The insights API: typed insights and read-only SQL over one project's events, for holders of
//! the project's admin token.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use opentally_protocol::{ErrorResponse, Timestamp};
use opentally_store::{InsightQuery, QueryError};
use serde::{Deserialize, Serialize};

use crate::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no admin token: send it as `Authorization: Bearer <admin token>`")]
    MissingToken,
    #[error("the admin token is not valid for project `{0}`")]
    Forbidden(String),
    #[error("the request body is not valid: {0}")]
    BadBody(String),
    #[error("the query string is not valid: {0}")]
    BadQueryString(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("the project database cannot be read: {0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, "missing_admin_token"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "invalid_admin_token"),
            ApiError::BadBody(_) => (StatusCode::BAD_REQUEST, "bad_body"),
            ApiError::BadQueryString(_) => (StatusCode::BAD_REQUEST, "bad_query_string"),
            ApiError::Query(e @ QueryError::BadQuery(_)) => (StatusCode::BAD_REQUEST, e.reason()),
            ApiError::Query(e @ QueryError::Timeout(_)) => {
                (StatusCode::GATEWAY_TIMEOUT, e.reason())
            }
            ApiError::Query(e @ QueryError::Memory(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, e.reason())
            }
            ApiError::Query(e @ QueryError::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, e.reason())
            }
            ApiError::Query(e @ QueryError::Busy(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, e.reason())
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let mut body = ErrorResponse::new(code, self.to_string());
        if matches!(self, ApiError::MissingToken | ApiError::Forbidden(_)) {
            body = body.with_hint("`opentally project create` prints a project's admin token");
        }
        let retry = matches!(self, ApiError::Query(QueryError::Busy(_)));
        let mut response = (status, Json(body)).into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        }
        response
    }
}

/// Checks that the bearer token is the admin token of `project`.
fn authorise(state: &AppState, headers: &HeaderMap, project: &str) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::MissingToken)?;
    match state.meta.project_by_admin_token(token) {
        Ok(Some(p)) if p.name == project => {
            crate::conn::checked();
            Ok(())
        }
        Ok(_) => Err(ApiError::Forbidden(project.to_owned())),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// The query string's pairs, in order, decoded by `serde_urlencoded` (through axum's `Query`):
/// percent escapes that are not UTF-8 become U+FFFD, never a panic.
fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .map_err(|e| ApiError::BadQueryString(e.body_text()))
}

/// `GET /api/v1/projects/{project}/insights/{kind}?event=…&by=…&since=…`
pub async fn insight(
    State(state): State<Arc<AppState>>,
    Path((project, kind)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorise(&state, &headers, &project)?;
    let q = InsightQuery::from_params(&kind, &query_pairs(&uri)?, Timestamp::now())?;
    let answer = state
        .backend
        .insight(&project, q, state.config.query_limits);
    let result = state.queries.run(answer).await?;
    Ok(Json(result).into_response())
}

#[derive(Debug, Deserialize)]
struct SqlBody {
    sql: String,
}

#[derive(Debug, Serialize)]
struct SqlResult {
    #[serde(flatten)]
    table: opentally_store::Table,
    query_ms: f64,
}

/// `POST /api/v1/projects/{project}/sql` with `{"sql": "SELECT …"}` or the statement as plain
/// text: one read-only statement over the project's `events` table.
pub async fn sql(
    State(state): State<Arc<AppState>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    // The token first: no byte of the body is read for a client without one.
    authorise(&state, &headers, &project)?;
    let limit = opentally_store::guard::MAX_SQL_BYTES + 4096;
    let body: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        ApiError::BadBody(format!("cannot read the body (at most {limit} bytes): {e}"))
    })?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let text = if is_json {
        serde_json::from_slice::<SqlBody>(&body)
            .map_err(|e| ApiError::BadBody(format!("expected {{\"sql\": \"SELECT …\"}}: {e}")))?
            .sql
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::BadBody("the statement is not UTF-8".into()))?
    };
    let started = std::time::Instant::now();
    let answer = state.backend.sql(&project, text, state.config.query_limits);
    let table = state.queries.run(answer).await?;
    Ok(Json(SqlResult {
        table,
        query_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::query_pairs;

    fn pairs(uri: &str) -> Vec<(String, String)> {
        query_pairs(&uri.parse().unwrap()).unwrap()
    }

    #[test]
    fn query_strings_decode() {
        assert_eq!(
            pairs("/x?event=fit&by=app.version&where=os.name%3Dlinux%2Cmac&x=a+b&bad=%zz&end=%4"),
            [
                ("event", "fit"),
                ("by", "app.version"),
                ("where", "os.name=linux,mac"),
                ("x", "a b"),
                ("bad", "%zz"),
                ("end", "%4"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert!(pairs("/x").is_empty());
    }

    /// Regression: the hand-written decoder sliced the text at a `%` escape and panicked when
    /// a multi-byte character followed it (`?event=%aé`).
    #[test]
    fn escapes_beside_utf8_and_invalid_utf8_decode_without_panic() {
        assert_eq!(pairs("/x?event=%a%C3%A9")[0].1, "%aé");
        assert_eq!(pairs("/x?event=%aé")[0].1, "%aé");
        assert_eq!(pairs("/x?event=%ff")[0].1, "\u{fffd}");
    }
}
