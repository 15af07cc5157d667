//! Bank connections over HTTP with the in-process worker: a person connects the sandbox
//! bank, the first sync arrives without a duplicate, syncs are asked for and disconnected;
//! the provider token never leaves; refused requests change nothing; Plaid's webhook route
//! is public but signed.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, parts};

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.authed(method, path, token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let (status, _, value) = parts(req.send().await.unwrap()).await;
    (status.as_u16(), value)
}

/// Polls a connection until its first sync is in.
async fn synced(app: &TestApp, token: &str, path: &str) -> Value {
    for _ in 0..200 {
        let (status, c) = call(app, token, Method::GET, path, None).await;
        assert_eq!(status, 200, "{c}");
        if !c["last_synced_at"].is_null() {
            return c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the first sync never arrived");
}

#[tokio::test]
async fn a_person_connects_the_sandbox_bank_and_its_transactions_arrive_once() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let links = format!("/api/v1/tenants/{t}/bank-connections");
    let (status, token) = call(
        &app,
        &ada,
        Method::POST,
        &format!("{links}/link-token"),
        Some(json!({"provider": "sandbox"})),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    assert!(
        token["link_token"]
            .as_str()
            .unwrap()
            .starts_with("link-sandbox-")
    );

    let resp = app
        .authed(Method::POST, &links, &ada)
        .header("Idempotency-Key", "connect-1")
        .json(&json!({"provider": "sandbox", "public_token": "sandbox-public-0000000000000abc"}))
        .send()
        .await
        .unwrap();
    let (status, headers, created) = parts(resp).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("{links}/{id}"));
    let text = created.to_string();
    assert!(
        !text.contains("sandbox-access"),
        "the provider token is never returned: {text}"
    );
    assert_eq!(created["status"], "active");
    assert_eq!(created["accounts"].as_array().unwrap().len(), 2);
    // The same request again is the same connection.
    let again = app
        .authed(Method::POST, &links, &ada)
        .header("Idempotency-Key", "connect-1")
        .json(&json!({"provider": "sandbox", "public_token": "sandbox-public-0000000000000abc"}))
        .send()
        .await
        .unwrap();
    let (status, _, replayed) = parts(again).await;
    assert_eq!((status.as_u16(), replayed["id"].as_str()), (201, Some(id)));

    let one = format!("{links}/{id}");
    let connection = synced(&app, &ada, &one).await;
    let account = connection["accounts"][0]["account_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(connection["accounts"][0]["drift"], 0);
    let (_, list) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/transactions?account_id={account}&limit=200"),
        None,
    )
    .await;
    let rows = list["data"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["source"] == "sync"));
    let ids: std::collections::HashSet<&str> = rows
        .iter()
        .map(|r| r["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), rows.len(), "no duplicates");

    let (status, queued) = call(&app, &ada, Method::POST, &format!("{one}/sync"), None).await;
    assert_eq!(status, 202, "{queued}");
    assert!(queued["job_id"].is_string());
    let (status, list) = call(&app, &ada, Method::GET, &links, None).await;
    assert_eq!((status, list["data"].as_array().unwrap().len()), (200, 1));

    let (status, _) = call(&app, &ada, Method::DELETE, &one, None).await;
    assert_eq!(status, 204);
    let (_, gone) = call(&app, &ada, Method::GET, &one, None).await;
    assert_eq!(gone["status"], "disconnected");
    let (_, kept) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/transactions?account_id={account}&limit=1"),
        None,
    )
    .await;
    assert_eq!(
        kept["data"].as_array().unwrap().len(),
        1,
        "the history stays"
    );
    let (status, problem) = call(&app, &ada, Method::POST, &format!("{one}/sync"), None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("connection_disconnected"))
    );
}

#[tokio::test]
async fn refused_connections_change_nothing() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let links = format!("/api/v1/tenants/{t}/bank-connections");
    for body in [
        json!({"provider": "nope"}),
        json!({"provider": "plaid", "public_token": "public-x"}),
        json!({"provider": "plaid"}),
    ] {
        let resp = app
            .authed(Method::POST, &links, &ada)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 422, "validation_failed").await;
    }
    let resp = app
        .authed(Method::POST, &links, &ada)
        .json(&json!({"provider": "sandbox", "accounts": [{"provider_account_id": "no-such"}]}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "validation_failed").await;
    let (_, list) = call(&app, &ada, Method::GET, &links, None).await;
    assert!(
        list["data"].as_array().unwrap().is_empty(),
        "nothing was written"
    );
    let (_, accounts) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/accounts"),
        None,
    )
    .await;
    assert!(
        accounts["data"].as_array().unwrap().is_empty(),
        "no account was opened"
    );
    let unknown = uuid::Uuid::now_v7();
    let resp = app
        .authed(Method::GET, &format!("{links}/{unknown}"), &ada)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
}

#[tokio::test]
async fn the_webhook_route_wants_a_known_tenant_and_a_signature() {
    let plaid = testkit::plaid::PlaidStandIn::start().await.unwrap();
    let url = plaid.url();
    let app = TestApp::spawn_with(&[
        ("BALANCE_PLAID_CLIENT_ID", testkit::plaid::CLIENT_ID),
        ("BALANCE_PLAID_SECRET", testkit::plaid::SECRET),
        ("BALANCE_PLAID_BASE_URL", &url),
    ])
    .await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let body = plaid.sync_updates_available_body("item");
    let post = |tenant: String, jwt: Option<String>| {
        let mut req = app
            .client
            .post(app.url(&format!("/api/v1/webhooks/plaid/{tenant}")))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(jwt) = jwt {
            req = req.header("plaid-verification", jwt);
        }
        app.send(req)
    };
    assert_problem(
        post(
            uuid::Uuid::now_v7().to_string(),
            Some(plaid.sign_webhook(&body)),
        )
        .await
        .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_problem(post(t.to_string(), None).await.unwrap(), 400, "bad_webhook").await;
    assert_problem(
        post(t.to_string(), Some(plaid.forge_webhook(&body)))
            .await
            .unwrap(),
        400,
        "bad_webhook",
    )
    .await;
    let (status, _, got) = parts(
        post(t.to_string(), Some(plaid.sign_webhook(&body)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got,
        json!({"received": true, "sync_job_id": null}),
        "an item the tenant does not have"
    );
}
