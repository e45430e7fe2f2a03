//! The insights API: typed insights and read-only SQL over one project's events, for holders of
//! the project's admin token.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentally_protocol::{ErrorResponse, Timestamp};
use opentally_store::{InsightQuery, QueryError, query};
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
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let mut body = ErrorResponse::new(code, self.to_string());
        if matches!(self, ApiError::MissingToken | ApiError::Forbidden(_)) {
            body = body.with_hint("`opentally project create` prints a project's admin token");
        }
        (status, Json(body)).into_response()
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
        Ok(Some(p)) if p.name == project => Ok(()),
        Ok(_) => Err(ApiError::Forbidden(project.to_owned())),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// Decodes `a=1&b=x%20y` into pairs, in order.
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `GET /api/v1/projects/{project}/insights/{kind}?event=…&by=…&since=…`
pub async fn insight(
    State(state): State<Arc<AppState>>,
    Path((project, kind)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorise(&state, &headers, &project)?;
    let q = InsightQuery::from_params(&kind, &query_pairs(raw.as_deref()), Timestamp::now())?;
    let snapshot = state.store.snapshot(&project);
    let result = q.run(&snapshot, &state.config.query_limits).await?;
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
    body: Bytes,
) -> Result<Response, ApiError> {
    authorise(&state, &headers, &project)?;
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
    let snapshot = state.store.snapshot(&project);
    let table = query::run_sql(&snapshot, &text, &state.config.query_limits).await?;
    Ok(Json(SqlResult {
        table,
        query_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::query_pairs;

    #[test]
    fn query_strings_decode() {
        assert_eq!(
            query_pairs(Some(
                "event=fit&by=app.version&where=os.name%3Dlinux%2Cmac&x=a+b&bad=%zz&end=%4"
            )),
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
        assert!(query_pairs(None).is_empty());
    }
}
