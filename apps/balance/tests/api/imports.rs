//! Imports over HTTP: a multipart upload, the job in the in-process worker, the import's
//! rows, a revert; and the uploads that are refused before anything is stored.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, multipart, parts};

const CSV: &[u8] = b"Date,Amount,Description\n2026-03-02,-3.50,Coffee Bar\n2026-03-02,-3.50,Coffee Bar\n2026-03-03,1200.00,Salary\n";

async fn upload(
    app: &TestApp,
    token: &str,
    path: &str,
    fields: &[(&str, &str)],
    file: Option<&[u8]>,
) -> reqwest::Response {
    let (content_type, body) = multipart(fields, file.map(|f| ("march.csv", f)));
    app.authed(Method::POST, path, token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn finished(app: &TestApp, token: &str, path: &str) -> Value {
    for _ in 0..100 {
        let (_, _, import) =
            parts(app.authed(Method::GET, path, token).send().await.unwrap()).await;
        if !["queued", "running"].contains(&import["status"].as_str().unwrap()) {
            return import;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the import did not finish");
}

#[tokio::test]
async fn a_file_uploaded_is_imported_by_its_job_listed_row_by_row_and_reverted() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let (_, _, account) = parts(
        app.authed(Method::POST, &format!("/api/v1/tenants/{t}/accounts"), &ada)
            .json(&json!({"name": "Operating", "kind": "checking", "currency": "EUR"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let account = account["id"].as_str().unwrap();
    let resp = upload(
        &app,
        &ada,
        &format!("/api/v1/tenants/{t}/imports"),
        &[("account_id", account)],
        Some(CSV),
    )
    .await;
    let (status, headers, queued) = parts(resp).await;
    assert_eq!(status, 202, "{queued}");
    let at = headers["location"].to_str().unwrap().to_string();
    assert!(queued["job_id"].is_string());
    let import = finished(&app, &ada, &at).await;
    assert_eq!(import["status"], "completed", "{import}");
    assert_eq!(
        import["inserted"], 3,
        "two identical coffees stay two rows: {import}"
    );
    assert_eq!(import["format"], "csv");
    assert_eq!(import["file_name"], "march.csv");

    let (_, _, page) = parts(
        app.authed(
            Method::GET,
            &format!("{at}/rows?state=inserted&limit=2"),
            &ada,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let next = page["next_cursor"].as_str().unwrap();
    let (_, _, rest) = parts(
        app.authed(
            Method::GET,
            &format!("{at}/rows?state=inserted&limit=2&cursor={next}"),
            &ada,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);

    // The same file again: three duplicates, each naming its transaction.
    let again = upload(
        &app,
        &ada,
        &format!("/api/v1/tenants/{t}/imports"),
        &[("account_id", account)],
        Some(CSV),
    )
    .await;
    let (_, headers, _) = parts(again).await;
    let second = finished(&app, &ada, headers["location"].to_str().unwrap()).await;
    assert_eq!(
        (second["inserted"].as_i64(), second["duplicates"].as_i64()),
        (Some(0), Some(3))
    );

    let (status, _, reversal) =
        parts(app.authed(Method::DELETE, &at, &ada).send().await.unwrap()).await;
    assert_eq!(status, 200, "{reversal}");
    assert_eq!(reversal["deleted"], 3);
    let (_, _, acct) = parts(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants/{t}/accounts/{account}"),
            &ada,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(acct["balance"], 0, "the revert took the balance back");
    let (_, _, list) = parts(
        app.authed(Method::GET, &format!("/api/v1/tenants/{t}/imports"), &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn uploads_that_cannot_be_imports_are_refused_and_leave_nothing() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let (_, _, account) = parts(
        app.authed(Method::POST, &format!("/api/v1/tenants/{t}/accounts"), &ada)
            .json(&json!({"name": "Operating", "kind": "checking", "currency": "EUR"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let account = account["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/tenants/{t}/imports");
    let nowhere = uuid::Uuid::now_v7().to_string();
    type Case<'a> = (Vec<(&'a str, &'a str)>, Option<&'a [u8]>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], Some(CSV), 422, "account_id"),
        (
            vec![("account_id", "not-a-uuid")],
            Some(CSV),
            422,
            "account_id",
        ),
        (
            vec![("account_id", &account), ("format", "xlsx")],
            Some(CSV),
            422,
            "format",
        ),
        (
            vec![("account_id", &account), ("colour", "red")],
            Some(CSV),
            422,
            "colour",
        ),
        (
            vec![("account_id", &account), ("mapping", "{\"date\": 3}")],
            Some(CSV),
            422,
            "mapping",
        ),
        (vec![("account_id", &account)], None, 422, "file"),
        (vec![("account_id", &account)], Some(b""), 422, "file"),
        (
            vec![("account_id", &account)],
            Some(&[0u8, 159, 146, 150, 0, 1, 2, 3, 0, 0, 255, 254][..]),
            422,
            "file",
        ),
        (vec![("account_id", &nowhere)], Some(CSV), 422, "account_id"),
    ];
    for (fields, file, status, field) in cases {
        let resp = upload(&app, &ada, &path, &fields, file).await;
        let body = assert_problem(resp, status, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], field, "{fields:?}: {body}");
    }
    // Not multipart at all.
    let resp = app
        .authed(Method::POST, &path, &ada)
        .json(&json!({"account_id": account}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 415, "unsupported_media_type").await;
    // Over 50 MiB: refused (413) without storing a byte.
    let big = vec![b'a'; 50 * 1024 * 1024 + 1];
    let resp = upload(&app, &ada, &path, &[("account_id", &account)], Some(&big)).await;
    assert_eq!(resp.status().as_u16(), 413);
    let (_, _, list) = parts(app.authed(Method::GET, &path, &ada).send().await.unwrap()).await;
    assert_eq!(list["data"], json!([]), "no import was kept");
}

#[tokio::test]
async fn a_profile_saves_a_mapping_under_a_unique_name() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let path = format!("/api/v1/tenants/{t}/imports/profiles");
    let body = json!({"name": "Hausbank", "mapping": {"date": "Buchung", "amount": "Betrag", "decimal": "comma"}});
    let (status, headers, created) = parts(
        app.authed(Method::POST, &path, &ada)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let at = headers["location"].to_str().unwrap().to_string();
    let resp = app
        .authed(Method::POST, &path, &ada)
        .json(&json!({"name": "HAUSBANK", "mapping": {"date": "x", "amount": "y"}}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "profile_name_taken").await;
    let resp = app
        .authed(Method::POST, &path, &ada)
        .json(&json!({"name": "Bad", "mapping": {"date": "x", "amount": "y", "decimal": "dot"}}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "mapping");
    let resp = app
        .authed(Method::PATCH, &at, &ada)
        .header("if-match", "\"7\"")
        .json(&json!({"name": "Other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 412);
    let (status, _, renamed) = parts(
        app.authed(Method::PATCH, &at, &ada)
            .header("if-match", format!("\"{}\"", created["version"]))
            .json(&json!({"name": "Sparkasse"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["mapping"]["decimal"], "comma");
    let (_, _, list) = parts(app.authed(Method::GET, &path, &ada).send().await.unwrap()).await;
    assert_eq!(list["data"][0]["name"], "Sparkasse");
    let resp = app.authed(Method::DELETE, &at, &ada).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let resp = app.authed(Method::GET, &at, &ada).send().await.unwrap();
    assert_problem(resp, 404, "not_found").await;
}
