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

/// Ada owns a tenant where Dan is an admin; Dan has minted keys and sent invitations.
struct Grantor {
    ada: String,
    dan: String,
    dan_id: kernel::UserId,
    tenant: kernel::TenantId,
}

async fn grantor(app: &TestApp) -> Grantor {
    let (ada, _) = app.new_user("ada@example.com").await;
    let tenant = app.create_tenant(&ada, "Acme").await;
    let (dan, dan_id) = app.new_user("dan@example.com").await;
    testkit::seed::member(&app.kernel_db, tenant, dan_id, &["admin"]).await;
    Grantor {
        ada,
        dan,
        dan_id,
        tenant,
    }
}

async fn mint(app: &TestApp, g: &Grantor, roles: &[&str]) -> (String, String) {
    let (status, _, key) = call(
        app,
        Method::POST,
        &format!("/api/v1/tenants/{}/api-keys", g.tenant),
        &g.dan,
        Some(json!({"name": "dan's key", "roles": roles})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_string(),
        key["secret"].as_str().unwrap().to_string(),
    )
}

async fn invite(app: &TestApp, g: &Grantor, email: &str, roles: &[&str]) -> String {
    let (status, _, inv) = call(
        app,
        Method::POST,
        &format!("/api/v1/tenants/{}/invitations", g.tenant),
        &g.dan,
        Some(json!({"email": email, "roles": roles})),
    )
    .await;
    assert_eq!(status, 201, "{inv}");
    testkit::seed::mailed_token(&app.kernel_db, email, "invitation").await
}

async fn accept(app: &TestApp, email: &str, token: &str) -> (u16, serde_json::Value) {
    let (who, _) = app.new_user(email).await;
    let (status, _, body) = call(
        app,
        Method::POST,
        "/api/v1/invitations/accept",
        &who,
        Some(json!({ "token": token })),
    )
    .await;
    (status, body)
}

/// The events of `kind` in the tenant's chain, payloads included.
async fn events_of(app: &TestApp, g: &Grantor, kind: &str) -> Vec<serde_json::Value> {
    let (status, _, body) = call(
        app,
        Method::GET,
        &format!("/api/v1/tenants/{}/events?type={kind}&limit=200", g.tenant),
        &g.ada,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn removing_a_member_revokes_their_keys_and_pending_invitations_at_once() {
    let app = TestApp::spawn().await;
    let g = grantor(&app).await;
    let (_, admin_key) = mint(&app, &g, &["admin"]).await;
    let (_, viewer_key) = mint(&app, &g, &["viewer"]).await;
    let token = invite(&app, &g, "mal@example.com", &["admin"]).await;
    let members = format!("/api/v1/tenants/{}/members", g.tenant);
    assert_eq!(
        call(&app, Method::GET, &members, &admin_key, None).await.0,
        200
    );

    let dan = format!("{members}/{}", g.dan_id);
    assert_eq!(call(&app, Method::DELETE, &dan, &g.ada, None).await.0, 204);

    for key in [&admin_key, &viewer_key] {
        let (status, _, body) = call(&app, Method::GET, &members, key, None).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = accept(&app, "mal@example.com", &token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_token"))
    );
    let revoked = events_of(&app, &g, "api_key.revoked").await;
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    assert!(
        revoked
            .iter()
            .all(|e| e["payload"]["reason"] == "creator_removed")
    );
    let revoked = events_of(&app, &g, "invitation.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["payload"]["granted_by"], json!(g.dan_id));
}

#[tokio::test]
async fn demoting_a_member_narrows_or_revokes_what_they_granted() {
    let app = TestApp::spawn().await;
    let g = grantor(&app).await;
    let (_, admin_key) = mint(&app, &g, &["admin"]).await;
    let (mixed_id, mixed_key) = mint(&app, &g, &["admin", "viewer"]).await;
    let (_, viewer_key) = mint(&app, &g, &["viewer"]).await;
    let admin_invite = invite(&app, &g, "mal@example.com", &["admin"]).await;
    let mixed_invite = invite(&app, &g, "sue@example.com", &["admin", "viewer"]).await;

    let dan = format!("/api/v1/tenants/{}/members/{}", g.tenant, g.dan_id);
    let (status, _, body) = call(
        &app,
        Method::PATCH,
        &dan,
        &g.ada,
        Some(json!({"roles": ["viewer"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let keys = format!("/api/v1/tenants/{}/api-keys", g.tenant);
    assert_eq!(
        call(&app, Method::GET, &keys, &admin_key, None).await.0,
        401
    );
    // The mixed key keeps `viewer`: it reads members, and cannot list keys any more.
    let members = format!("/api/v1/tenants/{}/members", g.tenant);
    assert_eq!(
        call(&app, Method::GET, &members, &mixed_key, None).await.0,
        200
    );
    assert_eq!(
        call(&app, Method::GET, &keys, &mixed_key, None).await.0,
        403
    );
    assert_eq!(
        call(&app, Method::GET, &members, &viewer_key, None).await.0,
        200
    );
    let (_, _, listed) = call(&app, Method::GET, &keys, &g.ada, None).await;
    let mixed = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == mixed_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(mixed["roles"], json!(["viewer"]));
    let narrowed = events_of(&app, &g, "api_key.narrowed").await;
    assert_eq!(narrowed.len(), 1);
    assert_eq!(narrowed[0]["payload"]["from"], json!(["admin", "viewer"]));
    assert_eq!(narrowed[0]["payload"]["to"], json!(["viewer"]));
    assert_eq!(narrowed[0]["payload"]["reason"], "creator_roles_changed");

    let (status, _) = accept(&app, "mal@example.com", &admin_invite).await;
    assert_eq!(status, 400);
    let (status, joined) = accept(&app, "sue@example.com", &mixed_invite).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["roles"], json!(["viewer"]));
    assert_eq!(events_of(&app, &g, "invitation.narrowed").await.len(), 1);
}

#[tokio::test]
async fn a_creator_who_loses_rights_by_another_path_takes_them_from_keys_and_invitations() {
    let app = TestApp::spawn().await;
    let g = grantor(&app).await;
    let roles = format!("/api/v1/tenants/{}/roles", g.tenant);
    for (name, permissions) in [
        (
            "lead",
            json!([
                "tenant:read",
                "members:read",
                "api_keys:read",
                "api_keys:write",
                "invitations:read",
                "invitations:write"
            ]),
        ),
        ("reader", json!(["tenant:read", "members:read"])),
    ] {
        let (status, _, body) = call(
            &app,
            Method::POST,
            &roles,
            &g.ada,
            Some(json!({"name": name, "permissions": permissions})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let dan = format!("/api/v1/tenants/{}/members/{}", g.tenant, g.dan_id);
    let (status, _, body) = call(
        &app,
        Method::PATCH,
        &dan,
        &g.ada,
        Some(json!({"roles": ["lead"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, key) = mint(&app, &g, &["reader"]).await;
    let token = invite(&app, &g, "mal@example.com", &["reader"]).await;
    let members = format!("/api/v1/tenants/{}/members", g.tenant);
    assert_eq!(call(&app, Method::GET, &members, &key, None).await.0, 200);

    // The owner takes `members:read` from `lead`: Dan's key and invitation lose it too,
    // although their own role `reader` still has it.
    let (status, _, body) = call(
        &app,
        Method::PATCH,
        &format!("{roles}/lead"),
        &g.ada,
        Some(json!({"permissions": ["tenant:read", "api_keys:read", "api_keys:write", "invitations:read", "invitations:write"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(&app, Method::GET, &members, &key, None).await.0, 403);
    let tenant = format!("/api/v1/tenants/{}", g.tenant);
    assert_eq!(call(&app, Method::GET, &tenant, &key, None).await.0, 200);
    let (status, body) = accept(&app, "mal@example.com", &token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_token"))
    );
}

/// A client whose requests come from `ip` (a loopback address of its own).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

async fn login_from(
    app: &TestApp,
    ip: [u8; 4],
    password: &str,
    device: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut body = json!({"email": "ada@example.com", "password": password});
    if let Some(device) = device {
        body["device_token"] = json!(device);
    }
    let resp = client_from(ip)
        .post(app.url("/api/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, headers, body) = parts(resp).await;
    (status.as_u16(), headers, body)
}

async fn outbox_count(app: &TestApp, template: &str) -> i64 {
    let mut tx = kernel::SystemTx::begin(&app.kernel_db, kernel::Actor::System)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT count(*) FROM mail_outbox WHERE template = $1")
        .bind(template)
        .fetch_one(tx.conn())
        .await
        .unwrap()
}

fn count_of(events: &[(String, String)], kind: &str) -> usize {
    events.iter().filter(|(t, _)| t == kind).count()
}

#[tokio::test]
async fn strangers_slow_an_account_down_but_cannot_lock_its_owner_out() {
    let app = TestApp::spawn_with(&[("BALANCE_RATE_LIMITS", "login_account=3/15min")]).await;
    let password = app.signup("ada@example.com").await;
    // Ada signed in from her laptop before: it keeps a device token.
    let (status, _, tokens) = login_from(&app, [127, 0, 1, 100], &password, None).await;
    assert_eq!(status, 200, "{tokens}");
    let device = tokens["device_token"].as_str().unwrap().to_string();

    // Strangers guess from three addresses: the account is now under attack.
    for last in 1..=3 {
        let (status, _, _) = login_from(&app, [127, 0, 1, last], "wrong guess here", None).await;
        assert_eq!(status, 401);
    }
    // Clients without the device token share one attempt per 30 s ...
    let (status, _, _) = login_from(&app, [127, 0, 1, 4], "another wrong guess", None).await;
    assert_eq!(status, 401, "the slow lane's one attempt");
    let (status, headers, body) = login_from(&app, [127, 0, 1, 5], &password, None).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        retry <= 30,
        "slowed for seconds, not locked for minutes: {retry}"
    );
    // ... while Ada's laptop signs in at once, from anywhere.
    let (status, _, body) = login_from(&app, [127, 0, 1, 6], &password, Some(&device)).await;
    assert_eq!(status, 200, "{body}");
    // A device token of another account, or a forged one, is no device token.
    let (status, _, _) = login_from(&app, [127, 0, 1, 7], &password, Some("bdv_0_AAAA")).await;
    assert_eq!(status, 429);

    let events = app.platform_events().await;
    assert_eq!(count_of(&events, "auth.account_under_attack"), 1);
    assert_eq!(count_of(&events, "auth.login_throttled"), 1);
    assert_eq!(outbox_count(&app, "security_alert").await, 1, "Ada is told");
}

#[tokio::test]
async fn one_client_that_keeps_guessing_is_locked_out_of_that_account() {
    let app = TestApp::spawn_with(&[("BALANCE_RATE_LIMITS", "login_account=3/15min")]).await;
    let password = app.signup("ada@example.com").await;
    let (_, _, tokens) = login_from(&app, [127, 0, 2, 1], &password, None).await;
    let device = tokens["device_token"].as_str().unwrap().to_string();
    // Three wrong passwords with the device token: that device is locked for this account.
    for _ in 0..3 {
        let (status, _, _) =
            login_from(&app, [127, 0, 2, 1], "wrong guess here", Some(&device)).await;
        assert_eq!(status, 401);
    }
    let (status, headers, _) = login_from(&app, [127, 0, 2, 1], &password, Some(&device)).await;
    assert_eq!(status, 429);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 800, "{retry}");
    let events = app.platform_events().await;
    assert_eq!(count_of(&events, "auth.login_locked"), 1);
}

#[tokio::test]
async fn a_password_check_outside_login_is_limited_counted_and_audited() {
    let app = TestApp::spawn_with(&[("BALANCE_RATE_LIMITS", "login_account=3/15min")]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let enroll = |password: &str| {
        app.authed(Method::POST, "/api/v1/me/2fa/enroll", &ada)
            .json(&json!({ "password": password }))
            .send()
    };
    for _ in 0..3 {
        assert_problem(
            enroll("guess number one").await.unwrap(),
            401,
            "invalid_credentials",
        )
        .await;
    }
    // Even the right password is refused now, before any hashing.
    assert_problem(
        enroll("correct horse battery staple").await.unwrap(),
        429,
        "rate_limited",
    )
    .await;
    let events = app.platform_events().await;
    assert_eq!(count_of(&events, "auth.password_check_failed"), 3);
    assert_eq!(count_of(&events, "auth.login_locked"), 1);
    // The failures count for the account too: its owner is told someone is guessing.
    assert_eq!(count_of(&events, "auth.account_under_attack"), 1);
    assert_eq!(outbox_count(&app, "security_alert").await, 1);
}

#[tokio::test]
async fn invitations_are_limited_per_inviter_and_per_tenant() {
    let app = TestApp::spawn_with(&[(
        "BALANCE_RATE_LIMITS",
        "invite_tenant=5/hour,invite_user=3/hour",
    )])
    .await;
    let g = grantor(&app).await;
    let invitations = format!("/api/v1/tenants/{}/invitations", g.tenant);
    let send = |token: &str, n: u32| {
        app.authed(Method::POST, &invitations, token)
            .json(&json!({"email": format!("outside{n}@example.net"), "roles": ["viewer"]}))
            .send()
    };
    for n in 0..3 {
        assert_eq!(send(&g.dan, n).await.unwrap().status(), 201);
    }
    let resp = send(&g.dan, 3).await.unwrap();
    let headers = resp.headers().clone();
    assert_problem(resp, 429, "rate_limited").await;
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 3500 && retry <= 3600, "{retry}");
    assert_eq!(headers["ratelimit-limit"], "3");
    // Ada has her own inviter window, until the tenant's is full.
    for n in 10..12 {
        assert_eq!(send(&g.ada, n).await.unwrap().status(), 201);
    }
    let resp = send(&g.ada, 12).await.unwrap();
    let headers = resp.headers().clone();
    assert_problem(resp, 429, "rate_limited").await;
    assert_eq!(headers["ratelimit-limit"], "5");
    // A refusal sends nothing.
    assert_eq!(outbox_count(&app, "invitation").await, 5);
}

#[tokio::test]
async fn a_nul_character_is_a_422_in_every_body_path_and_query() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let base = format!("/api/v1/tenants/{t}");
    let cases: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (
            Method::POST,
            format!("{base}/api-keys"),
            Some(json!({"name": "a\u{0}b", "roles": ["viewer"]})),
        ),
        (
            Method::POST,
            format!("{base}/api-keys"),
            Some(json!({"name": "k", "roles": ["view\u{0}er"]})),
        ),
        (
            Method::POST,
            format!("{base}/invitations"),
            Some(json!({"email": "bob@example.com", "roles": ["a\u{0}"]})),
        ),
        (Method::GET, format!("{base}/roles/a%00b"), None),
        (
            Method::PATCH,
            format!("{base}/roles/a%00b"),
            Some(json!({"permissions": ["tenant:read"]})),
        ),
        (Method::DELETE, format!("{base}/roles/a%00b"), None),
        (Method::GET, format!("{base}/events?type=a%00b"), None),
        (
            Method::GET,
            format!("{base}/events?resource_type=a%00"),
            None,
        ),
        (Method::GET, format!("{base}/events?resource_id=%00"), None),
    ];
    for (method, path, body) in cases {
        let mut req = app
            .client
            .request(method.clone(), app.url(&path))
            .bearer_auth(&ada);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let (status, _, problem) = parts(req.send().await.unwrap()).await;
        assert_eq!(
            (status.as_u16(), problem["code"].as_str()),
            (422, Some("validation_failed")),
            "{method} {path}: {problem}"
        );
        assert!(problem.to_string().contains("NUL"), "{problem}");
    }
}

#[tokio::test]
async fn addresses_have_one_spelling_and_only_deliverable_ones_sign_up() {
    let app = TestApp::spawn().await;
    let app = &app;
    let signup = |email: &str| {
        let body =
            json!({"email": email, "password": "correct horse battery staple", "name": "Ada"});
        async move { app.post_json("/api/v1/auth/signup", &body).await }
    };
    for email in [
        "jürgen@example.com",
        "jose\u{301}@example.com",
        "\u{430}da@example.com",
        "ada@ex\u{430}mple.com",
        "a\u{200B}da@example.com",
        "ada\u{202E}@example.com",
        "\u{FF41}da@example.com",
    ] {
        let problem = assert_problem(signup(email).await, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "email", "{email}: {problem}");
    }
    let problem =
        assert_problem(signup("jürgen@example.com").await, 422, "validation_failed").await;
    assert!(
        problem.to_string().contains("ASCII"),
        "the refusal says why: {problem}"
    );
    assert_eq!(signup("Ada@ＥＸＡＭＰＬＥ.com").await.status(), 201);
    assert_problem(signup("ada@example.com").await, 409, "email_taken").await;
    assert_eq!(signup("juergen@bücher.de").await.status(), 201);
    assert_problem(signup("juergen@xn--bcher-kva.de").await, 409, "email_taken").await;
}

#[tokio::test]
async fn a_refresh_reuse_race_writes_one_event_and_one_mail() {
    let app = TestApp::spawn().await;
    let password = app.signup("ada@example.com").await;
    let (_, refresh) = app.login("ada@example.com", &password).await;
    let tries = (0..10).map(|_| {
        app.client
            .post(app.url("/api/v1/auth/refresh"))
            .json(&json!({ "refresh_token": refresh }))
            .send()
    });
    let answers = futures_util::future::join_all(tries).await;
    let ok = answers
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == 200)
        .count();
    assert_eq!(ok, 1);
    let events = app.platform_events().await;
    assert_eq!(count_of(&events, "auth.refresh_reuse_detected"), 1);
    assert_eq!(outbox_count(&app, "security_alert").await, 1);
}

#[tokio::test]
async fn answers_carrying_tokens_or_secrets_are_never_cached() {
    let app = TestApp::spawn().await;
    let password = app.signup("ada@example.com").await;
    let resp = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": password}),
        )
        .await;
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: serde_json::Value = resp.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let resp = app
        .authed(Method::GET, "/api/v1/me", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let resp = app.get("/api/v1/nowhere").await;
    assert_eq!(resp.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn password_resets_are_limited_per_address_and_junk_tokens_cost_no_scoring() {
    let app = TestApp::spawn_with(&[(
        "BALANCE_RATE_LIMITS",
        "reset_ip=3/hour,reset_confirm_ip=3/10min",
    )])
    .await;
    for n in 0..3 {
        let resp = app
            .post_json(
                "/api/v1/auth/password-reset",
                &json!({"email": format!("someone{n}@example.com")}),
            )
            .await;
        assert_eq!(resp.status(), 202);
    }
    let resp = app
        .post_json(
            "/api/v1/auth/password-reset",
            &json!({"email": "someone9@example.com"}),
        )
        .await;
    assert_problem(resp, 429, "rate_limited").await;

    let app = &app;
    let confirm = |password: &str| {
        let body =
            json!({"token": "bpr_00000000000000000000000000000000_AAAA", "new_password": password});
        async move {
            app.post_json("/api/v1/auth/password-reset/confirm", &body)
                .await
        }
    };
    // A weak password with a junk token: the token is what is wrong.
    assert_problem(confirm("password1234").await, 400, "invalid_token").await;
    assert_problem(confirm(&"x".repeat(256)).await, 400, "invalid_token").await;
    assert_problem(
        confirm("correct horse battery staple").await,
        400,
        "invalid_token",
    )
    .await;
    assert_problem(
        confirm("correct horse battery staple").await,
        429,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn cors_answers_vary_by_origin() {
    let app = TestApp::spawn_with(&[("BALANCE_CORS_ORIGINS", "https://app.example.com")]).await;
    for origin in ["https://app.example.com", "https://evil.example"] {
        let resp = app
            .client
            .get(app.url("/api/v1/auth/login"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        let vary: Vec<_> = resp
            .headers()
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect();
        assert!(
            vary.iter().any(|v| v.contains("origin")),
            "{origin}: {vary:?}"
        );
    }
}

#[tokio::test]
async fn accepting_an_invitation_needs_a_verified_address() {
    let app = TestApp::spawn().await;
    let g = grantor(&app).await;
    let token = invite(&app, &g, "bob@example.com", &["viewer"]).await;
    let password = app.signup("bob@example.com").await;
    let (bob, _) = app.login("bob@example.com", &password).await;
    let accept = || {
        app.authed(Method::POST, "/api/v1/invitations/accept", &bob)
            .json(&json!({ "token": token }))
            .send()
    };
    assert_problem(accept().await.unwrap(), 403, "email_unverified").await;
    app.verify_email("bob@example.com").await;
    assert_eq!(accept().await.unwrap().status(), 200);
}
