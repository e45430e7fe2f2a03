//! The dashboard's doors, through the router: sign-in with its anti-forgery cookie, where it may
//! send the browser afterwards, sign-out, the exports and the live feed behind the session.
//! (The pages themselves are driven in a real browser by `tests/browser`.)

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use opentally_server::app;
use opentally_server::config::RawConfig;
use serde_json::json;
use tower::ServiceExt;

use crate::{Harness, event, wait_until};

struct Answer {
    status: StatusCode,
    location: Option<String>,
    cookies: Vec<String>,
    body: String,
}

async fn send(h: &Harness, req: Request<Body>) -> Answer {
    let resp = app(h.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        location,
        cookies,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `name=value` of the cookie `name` set by an answer.
fn cookie(a: &Answer, name: &str) -> String {
    a.cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map_or_else(
            || panic!("no cookie {name} in {:?}", a.cookies),
            |c| c.split(';').next().unwrap().to_owned(),
        )
}

fn form(path: &str, cookies: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookies)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn get_with(path: &str, cookies: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookies)
        .body(Body::empty())
        .unwrap()
}

/// Signs in with `token`, asking to go to `next`; returns the answer and the form cookie used.
async fn sign_in(h: &Harness, token: &str, next: &str) -> Answer {
    let page = send(h, crate::get("/login")).await;
    let login = cookie(&page, "ot_login");
    let value = login.split_once('=').unwrap().1.to_owned();
    let body =
        serde_urlencoded::to_string([("form", value.as_str()), ("token", token), ("next", next)])
            .unwrap();
    send(h, form("/login", &login, &body)).await
}

#[tokio::test]
async fn sign_in_needs_the_form_this_server_gave_and_goes_nowhere_else() {
    let h = Harness::new("dash-login", None, RawConfig::default());
    // A form posted from elsewhere (no anti-forgery cookie, or another value) opens nothing.
    let forged = send(
        &h,
        form(
            "/login",
            "ot_login=aaaa",
            &format!("form=bbbb&token={}", h.admin_token),
        ),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.cookies.iter().all(|c| !c.starts_with("ot_session=")));

    let ok = sign_in(&h, &h.admin_token, "https://evil.example/").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location.as_deref(), Some("/dashboard"), "never off-site");
    let set = ok
        .cookies
        .iter()
        .find(|c| c.starts_with("ot_session="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    let session = cookie(&ok, "ot_session");
    let page = send(&h, get_with("/dashboard", &session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Send your first event"),
        "an empty project is told how"
    );

    let deep = sign_in(&h, &h.admin_token, "/dashboard/funnel?steps=a,b").await;
    assert_eq!(
        deep.location.as_deref(),
        Some("/dashboard/funnel?steps=a,b")
    );

    let wrong = sign_in(&h, "ota_wrong", "/dashboard").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not the admin token"));
}

#[tokio::test]
async fn sign_out_needs_the_sessions_form_value_and_ends_it() {
    let h = Harness::new("dash-logout", None, RawConfig::default());
    let session = cookie(
        &sign_in(&h, &h.admin_token, "/dashboard").await,
        "ot_session",
    );
    let page = send(&h, get_with("/dashboard", &session)).await;
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let forged = send(&h, form("/logout", &session, "csrf=0000")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(&h, get_with("/dashboard", &session)).await.status,
        StatusCode::OK
    );

    let out = send(&h, form("/logout", &session, &format!("csrf={csrf}"))).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = send(&h, get_with("/dashboard", &session)).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location.as_deref(), Some("/login?next=%2Fdashboard"));
}

#[tokio::test]
async fn exports_and_the_live_feed_answer_only_a_session() {
    let h = Harness::new("dash-export", None, RawConfig::default());
    for path in [
        "/dashboard/export/trend?table=trend&format=csv",
        "/dashboard/live/events",
    ] {
        let anon = send(&h, crate::get(path)).await;
        assert_eq!(anon.status, StatusCode::SEE_OTHER, "{path}");
        // Another project's write key is no session.
        let keyed = send(&h, get_with(path, &format!("ot_session={}", h.write_key))).await;
        assert_eq!(keyed.status, StatusCode::SEE_OTHER, "{path}");
    }
    let session = cookie(
        &sign_in(&h, &h.admin_token, "/dashboard").await,
        "ot_session",
    );

    // The live feed keeps events only once watched.
    let first = send(&h, get_with("/dashboard/live/events", &session)).await;
    let first: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(first["events"], json!([]));
    let (status, _, body) = h
        .send(h.batch(&json!({"batch": [event("live-1"), event("live-2")]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let polled = send(
        &h,
        get_with(
            &format!("/dashboard/live/events?after={}", first["last"]),
            &session,
        ),
    )
    .await;
    let polled: serde_json::Value = serde_json::from_str(&polled.body).unwrap();
    assert_eq!(polled["events"].as_array().unwrap().len(), 2);
    let text = polled.to_string();
    assert!(!text.contains("install-1"), "no install id as sent: {text}");
    assert!(!text.contains("203.0.113.7"), "no address: {text}");

    wait_until(|| h.state.store_lag() == 0).await;
    let csv = send(
        &h,
        get_with(
            "/dashboard/export/trend?table=trend&format=csv&since=7d",
            &session,
        ),
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.body.starts_with("period,events,installs\n"),
        "{}",
        csv.body
    );
    let missing = send(&h, get_with("/dashboard/export/trend?table=nope", &session)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("this insight answers trend"));
    let bad = send(&h, get_with("/dashboard/export/nope?table=x", &session)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let fmt = send(
        &h,
        get_with("/dashboard/export/trend?table=trend&format=xml", &session),
    )
    .await;
    assert_eq!(fmt.status, StatusCode::BAD_REQUEST);
}
