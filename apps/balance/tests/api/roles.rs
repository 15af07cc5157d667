//! Custom roles per tenant: defined from the catalogue within what the definer holds, used
//! like built-in ones by members and API keys, read-only built-ins, and changes that reach
//! every running instance.

use std::time::{Duration, Instant};

use kernel::{Actor, TenantId};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, parts, seed};

/// An owner with a new tenant (created through the API), and that tenant.
async fn owner_and_tenant(app: &TestApp, email: &str) -> (String, TenantId) {
    let (token, _) = app.new_user(email).await;
    let tenant = app.create_tenant(&token, "Acme").await;
    (token, tenant)
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.authed(method, path, token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let (status, _, body) = parts(req.send().await.unwrap()).await;
    (status.as_u16(), body)
}

async fn event_types(app: &TestApp, tenant: TenantId, token: &str) -> Vec<String> {
    let (status, body) = call(
        app,
        Method::GET,
        &format!("/api/v1/tenants/{tenant}/events?limit=200"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn custom_roles_are_defined_from_the_catalogue_within_what_the_definer_holds() {
    let app = TestApp::spawn().await;
    let (ada, t) = owner_and_tenant(&app, "ada@example.com").await;
    let (bob, bob_id) = app.new_user("bob@example.com").await;
    seed::member(&app.kernel_db, t, bob_id, &["admin"]).await;
    let roles = format!("/api/v1/tenants/{t}/roles");

    // The built-in roles are listed, read-only.
    let (status, list) = call(&app, Method::GET, &roles, &bob, None).await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["owner", "admin", "accountant", "viewer", "billing"]);
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["builtin"] == true)
    );
    let (status, viewer) = call(&app, Method::GET, &format!("{roles}/viewer"), &bob, None).await;
    assert_eq!(status, 200);
    assert!(
        viewer["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("transactions:read"))
    );
    for method in [Method::PATCH, Method::DELETE] {
        let mut req = app.authed(method, &format!("{roles}/admin"), &ada);
        req = req.json(&json!({"description": "mine now"}));
        assert_problem(req.send().await.unwrap(), 409, "role_read_only").await;
    }

    // Created with an Idempotency-Key: a replay is the same role, not a second one.
    let new = json!({"name": "auditor", "description": "Reads the audit log", "permissions": ["events:read", "tenant:read"]});
    let create = || {
        app.authed(Method::POST, &roles, &ada)
            .header("Idempotency-Key", "role-1")
            .json(&new)
    };
    let resp = create().send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let (status, _, created) = parts(resp).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(location, format!("{roles}/auditor"));
    assert_eq!(created["builtin"], false);
    assert_eq!(created["version"], 1);
    // Stored in catalogue order.
    assert_eq!(
        created["permissions"],
        json!(["tenant:read", "events:read"])
    );
    let replay = create().send().await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(parts(replay).await.2, created);

    // Bad definitions: 422 with the field, 409 for a taken name; nothing written.
    for (body, field) in [
        (
            json!({"name": "admin", "permissions": ["tenant:read"]}),
            "name",
        ),
        (
            json!({"name": "Bad Name", "permissions": ["tenant:read"]}),
            "name",
        ),
        (json!({"name": "x", "permissions": []}), "permissions"),
        (
            json!({"name": "x", "permissions": ["tenant:read", "events:write"]}),
            "permissions[1]",
        ),
        (
            json!({"name": "x", "permissions": ["tenant:read"], "extra": 1}),
            "",
        ),
    ] {
        let p = assert_problem(
            app.authed(Method::POST, &roles, &ada)
                .json(&body)
                .send()
                .await
                .unwrap(),
            422,
            "validation_failed",
        )
        .await;
        if !field.is_empty() {
            assert!(
                p["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["field"] == field),
                "{body}: {p}"
            );
        }
    }
    assert_problem(
        app.authed(Method::POST, &roles, &ada)
            .json(&new)
            .send()
            .await
            .unwrap(),
        409,
        "role_exists",
    )
    .await;

    // Nobody defines a role with a permission they lack: an admin has no billing:write.
    let p = assert_problem(
        app.authed(Method::POST, &roles, &bob)
            .json(&json!({"name": "payer", "permissions": ["billing:write"]}))
            .send()
            .await
            .unwrap(),
        403,
        "cannot_grant",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("billing:write"),
        "{p}"
    );
    let (status, _) = call(&app, Method::GET, &format!("{roles}/payer"), &ada, None).await;
    assert_eq!(status, 404, "the refused role was not written");
    // ...nor edits one that holds such a permission, nor widens one beyond their own.
    let (status, _) = call(
        &app,
        Method::POST,
        &roles,
        &ada,
        Some(json!({"name": "payer", "permissions": ["billing:write"]})),
    )
    .await;
    assert_eq!(status, 201);
    for (role, body) in [
        ("payer", json!({"description": "renamed by an admin"})),
        (
            "auditor",
            json!({"permissions": ["events:read", "billing:write"]}),
        ),
    ] {
        assert_problem(
            app.authed(Method::PATCH, &format!("{roles}/{role}"), &bob)
                .json(&body)
                .send()
                .await
                .unwrap(),
            403,
            "cannot_grant",
        )
        .await;
    }
    // ...nor deletes one more powerful than their own.
    assert_problem(
        app.authed(Method::DELETE, &format!("{roles}/payer"), &bob)
            .send()
            .await
            .unwrap(),
        403,
        "cannot_grant",
    )
    .await;

    // A member with the custom role acts with exactly its permissions.
    let (carol, carol_id) = app.new_user("carol@example.com").await;
    seed::member(&app.kernel_db, t, carol_id, &["viewer"]).await;
    let (status, body) = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/tenants/{t}/members/{carol_id}"),
        &bob,
        Some(json!({"roles": ["auditor"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let events = format!("/api/v1/tenants/{t}/events");
    let members = format!("/api/v1/tenants/{t}/members");
    assert_eq!(call(&app, Method::GET, &events, &carol, None).await.0, 200);
    assert_eq!(call(&app, Method::GET, &members, &carol, None).await.0, 403);
    // An admin cannot hand out the role holding billing:write.
    assert_problem(
        app.authed(
            Method::PATCH,
            &format!("/api/v1/tenants/{t}/members/{carol_id}"),
            &bob,
        )
        .json(&json!({"roles": ["payer"]}))
        .send()
        .await
        .unwrap(),
        403,
        "cannot_grant",
    )
    .await;
    // Unknown roles are a validation error, for members, invitations and API keys alike.
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/api/v1/tenants/{t}/members/{carol_id}"),
            json!({"roles": ["ghost"]}),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/invitations"),
            json!({"email": "d@example.com", "roles": ["ghost"]}),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/api-keys"),
            json!({"name": "k", "roles": ["ghost"]}),
        ),
    ] {
        let p = assert_problem(
            app.authed(method, &path, &ada)
                .json(&body)
                .send()
                .await
                .unwrap(),
            422,
            "validation_failed",
        )
        .await;
        assert!(p.to_string().contains("ghost"), "{p}");
    }

    // Widening the role (If-Match with its version) takes effect at once; a stale version is 412.
    let patch = |version: &str| {
        app.authed(Method::PATCH, &format!("{roles}/auditor"), &bob)
            .header("If-Match", format!("\"{version}\""))
            .json(&json!({"permissions": ["tenant:read", "events:read", "members:read"]}))
    };
    let (status, _, updated) = parts(patch("1").send().await.unwrap()).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_problem(patch("1").send().await.unwrap(), 412, "precondition_failed").await;
    assert_eq!(call(&app, Method::GET, &members, &carol, None).await.0, 200);

    // An API key with the custom role acts with it.
    let (status, key) = call(
        &app,
        Method::POST,
        &format!("/api/v1/tenants/{t}/api-keys"),
        &ada,
        Some(json!({"name": "audit bot", "roles": ["auditor"]})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap();
    assert_eq!(call(&app, Method::GET, &events, secret, None).await.0, 200);
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/tenants/{t}/api-keys"),
            secret,
            None
        )
        .await
        .0,
        403
    );

    // A role in use cannot be deleted; once unused it can, and is gone.
    let p = assert_problem(
        app.authed(Method::DELETE, &format!("{roles}/auditor"), &bob)
            .send()
            .await
            .unwrap(),
        409,
        "role_in_use",
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("1 member(s), 1 API key(s)"),
        "{p}"
    );
    let key_id = key["id"].as_str().unwrap();
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("/api/v1/tenants/{t}/api-keys/{key_id}"),
            &ada,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/tenants/{t}/members/{carol_id}"),
            &bob,
            Some(json!({"roles": ["viewer"]})),
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("{roles}/auditor"),
            &bob,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(&app, Method::GET, &format!("{roles}/auditor"), &bob, None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("{roles}/auditor"),
            &bob,
            None
        )
        .await
        .0,
        404
    );

    // Every change is in the tenant's audit chain.
    let types = event_types(&app, t, &ada).await;
    for want in [
        "role.created",
        "role.updated",
        "role.deleted",
        "member.role_changed",
    ] {
        assert!(
            types.iter().any(|t| t == want),
            "{want} missing in {types:?}"
        );
    }
    assert_eq!(
        types.iter().filter(|t| *t == "role.created").count(),
        2,
        "the replay and the refused creations wrote nothing"
    );
}

#[tokio::test]
async fn a_tenant_has_at_most_a_hundred_custom_roles() {
    let app = TestApp::spawn().await;
    let (ada, t) = owner_and_tenant(&app, "ada@example.com").await;
    let roles = format!("/api/v1/tenants/{t}/roles");
    for i in 0..access::MAX_CUSTOM_ROLES {
        let (status, body) = call(
            &app,
            Method::POST,
            &roles,
            &ada,
            Some(json!({"name": format!("r{i}"), "permissions": ["tenant:read"]})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_problem(
        app.authed(Method::POST, &roles, &ada)
            .json(&json!({"name": "one-more", "permissions": ["tenant:read"]}))
            .send()
            .await
            .unwrap(),
        409,
        "role_limit_reached",
    )
    .await;
    let (_, list) = call(&app, Method::GET, &roles, &ada, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 105);
    assert_eq!(list["has_more"], false);
}

/// Polls `check` every 5 ms until it holds; returns how long that took.
async fn within(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Ends the policy listener's connection of every instance, as a network failure or a
/// connection reaper would.
async fn drop_listeners(db: &testkit::db::TestDb) -> i64 {
    listeners(db, "pg_terminate_backend(pid)").await
}

/// `what` of every policy listener connection of the database.
async fn listeners(db: &testkit::db::TestDb, what: &str) -> i64 {
    use sqlx::Connection;
    let mut su = sqlx::PgConnection::connect(&db.superuser_url)
        .await
        .unwrap();
    let rows: Vec<(i32,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM (SELECT {what} FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN \"balance_policy\"%') x"
    )))
    .fetch_all(&mut su)
    .await
    .unwrap();
    rows.len() as i64
}

#[tokio::test]
async fn a_role_change_reaches_every_instance_within_a_second_even_after_a_lost_listener() {
    let a = TestApp::spawn().await;
    // The same database and keys (development keys live in the data directory).
    let data_dir = a.data_dir.to_string_lossy().to_string();
    let b = TestApp::start(a.db.share(), &[("BALANCE_DATA_DIR", &data_dir)]).await;
    let (ada, t) = owner_and_tenant(&a, "ada@example.com").await;
    let (carol, carol_id) = a.new_user("carol@example.com").await;
    let roles = format!("/api/v1/tenants/{t}/roles");
    let members = format!("/api/v1/tenants/{t}/members");
    let (status, _) = call(
        &a,
        Method::POST,
        &roles,
        &ada,
        Some(json!({"name": "auditor", "permissions": ["tenant:read", "events:read"]})),
    )
    .await;
    assert_eq!(status, 201);
    seed::member(&a.kernel_db, t, carol_id, &["auditor"]).await;
    // Instance B has the tenant's roles cached (it served Carol once).
    assert_eq!(call(&b, Method::GET, &members, &carol, None).await.0, 403);
    let cached = b
        .platform
        .policy
        .cached_version(t)
        .expect("B cached the tenant");

    for round in 0..2 {
        if round == 0 {
            // B's listener started with its first cached tenant; wait until it listens, so
            // this round measures a notice.
            within(Duration::from_secs(10), async || {
                listeners(&b.db, "pid").await >= 1
            })
            .await
            .expect("B listens");
        } else {
            // The listener's connection is lost: B reconnects (a new connection) and
            // catches up on its own.
            assert!(drop_listeners(&b.db).await >= 1, "B listens");
        }
        let before = b.platform.policy.cached_version(t).unwrap();
        let perms = if round == 0 {
            json!(["tenant:read", "events:read", "members:read"])
        } else {
            json!(["tenant:read", "events:read"])
        };
        let (status, body) = call(
            &a,
            Method::PATCH,
            &format!("{roles}/auditor"),
            &ada,
            Some(json!({"permissions": perms})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // B's cache moves on by itself: no request of B is involved.
        let took = within(Duration::from_secs(10), async || {
            b.platform
                .policy
                .cached_version(t)
                .is_some_and(|v| v > before)
        })
        .await
        .unwrap_or_else(|| panic!("round {round}: B never reloaded (cached {before})"));
        let want = if round == 0 { 200 } else { 403 };
        assert_eq!(
            call(&b, Method::GET, &members, &carol, None).await.0,
            want,
            "round {round}"
        );
        // The target is 1 s; the figure is reported, not asserted (loadtests/README.md).
        eprintln!("round {round}: B reloaded {took:?} after A's change was acknowledged");
    }
    assert!(cached >= 1);

    // A missed notice cannot leave a stale grant: the version is compared on use. Make the
    // change behind every listener's back (no NOTIFY), and B still answers by it at once.
    {
        let mut tx = kernel::TenantTx::begin(&a.kernel_db, t, Actor::System)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE tenant_roles SET permissions = '{tenant:read,events:read,members:read}' WHERE tenant_id = $1 AND name = 'auditor'",
        )
        .bind(t)
        .execute(tx.conn())
        .await
        .unwrap();
        sqlx::query("UPDATE tenants SET policy_version = policy_version + 1 WHERE id = $1")
            .bind(t)
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(call(&b, Method::GET, &members, &carol, None).await.0, 200);
    b.stop().await;
}
