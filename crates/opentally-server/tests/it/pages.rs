//! The public pages: a project's transparency page, generated from the catalog it enforces, and
//! the privacy model it links to.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentally_server::app;
use opentally_server::config::RawConfig;
use opentally_server::meta::MetaStore;
use tower::ServiceExt;

use crate::Harness;

use crate::CATALOG as EXAMPLE;

/// Status, headers and body text of a GET.
async fn get(h: &Harness, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app(h.state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_transparency_page_shows_the_catalog_the_collector_enforces() {
    let h = Harness::new("page-catalog", Some(EXAMPLE), RawConfig::default());
    let (status, headers, body) = get(&h, "/p/p/privacy").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let catalog = opentally_protocol::Catalog::from_toml_str(EXAMPLE).unwrap();
    for (name, event) in &catalog.events {
        assert!(body.contains(&format!("<code>{name}</code>")), "{name}");
        for (pname, spec) in &event.properties {
            assert!(
                body.contains(&format!("<code>{pname}</code>")),
                "{name}.{pname}"
            );
            if let Some(d) = &spec.description {
                assert!(body.contains(d.as_str()), "{d}");
            }
        }
    }
    assert!(body.contains("one of: cbpe, dle, univariate_drift, multivariate_drift"));
    assert!(body.contains("whole number from 1 to 10000000"));
    assert!(body.contains("<strong>365 days</strong>"));
    assert!(body.contains("<code>DEMO_ML_NO_TELEMETRY=1</code>"));
    assert!(body.contains("<code>opentally opt-out --app demo-ml</code>"));
    assert!(body.contains("<code>opentally forget --app demo-ml</code>"));
    assert!(body.contains("<code>DO_NOT_TRACK=1</code>"));
    assert!(body.contains(r#"<a href="/privacy">"#));

    // Retention as set now, not as it was.
    MetaStore::open(&h.dir.0)
        .unwrap()
        .set_retention_days("p", 30)
        .unwrap();
    let (_, _, body) = get(&h, "/p/p/privacy").await;
    assert!(body.contains("<strong>30 days</strong>"));
}

#[tokio::test]
async fn catalog_text_is_escaped_and_a_project_without_a_catalog_says_so() {
    let hostile = "[events.fit]\ndescription = \"<script>alert(1)</script> & more\"\n";
    let h = Harness::new("page-escape", Some(hostile), RawConfig::default());
    let (_, _, body) = get(&h, "/p/p/privacy").await;
    assert!(!body.contains("<script>"));
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
    assert!(body.contains("<code>APP</code> stands for the app"));

    let open = Harness::new("page-open", None, RawConfig::default());
    let (status, _, body) = get(&open, "/p/p/privacy").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("This project has not published a catalog."));

    let (status, _, body) = get(&open, "/p/nope/privacy").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("<code>nope</code>"));
    let (status, _, body) = get(&open, "/p/%3Cb%3E/privacy").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("&lt;b&gt;") && !body.contains("<b>"));
}

#[tokio::test]
async fn the_privacy_model_is_served_as_text() {
    let h = Harness::new("page-model", None, RawConfig::default());
    let (status, headers, body) = get(&h, "/privacy").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body, include_str!("../../../../PRIVACY.md"));
}
