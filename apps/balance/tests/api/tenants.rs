//! Tenant workspaces: create (creator is owner), list mine, read, rename, members.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, parts, seed};

async fn signed_in(app: &TestApp, email: &str) -> String {
    app.new_user(email).await.0
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
    assert_eq!(members["data"].as_array().unwrap().len(), 1);
    assert_eq!(members["data"][0]["roles"], json!(["owner"]));

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

async fn user_id(app: &TestApp, email: &str) -> String {
    let mut tx = kernel::SystemTx::begin(&app.kernel_db, kernel::Actor::System)
        .await
        .unwrap();
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(tx.conn())
        .await
        .unwrap();
    id.to_string()
}

#[tokio::test]
async fn roles_change_within_what_the_granter_holds_and_a_tenant_keeps_an_owner() {
    let app = TestApp::spawn().await;
    let ada = signed_in(&app, "ada@example.com").await;
    let tenant = app.create_tenant(&ada, "Acme").await;
    let bob_token = signed_in(&app, "bob@example.com").await;
    let (ada_id, bob_id) = (
        user_id(&app, "ada@example.com").await,
        user_id(&app, "bob@example.com").await,
    );
    crate::helpers::seed::member(&app.kernel_db, tenant, bob_id.parse().unwrap(), &["viewer"])
        .await;
    let member = |id: &str| format!("/api/v1/tenants/{tenant}/members/{id}");
    let set = |token: &str, id: &str, roles: serde_json::Value| {
        app.authed(Method::PATCH, &member(id), token)
            .json(&json!({"roles": roles}))
            .send()
    };

    // A viewer cannot change members at all.
    assert_problem(
        set(&bob_token, &ada_id, json!(["viewer"])).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    // The owner makes Bob an admin.
    let (status, _, bob) = parts(set(&ada, &bob_id, json!(["admin"])).await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), bob["roles"].clone()),
        (200, json!(["admin"]))
    );
    // An admin cannot grant owner, nor change an owner.
    assert_problem(
        set(&bob_token, &bob_id, json!(["owner"])).await.unwrap(),
        403,
        "cannot_grant",
    )
    .await;
    assert_problem(
        set(&bob_token, &ada_id, json!(["viewer"])).await.unwrap(),
        403,
        "cannot_grant",
    )
    .await;
    assert_problem(
        set(&ada, &bob_id, json!(["wizard"])).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    // The last owner can neither be demoted nor removed.
    assert_problem(
        set(&ada, &ada_id, json!(["admin"])).await.unwrap(),
        409,
        "last_owner",
    )
    .await;
    let remove = app
        .authed(Method::DELETE, &member(&ada_id), &ada)
        .send()
        .await
        .unwrap();
    assert_problem(remove, 409, "last_owner").await;
    // With a second owner, the first may step down.
    assert_eq!(
        set(&ada, &bob_id, json!(["owner"])).await.unwrap().status(),
        200
    );
    assert_eq!(
        set(&ada, &ada_id, json!(["accountant"]))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.authed(Method::DELETE, &member(&ada_id), &bob_token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_problem(
        app.authed(Method::GET, &format!("/api/v1/tenants/{tenant}"), &ada)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    let (_, _, events) = parts(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants/{tenant}/events"),
            &bob_token,
        )
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
        kinds
            .iter()
            .filter(|k| **k == "member.role_changed")
            .count(),
        3
    );
    assert_eq!(kinds[0], "member.removed");
}

#[tokio::test]
async fn a_deleted_tenant_is_read_only_until_an_operator_purges_it() {
    let app = TestApp::spawn().await;
    let ada = signed_in(&app, "ada@example.com").await;
    let create = |name: &'static str| {
        let (app, ada) = (&app, ada.clone());
        async move {
            let (_, _, t) = parts(
                app.authed(Method::POST, "/api/v1/tenants", &ada)
                    .json(&json!({"name": name}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            t["id"].as_str().unwrap().to_string()
        }
    };
    let (doomed, kept) = (create("Doomed").await, create("Kept").await);
    let bob = signed_in(&app, "bob@example.com").await;
    crate::helpers::seed::member(
        &app.kernel_db,
        doomed.parse().unwrap(),
        user_id(&app, "bob@example.com").await.parse().unwrap(),
        &["admin"],
    )
    .await;
    let path = format!("/api/v1/tenants/{doomed}");

    assert_problem(
        app.authed(Method::DELETE, &path, &bob)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.authed(Method::DELETE, &path, &ada)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let rename = app
        .authed(Method::PATCH, &path, &ada)
        .json(&json!({"name": "Back"}))
        .send()
        .await
        .unwrap();
    assert_problem(rename, 409, "tenant_deleted").await;
    let (status, _, t) = parts(app.authed(Method::GET, &path, &ada).send().await.unwrap()).await;
    assert_eq!(status, 200, "still readable");
    assert!(t["deleted_at"].is_string());

    let purge = |force: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_balance"));
        cmd.args(["admin", "purge-tenant", &doomed])
            .env_clear()
            .env("BALANCE_DATABASE_URL", &app.db.runtime_url)
            .env("BALANCE_DATABASE_OWNER_URL", &app.db.owner_url)
            .env("BALANCE_DATA_DIR", &app.data_dir)
            .env("BALANCE_LOG", "warn");
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let early = purge(false);
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("grace period"));
    let done = purge(true);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );

    assert_problem(
        app.authed(Method::GET, &path, &ada).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let (_, _, mine) = parts(
        app.authed(Method::GET, "/api/v1/tenants", &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    let (_, _, verified) = parts(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants/{kept}/events/verify"),
            &ada,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(verified["ok"], true, "the other tenant's chain is intact");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.superuser_url)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1::uuid")
        .bind(&doomed)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "its audit chain went with it");
}

#[test]
fn a_purge_covers_every_tenant_owned_table() {
    // The list is checked against the catalogue in schema.rs; here, against the migrations'
    // text, so a new tenant table cannot be forgotten.
    let dir = testkit::repo_root().join("migrations");
    let mut tables = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let sql = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for stmt in sql.split("CREATE TABLE ").skip(1) {
            let name = stmt.split_whitespace().next().unwrap().to_string();
            let body = stmt.split(");").next().unwrap();
            if body.contains("tenant_id uuid NOT NULL") && name != "tenants" {
                tables.push(name);
            }
        }
    }
    for table in &tables {
        assert!(
            tenancy::PURGE_ORDER.contains(&table.as_str()),
            "{table} is tenant-owned but not in tenancy::PURGE_ORDER"
        );
    }
}

#[tokio::test]
async fn api_keys_are_shown_once_act_with_their_roles_in_their_tenant_only_and_stop_when_revoked() {
    let app = TestApp::spawn().await;
    let ada = signed_in(&app, "ada@example.com").await;
    let create = |name: &'static str| {
        let (app, ada) = (&app, ada.clone());
        async move {
            let (_, _, t) = parts(
                app.authed(Method::POST, "/api/v1/tenants", &ada)
                    .json(&json!({"name": name}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            t["id"].as_str().unwrap().to_string()
        }
    };
    let (a, b) = (create("A").await, create("B").await);
    let keys = format!("/api/v1/tenants/{a}/api-keys");
    let (status, _, viewer_key) = parts(
        app.authed(Method::POST, &keys, &ada)
            .json(&json!({"name": "CI", "roles": ["viewer"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{viewer_key}");
    let secret = viewer_key["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("bal_live_"));
    let (_, _, acc_key) = parts(
        app.authed(Method::POST, &keys, &ada)
            .json(&json!({"name": "Books", "roles": ["accountant"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let acc = acc_key["secret"].as_str().unwrap().to_string();

    // Its roles decide.
    assert_eq!(
        app.authed(Method::GET, &format!("/api/v1/tenants/{a}"), &secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_problem(
        app.authed(Method::GET, &format!("/api/v1/tenants/{a}/events"), &secret)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.authed(Method::GET, &format!("/api/v1/tenants/{a}/events"), &acc)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Another tenant: 404, as for a stranger.
    assert_problem(
        app.authed(Method::GET, &format!("/api/v1/tenants/{b}"), &secret)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    // A forged secret for this tenant: 401.
    let forged = format!("{}x", &secret[..secret.len() - 1]);
    assert_problem(
        app.authed(Method::GET, &format!("/api/v1/tenants/{a}"), &forged)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;

    // Lists show the prefix and last use, never the secret.
    let (_, _, list) = parts(app.authed(Method::GET, &keys, &ada).send().await.unwrap()).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(
        !list.to_string().contains(&secret[20..]),
        "no secret in lists"
    );
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["last_used_at"].is_string())
    );

    // Revoked: 401 at once. Expired: 401.
    let id = viewer_key["id"].as_str().unwrap();
    assert_eq!(
        app.authed(Method::DELETE, &format!("{keys}/{id}"), &ada)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_problem(
        app.authed(Method::GET, &format!("/api/v1/tenants/{a}"), &secret)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let (_, _, soon) = parts(
        app.authed(Method::POST, &keys, &ada)
            .json(&json!({"name": "Soon", "roles": ["viewer"], "expires_at": (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let soon = soon["secret"].as_str().unwrap().to_string();
    assert_eq!(
        app.authed(Method::GET, &format!("/api/v1/tenants/{a}"), &soon)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_problem(
        app.authed(Method::GET, &format!("/api/v1/tenants/{a}"), &soon)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;

    // Nobody grants what they lack: an accountant key cannot mint keys; an owner-role key needs an owner.
    assert_problem(
        app.authed(Method::POST, &keys, &acc)
            .json(&json!({"name": "x", "roles": ["viewer"]}))
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let (_, _, events) = parts(
        app.authed(Method::GET, &format!("/api/v1/tenants/{a}/events"), &acc)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        events["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "api_key.revoked")
    );
    assert!(
        !events.to_string().contains(&secret[20..]),
        "no secret in the audit log"
    );
}

#[tokio::test]
async fn an_invitation_is_mailed_and_accepted_once_by_the_invited_address() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let ada = signed_in(&app, "ada@example.com").await;
    let tenant = app.create_tenant(&ada, "Acme").await;
    let invitations = format!("/api/v1/tenants/{tenant}/invitations");
    let (status, _, inv) = parts(
        app.authed(Method::POST, &invitations, &ada)
            .json(&json!({"email": "Bob@Example.com", "roles": ["accountant"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{inv}");
    assert_eq!(inv["email"], "bob@example.com");
    let token = app
        .mailed_token("bob@example.com", "invitations/accept")
        .await;

    let bob = signed_in(&app, "bob@example.com").await;
    let carol = signed_in(&app, "carol@example.com").await;
    let accept = |who: &str| {
        app.authed(Method::POST, "/api/v1/invitations/accept", who)
            .json(&json!({"token": token}))
            .send()
    };
    assert_problem(
        accept(&carol).await.unwrap(),
        403,
        "invitation_email_mismatch",
    )
    .await;
    let (status, _, joined) = parts(accept(&bob).await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), joined["roles"].clone()),
        (200, json!(["accountant"]))
    );
    assert_problem(accept(&bob).await.unwrap(), 400, "invalid_token").await;
    let (_, _, me) = parts(
        app.authed(Method::GET, "/api/v1/me", &bob)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["tenants"][0]["roles"], json!(["accountant"]));
    assert_eq!(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants/{tenant}/events"),
            &bob
        )
        .send()
        .await
        .unwrap()
        .status(),
        200
    );

    // Revoked invitations do not work; nobody invites with roles they lack.
    let (_, _, second) = parts(
        app.authed(Method::POST, &invitations, &ada)
            .json(&json!({"email": "dan@example.com", "roles": ["viewer"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let second_id = second["id"].as_str().unwrap();
    assert_eq!(
        app.authed(Method::DELETE, &format!("{invitations}/{second_id}"), &ada)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let dan_token = app
        .mailed_token("dan@example.com", "invitations/accept")
        .await;
    let dan = signed_in(&app, "dan@example.com").await;
    let revoked = app
        .authed(Method::POST, "/api/v1/invitations/accept", &dan)
        .json(&json!({"token": dan_token}))
        .send()
        .await
        .unwrap();
    assert_problem(revoked, 400, "invalid_token").await;
    let too_much = app
        .authed(Method::POST, &invitations, &bob)
        .json(&json!({"email": "eve@example.com", "roles": ["owner"]}))
        .send()
        .await
        .unwrap();
    assert_problem(too_much, 403, "forbidden").await; // an accountant cannot invite at all
    let (_, _, list) = parts(
        app.authed(Method::GET, &invitations, &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(
        !list.to_string().contains(&token[10..]),
        "no token in lists"
    );
    let (_, _, events) = parts(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants/{tenant}/events"),
            &ada,
        )
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
    for kind in [
        "invitation.created",
        "invitation.accepted",
        "invitation.revoked",
        "member.added",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(
        !events.to_string().contains("bob@example.com"),
        "no email address in the chain"
    );
}

/// Follows `next_cursor` from `path` (which has `?limit=`), returning every item's `key`.
async fn walk(app: &TestApp, path: &str, token: &str, key: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut url = path.to_string();
    loop {
        let (status, _, page) =
            parts(app.authed(Method::GET, &url, token).send().await.unwrap()).await;
        assert_eq!(status, 200, "{url}: {page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2, "the limit holds");
        seen.extend(data.iter().map(|i| i[key].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["has_more"], true);
                url = format!("{path}&cursor={c}");
            }
            None => {
                assert_eq!(page["has_more"], false);
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn tenant_lists_page_with_signed_cursors_and_changes_honour_if_match() {
    let app = TestApp::spawn().await;
    let ada = signed_in(&app, "ada@example.com").await;
    let mut created = Vec::new();
    for i in 0..5 {
        let t = app.create_tenant(&ada, &format!("T{i}")).await;
        created.push(t.to_string());
    }
    // Newest first, every tenant once.
    let listed = walk(&app, "/api/v1/tenants?limit=2", &ada, "id").await;
    created.reverse();
    assert_eq!(listed, created);

    // Members in join order, across pages; a cursor of another list is refused.
    let t: kernel::TenantId = created[0].parse().unwrap();
    let mut joined = vec![user_id(&app, "ada@example.com").await];
    for _ in 0..4 {
        let u = seed::user(&app.kernel_db).await;
        seed::member(&app.kernel_db, t, u, &["viewer"]).await;
        joined.push(u.to_string());
    }
    let members = format!("/api/v1/tenants/{t}/members?limit=2");
    assert_eq!(walk(&app, &members, &ada, "user_id").await, joined);
    let (_, _, first) = parts(
        app.authed(Method::GET, &members, &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_problem(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants?limit=2&cursor={cursor}"),
            &ada,
        )
        .send()
        .await
        .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    for bad in ["0", "201", "x"] {
        let resp = app
            .authed(
                Method::GET,
                &format!("/api/v1/tenants/{t}/members?limit={bad}"),
                &ada,
            )
            .send()
            .await
            .unwrap();
        assert!([400, 422].contains(&resp.status().as_u16()), "limit={bad}");
    }

    // Rename with If-Match: the current version works once, then it is stale.
    let rename = |version: &str, name: &str| {
        app.authed(Method::PATCH, &format!("/api/v1/tenants/{t}"), &ada)
            .header("If-Match", version)
            .json(&json!({"name": name}))
    };
    let (status, _, renamed) = parts(rename("\"1\"", "Renamed").send().await.unwrap()).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["version"], 2);
    assert_problem(
        rename("\"1\"", "Lost update").send().await.unwrap(),
        412,
        "precondition_failed",
    )
    .await;
    assert_problem(
        rename("one", "Bad header").send().await.unwrap(),
        400,
        "invalid_if_match",
    )
    .await;
    let (_, _, now) = parts(
        app.authed(Method::GET, &format!("/api/v1/tenants/{t}"), &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (now["name"].as_str(), now["version"].as_i64()),
        (Some("Renamed"), Some(2))
    );

    // A member's roles, the same way.
    let target = &joined[1];
    let change = |version: &str, role: &str| {
        app.authed(
            Method::PATCH,
            &format!("/api/v1/tenants/{t}/members/{target}"),
            &ada,
        )
        .header("If-Match", version)
        .json(&json!({"roles": [role]}))
    };
    let (status, _, m) = parts(change("\"1\"", "accountant").send().await.unwrap()).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["version"], 2);
    assert_problem(
        change("\"1\"", "admin").send().await.unwrap(),
        412,
        "precondition_failed",
    )
    .await;
    let (_, _, page) = parts(
        app.authed(Method::GET, &members, &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["data"][1]["roles"], json!(["accountant"]));
}

#[tokio::test]
async fn an_idempotent_api_key_replay_shows_the_same_secret_which_is_stored_only_sealed() {
    let app = TestApp::spawn().await;
    let ada = signed_in(&app, "ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let keys = format!("/api/v1/tenants/{t}/api-keys");
    let create = |key: &str, name: &str| {
        app.authed(Method::POST, &keys, &ada)
            .header("Idempotency-Key", key)
            .json(&json!({"name": name, "roles": ["viewer"]}))
    };
    let (status, _, first) = parts(create("k-1", "sync").send().await.unwrap()).await;
    assert_eq!(status, 201, "{first}");
    let again = create("k-1", "sync").send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let (status, _, second) = parts(again).await;
    assert_eq!(status, 201);
    assert_eq!(second, first, "the same key, secret included");
    let secret = first["secret"].as_str().unwrap();
    let me = app
        .authed(Method::GET, &format!("/api/v1/tenants/{t}"), secret)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "the replayed secret works");
    assert_problem(
        create("k-1", "other").send().await.unwrap(),
        422,
        "idempotency_key_reused",
    )
    .await;
    let (_, _, list) = parts(app.authed(Method::GET, &keys, &ada).send().await.unwrap()).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "one key, not two"
    );
    // At rest, the stored response holds the secret only sealed.
    let mut su = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&app.db.superuser_url)
            .await
            .unwrap()
    };
    let stored: Vec<String> = sqlx::query_scalar("SELECT body::text FROM idempotency_keys")
        .fetch_all(&mut su)
        .await
        .unwrap();
    // `bal_live_<tenant>_<secret>`: the secret itself may hold `_` (URL-safe base64).
    let secret_part = secret.splitn(4, '_').nth(3).unwrap();
    assert!(secret_part.len() >= 40);
    assert!(!stored.is_empty());
    assert!(
        stored.iter().all(|b| !b.contains(secret_part)),
        "no plaintext secret at rest"
    );

    // Another member with api_keys:write replaying the key does not get the secret.
    let (bob, bob_id) = app.new_user("bob@example.com").await;
    seed::member(&app.kernel_db, t, bob_id, &["admin"]).await;
    let other = app
        .authed(Method::POST, &keys, &bob)
        .header("Idempotency-Key", "k-1")
        .json(&json!({"name": "sync", "roles": ["viewer"]}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(other, 422, "idempotency_key_reused").await;
    assert!(!body.to_string().contains(secret_part));
    // The replay is on record.
    let (_, _, events) = parts(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants/{t}/events?type=api_key.secret_replayed"),
            &ada,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1, "{events}");

    // API keys grant nothing: no keys, invitations or role changes made by a key.
    let (_, _, admin_key) = parts(
        app.authed(Method::POST, &keys, &ada)
            .json(&json!({"name": "admin bot", "roles": ["admin"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let admin_key = admin_key["secret"].as_str().unwrap().to_string();
    for (method, path, body) in [
        (
            Method::POST,
            keys.clone(),
            json!({"name": "child", "roles": ["viewer"]}),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/invitations"),
            json!({"email": "eve@example.com", "roles": ["viewer"]}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/tenants/{t}/members/{bob_id}"),
            json!({"roles": ["viewer"]}),
        ),
    ] {
        assert_problem(
            app.authed(method, &path, &admin_key)
                .json(&body)
                .send()
                .await
                .unwrap(),
            403,
            "cannot_grant",
        )
        .await;
    }

    // Refused requests wrote nothing, not even the key's last use.
    let (_, _, list) = parts(app.authed(Method::GET, &keys, &ada).send().await.unwrap()).await;
    let bot = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "admin bot")
        .unwrap();
    assert!(bot["last_used_at"].is_null(), "{bot}");

    // Invitations too: one invitation for one key.
    let invitations = format!("/api/v1/tenants/{t}/invitations");
    for _ in 0..2 {
        let resp = app
            .authed(Method::POST, &invitations, &ada)
            .header("Idempotency-Key", "inv-1")
            .json(&json!({"email": "bob@example.com", "roles": ["viewer"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let (_, _, list) = parts(
        app.authed(Method::GET, &invitations, &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_revoked_session_is_401_on_tenant_routes_at_once_member_or_not() {
    let app = TestApp::spawn().await;
    let ada = signed_in(&app, "ada@example.com").await;
    let mine = format!("/api/v1/tenants/{}", app.create_tenant(&ada, "Acme").await);
    let other = format!("/api/v1/tenants/{}", kernel::TenantId::new());
    assert_eq!(
        app.authed(Method::GET, &mine, &ada)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.authed(Method::GET, &other, &ada)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let out = app
        .authed(Method::POST, "/api/v1/auth/logout", &ada)
        .send()
        .await
        .unwrap();
    assert!(out.status().is_success(), "{}", out.status());
    for path in [&mine, &other] {
        assert_problem(
            app.authed(Method::GET, path, &ada).send().await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
    }
}
