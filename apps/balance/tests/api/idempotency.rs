//! `Idempotency-Key` over HTTP: run once, replay, refuse reuse, serialise concurrent twins.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, parts, seed};

async fn create(
    app: &TestApp,
    tenant: kernel::TenantId,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/api/v1/_test/tenants/{tenant}/things")))
        .json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_repeat_with_the_same_key_and_body_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let body = json!({"name": "first"});

    let (status, headers, first) = parts(create(&app, tenant, Some("key-1"), &body).await).await;
    assert_eq!(status, 201);
    assert!(!headers.contains_key("idempotent-replayed"));
    for _ in 0..3 {
        let (status, again_headers, again) =
            parts(create(&app, tenant, Some("key-1"), &body).await).await;
        assert_eq!(status, 201);
        assert_eq!(again, first, "same body");
        assert_eq!(
            again_headers["location"], headers["location"],
            "same Location"
        );
        assert_eq!(again_headers["idempotent-replayed"], "true");
    }
    assert_eq!(app.runs.load(Ordering::SeqCst), 1, "the work ran once");

    // Without a key, every request runs.
    create(&app, tenant, None, &body).await;
    create(&app, tenant, None, &body).await;
    assert_eq!(app.runs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    assert_eq!(
        create(&app, tenant, Some("key-1"), &json!({"name": "first"}))
            .await
            .status(),
        201
    );
    let resp = create(&app, tenant, Some("key-1"), &json!({"name": "second"})).await;
    assert_problem(resp, 422, "idempotency_key_reused").await;
    // Even a whitespace change is another request: clients resend the exact bytes.
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/_test/tenants/{tenant}/things")))
        .header("Idempotency-Key", "key-1")
        .header("content-type", "application/json")
        .body(r#"{ "name": "first" }"#)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "idempotency_key_reused").await;
    assert_eq!(app.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn keys_are_per_tenant_and_per_user() {
    let app = TestApp::spawn().await;
    let (a, b) = (
        seed::tenant(&app.kernel_db, "A").await,
        seed::tenant(&app.kernel_db, "B").await,
    );
    let body = json!({"name": "x"});
    let (_, _, in_a) = parts(create(&app, a, Some("shared"), &body).await).await;
    let (status, _, in_b) = parts(create(&app, b, Some("shared"), &body).await).await;
    assert_eq!(status, 201);
    assert_ne!(
        in_a["id"], in_b["id"],
        "another tenant's key is another key"
    );

    let (u1, u2) = (
        seed::user(&app.kernel_db).await,
        seed::user(&app.kernel_db).await,
    );
    let mine = |user: kernel::UserId| {
        app.client
            .post(app.url("/api/v1/_test/me/things"))
            .header("Idempotency-Key", "shared")
            .header("x-test-user", user.to_string())
            .json(&body)
            .send()
    };
    let (_, _, first) = parts(mine(u1).await.unwrap()).await;
    let (_, h, replay) = parts(mine(u1).await.unwrap()).await;
    assert_eq!(
        (replay.clone(), h["idempotent-replayed"].to_str().unwrap()),
        (first.clone(), "true")
    );
    let (_, _, other_user) = parts(mine(u2).await.unwrap()).await;
    assert_ne!(other_user["id"], first["id"]);
    assert_eq!(app.runs.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_failed_request_stores_nothing_so_a_retry_runs() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let resp = create(
        &app,
        tenant,
        Some("retry"),
        &json!({"name": "x", "fail": true}),
    )
    .await;
    assert_problem(resp, 409, "test_failure").await;
    let resp = create(
        &app,
        tenant,
        Some("retry"),
        &json!({"name": "x", "fail": true}),
    )
    .await;
    assert_problem(resp, 409, "test_failure").await;
    assert_eq!(
        app.runs.load(Ordering::SeqCst),
        2,
        "the failure was not replayed: it ran again"
    );
    let mut tx = kernel::TenantTx::begin(&app.kernel_db, tenant, kernel::Actor::System)
        .await
        .unwrap();
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

#[tokio::test]
async fn two_concurrent_requests_with_one_key_run_once_and_both_get_the_response() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let body = json!({"name": "twins", "sleep_ms": 500});
    let (first, second) = tokio::join!(create(&app, tenant, Some("twin"), &body), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        create(&app, tenant, Some("twin"), &body).await
    });
    let (s1, h1, b1) = parts(first).await;
    let (s2, h2, b2) = parts(second).await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (201, 201));
    assert_eq!(b1, b2);
    // Whichever reached the database first ran (usually the first sent; on a loaded
    // machine its 100 ms head start can be lost); the other waited and replayed it.
    let replayed =
        |h: &reqwest::header::HeaderMap| h.get("idempotent-replayed").is_some_and(|v| v == "true");
    assert!(
        replayed(&h1) != replayed(&h2),
        "exactly one replayed: {h1:?} {h2:?}"
    );
    assert_eq!(app.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_expired_key_runs_again() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let body = json!({"name": "x"});
    let (_, _, first) = parts(create(&app, tenant, Some("old"), &body).await).await;
    // 24 hours later.
    let mut tx = kernel::TenantTx::begin(&app.kernel_db, tenant, kernel::Actor::System)
        .await
        .unwrap();
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (status, headers, again) = parts(create(&app, tenant, Some("old"), &body).await).await;
    assert_eq!(status, 201);
    assert!(!headers.contains_key("idempotent-replayed"));
    assert_ne!(again["id"], first["id"]);
    let expires_in: f64 = {
        let mut tx = kernel::TenantTx::begin(&app.kernel_db, tenant, kernel::Actor::System)
            .await
            .unwrap();
        sqlx::query_scalar(
            "SELECT extract(epoch FROM expires_at - now())::float8 FROM idempotency_keys",
        )
        .fetch_one(tx.conn())
        .await
        .unwrap()
    };
    assert!(
        (86_000.0..=86_400.0).contains(&expires_in),
        "kept 24 h: {expires_in}"
    );
}

#[tokio::test]
async fn a_malformed_key_is_a_422_naming_the_header() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let long = "k".repeat(256);
    for key in [long.as_str(), "has space", "tab\there"] {
        let resp = create(&app, tenant, Some(key), &json!({"name": "x"})).await;
        let problem = assert_problem(resp, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    }
    assert_eq!(app.runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expired_keys_are_swept_every_tenant_and_user_alike() {
    let app = TestApp::spawn().await;
    let (a, b) = (
        seed::tenant(&app.kernel_db, "A").await,
        seed::tenant(&app.kernel_db, "B").await,
    );
    let user = seed::user(&app.kernel_db).await;
    for tenant in [a, b] {
        let mut tx = kernel::TenantTx::begin(&app.kernel_db, tenant, kernel::Actor::System)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, expires_at) VALUES
             ($1, 'old', '\\x00', now() - interval '1 hour'), ($1, 'new', '\\x00', now() + interval '1 hour')",
        )
        .bind(tenant)
        .execute(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    {
        let mut tx = kernel::UserTx::begin(&app.kernel_db, user).await.unwrap();
        sqlx::query(
            "INSERT INTO user_idempotency_keys (user_id, key, fingerprint, expires_at) VALUES
             ($1, 'old', '\\x00', now() - interval '1 hour'), ($1, 'new', '\\x00', now() + interval '1 hour')",
        )
        .bind(user)
        .execute(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let swept = balance::platform::sweep_idempotency_keys(&app.kernel_db)
        .await
        .unwrap();
    assert_eq!(swept, 3, "one expired key per tenant and one of the user");
    let mut su = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&app.db.superuser_url)
            .await
            .unwrap()
    };
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT key FROM idempotency_keys UNION ALL SELECT key FROM user_idempotency_keys",
    )
    .fetch_all(&mut su)
    .await
    .unwrap();
    assert_eq!(left, ["new", "new", "new"]);
}

#[tokio::test]
async fn a_key_that_is_not_visible_ascii_is_refused_not_ignored() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let key = reqwest::header::HeaderValue::from_bytes("k\u{e9}y".as_bytes()).unwrap();
    for _ in 0..2 {
        let resp = app
            .client
            .post(app.url(&format!("/api/v1/_test/tenants/{tenant}/things")))
            .header("Idempotency-Key", key.clone())
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        let body = assert_problem(resp, 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "Idempotency-Key", "{body}");
    }
    assert_eq!(app.runs.load(Ordering::SeqCst), 0, "nothing ran, twice");
}
