//! The tenant routes behind the access decision: 401 without credentials, 404 for
//! non-members, 403 without the route's permission, 200 with it.

use audit::{NewEvent, Record};
use jobs::{Enqueue, NewJob};
use kernel::{Actor, TenantTx};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, parts, seed};

async fn member(app: &TestApp, email: &str, tenant: kernel::TenantId, roles: &[&str]) -> String {
    let password = app.signup(email).await;
    let user: uuid::Uuid = {
        let mut tx = kernel::SystemTx::begin(&app.kernel_db, Actor::System)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(tx.conn())
            .await
            .unwrap()
    };
    seed::member(
        &app.kernel_db,
        tenant,
        kernel::UserId::from_uuid(user),
        roles,
    )
    .await;
    app.login(email, &password).await.0
}

#[tokio::test]
async fn tenant_routes_answer_401_404_403_or_200_by_membership_and_permission() {
    let app = TestApp::spawn().await;
    let (a, b) = (
        seed::tenant(&app.kernel_db, "A").await,
        seed::tenant(&app.kernel_db, "B").await,
    );
    let accountant = member(&app, "acc@example.com", a, &["accountant"]).await;
    let viewer = member(&app, "view@example.com", a, &["viewer"]).await;
    let stranger = member(&app, "other@example.com", b, &["owner"]).await;
    let job = {
        let mut tx = TenantTx::begin(&app.kernel_db, a, Actor::System)
            .await
            .unwrap();
        for i in 0..3 {
            tx.record(NewEvent::new("test.thing.happened").payload(json!({"i": i})));
        }
        let job = tx.enqueue(NewJob::new("default", "test.kind", json!({})));
        tx.commit().await.unwrap();
        job
    };
    let paths = [
        format!("/api/v1/tenants/{a}/events"),
        format!("/api/v1/tenants/{a}/events/verify"),
        format!("/api/v1/tenants/{a}/events/checkpoints"),
        format!("/api/v1/tenants/{a}/events/export"),
        format!("/api/v1/tenants/{a}/jobs/{job}"),
    ];
    for path in &paths {
        assert_problem(app.get(path).await, 401, "unauthorized").await;
        assert_problem(
            app.authed(Method::GET, path, &stranger)
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        )
        .await;
        assert_problem(
            app.authed(Method::GET, path, &viewer).send().await.unwrap(),
            403,
            "forbidden",
        )
        .await;
        let ok = app
            .authed(Method::GET, path, &accountant)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{path}");
    }
    // A tenant that does not exist looks like one the caller is not in.
    let nowhere = format!("/api/v1/tenants/{}/events", kernel::TenantId::new());
    assert_problem(
        app.authed(Method::GET, &nowhere, &accountant)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    let (_, _, page) = parts(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants/{a}/events?limit=2"),
            &accountant,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [3, 2]
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, _, next) = parts(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants/{a}/events?limit=2&cursor={cursor}"),
            &accountant,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(next["data"][0]["seq"], 1);
    assert_eq!(next["has_more"], false);
    let foreign = app
        .authed(
            Method::GET,
            &format!("/api/v1/tenants/{b}/events?cursor={cursor}"),
            &stranger,
        )
        .send()
        .await
        .unwrap();
    assert_problem(foreign, 422, "validation_failed").await;

    let (_, _, verified) = parts(
        app.authed(Method::GET, &paths[1], &accountant)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (verified["ok"].as_bool(), verified["checked"].as_u64()),
        (Some(true), Some(3))
    );
    let export = app
        .authed(Method::GET, &paths[3], &accountant)
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let text = export.text().await.unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"kind\":\"event\""))
            .count(),
        3
    );
    let (_, _, shown) = parts(
        app.authed(Method::GET, &paths[4], &accountant)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (shown["kind"].as_str(), shown["status"].as_str()),
        (Some("test.kind"), Some("queued"))
    );
    // Another tenant's job id through this tenant's path: not found.
    let other_job = {
        let mut tx = TenantTx::begin(&app.kernel_db, b, Actor::System)
            .await
            .unwrap();
        let job = tx.enqueue(NewJob::new("default", "test.kind", json!({})));
        tx.commit().await.unwrap();
        job
    };
    let cross = app
        .authed(
            Method::GET,
            &format!("/api/v1/tenants/{a}/jobs/{other_job}"),
            &accountant,
        )
        .send()
        .await
        .unwrap();
    assert_problem(cross, 404, "not_found").await;
}
