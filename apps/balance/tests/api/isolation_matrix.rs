//! The isolation matrix: every tenant endpoint, discovered from the generated spec (so later
//! endpoints are covered without editing this), refuses every caller who must not reach it,
//! and a refused request changes nothing of the tenant. Every answer, refusal or not, is
//! held to the committed spec (`TestApp::send`).

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::helpers::{TestApp, parts, seed};

/// A body for a request schema: required fields with plausible values.
pub(crate) fn body_for(spec: &Value, schema: &Value) -> Value {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &spec["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => schema,
    };
    match schema["type"].as_str() {
        Some("object") => {
            let mut out = serde_json::Map::new();
            for field in schema["required"].as_array().into_iter().flatten() {
                let name = field.as_str().unwrap();
                out.insert(name.into(), body_for(spec, &schema["properties"][name]));
            }
            Value::Object(out)
        }
        Some("array") => json!([]),
        Some("integer") | Some("number") => json!(0),
        Some("boolean") => json!(false),
        _ if schema["enum"].is_array() => schema["enum"][0].clone(),
        _ if schema["pattern"] == "^[A-Z]{3}$" => json!("EUR"),
        _ if schema["format"] == "date" => json!("2026-01-01"),
        _ if schema["format"] == "uuid" => json!(uuid::Uuid::now_v7()),
        _ => json!("x"),
    }
}

/// What must not change when a request is refused: the tenant's row, its members, its
/// custom roles, its audit head.
async fn digest(conn: &mut PgConnection, tenant: kernel::TenantId) -> String {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET balance.tenant_id = '{tenant}'"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    let digest: String = sqlx::query_scalar(
        "SELECT md5(
            (SELECT row(t.*)::text FROM tenants t WHERE id = $1) ||
            coalesce((SELECT string_agg(row(m.*)::text, ',' ORDER BY user_id) FROM memberships m WHERE tenant_id = $1), '') ||
            coalesce((SELECT string_agg(row(r.*)::text, ',' ORDER BY name) FROM tenant_roles r WHERE tenant_id = $1), '') ||
            coalesce((SELECT row(h.seq, h.hash)::text FROM audit_heads h WHERE tenant_id = $1), 'no head'))",
    )
    .bind(tenant)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    digest
}

#[tokio::test]
async fn every_tenant_endpoint_refuses_strangers_and_members_without_its_permission() {
    let app = TestApp::spawn().await;
    let login = |email: &'static str| {
        let app = &app;
        async move {
            let password = app.signup(email).await;
            app.login(email, &password).await.0
        }
    };
    let owner = login("owner@example.com").await;
    let scoped = login("scoped@example.com").await;
    let viewer = login("viewer@example.com").await;
    let billing = login("billing@example.com").await;
    let outsider = login("outsider@example.com").await;
    let nobody = login("nobody@example.com").await;
    let create = |token: String, name: &'static str| {
        let app = &app;
        async move {
            let (_, _, t) = parts(
                app.authed(Method::POST, "/api/v1/tenants", &token)
                    .json(&json!({"name": name}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            t["id"]
                .as_str()
                .unwrap()
                .parse::<kernel::TenantId>()
                .unwrap()
        }
    };
    let a = create(owner.clone(), "A").await;
    let b = create(outsider.clone(), "B").await;
    // An API key of tenant B, with every permission B's owner holds.
    let (_, _, key) = parts(
        app.authed(
            Method::POST,
            &format!("/api/v1/tenants/{b}/api-keys"),
            &outsider,
        )
        .json(&json!({"name": "b", "roles": ["owner"]}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    let foreign_key = key["secret"].as_str().unwrap().to_string();
    let id_of = |email: &'static str| {
        let app = &app;
        async move {
            let mut tx = kernel::SystemTx::begin(&app.kernel_db, kernel::Actor::System)
                .await
                .unwrap();
            sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM users WHERE email = $1")
                .bind(email)
                .fetch_one(tx.conn())
                .await
                .unwrap()
        }
    };
    let viewer_id = id_of("viewer@example.com").await;
    seed::member(
        &app.kernel_db,
        a,
        kernel::UserId::from_uuid(viewer_id),
        &["viewer"],
    )
    .await;
    seed::member(
        &app.kernel_db,
        a,
        kernel::UserId::from_uuid(id_of("billing@example.com").await),
        &["billing"],
    )
    .await;
    let job = {
        let mut tx = kernel::TenantTx::begin(&app.kernel_db, a, kernel::Actor::System)
            .await
            .unwrap();
        let job = jobs::Enqueue::enqueue(
            &mut tx,
            jobs::NewJob::new("default", "test.kind", json!({})),
        );
        tx.commit().await.unwrap();
        job
    };
    // Real resources for the id parameters, so a member with the permission reaches them.
    let made = |method: Method, path: String, body: Value| {
        let (app, owner) = (&app, owner.clone());
        async move {
            let (status, _, v) = parts(
                app.authed(method, &path, &owner)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 201, "{path}: {v}");
            v
        }
    };
    let a_key = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/api-keys"),
        json!({"name": "a", "roles": ["viewer"]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a_invitation = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/invitations"),
        json!({"email": "invited@example.com", "roles": ["viewer"]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    made(
        Method::POST,
        format!("/api/v1/tenants/{a}/roles"),
        json!({"name": "matrix-role", "permissions": ["tenant:read"]}),
    )
    .await;
    let an_account = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/accounts"),
        json!({"name": "Operating", "kind": "checking", "currency": "EUR"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a_category = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/categories"),
        json!({"name": "Matrix", "kind": "expense"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a_transaction = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/transactions"),
        json!({"account_id": an_account, "date": "2026-02-01", "amount": -100}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (content_type, upload) = crate::helpers::multipart(
        &[("account_id", &an_account)],
        Some((
            "march.csv",
            b"Date,Amount,Description\n2026-03-02,-3.50,Coffee\n",
        )),
    );
    let an_import = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/tenants/{a}/imports")))
                .bearer_auth(&owner)
                .header("content-type", content_type)
                .body(upload),
        )
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["import_id"]
        .as_str()
        .unwrap()
        .to_string();
    let a_profile = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/imports/profiles"),
        json!({"name": "Matrix", "mapping": {"date": "Date", "amount": "Amount"}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a_rule = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/rules"),
        json!({"name": "Matrix", "conditions": {"items": [{"field": "merchant", "op": "contains", "value": "x"}]},
               "actions": {"category_id": a_category}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A suggestion waiting for a person, as the pipeline writes one.
    let an_approval = uuid::Uuid::now_v7().to_string();
    {
        let mut superuser = PgConnection::connect(&app.db.superuser_url).await.unwrap();
        sqlx::query(
            "INSERT INTO approvals (tenant_id, id, transaction_id, account_id, category_id, source,
                                    confidence, reasoning, status)
             VALUES ($1, $2::uuid, $3::uuid, $4::uuid, $5::uuid, 'similarity', 0.5, 'matrix', 'pending')",
        )
        .bind(a)
        .bind(&an_approval)
        .bind(&a_transaction)
        .bind(&an_account)
        .bind(&a_category)
        .execute(&mut superuser)
        .await
        .unwrap();
    }
    let a_connection = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/bank-connections"),
        json!({"provider": "sandbox"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a_budget = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/budgets"),
        json!({"name": "Matrix", "period": "monthly", "amount": 10_000}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a_goal = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/goals"),
        json!({"name": "Matrix", "target_amount": 10_000}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url_for = |path: &str| {
        let id = if path.contains("/bank-connections/") {
            a_connection.clone()
        } else if path.contains("/budgets/") {
            a_budget.clone()
        } else if path.contains("/goals/") {
            a_goal.clone()
        } else if path.contains("/rules/") {
            a_rule.clone()
        } else if path.contains("/approvals/") {
            an_approval.clone()
        } else if path.contains("/imports/profiles/") {
            a_profile.clone()
        } else if path.contains("/imports/") {
            an_import.clone()
        } else if path.contains("/api-keys/") {
            a_key.clone()
        } else if path.contains("/invitations/") {
            a_invitation.clone()
        } else if path.contains("/accounts/") {
            an_account.clone()
        } else if path.contains("/categories/") {
            a_category.clone()
        } else if path.contains("/transactions/") {
            a_transaction.clone()
        } else {
            job.to_string()
        };
        path.replace("{tenant_id}", &a.to_string())
            .replace("{user_id}", &viewer_id.to_string())
            .replace("{role}", "matrix-role")
            .replace("{id}", &id)
    };
    let policy = access::Policy::load().unwrap();
    let mut superuser = PgConnection::connect(&app.db.superuser_url).await.unwrap();

    let spec: Value = serde_json::from_str(&balance::http::spec()).unwrap();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/tenants/{tenant_id}") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let permission: access::Permission =
                op["x-permission"].as_str().unwrap().parse().unwrap();
            let url = url_for(path);
            let method: Method = method.to_uppercase().parse().unwrap();
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let bodies: Vec<Option<String>> = if schema.is_null() {
                vec![None]
            } else {
                vec![
                    Some(body_for(&spec, schema).to_string()),
                    Some("{\"malformed\":".into()),
                ]
            };
            // Members without the permission, if any built-in role here lacks it.
            let lacking: Vec<&str> = [("viewer", viewer.as_str()), ("billing", billing.as_str())]
                .into_iter()
                .filter(|(role, _)| !policy.builtin(role).unwrap().contains(permission))
                .map(|(_, token)| token)
                .collect();
            for body in &bodies {
                let send = |token: Option<&str>| {
                    let mut req = app.client.request(method.clone(), app.url(&url));
                    if let Some(t) = token {
                        req = req.bearer_auth(t);
                    }
                    if let Some(b) = body {
                        req = req
                            .header("content-type", "application/json")
                            .body(b.clone());
                    }
                    app.send(req)
                };
                let cases: Vec<(Option<&str>, u16)> = [
                    (None, 401),
                    (Some(outsider.as_str()), 404),
                    (Some(foreign_key.as_str()), 404),
                    (Some(nobody.as_str()), 404),
                ]
                .into_iter()
                .chain(lacking.iter().map(|t| (Some(*t), 403)))
                .collect();
                for (token, want) in cases {
                    let before = digest(&mut superuser, a).await;
                    let resp = send(token).await.unwrap();
                    assert_eq!(
                        resp.status().as_u16(),
                        want,
                        "{method} {url} body {body:?}: {}",
                        resp.text().await.unwrap()
                    );
                    assert_eq!(
                        digest(&mut superuser, a).await,
                        before,
                        "{method} {url}: a refused request changed the tenant"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 30, "the matrix ran: {checked} refusals");
    // A member confined to another account gets 404 on every route of this account's rows,
    // whatever the method, and changes nothing.
    let elsewhere = made(
        Method::POST,
        format!("/api/v1/tenants/{a}/accounts"),
        json!({"name": "Elsewhere", "kind": "cash", "currency": "EUR"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .unwrap();
    let scoped_id = id_of("scoped@example.com").await;
    seed::member(
        &app.kernel_db,
        a,
        kernel::UserId::from_uuid(scoped_id),
        &["accountant"],
    )
    .await;
    {
        let mut tx = kernel::TenantTx::begin(&app.kernel_db, a, kernel::Actor::System)
            .await
            .unwrap();
        sqlx::query("UPDATE memberships SET account_ids = $2 WHERE user_id = $1")
            .bind(scoped_id)
            .bind(vec![elsewhere])
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let mut confined = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        let account_bound = path.contains("/accounts/{id}")
            || path.contains("/transactions/{id}")
            || path.contains("/imports/{id}");
        if !account_bound {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let body = (!schema.is_null()).then(|| body_for(&spec, schema));
            let mut req = app.authed(
                method.to_uppercase().parse().unwrap(),
                &url_for(path),
                &scoped,
            );
            if let Some(b) = &body {
                req = req.json(b);
            }
            let before = digest(&mut superuser, a).await;
            let resp = req.send().await.unwrap();
            assert_eq!(
                resp.status().as_u16(),
                404,
                "{method} {path} outside the member's accounts"
            );
            assert_eq!(digest(&mut superuser, a).await, before, "{method} {path}");
            confined += 1;
        }
    }
    assert!(confined >= 8, "{confined} account-bound operations");
    // And a member with the permission (the owner holds them all) gets past the access
    // decision on every operation: reads and writes, deletions last, the tenant's own last
    // of all (a deleted tenant answers 409, which is still past the decision).
    let mut operations: Vec<(Method, String, Option<String>)> = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/tenants/{tenant_id}") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let body = (!schema.is_null()).then(|| body_for(&spec, schema).to_string());
            operations.push((method.to_uppercase().parse().unwrap(), path.clone(), body));
        }
    }
    operations.sort_by_key(|(method, path, _)| {
        (
            *method == Method::DELETE,
            path == "/api/v1/tenants/{tenant_id}" && *method == Method::DELETE,
        )
    });
    assert!(operations.len() >= 20, "{} operations", operations.len());
    for (method, path, body) in &operations {
        let url = url_for(path);
        let mut req = app.authed(method.clone(), &url, &owner);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(
            ![401, 403, 404, 500].contains(&status),
            "{method} {url} as owner: {status} {}",
            resp.text().await.unwrap()
        );
    }
}
