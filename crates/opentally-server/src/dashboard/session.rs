//! Signing in to the dashboard: a project's admin token, given once in a form, exchanged for a
//! session cookie (`HttpOnly`, `SameSite=Strict`) that names a session kept in this process's
//! memory. The session holds the token's hash, not the token, and is checked against the project
//! database on every request: rotating the admin token ends every session of the project at once.
//! Sessions end after [`LIFETIME`], at sign-out, and when the server restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use maud::html;
use serde::Deserialize;

use crate::AppState;
use crate::conn::ClientKey;
use crate::meta::Project;
use crate::secret::{hash_secret, hex};

/// The session cookie's name.
const SESSION_COOKIE: &str = "ot_session";
/// The sign-in form's anti-forgery cookie: the form carries the same value.
const LOGIN_COOKIE: &str = "ot_login";
/// How long a session lasts from sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; past it, sign-in is refused until some expire.
const MAX_SESSIONS: usize = 10_000;
/// Sessions of one project kept at most; past it, that project's oldest is dropped (never
/// another project's).
const MAX_PER_PROJECT: usize = 50;
/// Wrong tokens a client may give per minute; past them, its sign-ins are refused for a minute.
pub const LOGINS_PER_MINUTE: u32 = 10;
/// Clients kept as locked out at most (a flood of addresses clears the oldest).
const MAX_LOCKED: usize = 100_000;

/// The dashboard's sessions and its sign-in rate limit.
#[derive(Debug)]
pub struct Sessions {
    inner: Mutex<HashMap<[u8; 32], Session>>,
    /// Wrong tokens per client.
    failures: DefaultKeyedRateLimiter<u128>,
    /// Clients past their allowance of wrong tokens, until when.
    locked: Mutex<HashMap<u128, Instant>>,
}

#[derive(Debug, Clone)]
struct Session {
    /// SHA-256 of the admin token signed in with.
    token_hash: [u8; 32],
    /// The value every state-changing form of this session must carry.
    csrf: String,
    expires: Instant,
}

/// A signed-in request: the project whose admin token the session was opened with.
#[derive(Debug, Clone)]
pub struct Signed {
    pub project: Project,
    /// The session's anti-forgery value, for its forms.
    pub csrf: String,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex(&bytes)
}

impl Default for Sessions {
    fn default() -> Self {
        let per_minute = std::num::NonZeroU32::new(LOGINS_PER_MINUTE).expect("not zero");
        Sessions {
            inner: Mutex::new(HashMap::new()),
            failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
            locked: Mutex::new(HashMap::new()),
        }
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for the token with hash `token_hash`; returns the cookie's value, or
    /// `None` when the server holds as many sessions as it may.
    fn open(&self, token_hash: [u8; 32]) -> Option<String> {
        let id = random_hex();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        loop {
            let same = map.iter().filter(|(_, s)| s.token_hash == token_hash);
            if same.clone().count() < MAX_PER_PROJECT {
                break;
            }
            let Some(oldest) = same.min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        if map.len() >= MAX_SESSIONS {
            return None;
        }
        map.insert(
            hash_secret(&id),
            Session {
                token_hash,
                csrf: random_hex(),
                expires: now + LIFETIME,
            },
        );
        Some(id)
    }

    /// Forgets wrong-token counts and lock-outs that no longer matter (the upkeep's minute tick).
    pub fn prune(&self) {
        self.failures.retain_recent();
        let now = Instant::now();
        self.locked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, until| *until > now);
    }

    fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.lock();
        let key = hash_secret(id);
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        self.lock().remove(&hash_secret(id));
    }

    /// Whether `client` gave too many wrong tokens lately.
    fn is_locked(&self, client: u128) -> bool {
        let map = self
            .locked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&client)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Counts a wrong token from `client`; past the allowance, locks it out for a minute.
    fn failed(&self, client: u128) {
        if self.failures.check_key(&client).is_ok() {
            return;
        }
        let mut map = self
            .locked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if map.len() >= MAX_LOCKED {
            map.retain(|_, until| *until > now);
        }
        if map.len() < MAX_LOCKED {
            map.insert(client, now + Duration::from_secs(60));
        }
    }

    /// Sessions open now (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the whole site; `Secure` when the request
/// came over HTTPS (as a proxy in front says with `X-Forwarded-Proto`).
fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let text = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).expect("hex values and fixed attributes")
}

/// Where to go after signing in: a dashboard page, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/dashboard")
                && !n.contains("//")
                && !n.contains('\\')
                && n.chars().all(|c| c.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/dashboard",
    }
}

impl FromRequestParts<Arc<AppState>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Signed, Response> {
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map_or("/dashboard", axum::http::uri::PathAndQuery::as_str);
            let query =
                serde_urlencoded::to_string([("next", safe_next(Some(next)))]).unwrap_or_default();
            Redirect::to(&format!("/login?{query}")).into_response()
        };
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let Some(session) = state.dashboard.sessions.get(id) else {
            return Err(to_login());
        };
        match state.meta.project_by_admin_token_hash(&session.token_hash) {
            Ok(Some(project)) => {
                crate::conn::checked();
                Ok(Signed {
                    project,
                    csrf: session.csrf,
                })
            }
            // The token was rotated, or the project deleted: the session ends.
            Ok(None) => {
                state.dashboard.sessions.close(id);
                Err(to_login())
            }
            Err(e) => Err(super::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The project database cannot be read",
                &format!("{e}. Try again in a moment; if it persists, see the server's log."),
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_form(next: &str, form_value: &str, error: Option<&str>) -> maud::Markup {
    html! {
        main.narrow {
            h1 { "Sign in to OpenTally" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="form" value=(form_value);
                input type="hidden" name="next" value=(next);
                label for="token" { "Project admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
            p.muted {
                "The admin token " code { "opentally project create" } " printed for the project; "
                code { "opentally project rotate-token NAME" } " makes a new one (and signs everyone out)."
            }
        }
    }
}

/// A sign-in page with a fresh anti-forgery value, in the form and in a cookie.
fn login_page(
    headers: &HeaderMap,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let value = random_hex();
    let mut r = super::document("Sign in", None, &login_form(next, &value, error));
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, LOGIN_COOKIE, &value, Duration::from_secs(3600)),
    );
    r
}

/// `GET /login`
pub async fn login_get(
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    login_page(&headers, safe_next(q.next.as_deref()), None, StatusCode::OK)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    form: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`: checks the token, opens a session and goes to the page asked for.
pub async fn login_post(
    State(state): State<Arc<AppState>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    // The form must come from a page this server rendered for this browser.
    let expected = cookie(&headers, LOGIN_COOKIE);
    if form.form.is_empty() || expected != Some(form.form.as_str()) {
        return login_page(
            &headers,
            &next,
            Some("The sign-in form expired or came from another page. Please sign in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let client = extensions.get::<ClientKey>().map_or(0, |c| c.0);
    let sessions = &state.dashboard.sessions;
    let token = form.token.trim();
    let hash = hash_secret(token);
    match state.meta.project_by_admin_token_hash(&hash) {
        Ok(Some(_)) if !token.is_empty() => {
            let Some(id) = state.dashboard.sessions.open(hash) else {
                return super::error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many sessions",
                    "This server holds as many dashboard sessions as it may. Try again later.",
                );
            };
            let mut r = Redirect::to(&next).into_response();
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(&headers, SESSION_COOKIE, &id, LIFETIME),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(&headers, LOGIN_COOKIE, "", Duration::ZERO),
            );
            r
        }
        Ok(_) => {
            // A locked-out client's wrong tokens are answered 429; a right token still signs
            // in, so that one client cannot lock out everyone behind the same address.
            if sessions.is_locked(client) {
                let mut r = login_page(
                    &headers,
                    &next,
                    Some(&format!(
                        "Too many sign-in attempts with a wrong token from this address (at most {LOGINS_PER_MINUTE} a minute). Wait a minute, then try again."
                    )),
                    StatusCode::TOO_MANY_REQUESTS,
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                return r;
            }
            sessions.failed(client);
            login_page(
                &headers,
                &next,
                Some(
                    "That is not the admin token of any project on this server. Check it and try again.",
                ),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(e) => super::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The project database cannot be read",
            &format!("{e}. Try again in a moment."),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`: ends the session, if the form carries its anti-forgery value.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    signed: Signed,
    axum::Form(form): axum::Form<LogoutForm>,
) -> Response {
    if form.csrf != signed.csrf {
        return super::error_page(
            StatusCode::FORBIDDEN,
            "Not signed out",
            "The sign-out form came from another page. Use the button at the top of a dashboard page.",
        );
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.dashboard.sessions.close(id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", Duration::ZERO),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_next_stays_on_the_dashboard() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ot_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("ot_login=\"x\""));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("x"));
        assert_eq!(cookie(&h, "b"), None);
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/dashboard//evil.example",
            "/dashboard\\..",
            "/login",
            "/dashboard\n",
        ] {
            assert_eq!(safe_next(Some(bad)), "/dashboard", "{bad:?}");
        }
        assert_eq!(
            safe_next(Some("/dashboard/event?event=fit")),
            "/dashboard/event?event=fit"
        );
    }

    #[test]
    fn sessions_expire_and_stay_bounded() {
        let s = Sessions::default();
        let id = s.open([1; 32]).unwrap();
        assert!(s.get(&id).is_some());
        assert!(s.get("not-a-session").is_none());
        s.lock().get_mut(&hash_secret(&id)).unwrap().expires = Instant::now();
        assert!(s.get(&id).is_none(), "an expired session is gone");
        let first = s.open([2; 32]).unwrap();
        for _ in 0..MAX_PER_PROJECT + 5 {
            s.open([2; 32]).unwrap();
        }
        assert_eq!(
            s.len(),
            MAX_PER_PROJECT,
            "a project's oldest sessions go first"
        );
        assert!(s.get(&first).is_none());
        let mut n = 3u16;
        while s.len() < MAX_SESSIONS {
            let mut h = [0; 32];
            h[..2].copy_from_slice(&n.to_le_bytes());
            s.open(h).unwrap();
            n += 1;
        }
        assert!(
            s.open([1; 32]).is_none(),
            "past the bound, no session is opened"
        );
        assert_eq!(s.len(), MAX_SESSIONS, "and none is dropped for it");
    }
}
