//! Two-factor sign-in over HTTP.

use identity::totp;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, parts};

fn step_now() -> u64 {
    totp::step_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

async fn login(app: &TestApp, password: &str, code: Option<&str>) -> reqwest::Response {
    let mut body = json!({"email": "ada@example.com", "password": password});
    if let Some(code) = code {
        body["totp_code"] = json!(code);
    }
    app.post_json("/api/v1/auth/login", &body).await
}

#[tokio::test]
async fn two_factor_sign_in_from_enrollment_to_recovery_codes_to_disabling() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let password = app.signup("ada@example.com").await;
    let (access, _) = app.login("ada@example.com", &password).await;

    let wrong = app
        .authed(Method::POST, "/api/v1/me/2fa/enroll", &access)
        .json(&json!({"password": "not my password at all"}))
        .send()
        .await
        .unwrap();
    assert_problem(wrong, 401, "invalid_credentials").await;
    let (status, _, enrollment) = parts(
        app.authed(Method::POST, "/api/v1/me/2fa/enroll", &access)
            .json(&json!({"password": password}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{enrollment}");
    let secret_b32 = enrollment["secret"].as_str().unwrap().to_string();
    let uri = enrollment["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Balance%3Aada%40example.com?secret=")
            && uri.contains("issuer=Balance"),
        "{uri}"
    );
    let secret = totp::from_base32(&secret_b32).unwrap();
    assert_eq!(secret.len(), 20);

    let bad = app
        .authed(Method::POST, "/api/v1/me/2fa/activate", &access)
        .json(&json!({"code": "000000"}))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 401, "totp_invalid").await;
    // Wrong secrets outside login are audited like a login's.
    let kinds: Vec<String> = app
        .platform_events()
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert!(
        kinds.iter().any(|k| k == "auth.password_check_failed"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "auth.totp_failed"), "{kinds:?}");
    let step = step_now();
    let first = totp::code_at(&secret, step, 6);
    let (status, _, codes) = parts(
        app.authed(Method::POST, "/api/v1/me/2fa/activate", &access)
            .json(&json!({"code": first}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{codes}");
    let recovery: Vec<String> = codes["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    assert!(
        recovery
            .iter()
            .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-')
    );
    let (_, _, me) = parts(
        app.authed(Method::GET, "/api/v1/me", &access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["totp_enabled"], true);
    assert!(
        !me.to_string().contains(&secret_b32),
        "the secret is shown once, at enrollment"
    );

    assert_problem(login(&app, &password, None).await, 401, "totp_required").await;
    assert_problem(
        login(&app, &password, Some("123456")).await,
        401,
        "totp_invalid",
    )
    .await;
    assert_problem(
        login(&app, &password, Some(&first)).await,
        401,
        "totp_invalid",
    )
    .await; // replay of the activation code
    let next = totp::code_at(&secret, step + 1, 6);
    assert_eq!(
        login(&app, &password, Some(&next)).await.status(),
        200,
        "the next step is within ±1"
    );
    assert_problem(
        login(&app, &password, Some(&next)).await,
        401,
        "totp_invalid",
    )
    .await; // each code once
    assert_problem(
        login(&app, "wrong password entirely", Some(&recovery[0])).await,
        401,
        "invalid_credentials",
    )
    .await;

    let recovery_alerts = || async {
        let mut tx = kernel::SystemTx::begin(&app.kernel_db, kernel::Actor::System)
            .await
            .unwrap();
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM mail_outbox WHERE template = 'security_alert' AND params ->> 'what' LIKE '%recovery codes%'",
        )
        .fetch_one(tx.conn())
        .await
        .unwrap()
    };
    assert_eq!(recovery_alerts().await, 0);
    assert_eq!(
        login(&app, &password, Some(&recovery[0].to_uppercase()))
            .await
            .status(),
        200,
        "a recovery code in place of a code"
    );
    assert_eq!(
        recovery_alerts().await,
        1,
        "a recovery-code sign-in is mailed"
    );
    assert_problem(
        login(&app, &password, Some(&recovery[0])).await,
        401,
        "totp_invalid",
    )
    .await; // once

    let off = app
        .authed(Method::POST, "/api/v1/me/2fa/disable", &access)
        .json(&json!({"code": recovery[1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 204);
    let (_, _, me) = parts(
        app.authed(Method::GET, "/api/v1/me", &access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["totp_enabled"], false);
    assert_eq!(login(&app, &password, None).await.status(), 200);

    let events: Vec<(String, String)> = app.platform_events().await;
    let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert!(kinds.contains(&"auth.totp_enabled") && kinds.contains(&"auth.totp_disabled"));
    assert!(
        events
            .iter()
            .all(|(_, c)| !c.contains(&secret_b32) && !c.contains(&recovery[2])),
        "no secret or code in the audit log"
    );
    let mails = app
        .smtp
        .as_ref()
        .unwrap()
        .wait_for(3, std::time::Duration::from_secs(30))
        .await;
    assert!(
        mails
            .iter()
            .filter(|m| m.data.contains("Security alert"))
            .count()
            >= 2,
        "alerts for on and off"
    );
    assert!(mails.iter().all(|m| !m.data.contains(&secret_b32)));
}

#[tokio::test]
async fn wrong_codes_count_toward_the_totp_limit() {
    let app = TestApp::spawn_with(&[(
        "BALANCE_RATE_LIMITS",
        "totp_account=2/15min,login_account=100/15min,login_ip=1000/min",
    )])
    .await;
    let password = app.signup("ada@example.com").await;
    let (access, _) = app.login("ada@example.com", &password).await;
    let (_, _, enrollment) = parts(
        app.authed(Method::POST, "/api/v1/me/2fa/enroll", &access)
            .json(&json!({"password": password}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let secret = totp::from_base32(enrollment["secret"].as_str().unwrap()).unwrap();
    let code = totp::code_at(&secret, step_now(), 6);
    assert_eq!(
        app.authed(Method::POST, "/api/v1/me/2fa/activate", &access)
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for _ in 0..2 {
        assert_problem(
            login(&app, &password, Some("999999")).await,
            401,
            "totp_invalid",
        )
        .await;
    }
    let next = totp::code_at(&secret, step_now() + 1, 6);
    assert_problem(
        login(&app, &password, Some(&next)).await,
        429,
        "rate_limited",
    )
    .await;
}
