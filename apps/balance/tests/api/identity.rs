//! Accounts and sessions over HTTP, with real mail through the SMTP sink.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, parts};

#[tokio::test]
async fn signup_mails_a_verification_link_that_verifies_and_the_user_can_sign_in() {
    let app =
        TestApp::spawn_with_worker(&[("BALANCE_PUBLIC_URL", "https://balance.example.com")]).await;
    let resp = app
        .client
        .post(app.url("/api/v1/auth/signup"))
        .header("user-agent", "signup-test/1")
        .json(&json!({"email": "Ada@Example.com", "password": "correct horse battery staple", "name": "Ada", "time_zone": "Europe/Berlin"}))
        .send()
        .await
        .unwrap();
    let (status, _, user) = parts(resp).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(
        (
            user["email"].as_str(),
            user["email_verified"].as_bool(),
            user["time_zone"].as_str()
        ),
        (Some("ada@example.com"), Some(false), Some("Europe/Berlin")),
        "{user}"
    );

    let mail = &app
        .smtp
        .as_ref()
        .unwrap()
        .wait_for(1, std::time::Duration::from_secs(30))
        .await[0];
    assert!(
        mail.data
            .contains("https://balance.example.com/verify-email?token="),
        "a link on BALANCE_PUBLIC_URL"
    );
    assert!(
        mail.data.contains("Content-Type: text/html")
            && mail.data.contains("Content-Type: text/plain")
    );
    let token = app.mailed_token("ada@example.com", "verify-email").await;

    // An unverified user can sign in; /me says so.
    let (access, _) = app
        .login("ada@example.com", "correct horse battery staple")
        .await;
    let (_, _, me) = parts(
        app.authed(Method::GET, "/api/v1/me", &access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["email_verified"], false);
    assert_eq!(me["tenants"], json!([]));

    assert_eq!(
        app.post_json("/api/v1/auth/verify-email", &json!({"token": token}))
            .await
            .status(),
        204
    );
    let (_, _, me) = parts(
        app.authed(Method::GET, "/api/v1/me", &access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["email_verified"], true);
    // Single use.
    assert_problem(
        app.post_json("/api/v1/auth/verify-email", &json!({"token": token}))
            .await,
        400,
        "invalid_token",
    )
    .await;

    let events: Vec<String> = app
        .platform_events()
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    for kind in [
        "auth.signed_up",
        "auth.email_verified",
        "auth.login_succeeded",
    ] {
        assert!(events.contains(&kind.to_string()), "{kind} in {events:?}");
    }
    assert!(
        app.platform_events()
            .await
            .iter()
            .all(|(_, c)| !c.contains("example.com")),
        "no email address in the chain"
    );
}

#[tokio::test]
async fn login_answers_alike_for_an_unknown_email_and_a_wrong_password() {
    let app = TestApp::spawn().await;
    app.signup("ada@example.com").await;
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    let wrong = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": "not the password at all"}),
        )
        .await;
    let unknown = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "bob@example.com", "password": "not the password at all"}),
        )
        .await;
    let malformed = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "not-an-email", "password": "x"}),
        )
        .await;
    let a = assert_problem(wrong, 401, "invalid_credentials").await;
    let b = assert_problem(unknown, 401, "invalid_credentials").await;
    let c = assert_problem(malformed, 401, "invalid_credentials").await;
    assert_eq!(strip(a.clone()), strip(b));
    assert_eq!(strip(a), strip(c));
    let failures = app
        .platform_events()
        .await
        .into_iter()
        .filter(|e| e.0 == "auth.login_failed")
        .count();
    assert_eq!(failures, 3, "every failed attempt is recorded");
}

#[tokio::test]
async fn a_refresh_token_works_once_and_reusing_it_signs_the_session_out_and_alerts_the_owner() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let password = app.signup("ada@example.com").await;
    let (access, first) = app.login("ada@example.com", &password).await;

    let (status, _, pair) = parts(
        app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": first}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let (access2, second) = (
        pair["access_token"].as_str().unwrap().to_string(),
        pair["refresh_token"].as_str().unwrap().to_string(),
    );
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(
        app.authed(Method::GET, "/api/v1/me", &access2)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The spent token again: refused, and the whole family is revoked.
    assert_problem(
        app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": first}))
            .await,
        401,
        "invalid_refresh_token",
    )
    .await;
    for token in [&access, &access2] {
        assert_problem(
            app.authed(Method::GET, "/api/v1/me", token)
                .send()
                .await
                .unwrap(),
            401,
            "unauthorized",
        )
        .await;
    }
    assert_problem(
        app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": second}))
            .await,
        401,
        "invalid_refresh_token",
    )
    .await;

    // The verification mail, then the security alert.
    let sink = app.smtp.as_ref().unwrap();
    let mails = sink.wait_for(2, std::time::Duration::from_secs(30)).await;
    assert!(
        mails.iter().any(|m| m.data.contains("Security alert")),
        "an alert was mailed"
    );
    assert!(
        app.platform_events()
            .await
            .iter()
            .any(|e| e.0 == "auth.refresh_reuse_detected")
    );
    for garbage in ["", "brt_x_y", "brt_0195a1c2d3e4f5a6b7c8d9e0f1a2b3c4_AAAA"] {
        assert_eq!(
            app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": garbage}))
                .await
                .status(),
            401
        );
    }
}

#[tokio::test]
async fn logout_and_revoking_a_session_take_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let password = app.signup("ada@example.com").await;
    let (laptop, _) = app.login("ada@example.com", &password).await;
    let (phone, _) = app.login("ada@example.com", &password).await;

    let (_, _, sessions) = parts(
        app.authed(Method::GET, "/api/v1/me/sessions", &laptop)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sessions = sessions.as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let revoke = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{other}"),
            &laptop,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    assert_problem(
        app.authed(Method::GET, "/api/v1/me", &phone)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        app.authed(Method::GET, "/api/v1/me", &laptop)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Revoking again, or someone else's session: 404.
    let again = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{other}"),
            &laptop,
        )
        .send()
        .await
        .unwrap();
    assert_problem(again, 404, "not_found").await;

    assert_eq!(
        app.authed(Method::POST, "/api/v1/auth/logout", &laptop)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_problem(
        app.authed(Method::GET, "/api/v1/me", &laptop)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert!(
        app.platform_events()
            .await
            .iter()
            .filter(|e| e.0 == "session.revoked")
            .count()
            >= 2
    );
}

#[tokio::test]
async fn a_password_reset_works_once_and_signs_every_session_out() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let password = app.signup("ada@example.com").await;
    let (access, refresh) = app.login("ada@example.com", &password).await;

    for email in ["ada@example.com", "nobody@example.com"] {
        let resp = app
            .post_json("/api/v1/auth/password-reset", &json!({"email": email}))
            .await;
        assert_eq!(resp.status(), 202, "always 202: {email}");
    }
    let token = app.mailed_token("ada@example.com", "reset-password").await;
    let weak = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": "password1234"}),
        )
        .await;
    assert_problem(weak, 422, "validation_failed").await;
    let resp = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": "a different staple of horses"}),
        )
        .await;
    assert_eq!(resp.status(), 204, "{}", resp.text().await.unwrap());

    assert_problem(
        app.authed(Method::GET, "/api/v1/me", &access)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}))
            .await
            .status(),
        401
    );
    let old = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": password}),
        )
        .await;
    assert_problem(old, 401, "invalid_credentials").await;
    app.login("ada@example.com", "a different staple of horses")
        .await;
    let again = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "new_password": "yet another staple of horses"}),
        )
        .await;
    assert_problem(again, 400, "invalid_token").await;
    let events: Vec<String> = app
        .platform_events()
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(events.contains(&"auth.password_reset_requested".to_string()));
    assert!(events.contains(&"auth.password_reset_completed".to_string()));
}

#[tokio::test]
async fn bad_signups_answer_a_problem_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.signup("taken@example.com").await;
    let before = app.platform_events().await.len();
    let good = || json!({"email": "new@example.com", "password": "correct horse battery staple", "name": "Ada"});
    let with = |k: &str, v: Value| {
        let mut body = good();
        body[k] = v;
        body
    };
    let without = |k: &str| {
        let mut body = good();
        body.as_object_mut().unwrap().remove(k);
        body
    };
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (without("email"), 422, "validation_failed", Some("email")),
        (
            without("password"),
            422,
            "validation_failed",
            Some("password"),
        ),
        (
            with("email", json!(42)),
            422,
            "validation_failed",
            Some("email"),
        ),
        (
            with("name", json!(["Ada"])),
            422,
            "validation_failed",
            Some("name"),
        ),
        (
            with("email", json!("ada@exa mple.com")),
            422,
            "validation_failed",
            Some("email"),
        ),
        (
            with("email", json!("ada@@example.com")),
            422,
            "validation_failed",
            Some("email"),
        ),
        (
            with("email", json!(format!("{}@example.com", "a".repeat(300)))),
            422,
            "validation_failed",
            Some("email"),
        ),
        (
            with("email", json!("\u{0}ada@example.com")),
            422,
            "validation_failed",
            Some("email"),
        ),
        (
            with("name", json!("")),
            422,
            "validation_failed",
            Some("name"),
        ),
        (
            with("name", json!("   ")),
            422,
            "validation_failed",
            Some("name"),
        ),
        (
            with("name", json!("x".repeat(201))),
            422,
            "validation_failed",
            Some("name"),
        ),
        (
            with("name", json!("Ada\u{7}")),
            422,
            "validation_failed",
            Some("name"),
        ),
        (
            with("password", json!("short")),
            422,
            "validation_failed",
            Some("password"),
        ),
        (
            with("password", json!("password1234")),
            422,
            "validation_failed",
            Some("password"),
        ),
        (
            with("password", json!("x".repeat(257))),
            422,
            "validation_failed",
            Some("password"),
        ),
        (
            with("time_zone", json!("Mars/Olympus")),
            422,
            "validation_failed",
            Some("time_zone"),
        ),
        (
            with("extra", json!(true)),
            422,
            "validation_failed",
            Some("extra"),
        ),
        (
            with("email", json!("TAKEN@example.com")),
            409,
            "email_taken",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let problem = assert_problem(
            app.post_json("/api/v1/auth/signup", &body).await,
            status,
            code,
        )
        .await;
        if let Some(field) = field {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(fields.contains(&field), "{body} → {fields:?}");
        }
    }
    let resp = app
        .client
        .post(app.url("/api/v1/auth/signup"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "malformed_json").await;
    assert_eq!(
        app.platform_events().await.len(),
        before,
        "no event: nothing changed"
    );
    let mut tx = kernel::SystemTx::begin(&app.kernel_db, kernel::Actor::System)
        .await
        .unwrap();
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn me_can_be_renamed_and_moved_to_another_time_zone_but_not_without_a_token() {
    let app = TestApp::spawn().await;
    let password = app.signup("ada@example.com").await;
    let (access, _) = app.login("ada@example.com", &password).await;
    let resp = app
        .authed(Method::PATCH, "/api/v1/me", &access)
        .json(&json!({"name": "Ada King", "time_zone": "America/New_York"}))
        .send()
        .await
        .unwrap();
    let (status, _, me) = parts(resp).await;
    assert_eq!(
        (
            status.as_u16(),
            me["name"].as_str(),
            me["time_zone"].as_str()
        ),
        (200, Some("Ada King"), Some("America/New_York"))
    );
    let bad = app
        .authed(Method::PATCH, "/api/v1/me", &access)
        .json(&json!({"time_zone": "Nowhere"}))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 422, "validation_failed").await;
    for auth in [None, Some("Bearer nonsense"), Some("Basic YWRhOnB3")] {
        let mut req = app.client.get(app.url("/api/v1/me"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_problem(req.send().await.unwrap(), 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn login_limits_answer_429_with_retry_after_and_ratelimit_headers() {
    let app = TestApp::spawn_with(&[(
        "BALANCE_RATE_LIMITS",
        "login_ip=1000/min,login_account=2/15min,signup_ip=2/10min",
    )])
    .await;
    let password = app.signup("ada@example.com").await;
    for _ in 0..2 {
        let resp = app
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": "ada@example.com", "password": "wrong password here"}),
            )
            .await;
        assert_eq!(resp.status(), 401);
    }
    // Locked for this account, even with the right password, across instances (database).
    let resp = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ADA@example.com", "password": password}),
        )
        .await;
    let headers = resp.headers().clone();
    assert_problem(resp, 429, "rate_limited").await;
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 800 && retry <= 900, "{retry}");
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert!(headers.contains_key("ratelimit-reset"));

    // Per IP: the second signup from this address is the last.
    app.signup("bob@example.com").await;
    let resp = app.post_json("/api/v1/auth/signup", &json!({"email": "eve@example.com", "password": "correct horse battery staple", "name": "Eve"})).await;
    assert_problem(resp, 429, "rate_limited").await;
}

#[tokio::test]
async fn production_argon2_parameters_hash_and_verify_and_weaker_hashes_are_upgraded_on_login() {
    // The one test on production parameters (m = 19,456 KiB, t = 2, p = 1).
    let db = crate::helpers::migrated_db().await;
    let light = TestApp::start(db, &[]).await;
    let password = light.signup("ada@example.com").await;
    let hash = || async {
        let mut tx = kernel::SystemTx::begin(&light.kernel_db, kernel::Actor::System)
            .await
            .unwrap();
        sqlx::query_scalar::<_, String>("SELECT password_hash FROM users")
            .fetch_one(tx.conn())
            .await
            .unwrap()
    };
    assert!(hash().await.contains("m=64,t=1,p=1"), "the test parameters");
    let url = light.db.runtime_url.clone();
    let production = TestApp::start(
        crate::helpers::migrated_db().await,
        &[("argon2", "production"), ("BALANCE_DATABASE_URL", &url)],
    )
    .await;
    production.login("ada@example.com", &password).await;
    let upgraded = hash().await;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{upgraded}"
    );
    production.login("ada@example.com", &password).await;
}

#[tokio::test]
async fn without_smtp_mail_is_written_to_eml_files_under_the_data_folder() {
    // No BALANCE_SMTP_URL: the development default.
    let files = TestApp::start(crate::helpers::migrated_db().await, &[]).await;
    let runner = files.platform.runner(jobs::RunnerConfig {
        poll: std::time::Duration::from_millis(200),
        ..jobs::RunnerConfig::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(runner.run(async move {
        let _ = stopped.await;
    }));
    files.signup("ada@example.com").await;
    let dir = files.data_dir.join("mail");
    let eml = testkit::eventually(std::time::Duration::from_secs(30), || async {
        std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .map(|e| e.path())
    })
    .await
    .expect("an .eml file");
    let text = std::fs::read_to_string(eml).unwrap();
    assert!(text.contains("ada@example.com") && text.contains("verify-email?token="));
    let _ = stop.send(());

    // Who asked is recorded beside the event, outside the hash.
    let mut tx = kernel::SystemTx::begin(&files.kernel_db, kernel::Actor::System)
        .await
        .unwrap();
    let ips: Vec<String> = sqlx::query_scalar("SELECT host(ip) FROM platform_event_clients")
        .fetch_all(tx.conn())
        .await
        .unwrap();
    assert!(ips.iter().any(|ip| ip == "127.0.0.1"), "{ips:?}");
}

#[tokio::test]
async fn reset_and_verification_requests_are_limited_too() {
    let app = TestApp::spawn_with(&[(
        "BALANCE_RATE_LIMITS",
        "reset_account=2/hour,verify_ip=2/min",
    )])
    .await;
    for _ in 0..2 {
        assert_eq!(
            app.post_json(
                "/api/v1/auth/password-reset",
                &json!({"email": "ada@example.com"})
            )
            .await
            .status(),
            202
        );
    }
    // Keyed by the address, known or not, so the limit says nothing about accounts.
    let resp = app
        .post_json(
            "/api/v1/auth/password-reset",
            &json!({"email": "Ada@Example.com"}),
        )
        .await;
    let headers = resp.headers().clone();
    assert_problem(resp, 429, "rate_limited").await;
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        app.post_json(
            "/api/v1/auth/password-reset",
            &json!({"email": "someone.else@example.com"})
        )
        .await
        .status(),
        202
    );

    for _ in 0..2 {
        assert_problem(
            app.post_json("/api/v1/auth/verify-email", &json!({"token": "bvt_nope"}))
                .await,
            400,
            "invalid_token",
        )
        .await;
    }
    assert_problem(
        app.post_json("/api/v1/auth/verify-email", &json!({"token": "bvt_nope"}))
            .await,
        429,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn the_permission_catalogue_is_served_to_signed_in_callers() {
    let app = TestApp::spawn().await;
    assert_problem(app.get("/api/v1/permissions").await, 401, "unauthorized").await;
    let password = app.signup("ada@example.com").await;
    let (access, _) = app.login("ada@example.com", &password).await;
    let (status, _, catalogue) = parts(
        app.authed(Method::GET, "/api/v1/permissions", &access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let permissions: Vec<&str> = catalogue["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(permissions.len(), 34);
    assert!(permissions.contains(&"transactions:write") && permissions.contains(&"tenant:delete"));
    let viewer = catalogue["builtin_roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "viewer")
        .unwrap();
    assert!(
        !viewer["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with(":write"))
    );
}
