//! Tenant workspaces: create (creator is owner), list mine, read, rename, members.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, parts};

async fn signed_in(app: &TestApp, email: &str) -> String {
    let password = app.signup(email).await;
    app.login(email, &password).await.0
}

#[tokio::test]
async fn a_created_tenant_makes_its_creator_owner_and_shows_in_their_lists() {
    let app = TestApp::spawn().await;
    let ada = signed_in(&app, "ada@example.com").await;
    let bob = signed_in(&app, "bob@example.com").await;

    let resp = app
        .authed(Method::POST, "/api/v1/tenants", &ada)
        .header("Idempotency-Key", "t-1")
        .json(&json!({"name": " Acme GmbH "}))
        .send()
        .await
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let (status, _, created) = parts(resp).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["name"].as_str(), created["plan"].as_str()),
        (Some("Acme GmbH"), Some("free"))
    );
    assert_eq!(created["roles"], json!(["owner"]));
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/tenants/{id}"));

    // The same key and body: the same tenant, not a second one.
    let again = app
        .authed(Method::POST, "/api/v1/tenants", &ada)
        .header("Idempotency-Key", "t-1")
        .json(&json!({"name": " Acme GmbH "}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(parts(again).await.2["id"], created["id"]);

    let (_, _, mine) = parts(
        app.authed(Method::GET, "/api/v1/tenants", &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    let (_, _, me) = parts(
        app.authed(Method::GET, "/api/v1/me", &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["tenants"][0]["id"], created["id"]);
    assert_eq!(me["tenants"][0]["roles"], json!(["owner"]));
    let (_, _, bobs) = parts(
        app.authed(Method::GET, "/api/v1/tenants", &bob)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(bobs["data"].as_array().unwrap().is_empty());

    let path = format!("/api/v1/tenants/{id}");
    assert_eq!(
        app.authed(Method::GET, &path, &ada)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_problem(
        app.authed(Method::GET, &path, &bob).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    // A stranger gets 404 even with a body that does not parse.
    let malformed = app
        .authed(Method::PATCH, &path, &bob)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert!(
        matches!(malformed.status().as_u16(), 400 | 404),
        "{}",
        malformed.status()
    );

    let (status, _, renamed) = parts(
        app.authed(Method::PATCH, &path, &ada)
            .json(&json!({"name": "Acme AG"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), renamed["name"].as_str()),
        (200, Some("Acme AG"))
    );
    let bad = app
        .authed(Method::PATCH, &path, &ada)
        .json(&json!({"name": ""}))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 422, "validation_failed").await;

    let (_, _, members) = parts(
        app.authed(Method::GET, &format!("{path}/members"), &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(members.as_array().unwrap().len(), 1);
    assert_eq!(members[0]["roles"], json!(["owner"]));

    let (_, _, events) = parts(
        app.authed(Method::GET, &format!("{path}/events"), &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let kinds: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["tenant.renamed", "member.added", "tenant.created"],
        "newest first, in the tenant's own chain"
    );
}
