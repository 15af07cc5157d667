//! The ledger over HTTP: accounts, their balances, categories.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, parts};

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.authed(method, path, token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let (status, _, body) = parts(req.send().await.unwrap()).await;
    (status.as_u16(), body)
}

#[tokio::test]
async fn a_new_tenant_starts_with_the_default_business_categories() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let (status, page) = call(
        &app,
        Method::GET,
        &format!("/api/v1/tenants/{t}/categories?limit=200"),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for expected in [
        "Revenue",
        "Payroll",
        "Rent",
        "Software",
        "Travel",
        "Meals",
        "Office",
        "Marketing",
        "Taxes",
        "Bank fees",
        "Utilities",
        "Insurance",
        "Professional services",
        "Equipment",
        "Transfers",
        "Uncategorised income",
        "Uncategorised expense",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
}

#[tokio::test]
async fn accounts_are_opened_with_a_checked_iban_and_archived_or_deleted() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let accounts = format!("/api/v1/tenants/{t}/accounts");
    for (iban, why) in [
        ("DE89 3704 0044 0532 0130 01", "check digits"),
        ("DE89 3704 0044 0532 0130", "22 characters"),
        ("not an iban", "15 to 34"),
    ] {
        let body =
            json!({"name": "Operating", "kind": "checking", "currency": "EUR", "iban": iban});
        let resp = app
            .authed(Method::POST, &accounts, &ada)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "iban");
        assert!(problem.to_string().contains(why), "{iban}: {problem}");
    }
    let body = json!({"name": "Operating", "kind": "credit", "currency": "JPY", "opening_balance": 5000, "iban": "gb82 west 1234 5698 7654 32"});
    let (status, account) = call(&app, Method::POST, &accounts, &ada, Some(body)).await;
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["iban"], "GB82WEST12345698765432");
    assert_eq!(
        (
            account["balance"].as_i64(),
            account["pending_balance"].as_i64()
        ),
        (Some(5000), Some(5000))
    );
    assert_eq!(account["currency"], "JPY");
    // A fraction or a float is no amount.
    for opening in [json!(1.5), json!("12.00")] {
        let body =
            json!({"name": "X", "kind": "cash", "currency": "EUR", "opening_balance": opening});
        let resp = app
            .authed(Method::POST, &accounts, &ada)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 422, "validation_failed").await;
    }
    let one = format!("{accounts}/{}", account["id"].as_str().unwrap());
    let (status, archived) = call(
        &app,
        Method::PATCH,
        &one,
        &ada,
        Some(json!({"archived": true, "iban": null})),
    )
    .await;
    assert_eq!(status, 200, "{archived}");
    assert!(archived["archived_at"].is_string() && archived["iban"].is_null());
    let stale = app
        .authed(Method::PATCH, &one, &ada)
        .header("If-Match", "\"1\"")
        .json(&json!({"name": "Y"}))
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412, "precondition_failed").await;
    let (status, series) = call(
        &app,
        Method::GET,
        &format!("{one}/balances?from=2026-01-01&to=2026-01-10"),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series.as_array().unwrap().len(), 10);
    assert_eq!(series[9]["balance"], 5000);
    let (status, _) = call(&app, Method::DELETE, &one, &ada, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&app, Method::GET, &one, &ada, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn categories_keep_two_levels_and_move_their_use_when_deleted() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let categories = format!("/api/v1/tenants/{t}/categories");
    let (_, top) = call(
        &app,
        Method::POST,
        &categories,
        &ada,
        Some(json!({"name": "Research", "kind": "expense"})),
    )
    .await;
    let top_id = top["id"].as_str().unwrap().to_string();
    let (status, lab) = call(
        &app,
        Method::POST,
        &categories,
        &ada,
        Some(json!({"name": "Lab", "kind": "expense", "parent_id": top_id})),
    )
    .await;
    assert_eq!(status, 201, "{lab}");
    let resp = app
        .authed(Method::POST, &categories, &ada)
        .json(&json!({"name": "Benches", "kind": "expense", "parent_id": lab["id"]}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "parent_id");
    let resp = app
        .authed(Method::POST, &categories, &ada)
        .json(&json!({"name": "research", "kind": "expense"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "validation_failed").await;
    let resp = app
        .authed(Method::DELETE, &format!("{categories}/{top_id}"), &ada)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "category_in_use").await;
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("{categories}/{}", lab["id"].as_str().unwrap()),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, other) = call(
        &app,
        Method::POST,
        &categories,
        &ada,
        Some(json!({"name": "Other", "kind": "expense"})),
    )
    .await;
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!(
            "{categories}/{top_id}?reassign_to={}",
            other["id"].as_str().unwrap()
        ),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 204);
}
