//! The findings of the black-box security probe (issue 31), each replayed against a live
//! server: rights that outlive their grantor, limits per user and per key, password checks
//! outside login, lockout by strangers, invitation mail as a relay, and the small ones.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, parts};

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = app.authed(method, path, token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let (status, headers, body) = parts(req.send().await.unwrap()).await;
    (status.as_u16(), headers, body)
}

#[tokio::test]
async fn the_user_limit_counts_every_request_of_a_user_across_routes() {
    let app = TestApp::spawn_with(&[("BALANCE_RATE_LIMITS", "user=5/min")]).await;
    let (ada, _) = app.new_user("ada@example.com").await; // 1 request: GET /me
    let t = app.create_tenant(&ada, "Acme").await; // 2
    for _ in 0..2 {
        assert_eq!(
            call(&app, Method::GET, "/api/v1/me", &ada, None).await.0,
            200
        );
    }
    let members = format!("/api/v1/tenants/{t}/members");
    assert_eq!(call(&app, Method::GET, &members, &ada, None).await.0, 200); // 5
    let resp = app
        .authed(Method::GET, &members, &ada)
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    assert_problem(resp, 429, "rate_limited").await;
    assert_eq!(headers["ratelimit-limit"], "5");
    assert_eq!(headers["ratelimit-remaining"], "0");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let resp = app
        .authed(Method::GET, "/api/v1/me", &ada)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 429, "rate_limited").await;

    // Another user has a window of their own.
    let (bob, _) = app.new_user("bob@example.com").await;
    assert_eq!(
        call(&app, Method::GET, "/api/v1/me", &bob, None).await.0,
        200
    );
}

#[tokio::test]
async fn the_api_key_limit_counts_each_key_on_its_own() {
    let app = TestApp::spawn_with(&[("BALANCE_RATE_LIMITS", "api_key=3/min")]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let keys = format!("/api/v1/tenants/{t}/api-keys");
    let mut secrets = Vec::new();
    for name in ["one", "two"] {
        let (status, _, key) = call(
            &app,
            Method::POST,
            &keys,
            &ada,
            Some(json!({"name": name, "roles": ["viewer"]})),
        )
        .await;
        assert_eq!(status, 201, "{key}");
        secrets.push(key["secret"].as_str().unwrap().to_string());
    }
    let tenant = format!("/api/v1/tenants/{t}");
    for _ in 0..3 {
        assert_eq!(
            call(&app, Method::GET, &tenant, &secrets[0], None).await.0,
            200
        );
    }
    let resp = app
        .authed(Method::GET, &tenant, &secrets[0])
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    assert_problem(resp, 429, "rate_limited").await;
    assert_eq!(headers["ratelimit-limit"], "3");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        call(&app, Method::GET, &tenant, &secrets[1], None).await.0,
        200
    );
    // A made-up key never counts against a real one's window: it is refused as unknown.
    let fake = format!("{}x", &secrets[1][..secrets[1].len() - 1]);
    assert_eq!(call(&app, Method::GET, &tenant, &fake, None).await.0, 401);
    assert_eq!(
        call(&app, Method::GET, &tenant, &secrets[1], None).await.0,
        200
    );
}
